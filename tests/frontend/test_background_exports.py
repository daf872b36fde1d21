"""Exports in the background on the dashboard: the library's and the audit log's "Export in the background" ask for an
export job with the page's filters (as ``POST /api/v1/exports/`` does), and the page lists the member's exports with
their progress and, once ready, the download link; the file is the streaming export's, byte for byte."""

from __future__ import annotations

import re
from datetime import datetime, timezone as dt_timezone

import pytest

from atelier_platform.exports.models import Export
from atelier_platform.jobs.models import ReviewState
from atelier_platform.moderation import audit
from tests.frontend.library_rows import an_output

pytestmark = pytest.mark.django_db


def page_of(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def streamed(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content)


def test_the_library_exports_what_it_found_in_the_background(project, signed_in, run_exports,
                                                             django_capture_on_commit_callbacks):
    viewer = signed_in(project, "viewer")  # every member exports, as the streaming export
    an_output(project, "red coat", created_at=datetime(2026, 12, 1, tzinfo=dt_timezone.utc))
    an_output(project, "red hat", created_at=datetime(2026, 12, 5, tzinfo=dt_timezone.utc))
    an_output(project, "red scarf", plugin="gpu_reverse", created_at=datetime(2026, 12, 5, tzinfo=dt_timezone.utc))
    an_output(project, "=red formula", created_at=datetime(2026, 12, 6, tzinfo=dt_timezone.utc))
    an_output(project, "red pending", state=ReviewState.PENDING)
    typed = {"q": "red", "from": "2026-12-02", "plugin": "reverse_text"}
    page = page_of(viewer.get("/library/", typed))
    form = re.search(r'<form method="post" action="/exports/start/"[^>]*id="library-background-export">(.*?)</form>',
                     page, re.S)
    assert form, "no background export form"
    assert 'name="q" value="red"' in form[1] and 'name="from" value="2026-12-02"' in form[1]
    assert "Export in the background" in page

    with django_capture_on_commit_callbacks(execute=True):
        answer = viewer.post("/exports/start/", {"kind": "library", "format": "csv", **typed})
    assert answer.status_code == 302 and answer["Location"] == "/library/?q=red&plugin=reverse_text&from=2026-12-02#exports"
    export = Export.objects.get()
    assert (export.kind, export.format, export.requested_by_user_id) == ("library", "csv", viewer.user.pk)
    assert export.filters["final"] == "true" and export.filters["q"] == "red"

    listed = page_of(viewer.get("/library/", typed))
    assert f'data-export="{export.pk}"' in listed and "Queued" in listed
    assert 'data-refresh="/exports/?kind=library"' in listed  # it updates by itself while one goes
    assert run_exports() == ["succeeded"]
    part = page_of(viewer.get("/exports/", {"kind": "library"}))
    link = f"/api/v1/exports/{export.pk}/download/?project={project.slug}"
    assert link.replace("?", "?") in part.replace("&amp;", "&") and "2 rows" in part
    assert "data-refresh" not in page_of(viewer.get("/library/"))  # nothing left going
    assert streamed(viewer.get(link)) == streamed(viewer.get("/library/", {**typed, "export": "csv"}))


def test_the_audit_log_exports_as_searched_in_the_background(project, signed_in, run_exports,
                                                             django_capture_on_commit_callbacks):
    owner = signed_in(project, "owner")
    for n in range(3):
        audit.record(project, f"user:{owner.user.pk}", "policy_changed" if n else "other_event", project, after={"n": n})
    page = page_of(owner.get("/settings/", {"audit_action": "policy_changed"}))
    form = re.search(r'<form method="post" action="/exports/start/"[^>]*id="audit-background-export">(.*?)</form>',
                     page, re.S)
    assert form and 'name="audit_action" value="policy_changed"' in form[1]
    with django_capture_on_commit_callbacks(execute=True):
        answer = owner.post("/exports/start/", {"kind": "audit", "format": "jsonl", "audit_action": "policy_changed"})
    assert answer.status_code == 302 and answer["Location"] == "/settings/?audit_action=policy_changed#audit-exports"
    assert run_exports() == ["succeeded"]
    export = Export.objects.get()
    assert f'data-export="{export.pk}"' in page_of(owner.get("/settings/"))
    link = f"/api/v1/exports/{export.pk}/download/?project={project.slug}"
    expected = streamed(owner.get("/api/v1/audit/", {"export": "jsonl", "action": "policy_changed",
                                                      "project": project.slug}))
    assert streamed(owner.get(link)) == expected and len(expected.splitlines()) == 2


def test_only_owners_export_the_audit_log_and_each_member_sees_their_own(project, signed_in,
                                                                         django_capture_on_commit_callbacks):
    editor, other = signed_in(project, "editor"), signed_in(project, "editor")
    assert editor.post("/exports/start/", {"kind": "audit", "format": "csv"}).status_code == 403
    assert editor.get("/exports/", {"kind": "audit"}).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        editor.post("/exports/start/", {"kind": "library", "format": "jsonl"})
    mine = Export.objects.get()
    assert f'data-export="{mine.pk}"' in page_of(editor.get("/exports/", {"kind": "library"}))
    assert f'data-export="{mine.pk}"' not in page_of(other.get("/exports/", {"kind": "library"}))
    assert editor.get("/exports/start/").status_code == 405


@pytest.mark.parametrize("posted", [
    {"kind": "pdf", "format": "csv"}, {"kind": "library", "format": "xlsx"}, {"kind": "library"},
    {"kind": "library", "format": "csv", "from": "2026-02-30"},
    {"kind": "library", "format": "csv", "from": "2026-12-05", "to": "2026-12-01"},
    {"kind": "audit", "format": "csv", "audit_from": "soon"},
])
def test_odd_posts_are_no_server_error_and_queue_nothing(project, signed_in, posted, sent_messages):
    owner = signed_in(project, "owner")
    answer = owner.post("/exports/start/", posted)
    assert answer.status_code in (302, 400), answer.status_code
    assert not Export.objects.exists() and not sent_messages


def test_when_the_member_is_busy_the_page_says_so_and_another_member_still_exports(
        project, signed_in, django_capture_on_commit_callbacks):
    from atelier_platform.exports import services

    viewer, editor = signed_in(project, "viewer"), signed_in(project, "editor")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(services.EXPORTS_AT_ONCE + 1):
            answer = viewer.post("/exports/start/", {"kind": "library", "format": "csv"})
    assert Export.objects.count() == services.EXPORTS_AT_ONCE
    page = page_of(viewer.get(answer["Location"]))
    assert f"You have {services.EXPORTS_AT_ONCE} exports going at once" in page
    with django_capture_on_commit_callbacks(execute=True):
        editor.post("/exports/start/", {"kind": "library", "format": "csv"})
    assert Export.objects.filter(requested_by_user=editor.user).count() == 1


def test_when_the_project_is_busy_the_page_says_so(project, signed_in, django_capture_on_commit_callbacks):
    from atelier_platform.exports import services

    editor = signed_in(project, "editor")
    others = [signed_in(project, "viewer").user for _ in range(services.PROJECT_EXPORTS_AT_ONCE)]
    for user in others:
        Export.objects.create(project=project, kind="library", format="csv", requested_by_user=user)
    with django_capture_on_commit_callbacks(execute=True):
        answer = editor.post("/exports/start/", {"kind": "library", "format": "csv"})
    assert not Export.objects.filter(requested_by_user=editor.user).exists()
    page = page_of(editor.get(answer["Location"]))
    assert f"The project has {services.PROJECT_EXPORTS_AT_ONCE} exports going at once" in page


def _cancel_form(page: str, export) -> bool:
    return f'action="/exports/{export.pk}/cancel/"' in page


def test_an_owner_sees_the_projects_exports_with_who_asked_and_cancels_anothers(
        project, signed_in, run_exports, django_capture_on_commit_callbacks):
    from atelier_platform.moderation.models import AuditEvent

    viewer, owner = signed_in(project, "viewer"), signed_in(project, "owner")
    an_output(project, "hello")
    with django_capture_on_commit_callbacks(execute=True):
        viewer.post("/exports/start/", {"kind": "library", "format": "csv"})
    done = Export.objects.get()
    assert run_exports() == ["succeeded"]
    with django_capture_on_commit_callbacks(execute=True):
        viewer.post("/exports/start/", {"kind": "library", "format": "jsonl"})
    going = Export.objects.exclude(pk=done.pk).get()

    listed = page_of(owner.get("/library/"))
    assert f'data-export="{done.pk}"' in listed and f'data-export="{going.pk}"' in listed
    assert viewer.user.username in listed  # who asked
    assert _cancel_form(listed, going) and not _cancel_form(listed, done)
    assert f"/api/v1/exports/{done.pk}/download/" not in listed  # another's file: not the owner's to download
    assert _cancel_form(page_of(owner.get("/exports/", {"kind": "library"})), going)

    answer = owner.post(f"/exports/{going.pk}/cancel/")
    assert answer.status_code == 302 and answer["Location"] == "/library/#exports"
    going.refresh_from_db()
    assert going.status == "cancelled"
    [event] = AuditEvent.objects.filter(action="export_cancelled")
    assert event.actor == f"user:{owner.user.pk}" and event.after["requested_by"] == f"user:{viewer.user.pk}"
    assert "export cancelled" in page_of(owner.get("/settings/"))  # in the audit log, in words


def test_a_member_cancels_their_own_and_not_anothers(project, signed_in, django_capture_on_commit_callbacks):
    editor, other = signed_in(project, "editor"), signed_in(project, "editor")
    with django_capture_on_commit_callbacks(execute=True):
        editor.post("/exports/start/", {"kind": "library", "format": "csv"})
    mine = Export.objects.get()
    assert _cancel_form(page_of(editor.get("/library/")), mine)
    assert not _cancel_form(page_of(other.get("/library/")), mine)
    assert other.post(f"/exports/{mine.pk}/cancel/").status_code == 404
    assert other.get(f"/exports/{mine.pk}/cancel/").status_code == 405
    mine.refresh_from_db()
    assert mine.status == "queued"
    assert editor.post(f"/exports/{mine.pk}/cancel/").status_code == 302
    mine.refresh_from_db()
    assert mine.status == "cancelled"
    answer = editor.post(f"/exports/{mine.pk}/cancel/")  # finished already: said on the page, no error
    assert answer.status_code == 302 and "already finished" in page_of(editor.get(answer["Location"]))
    assert editor.post("/exports/not-an-id/cancel/").status_code == 404


def test_an_owner_cancels_an_audit_export_back_on_the_settings_page(project, signed_in,
                                                                    django_capture_on_commit_callbacks):
    owner, other = signed_in(project, "owner"), signed_in(project, "owner")
    with django_capture_on_commit_callbacks(execute=True):
        other.post("/exports/start/", {"kind": "audit", "format": "csv"})
    export = Export.objects.get()
    assert _cancel_form(page_of(owner.get("/settings/")), export)
    answer = owner.post(f"/exports/{export.pk}/cancel/")
    assert answer.status_code == 302 and answer["Location"] == "/settings/#audit-exports"


def test_the_exports_list_in_chinese(project, signed_in, django_capture_on_commit_callbacks):
    editor = signed_in(project, "editor")
    an_output(project, "hello")
    with django_capture_on_commit_callbacks(execute=True):
        editor.post("/exports/start/", {"kind": "library", "format": "csv"})
    editor.post("/language/", {"language": "zh-hans", "next": "/library/"})
    page = page_of(editor.get("/library/"))
    assert "后台导出" in page and "排队中" in page and "取消" in page
    owner = signed_in(project, "owner")
    owner.post("/language/", {"language": "zh-hans", "next": "/library/"})
    assert "提出者" in page_of(owner.get("/library/"))
