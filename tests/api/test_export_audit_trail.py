"""Who took data out: every export is in the project's audit log, as the other actions are. An export in the background
asked for (``export_requested``) and each download of its file (``export_downloaded``); each streaming export served
(``export_streamed``: ``GET /api/v1/outputs/?export=``, ``GET /api/v1/audit/?export=``, the dashboard's library
export). The actor is the API key or the member, as elsewhere; one insert each, whatever the rows.

A filter's value is kept where it can hold nothing but what the filter's type allows (a date, a state, an id); a
free-text one's (a search's words, which may name a person) is recorded as set (null), never as typed: the audit log
is append-only and kept for good, and an erasure could not tell which of its searches named the person it erases."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from atelier_platform.jobs.models import ReviewState
from atelier_platform.moderation.models import AuditEvent
from tests.api.helpers import assert_envelope, build_job, build_output

pytestmark = pytest.mark.django_db

EXPORTS = "/api/v1/exports/"


def some_outputs(project, n):
    return [build_output(build_job(project), content={"text": f"copy {i}", "characters": 6},
                         review_state=ReviewState.APPROVED) for i in range(n)]


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def audit_inserts(queries) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "moderation_auditevent"'))


def read(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content)


class TestInTheBackground:
    def test_asking_is_recorded_once_with_the_key_kind_format_and_filters(self, project, make_key, client_for, ask):
        key = make_key(project, ["jobs:read"])
        with CaptureQueriesContext(connection) as queries:
            answer = ask(client_for(key.raw), {"kind": "library", "format": "csv", "filters": {
                "final": True, "review_state": ["approved"], "created_after": "2026-12-01", "q": "Jane Roe",
                "plugin": "reverse_text"}})
        assert answer.status_code == 202, answer.content
        [event] = events("export_requested")
        assert audit_inserts(queries) == 1
        assert (event.project_id, event.actor, event.object_type, event.object_id) == (
            project.pk, f"key:{key.api_key.prefix}", "export", answer.json()["id"])
        assert event.before is None
        # free text is recorded as set (null), never as typed: a search's words may name a person
        assert event.after == {"kind": "library", "format": "csv", "from": "api", "filters": {
            "final": "true", "review_state": ["approved"], "created_after": "2026-12-01", "q": None, "plugin": None}}
        assert "Jane Roe" not in json.dumps([event.before, event.after])

    def test_a_member_is_the_actor_when_signed_in(self, project, member, ask):
        from rest_framework.test import APIClient

        viewer = member(project, "viewer")
        client = APIClient()
        client.force_login(viewer)
        client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        assert ask(client, {"kind": "library", "format": "jsonl"}).status_code == 202
        [event] = events("export_requested")
        assert event.actor == f"user:{viewer.pk}" and event.after["filters"] == {}

    def test_an_audit_export_keeps_its_filters_that_name_no_text(self, project, make_key, client_for, ask):
        admin = client_for(make_key(project, ["admin"]).raw)
        answer = ask(admin, {"kind": "audit", "format": "jsonl", "filters": {
            "after_id": 3, "created_before": "2026-12-31", "actor": "user:1", "action": "review_approve",
            "object_id": "Jane Roe"}})
        assert answer.status_code == 202, answer.content
        [event] = events("export_requested")
        assert event.after["filters"] == {"after_id": "3", "created_before": "2026-12-31", "actor": None,
                                          "action": None, "object_id": None}

    @pytest.mark.parametrize("body, status", [
        ({"kind": "library", "format": "csv", "filters": {"final": "maybe"}}, 400),
        ({"kind": "audit", "format": "csv"}, 403),
    ])
    def test_a_refused_request_records_nothing(self, api, ask, body, status):
        assert ask(api, body).status_code == status
        assert not events("export_requested")

    def test_each_download_is_recorded_with_who_and_what(self, project, make_key, client_for, ask, run_exports):
        some_outputs(project, 3)
        key = make_key(project, ["jobs:read"])
        client = client_for(key.raw)
        export = ask(client, {"kind": "library", "format": "jsonl"}).json()
        assert_envelope(client.get(f"{EXPORTS}{export['id']}/download/"), 409, "export_not_ready")
        assert not events("export_downloaded")  # nothing was taken
        run_exports()
        for _ in range(2):
            with CaptureQueriesContext(connection) as queries:
                assert len(read(client.get(f"{EXPORTS}{export['id']}/download/")).splitlines()) == 3
            assert audit_inserts(queries) == 1
        first, second = events("export_downloaded")
        assert (first.actor, first.object_type, first.object_id) == (f"key:{key.api_key.prefix}", "export", export["id"])
        done = client.get(f"{EXPORTS}{export['id']}/").json()
        assert first.after == {"kind": "library", "format": "jsonl", "rows": 3, "size": done["size"]}
        assert second.created_at >= first.created_at

    def test_the_events_show_in_the_audit_api_and_its_export(self, project, owner_api, ask, run_exports):
        some_outputs(project, 1)
        export = ask(owner_api, {"kind": "library", "format": "csv"}).json()
        run_exports()
        read(owner_api.get(f"{EXPORTS}{export['id']}/download/"))
        listed = owner_api.get("/api/v1/audit/", {"object_id": export["id"]}).json()["results"]
        assert [e["action"] for e in listed] == ["export_requested", "export_downloaded"]
        lines = read(owner_api.get("/api/v1/audit/", {"export": "jsonl", "object_id": export["id"]})).splitlines()
        assert [json.loads(line)["action"] for line in lines] == ["export_requested", "export_downloaded"]


class TestStreamed:
    @pytest.mark.parametrize("rows", [1, 4])
    def test_the_outputs_export_is_recorded_once_whatever_its_rows(self, project, make_key, client_for, rows):
        some_outputs(project, rows)
        key = make_key(project, ["jobs:read"])
        client = client_for(key.raw)
        with CaptureQueriesContext(connection) as queries:
            body = read(client.get("/api/v1/outputs/", {"export": "csv", "final": "true", "q": "Jane Roe",
                                                         "review_state": ["approved", "released"], "page_size": "5"}))
        assert body.startswith(b"output_id,")
        assert audit_inserts(queries) == 1
        [event] = events("export_streamed")
        assert (event.project_id, event.actor, event.object_type, event.object_id) == (
            project.pk, f"key:{key.api_key.prefix}", "project", str(project.pk))
        assert event.after == {"kind": "library", "format": "csv", "from": "api", "filters": {
            "final": "true", "q": None, "review_state": ["approved", "released"]}}

    def test_the_audit_logs_export_is_recorded(self, project, owner_key, owner_api):
        lines = read(owner_api.get("/api/v1/audit/", {"export": "jsonl", "created_after": "2026-01-01",
                                                       "actor": "user:7"})).splitlines()
        assert lines == []  # the event is not the actor's: it is the key's
        [event] = events("export_streamed")
        assert event.actor == f"key:{owner_key.api_key.prefix}"
        assert event.after == {"kind": "audit", "format": "jsonl", "from": "api",
                               "filters": {"created_after": "2026-01-01", "actor": None}}
        assert [e["action"] for e in owner_api.get("/api/v1/audit/").json()["results"]] == ["export_streamed"]

    @pytest.mark.parametrize("url, params", [
        ("/api/v1/outputs/", {"export": "csv", "final": "maybe"}),
        ("/api/v1/outputs/", {"export": "xlsx"}),
        ("/api/v1/outputs/", {}),  # a page of the list: nothing leaves as a file
        ("/api/v1/audit/", {"export": "csv", "created_after": "soon"}),
        ("/api/v1/audit/", {}),
    ])
    def test_a_refused_export_or_a_page_records_nothing(self, owner_api, url, params):
        assert owner_api.get(url, params).status_code in (200, 400)
        assert not events("export_streamed")
