"""The settings page's evaluation section in a real browser: metrics per model version, and Evaluate."""

from __future__ import annotations

from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from tests.frontend.browsing import BROWSER_TESTS, SHOTS
from tests.frontend.test_settings_evaluation import CASES

pytestmark = BROWSER_TESTS


def test_in_a_browser_an_owner_compares_versions_and_starts_an_evaluation(live_server, browser, expect, project, member,
                                                                          empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.frontend.browsing import PASSWORD, shot, sign_in

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions",
                                                cases=CASES * 40)
    EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot", status=RunStatus.SUCCEEDED,
                                 finished_at=timezone.now(), cases_total=40, cases_done=40, cases_failed=2,
                                 metrics={"chrf": 48.31, "bleu": 21.07, "succeeded": 38, "cases": 40,
                                          "model_versions": ["default"]})
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#evaluation")
    section = page.locator("#evaluation")
    expect(section.locator("tr[data-version=current]")).to_contain_text("48.3")
    section.locator(f"tr[data-version='{v2.pk}']").get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation tr[data-version='%s'] [data-run-status=queued]" % v2.pk)).to_contain_text("0 of 40 cases")
    expect(page.locator("body")).to_contain_text("Evaluation of Support questions with model version v2")
    section.scroll_into_view_if_needed()
    shot(page, "60-settings-evaluation")

    # v2 pinned from its row, after a question; the page comes back to the scores, v2 now the one pinned
    page.once("dialog", lambda dialog: dialog.accept())
    section.locator(f"tr[data-version='{v2.pk}']").get_by_role("button", name="Pin").click()
    expect(page.locator(f"#evaluation tr[data-version='{v2.pk}'] .chip")).to_have_text("pinned")
    current = page.locator("#evaluation tr[data-version=current]")
    expect(current).to_contain_text("current model: v2")
    expect(current).not_to_contain_text("48.3")  # the default model's score, not v2's
    assert page.url.endswith("#evaluation")
    section.locator("table").first.screenshot(path=str(SHOTS / "60-settings-evaluation-pinned.png"))
