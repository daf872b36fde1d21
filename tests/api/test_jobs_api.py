"""The jobs API as a client sees it: submission, reads, cancel, and every way to get it wrong."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from atelier_platform.accounts.services import revoke_api_key
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.jobs.queueing import broker_priority

JOBS = "/api/v1/jobs/"
GOOD = {"plugin": "reverse_text", "input": {"text": "hello"}}


def post(client, body, **extra):
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(JOBS, payload, content_type=extra.pop("content_type", "application/json"), **extra)


def assert_envelope(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.django_db
class TestSubmit:
    def test_the_projects_policy_and_quota_come_with_the_key_and_still_apply(self, api, project):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from atelier_platform.moderation.checks import replace_safety_checks
        from atelier_platform.moderation.policies import update_policy
        from atelier_platform.usage.models import ProjectQuota
        from tests.support.safety import WordCheck

        replace_safety_checks([WordCheck()])  # scores "shady" 0.3 (illicit): under the default review threshold
        update_policy(project, "test", {"thresholds": {"illicit": {"review": 0.1, "block": 0.25}}})
        ProjectQuota.objects.create(project=project, jobs_per_day=2)
        with CaptureQueriesContext(connection) as queries:
            assert post(api, GOOD).status_code == 201
        tables = [q["sql"].split(" FROM ", 1)[1].split()[0] for q in queries.captured_queries
                  if q["sql"].startswith("SELECT") and " FROM " in q["sql"]]
        assert '"moderation_safetypolicy"' not in tables and '"usage_projectquota"' not in tables  # read with the key
        assert_envelope(post(api, {"plugin": "reverse_text", "input": {"text": "a shady deal"}}), 422, "input_blocked")
        assert post(api, GOOD).status_code == 201
        assert_envelope(post(api, GOOD), 429, "quota_exceeded")  # 2 a day: the blocked one does not count

    def test_a_new_job_is_answered_without_reading_back_its_rows(self, api):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            response = post(api, GOOD)
        assert response.status_code == 201 and response.json()["outputs"] == []
        tables = [q["sql"].split(" FROM ", 1)[1].split()[0] for q in queries.captured_queries
                  if q["sql"].startswith("SELECT") and " FROM " in q["sql"]]
        assert not [table for table in tables if table.startswith('"jobs_')]  # neither the job nor its outputs

    def test_created_job_is_queued_and_published_after_commit(self, api, django_capture_on_commit_callbacks, monkeypatch):
        published = []
        monkeypatch.setattr(
            "atelier_platform.jobs.queueing.publish_run_job",
            lambda job_id, **kw: published.append((job_id, kw)) or True,
        )
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, {**GOOD, "params": {"uppercase": True}, "priority": 9})
        assert response.status_code == 201, response.content
        job = response.json()
        assert job["status"] == "queued"
        assert job["input"] == {"text": "hello", "copies": 1, "sleep_s": 0.0, "fail": "none", "with_file": False,
                                "catch_everything": False}
        assert job["params"] == {"uppercase": True}
        assert job["outputs"] == []
        assert response["Location"] == f"/api/v1/jobs/{job['id']}/"
        assert published == [(job["id"], {"queue": "cpu", "priority": 9, "time_limit_s": 60, "countdown": 0})]

    def test_gpu_plugin_is_routed_to_the_gpu_queue(self, api, django_capture_on_commit_callbacks, monkeypatch):
        published = []
        monkeypatch.setattr(
            "atelier_platform.jobs.queueing.publish_run_job", lambda job_id, **kw: published.append(kw) or True
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert post(api, {"plugin": "gpu_reverse", "input": {"text": "x"}, "priority": 2}).status_code == 201
        assert published[0]["queue"] == "gpu"
        assert published[0]["priority"] == 2
        assert broker_priority(2) == 7 and broker_priority(9) == 0  # brokers here serve 0 first

    def test_every_job_gets_a_seed_and_a_given_one_is_kept(self, api):
        from atelier_platform.jobs.submission import _seed_of

        job = post(api, {**GOOD, "input": {"text": "abc"}}).json()
        assert 0 <= job["seed"] < 2**31
        assert _seed_of({"seed": 7}, {}) == 7 and _seed_of({"seed": 7}, {"seed": 9}) == 9  # params win
        assert type(_seed_of({"seed": True}, {})) is int  # a boolean is not taken for a seed
        assert _seed_of({"seed": -1}, {}) >= 0  # nor an out-of-range number

    def test_broker_down_still_answers_201_and_leaves_job_for_the_sweeper(self, api, django_capture_on_commit_callbacks, monkeypatch):
        def broken_send(*args, **kwargs):
            raise ConnectionRefusedError("broker down")

        monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", broken_send)
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, GOOD)
        assert response.status_code == 201
        assert Job.objects.get(pk=response.json()["id"]).status == JobStatus.QUEUED


@pytest.mark.django_db
class TestBadRequests:
    """Each bad request: a clear 4xx in the envelope, and no job row written."""

    @pytest.fixture(autouse=True)
    def nothing_written(self, db):
        yield
        assert Job.objects.count() == 0

    def test_unknown_plugin(self, api):
        error = assert_envelope(post(api, {**GOOD, "plugin": "nope"}), 400, "unknown_plugin")
        assert "reverse_text" in error["details"]["plugin"][0]

    def test_plugin_not_enabled_for_project(self, api, project):
        set_plugin_enabled(project, "reverse_text", False)
        assert_envelope(post(api, GOOD), 403, "plugin_not_enabled")

    def test_schema_violation_names_the_field(self, api):
        error = assert_envelope(post(api, {**GOOD, "input": {"text": "", "copies": 99}}), 400, "validation_error")
        assert set(error["details"]) == {"input.text", "input.copies"}

    def test_unknown_input_field(self, api):
        error = assert_envelope(post(api, {**GOOD, "input": {"text": "a", "colour": 1}}), 400, "validation_error")
        assert "input.colour" in error["details"]

    def test_params_violation(self, api):
        error = assert_envelope(post(api, {**GOOD, "params": {"uppercase": "very"}}), 400, "validation_error")
        assert "params.uppercase" in error["details"]

    def test_unknown_top_level_field(self, api):
        error = assert_envelope(post(api, {**GOOD, "parmas": {}}), 400, "validation_error")
        assert error["details"] == {"parmas": ["Unknown field."]}

    @pytest.mark.parametrize(
        "body",
        [
            {"input": {"text": "a"}},
            {"plugin": "reverse_text"},
            {"plugin": "reverse_text", "input": "text"},
            {"plugin": "reverse_text", "input": {"text": "a"}, "priority": 10},
            {"plugin": ["reverse_text"], "input": {"text": "a"}},
            [GOOD],
            '"just a string"',
            "42",
        ],
    )
    def test_malformed_bodies(self, api, body):
        assert_envelope(post(api, body), 400, "validation_error")

    def test_malformed_json(self, api):
        assert_envelope(post(api, '{"plugin": "reverse_text", "input": {'), 400, "malformed_json")

    def test_wrong_content_type(self, api):
        response = api.post(JOBS, "plugin=reverse_text", content_type="application/x-www-form-urlencoded")
        assert_envelope(response, 415, "unsupported_media_type")

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
    def test_oversized_body(self, api):
        error = assert_envelope(post(api, {**GOOD, "input": {"text": "x" * 5000}}), 413, "payload_too_large")
        assert error["details"] == {"limit_bytes": 2048}

    def test_missing_key(self, client_for):
        response = post(client_for(None), GOOD)
        assert_envelope(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Basic dXNlcjpwYXNz", "Token abc"])
    def test_malformed_authorization_header(self, client_for, header):
        client = client_for(None)
        client.credentials(HTTP_AUTHORIZATION=header)
        assert_envelope(post(client, GOOD), 401, "malformed_api_key")

    @pytest.mark.parametrize("raw", ["atl_nothere_secret", "not-a-key", "atl__", "atl_x"])
    def test_unknown_key(self, client_for, raw):
        assert_envelope(post(client_for(raw), GOOD), 401, "invalid_api_key")

    def test_right_prefix_wrong_secret(self, client_for, api_key):
        forged = api_key.raw[: -4] + ("AAAA" if not api_key.raw.endswith("AAAA") else "BBBB")
        assert_envelope(post(client_for(forged), GOOD), 401, "invalid_api_key")

    def test_revoked_key(self, client_for, api_key):
        revoke_api_key(api_key.api_key)
        assert_envelope(post(client_for(api_key.raw), GOOD), 401, "invalid_api_key")

    def test_key_without_write_scope(self, client_for, project, make_key):
        reader = make_key(project, scopes=["jobs:read"])
        error = assert_envelope(post(client_for(reader.raw), GOOD), 403, "permission_denied")
        assert "jobs:write" in error["message"]

    @pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
    def test_bad_idempotency_key(self, api, key):
        assert_envelope(post(api, GOOD, HTTP_IDEMPOTENCY_KEY=key), 400, "validation_error")


@pytest.mark.django_db
class TestIdempotency:
    def test_same_key_same_body_replays_the_first_job(self, api):
        first = post(api, GOOD, HTTP_IDEMPOTENCY_KEY="order-42")
        again = post(api, GOOD, HTTP_IDEMPOTENCY_KEY="order-42")
        assert first.status_code == 201 and again.status_code == 200
        assert again["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert Job.objects.count() == 1

    def test_same_key_other_body_is_refused(self, api):
        post(api, GOOD, HTTP_IDEMPOTENCY_KEY="order-42")
        error = assert_envelope(post(api, {**GOOD, "input": {"text": "other"}}, HTTP_IDEMPOTENCY_KEY="order-42"), 422, "idempotency_key_reused")
        assert error["details"]["job"]
        assert Job.objects.count() == 1

    def test_keys_are_per_project(self, api, other_project, make_key, client_for):
        other = client_for(make_key(other_project).raw)
        assert post(api, GOOD, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
        assert post(other, GOOD, HTTP_IDEMPOTENCY_KEY="k").status_code == 201


@pytest.mark.django_db
class TestReadAndCancel:
    def test_get_own_job(self, api):
        job = post(api, GOOD).json()
        response = api.get(f"{JOBS}{job['id']}/")
        assert response.status_code == 200
        assert response.json()["id"] == job["id"]

    def test_a_job_shows_the_callers_metadata_read_only(self, api):
        """The caller's key/value pairs (sent with an OpenAI response) belong to the caller: shown with the job, here
        and in the list; a job submitted here has none, and none can be sent here (the field is read-only)."""
        job = Job.objects.get(pk=post(api, GOOD).json()["id"])
        Job.objects.filter(pk=job.pk).update(metadata={"order": "A-17", "channel": "web"})
        assert api.get(f"{JOBS}{job.pk}/").json()["metadata"] == {"order": "A-17", "channel": "web"}
        assert [j["metadata"] for j in api.get(JOBS).json()["results"]] == [{"order": "A-17", "channel": "web"}]
        plain = post(api, {**GOOD, "input": {"text": "other"}}).json()
        assert plain["metadata"] == {} and api.get(f"{JOBS}{plain['id']}/").json()["metadata"] == {}
        error = assert_envelope(post(api, {**GOOD, "metadata": {"order": "B-2"}}), 400, "validation_error")
        assert error["details"] == {"metadata": ["Unknown field."]}

    def test_other_projects_job_is_not_found(self, api, other_project, make_key, client_for):
        theirs = post(client_for(make_key(other_project).raw), GOOD).json()
        assert_envelope(api.get(f"{JOBS}{theirs['id']}/"), 404, "not_found")
        assert_envelope(api.post(f"{JOBS}{theirs['id']}/cancel/"), 404, "not_found")
        assert Job.objects.get(pk=theirs["id"]).status == JobStatus.QUEUED
        assert api.get(JOBS).json()["results"] == []

    @pytest.mark.parametrize("path", ["not-a-uuid/", "00000000-0000-0000-0000-000000000000/"])
    def test_unknown_job_id(self, api, path):
        assert_envelope(api.get(f"{JOBS}{path}"), 404, "not_found")

    def test_unknown_api_path(self, api):
        assert_envelope(api.get("/api/v1/nothing-here/"), 404, "not_found")

    def test_method_not_allowed(self, api):
        job = post(api, GOOD).json()
        # a job is never changed in place (DELETE erases its content: tests/api/test_erasure_api.py)
        assert_envelope(api.put(f"{JOBS}{job['id']}/", GOOD, format="json"), 405, "method_not_allowed")

    def test_cancel_queued_job(self, api):
        job = post(api, GOOD).json()
        response = api.post(f"{JOBS}{job['id']}/cancel/")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancel_requested"] is True

    def test_cancel_running_job_asks_it_to_stop(self, api):
        job = post(api, GOOD).json()
        Job.objects.filter(pk=job["id"]).update(status=JobStatus.RUNNING)
        body = api.post(f"{JOBS}{job['id']}/cancel/").json()
        assert body["status"] == "running" and body["cancel_requested"] is True

    @pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
    def test_cancel_finished_job_conflicts(self, api, status):
        job = post(api, GOOD).json()
        Job.objects.filter(pk=job["id"]).update(status=status)
        assert_envelope(api.post(f"{JOBS}{job['id']}/cancel/"), 409, "job_finished")
        assert Job.objects.get(pk=job["id"]).cancel_requested_at is None

    def test_list_is_newest_first_with_cursor_pages(self, api):
        ids = [post(api, {**GOOD, "input": {"text": f"t{i}"}}).json()["id"] for i in range(5)]
        page = api.get(JOBS, {"page_size": 2}).json()
        seen = [job["id"] for job in page["results"]]
        while page["next"]:
            page = api.get(page["next"]).json()
            seen += [job["id"] for job in page["results"]]
        assert seen == list(reversed(ids))

    def test_list_filters_by_status_and_plugin(self, api):
        first = post(api, GOOD).json()
        post(api, {"plugin": "gpu_reverse", "input": {"text": "g"}})
        Job.objects.filter(pk=first["id"]).update(status=JobStatus.SUCCEEDED)
        assert [j["id"] for j in api.get(JOBS, {"status": "succeeded"}).json()["results"]] == [first["id"]]
        assert [j["plugin"] for j in api.get(JOBS, {"plugin": "gpu_reverse"}).json()["results"]] == ["gpu_reverse"]
        assert_envelope(api.get(JOBS, {"status": "exploded"}), 400, "validation_error")

    def test_list_query_count_does_not_grow(self, api, django_assert_max_num_queries):
        for i in range(3):
            post(api, {**GOOD, "input": {"text": f"t{i}"}})
        with django_assert_max_num_queries(6):
            assert len(api.get(JOBS).json()["results"]) == 3
        for i in range(10):
            post(api, {**GOOD, "input": {"text": f"u{i}"}})
        with django_assert_max_num_queries(6):
            assert len(api.get(JOBS).json()["results"]) == 13


@pytest.mark.django_db
def test_a_path_without_its_trailing_slash_is_answered_not_redirected(api_key):
    """POST /api/v1/jobs answered 301 to /api/v1/jobs/; clients follow a 301 with a GET, so the job was
    never created and the caller got the job list with 200. As curl sends it: CSRF checks on, no cookie."""
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
    created = client.post("/api/v1/jobs", {"plugin": "reverse_text", "input": {"text": "hello"}}, format="json")
    assert created.status_code == 201, created.content[:200]
    assert Job.objects.filter(pk=created.json()["id"]).exists()
    listed = client.get("/api/v1/jobs")
    assert listed.status_code == 200 and listed.json()["results"][0]["id"] == created.json()["id"]
    missing = client.post("/api/v1/no-such-thing", {}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("params, field", [({"max_new_tokens": True}, "params.max_new_tokens"),
                                           ({"temperature": "0.5"}, "params.temperature"),
                                           ({"max_new_tokens": "8"}, "params.max_new_tokens")])
def test_params_are_read_as_the_json_they_came_as(api, project, empty_plugin_registry, params, field):
    """A flag is not a number and a string is not a number: lax coercion ran `"max_new_tokens": true` as a
    1-token job and took "0.5" for 0.5."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    response = api.post("/api/v1/jobs/", {"plugin": "chatbot", "input": {"messages": [{"role": "user", "content": "hi"}]},
                                                   "params": params}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Job.objects.exists()
