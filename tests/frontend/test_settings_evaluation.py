"""The settings page's evaluation section: each reference set's latest metrics per model version, and Evaluate."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.models import Job, JobPurpose

pytestmark = pytest.mark.django_db

CASES = [{"input": {"messages": [{"role": "user", "content": "Where is my parcel?"}]}, "params": {},
          "reference": "On its way."}]


@pytest.fixture
def owner(project, signed_in, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    return signed_in(project, "owner")


def row(page: str, set_id, version) -> str:
    found = re.search(rf'<table class="list" data-reference-set="{set_id}">.*?<tr data-version="{version}">(.*?)</tr>',
                      page, re.S)
    assert found, f"no row for version {version}"
    return found.group(1)


def evaluate_form(page: str, set_id, version) -> dict:
    """The fields of a row's Evaluate form, as the browser sends them (its one-time token too)."""
    form = re.search(r'<form method="post"><input type="hidden" name="csrfmiddlewaretoken"[^>]*>(<input type="hidden" '
                     r'name="action" value="evaluate">.*?)<button>', row(page, set_id, version), re.S)
    assert form, f"no Evaluate form for version {version}"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(1)))


def test_each_version_shows_its_latest_scored_run_and_evaluate_starts_one(project, owner):
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v2)
    v3 = ModelVersion.objects.create(plugin_id="chatbot", version="v3", model_dir="chat/v3")
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    for chrf, finished in ((12.5, timezone.now() - timezone.timedelta(days=1)), (61.5, timezone.now())):
        EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot", model_version=v3,
                                     status=RunStatus.SUCCEEDED, finished_at=finished, cases_total=1, cases_done=1,
                                     metrics={"chrf": chrf, "bleu": 20.0, "succeeded": 1, "cases": 1})
    page = owner.get("/settings/").content.decode()
    assert "current model: v2" in row(page, reference_set.pk, "current") and "never" in row(page, reference_set.pk, "current")
    assert "pinned" in row(page, reference_set.pk, v2.pk)
    assert "61.5" in row(page, reference_set.pk, v3.pk) and "12.5" not in page  # the newest scored run
    assert re.search(rf'data-reference-set="{reference_set.pk}">support <span class="muted">[^<]*· 1 case</span>', page)

    form = evaluate_form(page, reference_set.pk, v3.pk)
    assert form["reference_set"] == str(reference_set.pk) and form["model_version"] == str(v3.pk)
    response = owner.post("/settings/", form)
    assert response.status_code == 302 and response["Location"].endswith("#evaluation")
    run = EvaluationRun.objects.exclude(status=RunStatus.SUCCEEDED).get()
    assert run.model_version == v3 and run.created_by == owner.user
    assert Job.objects.get().purpose == JobPurpose.EVALUATION
    page = owner.get("/settings/").content.decode()
    assert "Evaluation of support with model version v3 (chat/v3) started" in page
    assert 'data-run-status="queued"' in row(page, reference_set.pk, v3.pk) and "0 of 1 cases" in page


def test_a_refused_evaluation_is_said_in_the_evaluation_section(project, owner, other_project, monkeypatch):
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs", cases=CASES)
    refused = owner.post("/settings/", {"action": "evaluate", "reference_set": str(theirs.pk), "model_version": ""})
    assert refused.status_code == 404 and "No such reference set in this project." in refused.content.decode()
    assert not EvaluationRun.objects.exists()
    monkeypatch.setattr(services, "MAX_ACTIVE_RUNS", 0)
    busy = owner.post("/settings/", evaluate_form(owner.get("/settings/").content.decode(), reference_set.pk, "current"))
    page = busy.content.decode()
    assert busy.status_code == 400 and 'id="evaluation" data-refused' in page and "The evaluation could not start" in page
    assert not EvaluationRun.objects.exists() and not Job.objects.exists()


