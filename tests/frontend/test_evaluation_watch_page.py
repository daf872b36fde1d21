"""A reference set's watch on its page: every member sees its schedule, its next run and its last run's verdict (with
the comparison against the run before, and why a due run was skipped); owners create, change, switch off and delete
it through the API's service; bad limits are refused in the page's language and nothing is saved."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import watch
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceSet, RunStatus
from atelier_platform.moderation.models import AuditEvent
from tests.frontend.test_evaluation_set_page import CASES, row, run_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def text_set(project, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    return ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions", cases=CASES)


@pytest.fixture
def versions():
    return {name: ModelVersion.objects.create(plugin_id="chatbot", version=name, model_dir=f"chat/{name}")
            for name in ("v2", "v3")}


def page_of(client, reference_set) -> str:
    response = client.get(f"/evaluation/sets/{reference_set.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def section(page: str) -> str:
    return re.search(r'<section class="card" id="watch".*?</section>', page, re.S).group(0)


def post(client, reference_set, **fields):
    form = {"interval_hours": "6", "max_drop": "chrf=1.5, bleu=2", "model_version": "", "enabled": "on", **fields}
    return client.post(f"/evaluation/sets/{reference_set.pk}/watch/", {k: v for k, v in form.items() if v is not None})


def test_an_owner_watches_a_set_from_its_page_and_changes_and_deletes_the_watch(project, text_set, versions, signed_in):
    owner = signed_in(project, "owner")
    shown = section(page_of(owner, text_set))
    assert 'id="watch-none"' in shown and 'id="watch-form"' in shown and "<details id=\"watch-edit\" open>" in shown

    response = post(owner, text_set)
    assert response.status_code == 302 and response["Location"].endswith(f"/evaluation/sets/{text_set.pk}/#watch")
    schedule = EvaluationSchedule.objects.get()
    assert schedule.interval_hours == 6 and schedule.max_drop == {"chrf": 1.5, "bleu": 2.0}
    assert schedule.model_version is None and schedule.enabled and schedule.created_by == owner.user
    assert AuditEvent.objects.filter(action="evaluation_schedule_created", actor=f"user:{owner.user.pk}").exists()
    page = page_of(owner, text_set)
    assert "Watch saved: the first run starts within a minute, then one every 6 hours." in page
    shown = section(page)
    assert "Every 6 hours, with the version pinned when each run starts" in shown
    assert '<dd class="mono" id="watch-limits">chrf=1.5, bleu=2</dd>' in shown and "none yet" in shown
    assert "due: it starts within a minute" in shown  # the first run: at the next tick
    assert 'value="chrf=1.5, bleu=2"' in shown and 'value="6"' in shown  # the form holds the watch as it is

    v2 = versions["v2"]
    response = post(owner, text_set, interval_hours="1", max_drop="chrf=3", model_version=str(v2.pk), enabled=None)
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.interval_hours == 1 and schedule.max_drop == {"chrf": 3.0} and schedule.model_version == v2
    assert schedule.enabled is False
    shown = section(page_of(owner, text_set))
    assert "Every hour, with v2 · chat/v2" in shown and "switched off" in shown and "none while switched off" in shown

    response = owner.post(f"/evaluation/sets/{text_set.pk}/watch/delete/")
    assert response.status_code == 302 and not EvaluationSchedule.objects.exists()
    assert "Watch deleted; its runs stay in the history." in page_of(owner, text_set)


@pytest.mark.parametrize("fields, said", [
    ({"max_drop": "chrff=1"}, "Limits not understood"),
    ({"max_drop": "chrf=-1"}, "Limits not understood"),
    ({"max_drop": "chrf=1, chrf=2"}, "each metric once"),
    ({"max_drop": ""}, "Limits not understood"),
    ({"interval_hours": "0"}, "Run it every 1 to 720 hours"),
    ({"interval_hours": "721"}, "Run it every 1 to 720 hours"),
    ({"interval_hours": "²"}, "Run it every 1 to 720 hours"),
    ({"model_version": "abc"}, "No such model version for this plugin."),
    ({"model_version": "999999"}, "No such model version for this plugin."),
])
def test_a_refused_form_says_why_keeps_what_was_sent_and_saves_nothing(project, text_set, signed_in, fields, said):
    owner = signed_in(project, "owner")
    response = post(owner, text_set, **fields)
    assert response.status_code == 400
    shown = section(response.content.decode())
    assert 'id="watch-errors"' in shown and said in shown and "<details id=\"watch-edit\" open>" in shown
    if "max_drop" in fields and fields["max_drop"]:
        assert f'value="{fields["max_drop"]}"' in shown
    assert not EvaluationSchedule.objects.exists() and not AuditEvent.objects.filter(
        action="evaluation_schedule_created").exists()


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_members_see_the_watch_but_only_owners_change_it(project, text_set, signed_in, role):
    schedule = watch.create_schedule(project, text_set, interval_hours=24, max_drop={"chrf": 1.5}, actor="test")
    client = signed_in(project, role)
    shown = section(page_of(client, text_set))
    assert "Every 24 hours" in shown and 'id="watch-form"' not in shown and 'id="watch-delete"' not in shown
    assert post(client, text_set).status_code == 403
    assert client.post(f"/evaluation/sets/{text_set.pk}/watch/delete/").status_code == 403
    assert EvaluationSchedule.objects.get() == schedule


def test_another_projects_set_has_no_watch_here(project, other_project, text_set, signed_in):
    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs", cases=text_set.cases)
    watch.create_schedule(other_project, theirs, interval_hours=24, max_drop={"chrf": 1.5}, actor="test")
    owner = signed_in(project, "owner")
    assert post(owner, theirs).status_code == 404
    assert owner.post(f"/evaluation/sets/{theirs.pk}/watch/delete/").status_code == 404
    assert EvaluationSchedule.objects.filter(reference_set=theirs, interval_hours=24).exists()


def test_the_last_run_shows_its_verdict_the_comparison_and_a_skipped_run(project, text_set, signed_in):
    schedule = watch.create_schedule(project, text_set, interval_hours=24, max_drop={"chrf": 1.5}, actor="test")
    before = run_of(project, text_set, 1, chrf=60.0, bleu=10.0)
    regressed = run_of(project, text_set, 2, chrf=40.0, bleu=10.0)
    for run, verdict in ((before, {"outcome": "baseline", "failed_metrics": [], "compared_to": None}),
                         (regressed, {"outcome": "regressed", "failed_metrics": ["chrf"],
                                      "compared_to": str(before.pk)})):
        EvaluationRun.objects.filter(pk=run.pk).update(schedule=schedule, watch={"schedule": str(schedule.pk), **verdict})
    someones = run_of(project, text_set, 3, chrf=50.0, bleu=10.0)
    EvaluationSchedule.objects.filter(pk=schedule.pk).update(
        last_run=regressed, last_skipped_at=timezone.now() - timedelta(hours=1), last_skip_code=watch.SKIPPED_RUN_GOING,
        last_skip_message="Run x of the watch is still running.")
    page = page_of(signed_in(project, "viewer"), text_set)
    shown = section(page)
    assert 'data-verdict="regressed">regressed</span> <span class="mono small">(chrf)</span>' in shown
    assert f'href="/evaluation/runs/{before.pk}/?compare={regressed.pk}" id="watch-compare"' in shown
    assert "skipped: The previous run was still going: no run was started." in shown
    # the runs list marks the watch's runs and their verdicts; a run someone started has neither
    assert "scheduled-chip" in row(page, regressed) and 'data-verdict="regressed"' in row(page, regressed)
    assert 'data-verdict="baseline"' in row(page, before)
    assert "scheduled-chip" not in row(page, someones) and "data-verdict" not in row(page, someones)

    EvaluationSchedule.objects.filter(pk=schedule.pk).update(last_skip_code="evaluation_runs_busy",
                                                             last_skip_message="The project has 3 evaluation runs going.")
    assert "The run could not start: The project has 3 evaluation runs going." in page_of(
        signed_in(project, "viewer"), text_set)


def test_a_watch_failing_to_start_says_since_when_and_why(project, text_set, signed_in):
    """The streak of failed starts (failing_since, the one evaluation_watch.failed_to_start announced) is said on the
    card with the last reason; a watch whose last start worked says nothing of it."""
    schedule = watch.create_schedule(project, text_set, interval_hours=24, max_drop={"chrf": 1.5}, actor="test")
    shown = section(page_of(signed_in(project, "viewer"), text_set))
    assert 'id="watch-failing"' not in shown and "Failing to start" not in shown
    set_plugin_enabled(project, "chatbot", False)
    since = (timezone.now() + timedelta(days=1)).replace(hour=3, minute=7, second=0, microsecond=0)
    assert watch.start_due(since) == {"refused": 1}
    assert watch.start_due(since + timedelta(days=1)) == {"refused": 1}  # the same streak, a later skip
    reason = EvaluationSchedule.objects.get(pk=schedule.pk).last_skip_message
    shown = section(page_of(signed_in(project, "viewer"), text_set))
    failing = re.search(r'<p class="field-error" id="watch-failing">(.*?)</p>', shown, re.S).group(1)
    assert failing == f"Failing to start since {since:%b} {since.day}, 03:07 UTC: {html.escape(reason)}"
    assert "is not enabled for project" in reason

    from tests.frontend.test_dashboard_fixes import in_chinese

    viewer = signed_in(project, "viewer")
    in_chinese(viewer)
    shown = section(page_of(viewer, text_set))
    assert "起无法启动：" in shown and "Failing to start since" not in shown and html.escape(reason) in shown

    watch.update_schedule(EvaluationSchedule.objects.get(pk=schedule.pk), actor="test", interval_hours=12)
    shown = section(page_of(signed_in(project, "viewer"), text_set))
    assert 'id="watch-failing"' not in shown and 'id="watch-skip"' in shown  # the streak ended, the skip is history


def test_a_run_going_shows_its_state_until_it_has_a_verdict(project, text_set, signed_in):
    schedule = watch.create_schedule(project, text_set, interval_hours=24, max_drop={"chrf": 1.5}, actor="test")
    going = run_of(project, text_set, 1, status=RunStatus.RUNNING)
    EvaluationRun.objects.filter(pk=going.pk).update(schedule=schedule)
    EvaluationSchedule.objects.filter(pk=schedule.pk).update(last_run=going)
    shown = section(page_of(signed_in(project, "viewer"), text_set))
    assert 'data-run-status="running"' in shown and "data-verdict" not in shown


def test_the_watch_in_chinese(project, text_set, signed_in):
    from tests.frontend.test_dashboard_fixes import in_chinese

    owner = signed_in(project, "owner")
    in_chinese(owner)
    shown = section(page_of(owner, text_set))
    assert "监控" in shown and "Watch this set" not in shown and "Largest allowed drops" not in shown
    response = post(owner, text_set, max_drop="nope")
    assert response.status_code == 400 and "Limits not understood" not in response.content.decode()
    post(owner, text_set)
    shown = section(page_of(owner, text_set))
    assert "每 6 小时" in shown and "Every 6 hours" not in shown
