"""Inputs meant to break things get a 4xx in the envelope, never a 500 (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from atelier_platform.accounts.roles import Role
from atelier_platform.api.parsers import MAX_DEPTH
from atelier_platform.jobs.models import Job

DEEP = "[" * 100_000 + "]" * 100_000
JUST_TOO_DEEP = json.dumps({"plugin": "reverse_text", "input": {"text": "a", "x": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}})

POSTS = ["/api/v1/jobs/", "/api/v1/jobs/batch/", "/api/v1/api-keys/", "/api/v1/knowledge/documents/", "/api/v1/webhooks/",
         "/api/v1/safety/blocklist/", "/api/v1/safety/allowlist/", "/v1/chat/completions"]
BODIES = ["[]", "null", '"text"', "1e999", '{"jobs": null}', '{"jobs": [null]}', '{"jobs": [[]]}', DEEP, JUST_TOO_DEEP,
          '{"plugin": "reverse_text", "input": {"text": "a\\u0000b"}}',
          '{"plugin": "reverse_text", "input": {"text": "ab"}, "params": {"k\\u0000": 1}}',
          '{"jobs": [{"plugin": "reverse_text", "input": {"text": "a\\u0000"}}]}',
          '{"plugin": "reverse_text", "input": {"text": "\\ud800"}}', '{"name": "\\u0000"}', '{"scopes": [{"a": 1}]}',
          '{"entries": [{"value": "a\\u0000b"}]}', '{"entries": [{"value": "\\ud800"}]}', '{"entries": [{"value": "\\u200b"}]}']


def assert_clean(response):
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert "error" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("path", POSTS)
def test_hostile_bodies(owner_api, path):
    for body in BODIES:
        assert_clean(owner_api.post(path, body, content_type="application/json"))
    assert Job.objects.exclude(status="blocked").count() == 0


@pytest.mark.django_db
def test_nul_in_job_input_is_named(owner_api):
    response = owner_api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "a\x00b"}}, format="json")
    assert response.status_code == 400 and response.json()["error"]["details"] == {"input.text": ["The NUL character (\\u0000) is not allowed."]}
    response = owner_api.post("/api/v1/jobs/", DEEP, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


@pytest.mark.django_db
def test_hostile_query_strings_and_ids(owner_api):
    gets = [
        "/api/v1/usage/?from=0001-01-01&to=9999-12-31", "/api/v1/usage/?to=0001-01-05", "/api/v1/usage/?from=9999-12-31&to=9999-12-31",
        "/api/v1/usage/?plugin=%00", "/api/v1/jobs/?plugin=%00", "/api/v1/jobs/?status=%00", "/api/v1/jobs/?created_after=99999-01-01",
        "/api/v1/outputs/?job=%00", "/api/v1/outputs/?created_before=-1", "/api/v1/reviews/?plugin=%00", "/api/v1/reviews/?category=a%00",
        "/api/v1/audit/?action=%00", "/api/v1/audit/?after_id=99999999999999999999", "/api/v1/knowledge/documents/?source_id_prefix=%00",
        "/api/v1/api-keys/?active=%00", "/api/v1/jobs/?page_size=99999999999999999999999", "/api/v1/jobs/?page_size=-5",
        "/api/v1/jobs/?cursor=%00", "/api/v1/api-keys/?cursor=cD1hYmM=", "/api/v1/jobs/?cursor=bz0xJnA9YWJj", "/api/v1/audit/?cursor=cD1hYmM=", "/api/v1/audit/?cursor=cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ==", "/api/v1/reviews/?cursor=cD1hYmM=", "/api/v1/outputs/?cursor=cD1hYmM=", "/api/v1/knowledge/documents/?cursor=cD0tNQ==", "/api/v1/webhooks/?cursor=cD1hYmM=", "/api/v1/reviews/99999999999999999999/",
        "/api/v1/api-keys/9223372036854775807/", "/api/v1/outputs/00000000-0000-0000-0000-000000000000/",
        "/api/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries/?status=%00",
        "/api/v1/evaluation/runs/?reference_set=%00", "/api/v1/evaluation/runs/?model_version=%00",
        "/api/v1/evaluation/runs/?model_version=99999999999999999999999", "/api/v1/evaluation/runs/?model_version=-1",
    ]
    for url in gets:
        assert_clean(owner_api.get(url))


@pytest.mark.django_db
def test_hostile_credentials(client_for, project, member):
    for header in ["Bearer atl_ab\x00cd_secret", "Bearer atl_" + "a" * 500 + "_x", "Bearer atl_é_x"]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get("/api/v1/jobs/")
        assert response.status_code == 401, response.content
    client = APIClient()
    client.force_login(member(project, Role.OWNER))
    for slug in ["a\x00b", "x" * 300, "UPPER"]:
        response = client.get("/api/v1/jobs/", HTTP_X_ATELIER_PROJECT=slug)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_an_unpaired_surrogate_is_refused_before_anything_is_done(owner_api, project, member):
    """``\\ud800`` alone decodes to a string no UTF-8 can carry: a review edit holding one was saved, then
    answered 500, and every later read of its job was a 500 too."""
    from atelier_platform.moderation.models import ReviewItem
    from tests.api.helpers import build_job, build_output

    job = build_job(project)
    item = ReviewItem.objects.create(output=build_output(job), project=project, priority=5)
    reviewer = APIClient()
    reviewer.force_login(member(project, Role.REVIEWER))
    reviewer.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    edit = '{"action": "edit", "content": {"text": "fine \\ud800", "characters": 6}}'
    response = reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", edit, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed_json" and "content.text" in response.json()["error"]["message"]
    assert ReviewItem.objects.get(pk=item.pk).state == "open"
    assert owner_api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    response = owner_api.post("/api/v1/jobs/", '{"plugin": "reverse_text", "input": {"text": "\\udfff"}}',
                              content_type="application/json")
    assert response.status_code == 400 and "input.text" in response.json()["error"]["message"]
    pair = owner_api.post("/api/v1/jobs/", '{"plugin": "reverse_text", "input": {"text": "\\ud83d\\ude00"}}',
                          content_type="application/json")
    assert pair.status_code == 201 and pair.json()["input"]["text"] == "😀"  # a whole pair is a character
    chat = owner_api.post("/v1/chat/completions", '{"model": "chatbot", "messages": [{"role": "user", "content": "\\ud800"}]}',
                          content_type="application/json")
    assert chat.status_code == 400 and chat.json()["error"]["type"] == "invalid_request_error"
