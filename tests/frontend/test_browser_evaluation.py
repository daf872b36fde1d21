"""The settings page's evaluation section in a real browser: metrics per model version, and Evaluate."""

from __future__ import annotations

from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from tests.frontend.browsing import BROWSER_TESTS, SHOTS
from tests.frontend.test_settings_evaluation import CASES
from tests.support.databases import needs_postgresql

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


@needs_postgresql
def test_in_a_browser_evaluate_clicked_again_while_the_first_start_goes_starts_one_run(live_server, browser, expect,
                                                                                      project, member,
                                                                                      empty_plugin_registry):
    """A start that takes its time (here it waits for the project's row, which a transaction of the test holds): the
    owner clicks Evaluate again, the browser sends the form again and shows the second answer. The second request,
    with the form's one-time token again, waits for the first's run and answers with it: one run, not two."""
    import threading

    from django.db import connection, transaction

    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_platform.accounts.models import Project
    from atelier_platform.jobs.models import Job
    from atelier_platform.moderation.models import AuditEvent
    from tests.frontend.browsing import PASSWORD, sign_in

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions", cases=CASES * 40)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#evaluation")
    posted = []
    page.on("request", lambda request: posted.append(request.post_data) if request.method == "POST" else None)
    locked, release = threading.Event(), threading.Event()

    def hold_the_projects_row():
        try:
            with transaction.atomic():
                list(Project.objects.select_for_update().filter(pk=project.pk))
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_projects_row)
    holder.start()
    try:
        assert locked.wait(10)
        # The button clicked twice, 0.3 s apart, by the page itself: Playwright's own second click waits until the
        # first navigation has finished, and clicks the new page's button
        page.evaluate("""() => {
            const button = [...document.querySelectorAll('#evaluation tr[data-version=current] button')]
                .find(b => b.textContent.trim() === 'Evaluate');
            button.click();
            setTimeout(() => button.click(), 300);
        }""")
        page.wait_for_timeout(800)
        assert len(posted) == 2  # both sent while the first start waits
    finally:
        release.set()
        holder.join(20)
    expect(page.locator("#evaluation tr[data-version=current] [data-run-status=queued]")).to_contain_text("0 of 40 cases")
    # the browser shows the second answer: the first's run, and that nothing more started
    expect(page.locator("body")).to_contain_text(
        "Evaluation of Support questions with the current model was started already from this form: nothing more started.")
    assert len(posted) == 2 and posted[0] == posted[1], posted  # the same form, sent twice
    assert EvaluationRun.objects.count() == 1 and Job.objects.count() == 40
    assert AuditEvent.objects.filter(action="evaluation_started").count() == 1
