"""Reference sets uploaded and deleted on the settings page: CSV or JSON Lines, checked by the API's service,
each refused line named with its column, nothing saved on a refusal; owners only; audited."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import uploads
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.moderation.models import AuditEvent

pytestmark = pytest.mark.django_db

CASES = [{"input": {"messages": [{"role": "user", "content": "Where is my parcel?"}]}, "params": {},
          "reference": "On its way."}]


@pytest.fixture
def plugins(project, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "chatbot", True)
    set_plugin_enabled(project, "recommender_copy", True)


@pytest.fixture
def owner(project, plugins, signed_in):
    return signed_in(project, "owner")


def upload(client, content: bytes | str, *, name="support", plugin="chatbot", filename="cases.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post("/settings/", {"action": "reference_set_upload", "name": name, "plugin": plugin,
                                      "file": SimpleUploadedFile(filename, data)})


def refused(response) -> str:
    assert response.status_code == 400, response.status_code
    page = response.content.decode()
    assert 'id="evaluation" data-refused' in page
    assert not ReferenceSet.objects.exists() and not AuditEvent.objects.filter(action="reference_set_created").exists()
    return page


def test_a_chatbot_csv_becomes_a_reference_set_with_an_audit_entry(project, owner):
    response = upload(owner, "question,reference\nWhere is my parcel?,On its way.\n\n\"Can I pay, later?\",\"Yes,\nin 30 days.\"\n")
    assert response.status_code == 302 and response["Location"].endswith("#evaluation")
    saved = ReferenceSet.objects.get()
    assert (saved.project, saved.plugin_id, saved.name, saved.created_by) == (project, "chatbot", "support", owner.user)
    assert saved.cases[0]["input"]["messages"] == [{"role": "user", "content": "Where is my parcel?"}]
    assert saved.cases[1]["reference"] == "Yes,\nin 30 days." and len(saved.cases) == 2
    event = AuditEvent.objects.get(action="reference_set_created")
    assert event.actor == f"user:{owner.user.pk}" and event.after["cases"] == 2
    assert "Reference set support saved with 2 cases." in owner.get("/settings/").content.decode()


def test_a_recommender_csv_asks_for_one_item_and_its_copy(owner):
    response = upload(owner, "title,description,interests,tone,reference\nTrail shoe,Grippy sole,running,playful,"
                             "Run further.\n", plugin="recommender_copy")
    assert response.status_code == 302
    case = ReferenceSet.objects.get().cases[0]
    assert case["input"] == {"items": [{"id": "item-1", "title": "Trail shoe", "description": "Grippy sole"}],
                             "count": 1, "variants": 1, "profile": {"interests": "running"}, "tone": "playful"}
    assert case["reference"] == "Run further."


def test_json_lines_take_any_case_and_name_the_line_and_field_refused(owner):
    good = json.dumps(CASES[0])
    response = upload(owner, f"{good}\n\n{good}\n" + json.dumps({"input": {"messages": []}, "reference": ""}) + "\n",
                      filename="cases.jsonl")
    page = refused(response)
    assert "Line 4, reference: The expected answer, a non-empty text." in page
    assert "Line 4, input.messages:" in page
    assert upload(owner, f"{good}\n{good}\n", filename="cases.jsonl").status_code == 302
    assert len(ReferenceSet.objects.get().cases) == 2


def test_wrong_columns_are_named(owner):
    page = refused(upload(owner, "prompt,answer\nHi,Hello\n"))
    assert "The first line names the columns: question, reference (required); reference_sources (optional). Missing: " \
           "question, reference. Unknown: prompt, answer." in page


def test_a_bad_row_is_named_by_its_line_and_column(owner):
    page = refused(upload(owner, "question,reference\nFine,Good\n,An answer to nothing\nA question,\n"))
    assert "Line 3, question:" in page and "Line 4, reference: The expected answer, a non-empty text." in page


def test_another_plugins_schema_is_refused(owner):
    chatbot_lines = json.dumps(CASES[0]) + "\n"
    page = refused(upload(owner, chatbot_lines, plugin="recommender_copy", filename="cases.jsonl"))
    assert "Line 1, input.items: Field required" in page and "Line 1, input.messages: Extra inputs are not permitted" in page
    page = refused(upload(owner, "question,reference\nHi,Hello\n", plugin="recommender_copy"))
    assert "Missing: title." in page and "Unknown: question." in page


@pytest.mark.parametrize("content, filename, said", [
    (b"", "cases.csv", "The file is empty."),
    (b"question,reference\n", "cases.csv", "The file has no cases (only its header, or blank lines)."),
    ("question,reference\nO\u00f9 est mon colis ?,En route.\n".encode("latin-1"), "cases.csv",
     "The file is not UTF-8 text (line 2)"),
    (b"question,reference\nHi,Hello\n", "cases.xlsx", "Upload a .csv or a .jsonl (JSON Lines) file."),
    (b'{"input": \n', "cases.jsonl", "Line 1 is not JSON."),
    (b"[" * 100_000 + b"\n", "cases.jsonl", "Line 1 is not JSON."),
    (b"question,reference\nHi,Hello,extra\n", "cases.csv", "Line 2 has 3 cells where the first line names 2 columns."),
])
def test_unreadable_files_are_refused_in_words(owner, content, filename, said):
    assert said in refused(upload(owner, content, filename=filename))


def test_too_many_rows_and_too_large_a_file_are_refused(owner, monkeypatch):
    rows = "".join(f"Question {n},Answer {n}\n" for n in range(501))
    assert "At most 500 cases per reference set; this file has 501." in refused(upload(owner, "question,reference\n" + rows))
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100)
    assert "The file is too large" in refused(upload(owner, "question,reference\n" + rows[:200]))


def test_refusals_are_in_the_pages_language(owner):
    owner.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = refused(upload(owner, "question,reference\nFine,\n"))
    assert "第 2 行" in page and "reference" in page and "The expected answer" not in page


def test_the_case_checkers_refusals_are_worded_by_their_code_in_the_pages_language(owner):
    """Each was matched by its English; one the list missed (a reference too long) stayed English on a Chinese page."""
    question = {"messages": [{"role": "user", "content": "Hi"}]}
    lines = [{"input": question, "reference": "x" * 10_001}, {"input": question, "reference": "ok", "extra": 1},
             {"input": question, "reference": "on its\u0000way"}, {"input": "Hi", "reference": "ok"},
             {"input": {**question, "conversation_id": "c"}, "reference": "ok"}, ["not", "a", "case"]]
    owner.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = refused(upload(owner, "\n".join(json.dumps(line) for line in lines), filename="cases.jsonl"))
    for said in ("第 1 行，reference：最多 10000 个字符。", "未知字段：extra（用例包含 input、params 和 reference，还可以有 reference_sources 和 k）。",
                 "第 3 行，reference：不允许 NUL 字符。", "第 4 行，input：须为一个对象。",
                 "第 5 行，input.conversation_id：用例是自成一体的", "第 6 行：用例是一个含 input"):
        assert said in page, said
    assert "At most" not in page and "Unknown fields" not in page


def test_a_case_error_of_a_code_not_known_here_keeps_its_english(project, plugins):
    """A code the dashboard has no words for (a newer platform's), or one whose values are not as expected, is said
    in the API's English, not dropped nor garbled."""
    from atelier_platform.jobs.errors import InvalidJobInput

    from atelier_frontend.evaluation_words import upload_refusal_words

    error = InvalidJobInput("1 of 1 cases do not match.", details={
        "cases.0.reference": ["Too sunny a reference."], "cases.0": ["Unknown fields: extra (a case has input, params and reference)."]},
        field_errors=[{"type": "evaluation.reference_too_sunny", "loc": ("cases.0.reference",),
                       "msg": "Too sunny a reference.", "ctx": {}},
                      {"type": "evaluation.unknown_fields", "loc": ("cases.0",),
                       "msg": "Unknown fields: extra (a case has input, params and reference).", "ctx": {"names": 3}}])
    error.upload = uploads.Upload(cases=[{}], lines=[2], kind="csv", plugin_id="chatbot")
    with translation.override("zh-hans"):
        said = upload_refusal_words(error)
    assert "第 2 行，reference：Too sunny a reference." in said
    assert "第 2 行：Unknown fields: extra (a case has input, params and reference)." in said


def test_a_taken_name_and_a_missing_name_are_refused(project, owner):
    ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    response = upload(owner, "question,reference\nHi,Hello\n")
    assert response.status_code == 400 and "The project has a reference set named support already." in response.content.decode()
    assert ReferenceSet.objects.count() == 1
    response = upload(owner, "question,reference\nHi,Hello\n", name="  ")
    assert response.status_code == 400 and "Name the reference set." in response.content.decode()


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_owners_upload_or_delete(project, plugins, signed_in, role):
    client = signed_in(project, role)
    assert upload(client, "question,reference\nHi,Hello\n").status_code == 403
    kept = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="kept", cases=CASES)
    assert client.post("/settings/", {"action": "reference_set_delete", "reference_set": str(kept.pk)}).status_code == 403
    assert list(ReferenceSet.objects.all()) == [kept]


def test_delete_is_refused_while_a_run_goes_and_audited_once_done(project, owner, other_project):
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot",
                                       status=RunStatus.RUNNING, cases_total=1)
    response = owner.post("/settings/", {"action": "reference_set_delete", "reference_set": str(reference_set.pk)})
    assert response.status_code == 400 and "A run of support is still going" in response.content.decode()
    assert ReferenceSet.objects.filter(pk=reference_set.pk).exists()

    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs", cases=CASES)
    response = owner.post("/settings/", {"action": "reference_set_delete", "reference_set": str(theirs.pk)})
    assert response.status_code == 404 and ReferenceSet.objects.filter(pk=theirs.pk).exists()

    EvaluationRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    response = owner.post("/settings/", {"action": "reference_set_delete", "reference_set": str(reference_set.pk)})
    assert response.status_code == 302 and not ReferenceSet.objects.filter(pk=reference_set.pk).exists()
    assert AuditEvent.objects.get(action="reference_set_deleted").before["name"] == "support"
