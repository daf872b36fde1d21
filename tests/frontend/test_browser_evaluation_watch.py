"""In a real browser: an owner watches a reference set from its page (a refused limit first), sees the watch's last
verdict and opens its comparison, switches it off, then deletes it after a confirmation."""

from __future__ import annotations

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceSet
from tests.frontend.browsing import BROWSER_TESTS
from tests.frontend.test_evaluation_set_page import CASES, run_of

pytestmark = BROWSER_TESTS


def test_in_a_browser_an_owner_watches_a_set_and_follows_a_regression(live_server, browser, expect, project, member,
                                                                      empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.frontend.browsing import PASSWORD, shot, sign_in

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions",
                                                cases=CASES)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/evaluation/sets/{reference_set.pk}/")
    expect(page.locator("#watch-none")).to_be_visible()
    form = page.locator("#watch-form")
    form.locator("input[name=interval_hours]").fill("12")
    form.locator("input[name=max_drop]").fill("chrf=1.5, blue=2")
    form.locator("button").click()
    expect(page.locator("#watch-errors")).to_contain_text("Limits not understood")
    expect(page.locator("#watch-form input[name=max_drop]")).to_have_value("chrf=1.5, blue=2")
    page.locator("#watch-form input[name=max_drop]").fill("chrf=1.5, bleu=2")
    page.locator("#watch-form button").click()
    expect(page.locator("#set-notice")).to_contain_text("then one every 12 hours")
    expect(page.locator("#watch-limits")).to_have_text("chrf=1.5, bleu=2")
    schedule = EvaluationSchedule.objects.get()

    # two scheduled runs later: the second fell
    before = run_of(project, reference_set, 1, chrf=61.0, bleu=20.0)
    after = run_of(project, reference_set, 2, answered_by="v2", chrf=48.5, bleu=19.0)
    EvaluationRun.objects.filter(pk=before.pk).update(schedule=schedule, watch={
        "schedule": str(schedule.pk), "outcome": "baseline", "failed_metrics": [], "compared_to": None})
    EvaluationRun.objects.filter(pk=after.pk).update(schedule=schedule, watch={
        "schedule": str(schedule.pk), "outcome": "regressed", "failed_metrics": ["chrf"], "compared_to": str(before.pk)})
    EvaluationSchedule.objects.filter(pk=schedule.pk).update(last_run=after)
    page.reload()
    expect(page.locator("#watch-last [data-verdict]")).to_have_text("regressed")
    expect(page.locator(f"tr[data-run='{after.pk}'] .scheduled-chip")).to_be_visible()
    shot(page, "65-evaluation-watch-regressed")
    page.locator("#watch").screenshot(path=str(_shots() / "66-evaluation-watch-card.png"))

    page.locator("#watch-compare").click()
    expect(page.locator("#compared-metrics")).to_contain_text("B ·")
    assert f"/evaluation/runs/{before.pk}/?compare={after.pk}" in page.url

    page.goto(f"{live_server.url}/evaluation/sets/{reference_set.pk}/")
    page.locator("#watch-edit summary").click()
    page.locator("#watch-form input[name=enabled]").uncheck()
    page.locator("#watch-form button").click()
    expect(page.locator("#set-notice")).to_contain_text("switched off")
    expect(page.locator("#watch-next")).to_contain_text("none while switched off")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#watch-edit summary").click()
    page.locator("#watch-delete button").click()
    expect(page.locator("#set-notice")).to_contain_text("Watch deleted")
    assert not EvaluationSchedule.objects.exists() and EvaluationRun.objects.filter(pk=after.pk).exists()


def _shots():
    from tests.frontend.browsing import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