def test_an_evaluate_form_sent_twice_starts_one_run_and_a_new_page_another(project, owner):
    """Clicking Evaluate twice sent the form twice: two runs of every case, the second counting against the project's
    runs going. The form's one-time token makes the second the first's run."""
    from atelier_platform.moderation.models import AuditEvent

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES * 3)
    page = owner.get("/settings/").content.decode()
    form = evaluate_form(page, reference_set.pk, "current")
    first = owner.post("/settings/", form)
    assert first.status_code == 302
    assert "Evaluation of support with the current model started" in owner.get("/settings/").content.decode()
    # the second (a double click, or the page the back button shows again) says that it started nothing: it
    # said "started", and the user believed a second run was going
    second = owner.post("/settings/", form)
    assert second.status_code == 302
    said = owner.get("/settings/").content.decode()
    assert "was started already from this form: nothing more started" in said and "model started;" not in said
    run = EvaluationRun.objects.get()
    assert Job.objects.count() == 3 and AuditEvent.objects.filter(action="evaluation_started").count() == 1

    # each form has its own token, and a page shown again new ones: pressing Evaluate again is a new run
    assert evaluate_form(page, reference_set.pk, "current")["once"] != evaluate_form(
        owner.get("/settings/").content.decode(), reference_set.pk, "current")["once"]
    again = owner.post("/settings/", evaluate_form(owner.get("/settings/").content.decode(), reference_set.pk, "current"))
    assert again.status_code == 302 and EvaluationRun.objects.exclude(pk=run.pk).count() == 1


@pytest.mark.parametrize("once", [None, "", "not-a-token", "A" * 32])
def test_an_evaluate_form_without_its_token_is_refused_and_starts_nothing(project, owner, once):
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    form = evaluate_form(owner.get("/settings/").content.decode(), reference_set.pk, "current")
    if once is None:
        del form["once"]
    else:
        form["once"] = once
    response = owner.post("/settings/", form)
    assert response.status_code == 400 and "This form is out of date" in response.content.decode()
    assert not EvaluationRun.objects.exists() and not Job.objects.exists()


def test_without_reference_sets_the_section_says_how_to_make_one(owner):
    assert "No reference sets yet." in owner.get("/settings/").content.decode()



def test_a_version_better_on_the_set_is_pinned_from_its_row_and_the_page_comes_back_to_the_scores(project, owner):
    from atelier_platform.moderation.models import AuditEvent

    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v2)
    v3 = ModelVersion.objects.create(plugin_id="chatbot", version="v3", model_dir="chat/v3")
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    page = owner.get("/settings/").content.decode()
    assert "pin-version" not in row(page, reference_set.pk, v2.pk)  # pinned already
    assert "pin-version" not in row(page, reference_set.pk, "current")
    pin = re.search(r'<form method="post" class="pin-version" data-confirm="([^"]*)">(.*?)</form>',
                    row(page, reference_set.pk, v3.pk), re.S)
    assert pin and pin.group(1) == ("Pin v3 for Customer-service chatbot? Jobs that start from now on use it, those "
                                    "already queued too.")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', pin.group(2)))
    assert fields["action"] == "plugin" and fields["model_version"] == str(v3.pk) and fields["enabled"] == "on"

    response = owner.post("/settings/", fields)
    assert response.status_code == 302 and response["Location"].endswith("#evaluation")
    setting = ProjectPlugin.objects.get(project=project, plugin_id="chatbot")
    assert setting.model_version == v3 and setting.enabled
    assert AuditEvent.objects.get(action="plugin_configured").after["model_version"] == "v3"
    page = owner.get("/settings/").content.decode()
    assert "pinned" in row(page, reference_set.pk, v3.pk) and "pin-version" in row(page, reference_set.pk, v2.pk)
    assert "jobs that start from now on use model version v3 (chat/v3) (was model version v2 (chat/v2))" in page


def test_a_run_of_the_current_model_counts_for_the_model_that_answered_it_not_for_whatever_is_current_now(project, owner):
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=CASES)
    for chrf, answered_by in ((33.3, "default"), (77.7, "v2")):
        EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot",
                                     status=RunStatus.SUCCEEDED, finished_at=timezone.now(), cases_total=1, cases_done=1,
                                     metrics={"chrf": chrf, "bleu": 1.0, "succeeded": 1, "cases": 1,
                                              "model_versions": [answered_by]})
    page = owner.get("/settings/").content.decode()  # nothing pinned: the default model is current
    assert "33.3" in row(page, reference_set.pk, "current") and "77.7" in row(page, reference_set.pk, v2.pk)
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v2)
    page = owner.get("/settings/").content.decode()
    assert "77.7" in row(page, reference_set.pk, "current") and "33.3" not in page
