"""GET /api/v1/outputs/?export=csv|jsonl: the list's outputs as a file, with the list's filters and the library's
columns; and ?q=, the library's search."""

from __future__ import annotations

import csv
import io
import json

import pytest

from atelier_platform.jobs.models import ReviewState
from tests.api.helpers import assert_envelope

OUTPUTS = "/api/v1/outputs/"

pytestmark = pytest.mark.django_db


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    if response["Content-Type"].startswith("text/csv"):
        return list(csv.DictReader(io.StringIO(body)))
    return [json.loads(line) for line in body.splitlines()]


def test_the_export_honours_the_lists_filters(api, project, make_job, make_output):
    approved = make_output(make_job(project), content={"text": "approved copy", "characters": 13},
                           review_state=ReviewState.APPROVED)
    released = make_output(make_job(project, plugin="gpu_reverse"), content={"text": "released copy", "characters": 13},
                           review_state=ReviewState.RELEASED)
    pending = make_output(make_job(project), content={"text": "pending copy", "characters": 12})
    ids = lambda params: [row["output_id"] for row in rows_of(api.get(OUTPUTS, params))]  # noqa: E731
    assert ids({"export": "jsonl", "final": "true"}) == [str(released.pk), str(approved.pk)]  # newest first
    assert ids({"export": "csv", "final": "true", "plugin": "gpu_reverse"}) == [str(released.pk)]
    assert ids({"export": "csv", "review_state": "pending"}) == [str(pending.pk)]
    assert ids({"export": "csv", "job": str(approved.job_id)}) == [str(approved.pk)]
    assert ids({"export": "csv", "created_after": "2999-01-01"}) == []
    assert ids({"export": "jsonl", "q": "COPY", "final": "true"}) == [str(released.pk), str(approved.pk)]
    assert ids({"export": "jsonl", "q": "released"}) == [str(released.pk)]
    [row] = rows_of(api.get(OUTPUTS, {"export": "jsonl", "q": "approved"}))
    assert row["text"] == "approved copy" and row["final"] is True and row["plugin"] == "reverse_text"


def test_the_files_and_the_columns(api, project, make_job, make_output):
    output = make_output(make_job(project), content={"text": "x", "characters": 1}, review_state=ReviewState.APPROVED,
                         image=True)
    response = api.get(OUTPUTS, {"export": "csv"})
    assert response["Content-Disposition"] == f'attachment; filename="outputs-{project.slug}.csv"'
    [row] = rows_of(response)
    [url] = json.loads(row["file_urls"])
    assert url.startswith(f"http://testserver/api/v1/outputs/{output.pk}/files/") and "?project" not in url
    assert api.get(url.removeprefix("http://testserver")).status_code == 200  # with the key that exported it
    listed = api.get(OUTPUTS).json()["results"][0]
    assert [f"http://testserver{f['url']}" for f in listed["files"] if f["role"] == "primary"] == [url]


def test_a_download_asking_for_the_files_media_type_gets_the_file(api, project, make_job, make_output, make_key,
                                                                   client_for):
    """``Accept: text/csv`` (what curl -H, a CMS's import or a browser's fetch of a CSV sends) was a 406 for not naming
    JSON, the media type of the list's pages: the file's own type now gets the file, as does the audit log's export."""
    output = make_output(make_job(project), content={"text": "copy", "characters": 4}, review_state=ReviewState.APPROVED)
    for export, accept in (("csv", "text/csv"), ("csv", "text/csv; charset=utf-8"), ("csv", "text/*"),
                           ("jsonl", "application/x-ndjson"), ("jsonl", "application/json, application/x-ndjson;q=0.9")):
        response = api.get(OUTPUTS, {"export": export}, HTTP_ACCEPT=accept)
        assert [row["output_id"] for row in rows_of(response)] == [str(output.pk)], (export, accept)
        assert response["Content-Type"].startswith({"csv": "text/csv", "jsonl": "application/x-ndjson"}[export])
    # what is no file is still refused, and a bad request still answers its JSON error
    assert_envelope(api.get(OUTPUTS, {"export": "csv"}, HTTP_ACCEPT="image/png"), 406, "not_acceptable")
    assert_envelope(api.get(OUTPUTS, HTTP_ACCEPT="text/csv"), 406, "not_acceptable")  # a page is JSON
    assert_envelope(api.get(OUTPUTS, {"export": "csv", "final": "maybe"}, HTTP_ACCEPT="text/csv"), 400, "validation_error")
    admin = client_for(make_key(project, ["admin"]).raw)
    audit = admin.get("/api/v1/audit/", {"export": "csv"}, HTTP_ACCEPT="text/csv")
    assert audit.status_code == 200 and audit["Content-Type"].startswith("text/csv")


