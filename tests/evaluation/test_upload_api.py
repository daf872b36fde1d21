"""POST /api/v1/evaluation/reference-sets/upload/: a reference set from a CSV or JSON Lines file over the API, read as
the dashboard reads it (``evaluation.uploads``), its refusals naming the file's lines and columns, in English."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from atelier_platform.evaluation import uploads
from atelier_platform.evaluation.models import ReferenceSet
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.test_api import SETS, error_of

pytestmark = pytest.mark.django_db

UPLOAD = f"{SETS}upload/"


@pytest.fixture
def admin_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin", "jobs:read"]).raw)


@pytest.fixture
def chat_enabled(project, chatbot):
    from atelier_platform.catalog.services import set_plugin_enabled

    set_plugin_enabled(project, "chatbot", True)
    return project


def send(client, content: bytes | str, *, filename="cases.csv", plugin="chatbot", name="support", **more):
    data = content.encode() if isinstance(content, str) else content
    return client.post(UPLOAD, {"plugin": plugin, "name": name, "file": SimpleUploadedFile(filename, data), **more},
                       format="multipart")


def test_a_csv_and_a_json_lines_file_become_reference_sets(chat_enabled, admin_api):
    created = send(admin_api, 'question,reference\nWhere is my parcel?,On its way.\n"Pay, later?","Yes,\nin 30 days."\n',
                   description="From the help desk")
    assert created.status_code == 201, created.content
    body = created.json()
    assert created["Location"] == f"{SETS}{body['id']}/"
    assert (body["name"], body["plugin"], body["case_count"], body["description"]) == ("support", "chatbot", 2,
                                                                                        "From the help desk")
    assert body["cases"][1]["reference"] == "Yes,\nin 30 days."
    assert body["cases"][0]["input"]["messages"] == [{"role": "user", "content": "Where is my parcel?"}]
    event = AuditEvent.objects.get(action="reference_set_created")
    assert event.actor.startswith("key:") and event.after == {"name": "support", "plugin": "chatbot", "cases": 2}

    line = '{"input": {"messages": [{"role": "user", "content": "Hi"}]}, "params": {"max_new_tokens": 8}, "reference": "Hello"}'
    jsonl = send(admin_api, f"{line}\n\n{line}\n", filename="cases.jsonl", name="from json lines")
    assert jsonl.status_code == 201 and jsonl.json()["case_count"] == 2
    assert jsonl.json()["cases"][0]["params"] == {"max_new_tokens": 8}


def test_refused_lines_and_cases_are_named_by_line_and_column_in_english(chat_enabled, admin_api):
    cells = send(admin_api, "question,reference\nHi,Hello\nHi,Hello,extra\nA,B,C,D\n")
    assert cells.status_code == 400 and error_of(cells)["code"] == "invalid_upload"
    assert error_of(cells)["details"] == {"file": ["Line 3: 3 cells where the first line names 2 columns.",
                                                   "Line 4: 4 cells where the first line names 2 columns."]}

    cases = send(admin_api, 'question,reference\nFine,Good\n"",Answer\nAsked,\nAlso fine,Yes\n')
    error = error_of(cases)
    assert cases.status_code == 400 and error["code"] == "validation_error"
    assert error["message"] == "2 of the file's 4 cases do not match the plugin's schema; details.file names each problem by its line."
    assert error["details"]["file"][-1] == "Line 4, reference: The expected answer, a non-empty text."
    assert error["details"]["file"][0].startswith("Line 3, question: ")
    assert not ReferenceSet.objects.exists() and not AuditEvent.objects.filter(action="reference_set_created").exists()

    many = "".join(f'{{"input": {{}}, "reference": "r{n}"}}\n' for n in range(25))
    capped = error_of(send(admin_api, many, filename="cases.jsonl"))["details"]["file"]
    assert len(capped) == uploads.MAX_LINE_ERRORS + 1 and capped[-1] == "… and 5 more problems."
    assert capped[0] == "Line 1, input.messages: Field required"


@pytest.mark.parametrize("content, filename, code, said", [
    (b"", "cases.csv", "invalid_upload", "The file is empty."),
    (b"question,reference\nHi,Hello\n", "cases.xlsx", "invalid_upload", "Upload a .csv or a .jsonl (JSON Lines) file."),
    ("question,reference\nO\u00f9 ?,En route.\n".encode("latin-1"), "cases.csv", "invalid_upload",
     "The file is not UTF-8 text (line 2)"),
    (b"title,reference\nHi,Hello\n", "cases.csv", "invalid_upload", "The first line names the columns: question, reference"),
    (("question,reference\n" + "Q,A\n" * 501).encode(), "cases.csv", "invalid_upload",
     "At most 500 cases per reference set; this file has 501."),
])
def test_a_file_that_cannot_be_read_is_a_400_saying_why(chat_enabled, admin_api, content, filename, code, said):
    response = send(admin_api, content, filename=filename)
    assert response.status_code == 400 and error_of(response)["code"] == code
    assert error_of(response)["message"].startswith(said) and not ReferenceSet.objects.exists()


def test_the_size_limit_is_the_dashboards_above_the_json_bodies_limit(chat_enabled, admin_api, settings):
    """A JSON body stops at ATELIER_MAX_REQUEST_BYTES (1 MiB); the file, as on the dashboard, at 2 MiB (an image set's
    ZIP at 32 MiB)."""
    row = "Where is my parcel?," + "On its way. " * 250 + "\n"
    big = "question,reference\n" + row * 450  # about 1.3 MiB, 450 cases
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(big) < uploads.MAX_UPLOAD_BYTES
    taken = send(admin_api, big)
    assert taken.status_code == 201, taken.content[:300]
    assert taken.json()["case_count"] == 450

    too_large = send(admin_api, b"question,reference\n" + b"x" * uploads.MAX_UPLOAD_BYTES, name="too large")
    assert too_large.status_code == 400 and error_of(too_large)["code"] == "invalid_upload"
    assert "at most 2097152 are taken" in error_of(too_large)["message"]
    far_too_large = send(admin_api, b"x" * (uploads.MAX_ZIP_BYTES + 100 * 1024), name="far too large")  # an image
    # set's ZIP is the largest file this endpoint takes: beyond it the body is refused before it is read
    assert far_too_large.status_code == 413 and error_of(far_too_large)["code"] == "payload_too_large"
    assert ReferenceSet.objects.count() == 1
    # the larger limit is this endpoint's alone
    json_body = admin_api.post(SETS, {"plugin": "chatbot", "name": "json", "cases": [], "description": "x" * len(big)},
                               format="json")
    assert json_body.status_code == 413


def test_bad_forms_are_400s_and_json_a_415(chat_enabled, admin_api):
    no_file = admin_api.post(UPLOAD, {"plugin": "chatbot", "name": "support"}, format="multipart")
    assert no_file.status_code == 400 and "file" in error_of(no_file)["details"]
    unknown = send(admin_api, "question,reference\nHi,Hello\n", cases="[]")
    assert unknown.status_code == 400 and error_of(unknown)["details"] == {"cases": ["Unknown field."]}
    plugin = send(admin_api, "question,reference\nHi,Hello\n", plugin="nope")
    assert plugin.status_code == 400 and error_of(plugin)["code"] == "unknown_plugin"
    as_json = admin_api.post(UPLOAD, {"plugin": "chatbot", "name": "support", "file": "question,reference"}, format="json")
    assert as_json.status_code == 415
    ReferenceSet.objects.create(project=chat_enabled, plugin_id="chatbot", name="support", cases=[])
    taken = send(admin_api, "question,reference\nHi,Hello\n")
    assert taken.status_code == 400 and error_of(taken)["details"] == {"name": ["Choose another name."]}
    assert ReferenceSet.objects.count() == 1


def test_only_admin_keys_and_owners_upload(chat_enabled, api, member):
    from rest_framework.test import APIClient

    assert send(api, "question,reference\nHi,Hello\n").status_code == 403  # a jobs:write key
    for role, allowed in (("viewer", False), ("editor", False), ("owner", True)):
        client = APIClient()
        client.force_login(member(chat_enabled, role))
        client.credentials(HTTP_X_ATELIER_PROJECT=chat_enabled.slug)
        response = send(client, "question,reference\nHi,Hello\n", name=role)
        assert response.status_code == (201 if allowed else 403), (role, response.content)
    assert list(ReferenceSet.objects.values_list("name", flat=True)) == ["owner"]


def test_an_image_sets_zip_is_taken_and_a_bad_image_named_by_its_line(image_project, admin_api):
    import io
    import zipfile

    from tests.evaluation.conftest import png_bytes

    def a_zip(members: dict) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
        return buffer.getvalue()

    refused = send(admin_api, a_zip({"cases.csv": "prompt,image\na cat,cat.png\na cow,notes.png\n",
                                     "cat.png": png_bytes(1), "notes.png": b"not a picture"}),
                   filename="set.zip", plugin="image", name="pictures")
    assert refused.status_code == 400 and not ReferenceSet.objects.exists()
    assert error_of(refused)["details"]["file"] == ["Line 3, image: Not a PNG or JPEG image that can be read."]
    created = send(admin_api, a_zip({"cases.csv": "prompt,image\na cat,cat.png\n", "cat.png": png_bytes(1)}),
                   filename="set.zip", plugin="image", name="pictures")
    assert created.status_code == 201, created.content[:500]
    assert ReferenceSet.objects.get().images.count() == 1
