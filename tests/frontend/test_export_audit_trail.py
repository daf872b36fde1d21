"""Who took data out, on the dashboard: an export asked for from a page, downloaded, or streamed from its export link
is in the project's audit log as the member's act, and the settings page's audit log says it in words."""

from __future__ import annotations

import pytest

from atelier_platform.exports.models import Export
from atelier_platform.moderation.models import AuditEvent
from tests.frontend.library_rows import an_output

pytestmark = pytest.mark.django_db


def test_a_background_export_from_the_library_and_its_download_are_the_members_acts(
        project, signed_in, run_exports, django_capture_on_commit_callbacks):
    editor, owner = signed_in(project, "editor"), signed_in(project, "owner")
    an_output(project, "red coat")
    with django_capture_on_commit_callbacks(execute=True):
        editor.post("/exports/start/", {"kind": "library", "format": "csv", "q": "Jane Roe", "plugin": "reverse_text"})
    export = Export.objects.get()
    run_exports()
    download = editor.get(f"/api/v1/exports/{export.pk}/download/?project={project.slug}")
    assert download.status_code == 200
    b"".join(download.streaming_content)
    requested, downloaded = AuditEvent.objects.filter(object_id=str(export.pk)).order_by("id")
    assert (requested.action, requested.actor) == ("export_requested", f"user:{editor.user.pk}")
    assert requested.after == {"kind": "library", "format": "csv", "from": "dashboard",
                               "filters": {"final": "true", "plugin": None, "q": None}}
    assert (downloaded.action, downloaded.actor) == ("export_downloaded", f"user:{editor.user.pk}")

    page = owner.get("/settings/").content.decode()
    assert "export requested" in page and "export downloaded" in page and editor.user.username in page
    assert "Jane Roe" not in page
    owner.cookies["django_language"] = "zh-hans"
    page = owner.get("/settings/").content.decode()
    assert "已请求导出" in page and "已下载导出文件" in page


def test_the_librarys_streaming_export_is_recorded_as_the_members(project, signed_in):
    viewer = signed_in(project, "viewer")
    an_output(project, "red coat")
    response = viewer.get("/library/", {"export": "jsonl", "q": "Jane Roe", "from": "2026-12-02"})
    assert len(b"".join(response.streaming_content).splitlines()) == 0
    [event] = AuditEvent.objects.filter(action="export_streamed")
    assert event.actor == f"user:{viewer.user.pk}"
    assert event.after["kind"] == "library" and event.after["from"] == "dashboard"
    assert event.after["filters"]["q"] is None and event.after["filters"]["final"] == "true"
    assert event.after["filters"]["created_after"].startswith("2026-12-02")
    assert viewer.get("/library/", {"export": "pdf"}).status_code == 400
    assert viewer.get("/library/").status_code == 200
    assert AuditEvent.objects.filter(action="export_streamed").count() == 1
    owner = signed_in(project, "owner")
    owner.cookies["django_language"] = "zh-hans"
    assert "已直接导出" in owner.get("/settings/").content.decode()
