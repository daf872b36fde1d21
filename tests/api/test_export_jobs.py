"""Exports in the background: ``POST /api/v1/exports/`` asks for one (202), a task on the exports queue writes the
file with the exporter the streaming exports use, the caller follows its progress, downloads the file while it is
kept, and may cancel it; the export job's row is the truth, so a message delivered twice writes the file once."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from atelier_platform.celery_app import RUN_EXPORT_TASK
from atelier_platform.jobs.models import ReviewState
from atelier_platform.moderation import audit
from tests.api.helpers import assert_envelope, build_job, build_output

pytestmark = pytest.mark.django_db

EXPORTS = "/api/v1/exports/"
APPROVED, RELEASED, PENDING = ReviewState.APPROVED, ReviewState.RELEASED, ReviewState.PENDING


def body_of(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content)


def some_outputs(project, n=3, *, text="copy"):
    return [build_output(build_job(project), content={"text": f"{text} {i}", "characters": 6}, review_state=APPROVED)
            for i in range(n)]


class TestTheWholeWay:
    def test_asked_for_followed_and_downloaded_equal_to_the_streaming_export(self, api, project, ask, run_exports,
                                                                              sent_messages):
        some_outputs(project, 3, text="red copy")
        build_output(build_job(project), content={"text": "=HYPERLINK(\"x\")", "characters": 9}, review_state=RELEASED)
        build_output(build_job(project), content={"text": "blue copy", "characters": 9}, review_state=APPROVED)
        build_output(build_job(project), content={"text": "red pending", "characters": 9}, review_state=PENDING)
        for export_format in ("csv", "jsonl"):
            filters = {"final": "true", "q": "red"} if export_format == "csv" else {"final": True}
            answer = ask(api, {"kind": "library", "format": export_format, "filters": filters})
            assert answer.status_code == 202, answer.content
            export = answer.json()
            assert export["status"] == "queued" and export["kind"] == "library" and export["format"] == export_format
            assert answer["Location"] == f"{EXPORTS}{export['id']}/" == export["url"]
            assert export["download_url"] is None and export["rows_done"] == 0
            assert [m["args"] for m in sent_messages if m["task"] == RUN_EXPORT_TASK] == [[export["id"]]]
            assert run_exports() == ["succeeded"]

            done = api.get(f"{EXPORTS}{export['id']}/").json()
            expected_rows = 3 if export_format == "csv" else 5
            assert done["status"] == "succeeded" and done["rows_done"] == done["rows_total"] == expected_rows
            assert done["download_url"] == f"{EXPORTS}{export['id']}/download/" and done["error"] is None
            assert done["finished_at"] and done["expires_at"] > done["finished_at"] and done["size"] > 0
            download = api.get(done["download_url"])
            assert download["Content-Disposition"] == f'attachment; filename="outputs-{project.slug}.{export_format}"'
            assert download["Content-Type"].startswith({"csv": "text/csv", "jsonl": "application/x-ndjson"}[export_format])
            streamed = api.get("/api/v1/outputs/", {"export": export_format,
                                                    **{k: str(v).lower() for k, v in filters.items()}})
            assert body_of(download) == body_of(streamed)  # the very bytes of the streaming export
        listed = api.get(EXPORTS).json()["results"]
        assert [e["format"] for e in listed] == ["jsonl", "csv"]  # newest first

    def test_the_csv_keeps_the_formula_guard(self, api, project, ask, run_exports):
        build_output(build_job(project), content={"text": "=1+1", "characters": 4}, review_state=APPROVED)
        export = ask(api, {"kind": "library", "format": "csv", "filters": {}}).json()
        run_exports()
        [row] = list(csv.DictReader(io.StringIO(body_of(api.get(f"{EXPORTS}{export['id']}/download/")).decode())))
        assert row["text"] == "'=1+1"

    def test_the_audit_log_exports_as_its_streaming_export_does(self, project, make_key, client_for, ask, run_exports):
        for n in range(4):
            audit.record(project, "user:1", "test_event" if n % 2 else "other_event", project, after={"n": n})
        admin = client_for(make_key(project, ["admin"]).raw)
        export = ask(admin, {"kind": "audit", "format": "jsonl", "filters": {"action": "test_event"}})
        assert export.status_code == 202, export.content
        assert run_exports() == ["succeeded"]
        done = admin.get(f"{EXPORTS}{export.json()['id']}/").json()
        assert done["rows_done"] == 2
        download = admin.get(done["download_url"])
        assert download["Content-Disposition"] == f'attachment; filename="audit-{project.slug}.jsonl"'
        assert body_of(download) == body_of(admin.get("/api/v1/audit/", {"export": "jsonl", "action": "test_event"}))

    def test_progress_advances_while_it_runs_and_the_api_shows_it(self, api, project, ask, run_exports, monkeypatch):
        from atelier_platform.exports import services

        some_outputs(project, 5)
        monkeypatch.setattr(services, "PROGRESS_EVERY_ROWS", 2)
        seen = []
        record = services.record_progress

        def watched(export, rows_done, **fields):
            record(export, rows_done, **fields)
            shown = api.get(f"{EXPORTS}{export.pk}/").json()
            seen.append((shown["status"], shown["rows_done"], shown["rows_total"]))

        monkeypatch.setattr(services, "record_progress", watched)
        export = ask(api, {"kind": "library", "format": "jsonl", "filters": {}}).json()
        run_exports()
        assert seen == [("running", 0, 5), ("running", 2, 5), ("running", 4, 5)]
        assert api.get(f"{EXPORTS}{export['id']}/").json()["rows_done"] == 5


class TestWhoMaySeeIt:
    def test_another_projects_export_and_another_callers_are_not_found(self, api, project, other_project, make_key,
                                                                      client_for, ask, run_exports):
        some_outputs(project, 1)
        export = ask(api, {"kind": "library", "format": "csv", "filters": {}}).json()
        run_exports()
        elsewhere = client_for(make_key(other_project, ["jobs:read", "admin"]).raw)
        colleague = client_for(make_key(project, ["jobs:read", "jobs:write"]).raw)
        for caller in (elsewhere, colleague):
            for url in (f"{EXPORTS}{export['id']}/", f"{EXPORTS}{export['id']}/download/"):
                assert_envelope(caller.get(url), 404, "not_found")
            assert_envelope(caller.post(f"{EXPORTS}{export['id']}/cancel/"), 404, "not_found")
            assert caller.get(EXPORTS).json()["results"] == []
        assert_envelope(api.get(f"{EXPORTS}not-an-id/"), 404, "not_found")

    def test_a_member_signed_in_sees_their_own(self, project, member, ask, run_exports):
        from rest_framework.test import APIClient

        some_outputs(project, 2)
        client = APIClient()
        client.force_login(member(project, "viewer"))
        client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        export = ask(client, {"kind": "library", "format": "jsonl", "filters": {}})
        assert export.status_code == 202, export.content
        assert export.json()["requested_by"].startswith("user:")
        run_exports()
        assert len(body_of(client.get(f"{EXPORTS}{export.json()['id']}/download/")).splitlines()) == 2

    @pytest.mark.parametrize("scopes, kind, allowed", [
        (["jobs:read"], "library", True), (["jobs:read"], "audit", False),
        (["admin"], "audit", True), (["admin"], "library", False),
        (["reviews:read"], "library", False), (["webhooks:manage"], "audit", False),
    ])
    def test_each_kind_needs_what_its_streaming_export_needs(self, project, make_key, client_for, ask, scopes, kind,
                                                            allowed):
        answer = ask(client_for(make_key(project, scopes).raw), {"kind": kind, "format": "csv", "filters": {}})
        if allowed:
            assert answer.status_code == 202, answer.content
        else:
            assert_envelope(answer, 403, "permission_denied")

    def test_reviewers_names_only_with_reviews_read_as_the_streaming_export(self, project, member, make_key,
                                                                            client_for, ask, run_exports):
        from tests.frontend.library_rows import an_output, approved_by

        reviewer = member(project, "reviewer")
        approved_by(an_output(project, "approved words", state=PENDING), reviewer)
        names = {}
        for scopes in (["jobs:read"], ["jobs:read", "reviews:read"]):
            client = client_for(make_key(project, scopes).raw)
            export = ask(client, {"kind": "library", "format": "jsonl", "filters": {}}).json()
            run_exports()
            [row] = [json.loads(line) for line in body_of(client.get(f"{EXPORTS}{export['id']}/download/")).splitlines()]
            names[len(scopes)] = row["approved_by"]
        assert names == {1: [], 2: [reviewer.username]}


class TestBadInput:
    @pytest.mark.parametrize("body, field", [
        ({"kind": "pdf", "format": "csv"}, "kind"),
        ({"kind": "library", "format": "xlsx"}, "format"),
        ({"format": "csv"}, "kind"),
        ({"kind": "library"}, "format"),
        ({"kind": "library", "format": "csv", "filters": {"colour": "red"}}, "filters.colour"),
        ({"kind": "library", "format": "csv", "filters": {"final": "maybe"}}, "filters.final"),
        ({"kind": "library", "format": "csv", "filters": {"created_after": "soon"}}, "filters.created_after"),
        ({"kind": "library", "format": "csv", "filters": {"q": "x" * 201}}, "filters.q"),
        ({"kind": "library", "format": "csv", "filters": {"q": "a\x00b"}}, "filters.q"),
        ({"kind": "library", "format": "csv", "filters": {"q": {"nested": 1}}}, "filters.q"),
        ({"kind": "library", "format": "csv", "filters": {"plugin": ["a", "b"]}}, "filters.plugin"),
        ({"kind": "library", "format": "csv", "filters": ["final"]}, "filters"),
        ({"kind": "audit", "format": "csv", "filters": {"created_before": "2026-02-30"}}, "filters.created_before"),
        ({"kind": "audit", "format": "csv", "filters": {"after_id": "x"}}, "filters.after_id"),
        ({"kind": "audit", "format": "csv", "filters": {"q": "x"}}, "filters.q"),
        ({"kind": "library", "format": "csv", "colour": "red"}, "colour"),
    ])
    def test_a_bad_value_is_a_400_naming_it_and_nothing_is_queued(self, owner_api, ask, sent_messages, body, field):
        from atelier_platform.exports.models import Export

        error = assert_envelope(ask(owner_api, body), 400, "validation_error")
        assert field in error["details"], error
        assert not Export.objects.exists() and not sent_messages

    def test_filters_as_the_list_takes_them_are_accepted(self, owner_api, project, ask):
        answer = ask(owner_api, {"kind": "library", "format": "csv", "filters": {
            "review_state": ["approved", "released"], "final": True, "plugin": "reverse_text",
            "created_after": "2026-12-01", "job": "0f6d2c1e-5b8a-4f61-9d0e-2a7c3e9b1f44"}})
        assert answer.status_code == 202, answer.content
        assert answer.json()["filters"]["final"] == "true"
        answer = ask(owner_api, {"kind": "audit", "format": "jsonl", "filters": {"after_id": 12, "actor": "user:1"}})
        assert answer.status_code == 202 and answer.json()["filters"] == {"after_id": "12", "actor": "user:1"}

    def test_a_caller_runs_a_few_exports_at_a_time(self, api, ask, project):
        from atelier_platform.exports import services

        for _ in range(services.EXPORTS_AT_ONCE):
            assert ask(api, {"kind": "library", "format": "csv"}).status_code == 202
        error = assert_envelope(ask(api, {"kind": "library", "format": "csv"}), 409, "exports_busy")
        assert str(services.EXPORTS_AT_ONCE) in error["message"] and "You have" in error["message"]
        assert error["details"] == {"limit": services.EXPORTS_AT_ONCE, "counted": "requester"}


class TestLimits:
    """The limit of unfinished exports counts the requester's own (a member's, an API key's): one member, a viewer
    even, cannot keep everyone else from exporting; a larger bound per project keeps one project from filling the
    exports queue's worker for every other."""

    def test_a_viewer_with_its_exports_going_does_not_block_another_member_or_key(self, project, member, make_key,
                                                                                client_for, ask):
        from rest_framework.test import APIClient

        from atelier_platform.exports import services

        def signed_in(role):
            client = APIClient()
            client.force_login(member(project, role))
            client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
            return client

        viewer, editor = signed_in("viewer"), signed_in("viewer")
        for _ in range(services.EXPORTS_AT_ONCE):
            assert ask(viewer, {"kind": "library", "format": "csv"}).status_code == 202
        assert_envelope(ask(viewer, {"kind": "library", "format": "csv"}), 409, "exports_busy")
        assert ask(editor, {"kind": "library", "format": "csv"}).status_code == 202
        assert ask(client_for(make_key(project, ["jobs:read"]).raw), {"kind": "library", "format": "csv"}).status_code == 202

    def test_the_project_has_a_larger_bound_of_its_own(self, project, make_key, client_for, ask):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export

        assert services.PROJECT_EXPORTS_AT_ONCE > services.EXPORTS_AT_ONCE
        keys = [client_for(make_key(project, ["jobs:read"]).raw)
                for _ in range(-(-services.PROJECT_EXPORTS_AT_ONCE // services.EXPORTS_AT_ONCE) + 1)]
        asked = 0
        for client in keys:
            for _ in range(services.EXPORTS_AT_ONCE):
                if asked < services.PROJECT_EXPORTS_AT_ONCE:
                    assert ask(client, {"kind": "library", "format": "csv"}).status_code == 202
                    asked += 1
        fresh = keys[-1]  # has asked for none yet
        error = assert_envelope(ask(fresh, {"kind": "library", "format": "csv"}), 409, "exports_busy")
        assert error["details"] == {"limit": services.PROJECT_EXPORTS_AT_ONCE, "counted": "project"}
        assert str(services.PROJECT_EXPORTS_AT_ONCE) in error["message"] and "project" in error["message"]
        assert Export.objects.count() == services.PROJECT_EXPORTS_AT_ONCE
        # a finished one frees its place
        Export.objects.filter(pk=Export.objects.first().pk).update(status="cancelled")
        assert ask(fresh, {"kind": "library", "format": "csv"}).status_code == 202

    def test_another_projects_exports_do_not_count(self, project, other_project, make_key, client_for, ask):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export

        elsewhere = make_key(other_project, ["jobs:read"]).api_key
        for _ in range(services.PROJECT_EXPORTS_AT_ONCE):
            Export.objects.create(project=other_project, kind="library", format="csv", requested_by_key=elsewhere)
        assert ask(client_for(make_key(project, ["jobs:read"]).raw), {"kind": "library", "format": "csv"}).status_code == 202


class TestOwners:
    """Owners (the owner role, a key with admin) list every export of the project (?all=true) and cancel any, the
    cancel of another's recorded in the audit log; they download only their own."""

    @pytest.fixture
    def viewers_export(self, project, member, ask, run_exports):
        from rest_framework.test import APIClient

        some_outputs(project, 1)
        client = APIClient()
        viewer = member(project, "viewer")
        client.force_login(viewer)
        client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        export = ask(client, {"kind": "library", "format": "csv"}).json()
        return client, viewer, export

    def test_an_owner_lists_every_export_with_who_asked(self, owner_api, viewers_export, ask):
        _client, viewer, export = viewers_export
        own = ask(owner_api, {"kind": "audit", "format": "csv"}).json()
        assert [e["id"] for e in owner_api.get(EXPORTS).json()["results"]] == [own["id"]]  # the default: one's own
        listed = owner_api.get(EXPORTS, {"all": "true"}).json()["results"]
        assert [(e["id"], e["requested_by"]) for e in listed] == [(own["id"], own["requested_by"]),
                                                                  (export["id"], f"user:{viewer.pk}")]
        shown = owner_api.get(f"{EXPORTS}{export['id']}/").json()
        assert shown["id"] == export["id"] and shown["requested_by"] == f"user:{viewer.pk}"

    def test_an_owner_signed_in_lists_every_export(self, project, member, viewers_export):
        from rest_framework.test import APIClient

        _client, _viewer, export = viewers_export
        owner = APIClient()
        owner.force_login(member(project, "owner"))
        owner.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        assert [e["id"] for e in owner.get(EXPORTS, {"all": "true"}).json()["results"]] == [export["id"]]
        assert owner.get(EXPORTS).json()["results"] == []

    def test_an_owner_cancels_anothers_export_and_the_audit_log_says_so(self, owner_api, owner_key, viewers_export,
                                                                       run_exports, ask):
        from atelier_platform.moderation.models import AuditEvent

        client, viewer, export = viewers_export
        cancelled = owner_api.post(f"{EXPORTS}{export['id']}/cancel/")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.get(f"{EXPORTS}{export['id']}/").json()["status"] == "cancelled"
        assert run_exports() == ["skipped"]
        [event] = AuditEvent.objects.filter(action="export_cancelled")
        assert (event.actor, event.object_id) == (f"key:{owner_key.api_key.prefix}", export["id"])
        assert event.after == {"kind": "library", "format": "csv", "requested_by": f"user:{viewer.pk}"}
        # one's own cancel is no one else's business: not recorded
        own = ask(owner_api, {"kind": "library", "format": "csv"}).json()
        assert owner_api.post(f"{EXPORTS}{own['id']}/cancel/").status_code == 200
        assert AuditEvent.objects.filter(action="export_cancelled").count() == 1

    def test_an_owner_does_not_download_anothers_file(self, owner_api, viewers_export, run_exports):
        from atelier_platform.moderation.models import AuditEvent

        client, _viewer, export = viewers_export
        assert run_exports() == ["succeeded"]
        shown = owner_api.get(f"{EXPORTS}{export['id']}/").json()
        assert shown["status"] == "succeeded" and shown["download_url"] is None
        error = assert_envelope(owner_api.get(f"{EXPORTS}{export['id']}/download/"), 403, "export_not_yours")
        assert "only" in error["message"]
        assert not AuditEvent.objects.filter(action="export_downloaded").exists()
        assert client.get(f"{EXPORTS}{export['id']}/download/").status_code == 200  # its requester still does

    def test_a_non_owner_sees_only_their_own_and_may_not_ask_for_all(self, project, make_key, client_for,
                                                                     viewers_export):
        _client, _viewer, export = viewers_export
        colleague = client_for(make_key(project, ["jobs:read", "jobs:write", "reviews:read"]).raw)
        assert_envelope(colleague.get(EXPORTS, {"all": "true"}), 403, "permission_denied")
        assert colleague.get(EXPORTS, {"all": "false"}).json()["results"] == []
        for url in (f"{EXPORTS}{export['id']}/", f"{EXPORTS}{export['id']}/download/"):
            assert_envelope(colleague.get(url), 404, "not_found")
        assert_envelope(colleague.post(f"{EXPORTS}{export['id']}/cancel/"), 404, "not_found")

    @pytest.mark.parametrize("value", ["maybe", "", "1 OR 1", "\x00"])
    def test_a_bad_all_is_a_400(self, owner_api, value):
        error = assert_envelope(owner_api.get(EXPORTS, {"all": value}), 400, "validation_error")
        assert "all" in error["details"]


class TestDownload:
    def test_before_it_is_ready_409_after_it_expired_410(self, api, project, ask, run_exports, atelier_config):
        from atelier_platform.exports.models import Export
        from atelier_platform.exports.services import delete_expired

        some_outputs(project, 1)
        atelier_config(exports_kept_hours=2)
        export = ask(api, {"kind": "library", "format": "csv"}).json()
        error = assert_envelope(api.get(f"{EXPORTS}{export['id']}/download/"), 409, "export_not_ready")
        assert error["details"] == {"status": "queued"}
        run_exports()
        row = Export.objects.get(pk=export["id"])
        assert timedelta(hours=1, minutes=59) < row.expires_at - row.finished_at <= timedelta(hours=2)
        name = row.file.name
        assert default_storage.exists(name)
        assert delete_expired() == 0  # not yet
        Export.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert_envelope(api.get(f"{EXPORTS}{export['id']}/download/"), 410, "export_expired")
        assert delete_expired() == 1 and not default_storage.exists(name)  # the periodic cleanup
        assert_envelope(api.get(f"{EXPORTS}{export['id']}/download/"), 410, "export_expired")
        shown = api.get(f"{EXPORTS}{export['id']}/").json()
        assert shown["status"] == "succeeded" and shown["download_url"] is None

    def test_the_cleanup_is_a_periodic_task_on_the_platform_queue(self):
        from atelier_platform.celery_app import DELETE_EXPIRED_EXPORTS_TASK, app

        scheduled = [entry for entry in app.conf.beat_schedule.values() if entry["task"] == DELETE_EXPIRED_EXPORTS_TASK]
        assert len(scheduled) == 1 and scheduled[0]["options"]["queue"] == "platform"
        assert app.conf.task_routes[RUN_EXPORT_TASK] == {"queue": "exports"}


class TestCancel:
    def test_a_queued_export_is_cancelled_and_its_message_then_does_nothing(self, api, project, ask, run_exports):
        some_outputs(project, 1)
        export = ask(api, {"kind": "library", "format": "csv"}).json()
        cancelled = api.post(f"{EXPORTS}{export['id']}/cancel/")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert run_exports() == ["skipped"]
        assert_envelope(api.get(f"{EXPORTS}{export['id']}/download/"), 409, "export_not_ready")
        assert_envelope(api.post(f"{EXPORTS}{export['id']}/cancel/"), 409, "export_finished")

    def test_a_running_export_stops_at_its_next_progress_and_stores_nothing(self, api, project, ask, run_exports,
                                                                          monkeypatch):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export

        some_outputs(project, 5)
        monkeypatch.setattr(services, "PROGRESS_EVERY_ROWS", 2)
        record = services.record_progress

        def cancelled_meanwhile(export, rows_done, **fields):
            if rows_done == 2:
                assert api.post(f"{EXPORTS}{export.pk}/cancel/").json()["status"] == "cancelled"
            record(export, rows_done, **fields)

        monkeypatch.setattr(services, "record_progress", cancelled_meanwhile)
        export = ask(api, {"kind": "library", "format": "csv"}).json()
        assert run_exports() == ["stopped"]
        row = Export.objects.get(pk=export["id"])
        assert row.status == "cancelled" and not row.file.name and row.rows_done == 0
        folder = f"exports/{project.pk}/{row.pk}"
        assert not default_storage.exists(folder) or default_storage.listdir(folder) == ([], [])


class TestNoFileLeftBehind:
    def test_a_store_that_fails_half_way_leaves_no_partial_file(self, api, project, ask, run_exports, monkeypatch):
        """A disk that fills up while the file is stored: the export fails, and the half it wrote goes (no row names
        it, so neither the expiry nor an erasure would ever delete it)."""
        import errno

        from django.core.files import File

        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export

        class DiskFull(File):
            def chunks(self, chunk_size=None):
                yield self.file.read(10)
                raise OSError(errno.ENOSPC, "No space left on device")

        some_outputs(project, 3, text="secret")
        monkeypatch.setattr(services, "File", DiskFull)
        export = ask(api, {"kind": "library", "format": "jsonl"}).json()
        assert run_exports() == ["failed"]
        row = Export.objects.get(pk=export["id"])
        assert row.status == "failed" and row.error_code == "export_failed" and not row.file.name
        folder = f"exports/{project.pk}/{row.pk}"
        assert not default_storage.exists(folder) or default_storage.listdir(folder) == ([], [])


class TestRedelivery:
    def test_a_second_delivery_of_a_finished_export_does_nothing(self, api, project, ask, run_exports, sent_messages):
        from atelier_platform.exports.models import Export

        some_outputs(project, 2)
        export = ask(api, {"kind": "library", "format": "csv"}).json()
        message = next(m for m in sent_messages if m["task"] == RUN_EXPORT_TASK)
        sent_messages.append(dict(message))  # the broker hands the message out twice
        assert run_exports() == ["succeeded", "skipped"]
        row = Export.objects.get(pk=export["id"])
        assert row.attempt == 1
        _, files = default_storage.listdir(f"exports/{project.pk}/{row.pk}")
        assert files == [row.file.name.rsplit("/", 1)[-1]]  # one file, written once

    def test_a_crashed_run_is_started_again_from_scratch_by_the_sweeper(self, api, project, ask, run_exports,
                                                                         sent_messages, monkeypatch):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export, ExportStatus

        some_outputs(project, 3)
        export = ask(api, {"kind": "library", "format": "jsonl"}).json()
        sent_messages.clear()  # the message was taken by a worker that then died mid-export
        long_ago = timezone.now() - services.EXPORT_STALE_AFTER - timedelta(seconds=1)
        Export.objects.filter(pk=export["id"]).update(status=ExportStatus.RUNNING, attempt=1, rows_done=2,
                                                      started_at=long_ago, heartbeat_at=long_ago, enqueued_at=long_ago)
        half = services.stored_name(Export.objects.get(pk=export["id"]), attempt=1)
        default_storage.save(half, io.BytesIO(b'{"half": '))  # what the dead worker had written of its file
        assert services.sweep() == 1
        assert services.sweep() == 0  # sent once, until it is overdue again
        assert run_exports() == ["succeeded"]
        row = Export.objects.get(pk=export["id"])
        assert (row.status, row.attempt, row.lost_runs, row.rows_done) == ("succeeded", 2, 1, 3)
        assert not default_storage.exists(half)
        assert len(body_of(api.get(f"{EXPORTS}{export['id']}/download/")).splitlines()) == 3

    def test_a_run_that_keeps_dying_fails_instead_of_starting_for_ever(self, api, project, ask, run_exports,
                                                                       sent_messages):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export, ExportStatus

        export = ask(api, {"kind": "library", "format": "jsonl"}).json()
        long_ago = timezone.now() - services.EXPORT_STALE_AFTER - timedelta(seconds=1)
        Export.objects.filter(pk=export["id"]).update(status=ExportStatus.RUNNING, attempt=3,
                                                      lost_runs=services.MAX_LOST_RUNS, heartbeat_at=long_ago)
        assert run_exports() == ["failed"]
        shown = api.get(f"{EXPORTS}{export['id']}/").json()
        assert shown["status"] == "failed" and shown["error"]["code"] == "export_lost"

    def test_a_lost_message_of_a_queued_export_is_sent_again(self, api, project, ask, sent_messages, atelier_config):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export

        export = ask(api, {"kind": "library", "format": "csv"}).json()
        sent_messages.clear()
        assert services.sweep() == 0  # not overdue yet
        Export.objects.filter(pk=export["id"]).update(enqueued_at=timezone.now() - timedelta(hours=1))
        assert services.sweep() == 1
        assert [m["args"] for m in sent_messages if m["task"] == RUN_EXPORT_TASK] == [[export["id"]]]


class TestErasure:
    """An export made before an erasure holds the erased content: the erasure withdraws every finished export of the
    project whose rows could hold the erased jobs (the file goes, the download answers 410), and a running one takes
    those rows out of its file before it stores it; the others are left alone."""

    def test_a_finished_export_holding_an_erased_job_is_withdrawn_and_its_file_removed(
            self, api, project, ask, run_exports, django_capture_on_commit_callbacks):
        from atelier_platform.exports.models import Export
        from atelier_platform.jobs import erasure

        kept, gone = some_outputs(project, 2, text="secret")
        other = build_output(build_job(project, plugin="gpu_reverse"), content={"text": "other", "characters": 5},
                             review_state=APPROVED)
        everything = ask(api, {"kind": "library", "format": "jsonl"}).json()
        elsewhere = ask(api, {"kind": "library", "format": "jsonl", "filters": {"plugin": "gpu_reverse"}}).json()
        run_exports()
        name = Export.objects.get(pk=everything["id"]).file.name
        assert b"secret 1" in default_storage.open(name).read()
        with django_capture_on_commit_callbacks(execute=True):
            erasure.erase_jobs(project, [gone.job_id], "user:1")
        assert not default_storage.exists(name)
        error = assert_envelope(api.get(f"{EXPORTS}{everything['id']}/download/"), 410, "export_withdrawn")
        assert "erased" in error["message"]
        shown = api.get(f"{EXPORTS}{everything['id']}/").json()
        assert shown["withdrawn_at"] and shown["download_url"] is None
        # the export that could not hold the job keeps its file
        assert json.loads(body_of(api.get(f"{EXPORTS}{elsewhere['id']}/download/")))["output_id"] == str(other.pk)
        assert kept

    @staticmethod
    def erase_once_at(monkeypatch, rows_done, erase):
        """``erase()`` once, when the run reports ``rows_done`` rows written (every 2): in the middle of its run."""
        from atelier_platform.exports import services

        monkeypatch.setattr(services, "PROGRESS_EVERY_ROWS", 2)
        record, erased = services.record_progress, []

        def erased_meanwhile(export, done, **fields):
            if done == rows_done and not erased:  # its callbacks run with the task's (run_exports)
                erased.append(erase())
            record(export, done, **fields)

        monkeypatch.setattr(services, "record_progress", erased_meanwhile)
        return erased

    @pytest.mark.parametrize("export_format, filters", [("jsonl", {"final": True}), ("csv", {}), ("jsonl", {})])
    def test_a_running_export_keeps_going_and_its_file_holds_nothing_erased(self, api, project, ask, run_exports,
                                                                            monkeypatch, export_format, filters):
        """Not started again (a retention erasing all day would keep a large export from ever ending): the run goes
        on, and its file is what the streaming export gives after the erasure: an erased output left out where it is
        final no more, written as its tombstone where the filters still list it."""
        from atelier_platform.exports.models import Export
        from atelier_platform.jobs import erasure

        outputs = some_outputs(project, 4, text="secret")
        build_output(build_job(project), content={"text": "kept \"line\"\nnext =line, too", "characters": 9},
                     review_state=APPROVED)  # a CSV row over two lines, copied as written
        # newest first: outputs[3] is written before the erasure, outputs[0] after it
        erased = self.erase_once_at(monkeypatch, 2, lambda: erasure.erase_jobs(
            project, [outputs[3].job_id, outputs[0].job_id], "user:1"))
        export = ask(api, {"kind": "library", "format": export_format, "filters": filters}).json()
        assert run_exports() == ["succeeded"]
        assert erased[0].exports_running == 1
        done = Export.objects.get(pk=export["id"])
        assert done.attempt == 1 and done.erasures_seen == 1
        body = body_of(api.get(f"{EXPORTS}{export['id']}/download/"))
        assert b"secret 3" not in body and b"secret 0" not in body and b"secret 2" in body
        streamed = body_of(api.get("/api/v1/outputs/", {"export": export_format,
                                                        **{k: str(v).lower() for k, v in filters.items()}}))
        assert body == streamed
        rows = len(streamed.decode().splitlines()) - (0 if export_format == "jsonl" else 2)  # a header, a line more
        assert done.rows_done == done.rows_total == rows == (3 if filters else 5)
        assert done.size == len(body)

    def test_a_running_audit_export_holds_the_events_redacted_meanwhile_as_they_are_now(
            self, project, make_key, client_for, ask, run_exports, monkeypatch):
        from atelier_platform.exports.models import Export
        from atelier_platform.jobs import erasure

        job = build_job(project)
        audit.record(project, "user:1", "review_decided", job, before={"state": "open"},
                     after={"comment": "about Jane Roe", "state": "approved"})
        for n in range(3):
            audit.record(project, "user:1", "review_decided", build_job(project), after={"comment": f"fine {n}"})
        self.erase_once_at(monkeypatch, 2, lambda: erasure.erase_jobs(project, [job.pk], "user:1"))
        admin = client_for(make_key(project, ["admin"]).raw)
        for export_format in ("jsonl", "csv"):
            export = ask(admin, {"kind": "audit", "format": export_format, "filters": {"action": "review_decided"}})
            assert run_exports() == ["succeeded"]
            assert Export.objects.get(pk=export.json()["id"]).attempt == 1
            body = body_of(admin.get(f"{EXPORTS}{export.json()['id']}/download/"))
            assert b"Jane Roe" not in body and b"fine 0" in body
            assert body == body_of(admin.get("/api/v1/audit/", {"export": export_format, "action": "review_decided"}))

    def test_an_erasure_of_no_row_of_a_running_export_changes_nothing(self, api, project, ask, run_exports,
                                                                     monkeypatch):
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export
        from atelier_platform.jobs import erasure

        outputs = [build_output(build_job(project, plugin="gpu_reverse"), content={"text": f"other {n}", "characters": 7},
                                review_state=APPROVED) for n in range(4)]
        elsewhere = some_outputs(project, 1, text="secret")[0]
        before = body_of(api.get("/api/v1/outputs/", {"export": "jsonl", "plugin": "gpu_reverse"}))
        rewritten = []
        monkeypatch.setattr(services, "_without_erased", lambda *args: rewritten.append(args))
        erased = self.erase_once_at(monkeypatch, 2, lambda: erasure.erase_jobs(project, [elsewhere.job_id], "user:1"))
        export = ask(api, {"kind": "library", "format": "jsonl", "filters": {"plugin": "gpu_reverse"}}).json()
        assert run_exports() == ["succeeded"]
        assert erased[0].exports_running == 0 and erased[0].erased == [elsewhere.job_id]
        done = Export.objects.get(pk=export["id"])
        assert (done.attempt, done.erasures_seen, done.erased_since, rewritten) == (1, 0, None, [])
        assert body_of(api.get(f"{EXPORTS}{export['id']}/download/")) == before and len(outputs) == 4

    def test_an_erasure_committed_after_the_runs_check_and_before_its_end_is_taken_out_too(
            self, api, project, ask, run_exports, monkeypatch):
        """The run stores its file outside any transaction: an erasure may commit between its check of the erasures
        and its end. Its end, under the lock the erasure takes on the row, sees it counted: the stored file goes, and
        the run takes the rows out and stores again."""
        from atelier_platform.exports import services
        from atelier_platform.exports.models import Export
        from atelier_platform.jobs import erasure

        outputs = some_outputs(project, 3, text="secret")
        store, stored = services._store, []

        def erased_while_stored(export, spool):
            if not stored:
                erasure.erase_jobs(project, [outputs[1].job_id], "user:1")
            stored.append(store(export, spool))
            return stored[-1]

        monkeypatch.setattr(services, "_store", erased_while_stored)
        export = ask(api, {"kind": "library", "format": "csv", "filters": {"final": "true"}}).json()
        assert run_exports() == ["succeeded"]
        assert len(stored) == 2 and Export.objects.get(pk=export["id"]).attempt == 1
        body = body_of(api.get(f"{EXPORTS}{export['id']}/download/"))
        assert b"secret 1" not in body and b"secret 2" in body
        assert body == body_of(api.get("/api/v1/outputs/", {"export": "csv", "final": "true"}))
        folder = f"exports/{project.pk}/{export['id']}"
        assert default_storage.listdir(folder)[1] == ["1.csv"]  # the file stored before the erasure was removed

    def test_an_audit_export_about_the_erased_job_is_withdrawn_too(self, project, make_key, client_for, ask,
                                                                   run_exports, django_capture_on_commit_callbacks):
        from atelier_platform.jobs import erasure

        job = build_job(project)
        audit.record(project, "user:1", "review_decided", job, before={"state": "open"},
                     after={"comment": "about Jane Roe"})
        admin = client_for(make_key(project, ["admin"]).raw)
        export = ask(admin, {"kind": "audit", "format": "jsonl"}).json()
        unrelated = ask(admin, {"kind": "audit", "format": "jsonl", "filters": {"action": "nothing_like_it"}}).json()
        run_exports()
        with django_capture_on_commit_callbacks(execute=True):
            erasure.erase_jobs(project, [job.pk], "user:1")
        assert_envelope(admin.get(f"{EXPORTS}{export['id']}/download/"), 410, "export_withdrawn")
        assert admin.get(f"{EXPORTS}{unrelated['id']}/download/").status_code == 200


def test_the_schema_documents_the_exports(api):
    paths = api.get("/api/v1/schema/", {"format": "json"}).json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/exports/"])
    assert "202" in paths["/api/v1/exports/"]["post"]["responses"]
    download = paths["/api/v1/exports/{id}/download/"]["get"]["responses"]
    assert {"200", "409", "410"} <= set(download)
    assert "post" in paths["/api/v1/exports/{id}/cancel/"]