def test_a_withheld_output_keeps_its_state_never_its_text_or_files(api, project, make_job, make_output):
    for state in (ReviewState.BLOCKED, ReviewState.REJECTED):
        make_output(make_job(project), content={"text": f"secret {state}", "characters": 9}, review_state=state,
                    image=True)
    rows = rows_of(api.get(OUTPUTS, {"export": "jsonl"}))
    assert sorted(row["review_state"] for row in rows) == ["blocked", "rejected"]
    assert all((row["text"], row["file_urls"], row["final"]) == ("", [], False) for row in rows)
    assert rows_of(api.get(OUTPUTS, {"export": "jsonl", "q": "secret"})) == []  # its text is never searched either
    assert api.get(OUTPUTS, {"q": "secret"}).json()["results"] == []


def test_the_csv_is_guarded_against_formulas(api, project, make_job, make_output):
    make_output(make_job(project), content={"text": "=1+1", "characters": 4}, review_state=ReviewState.APPROVED)
    [row] = rows_of(api.get(OUTPUTS, {"export": "csv"}))
    assert row["text"] == "'=1+1"
    [line] = rows_of(api.get(OUTPUTS, {"export": "jsonl"}))
    assert line["text"] == "=1+1"


def test_another_projects_outputs_are_never_exported(api, project, other_project, make_job, make_output):
    make_output(make_job(other_project), review_state=ReviewState.APPROVED)
    assert rows_of(api.get(OUTPUTS, {"export": "csv"})) == []
    assert rows_of(api.get(OUTPUTS, {"export": "jsonl", "final": "true"})) == []


@pytest.mark.parametrize("params, field", [
    ({"export": "xlsx"}, "export"), ({"export": ""}, "export"), ({"export": "csv", "final": "maybe"}, "final"),
    ({"export": "csv", "created_after": "soon"}, "created_after"), ({"export": "jsonl", "review_state": "lost"}, "review_state"),
    ({"q": "x" * 201}, "q"), ({"q": "a\x00b"}, "q"), ({"export": "csv", "q": "\x00"}, "q"),
])
def test_a_bad_value_is_a_400_naming_it(api, project, params, field):
    error = assert_envelope(api.get(OUTPUTS, params), 400, "validation_error")
    assert field in error["details"], error


def test_the_export_needs_jobs_read(project, make_key, client_for):
    reviewer_only = client_for(make_key(project, ["reviews:read"]).raw)
    assert_envelope(reviewer_only.get(OUTPUTS, {"export": "csv"}), 403, "permission_denied")


def test_the_schema_documents_the_export_and_the_search(api):
    operation = api.get("/api/v1/schema/", {"format": "json"}).json()["paths"]["/api/v1/outputs/"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert parameters["export"]["schema"]["enum"] == ["csv", "jsonl"] and "q" in parameters
    assert {"application/json", "text/csv", "application/x-ndjson"} <= set(operation["responses"]["200"]["content"])
    assert "400" in operation["responses"]


def test_a_file_erased_or_gone_from_storage_is_a_404(api, project, make_job, make_output):
    """A file row naming no file (erased) raised ValueError when opened: a 500."""
    from atelier_platform.jobs.models import OutputFile

    output = make_output(make_job(project), review_state=ReviewState.APPROVED, image=True)
    primary, thumbnail = (OutputFile.objects.get(output=output, role=role) for role in ("primary", "thumbnail"))
    thumbnail.file.storage.delete(thumbnail.file.name)
    OutputFile.objects.filter(pk=primary.pk).update(file="")
    for file, message in ((primary, "This file was erased with its job's content."),
                          (thumbnail, "The file is missing from storage.")):
        error = assert_envelope(api.get(f"{OUTPUTS}{output.pk}/files/{file.pk}/"), 404, "not_found")
        assert error["message"] == message
    [row] = rows_of(api.get(OUTPUTS, {"export": "jsonl"}))
    assert row["file_urls"] == [] and row["thumbnail_urls"] == []  # the erased one is left out; no thumbnail without it


def test_reviewers_names_go_only_to_a_caller_who_may_read_the_review_queue(project, member, make_key, client_for):
    from tests.frontend.library_rows import an_output, approved_by

    reviewer = member(project, "reviewer")
    approved_by(an_output(project, "approved words", state=ReviewState.PENDING), reviewer)
    jobs_reader = client_for(make_key(project, ["jobs:read"]).raw)
    queue_reader = client_for(make_key(project, ["jobs:read", "reviews:read"]).raw)
    [row] = rows_of(jobs_reader.get(OUTPUTS, {"export": "jsonl"}))
    assert row["approved_by"] == [] and row["approved_at"] is not None and row["final"] is True
    [row] = rows_of(queue_reader.get(OUTPUTS, {"export": "jsonl"}))
    assert row["approved_by"] == [reviewer.username]
