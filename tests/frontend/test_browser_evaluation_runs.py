"""In a real browser: an owner uploads a reference set (a refused file first), and a run's page follows the run
to its end and then shows each case, worst first, beside another run."""

from __future__ import annotations

from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from tests.frontend.browsing import BROWSER_TESTS
from tests.frontend.test_evaluation_run_page import make_run

pytestmark = BROWSER_TESTS


def _owner(project, member, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.frontend.browsing import PASSWORD

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    return owner


def test_in_a_browser_an_owner_uploads_a_reference_set(live_server, browser, expect, project, member,
                                                       empty_plugin_registry, tmp_path):
    from tests.frontend.browsing import shot, sign_in

    owner = _owner(project, member, empty_plugin_registry)
    bad = tmp_path / "support.csv"
    bad.write_text("question,reference\nWhere is my parcel?,On its way.\nCan I pay later?,\n", encoding="utf-8")
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#evaluation")
    form = page.locator("#reference-set-upload")
    form.locator("input[name=name]").fill("Support questions")
    form.locator("input[name=file]").set_input_files(str(bad))
    form.locator("button").click()
    expect(page.locator("#reference-set-upload")).to_contain_text(
        "Line 3, reference: The expected answer, a non-empty text.")
    expect(page.locator("#reference-set-upload input[name=name]")).to_have_value("Support questions")
    page.locator("#evaluation").screenshot(path=str(_shots() / "61-evaluation-upload-refused.png"))
    assert not ReferenceSet.objects.exists()

    bad.write_text("question,reference\nWhere is my parcel?,On its way.\nCan I pay later?,Yes.\n", encoding="utf-8")
    form = page.locator("#reference-set-upload")
    form.locator("input[name=file]").set_input_files(str(bad))
    form.locator("button").click()
    expect(page.locator("body")).to_contain_text("Reference set Support questions saved with 2 cases.")
    expect(page.locator("#evaluation h3")).to_contain_text("Support questions")
    shot(page, "62-evaluation-uploaded")
    assert len(ReferenceSet.objects.get().cases) == 2


def test_in_a_browser_a_runs_page_follows_it_and_compares_it(live_server, browser, expect, project, member,
                                                             empty_plugin_registry):
    from tests.frontend.browsing import sign_in

    owner = _owner(project, member, empty_plugin_registry)
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions", cases=[])
    earlier = make_run(project, reference_set, outputs=[("Your parcel left today.", 35.2), ("Yes.", 20.1),
                                                        ("We ship to 40 countries.", 77.0)])
    going = make_run(project, reference_set, version=v2, outputs=[None] * 3, status=RunStatus.RUNNING)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/evaluation/runs/{going.pk}/")
    expect(page.locator("#run-progress")).to_contain_text("1 of 3 cases")
    # the run finishes meanwhile: the page shows its results without a reload by hand
    finished = make_run(project, reference_set, version=v2, outputs=[("It is on its way.", 70.4), None,
                                                                     ("Yes, to most countries.", 41.9)])
    EvaluationRun.objects.filter(pk=going.pk).update(status=RunStatus.SUCCEEDED, results=finished.results,
                                                     metrics=finished.metrics, cases_done=3, cases_failed=1,
                                                     finished_at=timezone.now())
    finished.delete()
    expect(page.locator("#run-cases tbody tr").first).to_have_attribute("data-case-status", "failed", timeout=15_000)
    page.locator("#run-view select[name=compare]").select_option(str(earlier.pk))
    page.locator("#run-view button").click()
    expect(page.locator("#compared-metrics")).to_contain_text("B ·")
    expect(page.locator("#run-cases tr[data-case='0']")).to_contain_text("Your parcel left today.")
    page.screenshot(path=str(_shots() / "63-evaluation-run-compared.png"), full_page=True)


def _shots():
    from tests.frontend.browsing import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def test_in_a_browser_the_jobs_list_shows_evaluation_jobs_when_asked(live_server, browser, expect, project, member,
                                                                     empty_plugin_registry):
    from atelier_platform.jobs.models import Job, JobPurpose
    from tests.frontend.browsing import sign_in

    owner = _owner(project, member, empty_plugin_registry)
    asked = Job.objects.create(project=project, plugin_id="chatbot", status="succeeded", seed=1, input={
        "messages": [{"role": "user", "content": "Write our spring newsletter"}]})
    evaluated = Job.objects.create(project=project, plugin_id="chatbot", status="succeeded", seed=0,
                                   purpose=JobPurpose.EVALUATION,
                                   input={"messages": [{"role": "user", "content": "Where is my parcel?"}]})
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/jobs/")
    expect(page.locator(f"tr[data-job='{asked.pk}']")).to_be_visible()
    expect(page.locator(f"tr[data-job='{evaluated.pk}']")).to_have_count(0)
    page.locator("#evaluation-hidden a").click()
    expect(page.locator(f"tr[data-job='{evaluated.pk}'] .evaluation-chip")).to_be_visible()
    expect(page.locator("#job-filters select[name=purpose]")).to_have_value("all")
    page.screenshot(path=str(_shots() / "64-jobs-with-evaluation-jobs.png"), full_page=True)



def test_in_a_browser_an_owner_cancels_a_run_going_after_a_confirmation(live_server, browser, expect, project, member,
                                                                        empty_plugin_registry):
    from tests.frontend.browsing import shot, sign_in
    from tests.frontend.test_evaluation_run_cancel import answer_first_case, start

    owner = _owner(project, member, empty_plugin_registry)
    run = start(project, name="Support questions")
    answer_first_case(run, "Your parcel left today.")
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/evaluation/runs/{run.pk}/")
    expect(page.locator("#run-progress")).to_contain_text("1 of 3 cases")
    shot(page, "65-evaluation-run-going-cancel-button")
    asked, answers = [], [False, True]

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", answer)
    page.locator("#cancel-run").click()  # dismissed: nothing sent
    assert asked and asked[0].startswith("Cancel this run?")
    expect(page.locator("#cancel-run")).to_be_visible()
    assert EvaluationRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    page.locator("#cancel-run").click()
    expect(page.locator("#run-cancelled")).to_contain_text("the 1 of 3 cases answered before are scored")
    expect(page.locator("[data-run-status]").first).to_have_attribute("data-run-status", "cancelled")
    expect(page.locator("#cancel-run")).to_have_count(0)
    expect(page.locator("#run-cases tr[data-case='0']")).to_contain_text("Your parcel left today.")
    assert EvaluationRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED and len(asked) == 2
    shot(page, "66-evaluation-run-cancelled")
    page.goto(f"{live_server.url}/settings/#evaluation")
    expect(page.locator("#evaluation [data-run-status='cancelled']")).to_contain_text("Cancelled · 1 of 3 answered")
    page.locator("#evaluation").screenshot(path=str(_shots() / "67-evaluation-settings-cancelled.png"))


def test_in_a_browser_a_sets_page_charts_its_versions_and_compares_two_runs(live_server, browser, expect, project,
                                                                          member, empty_plugin_registry):
    """The trend drawn (a line per version, the pinned one marked, nothing fetched from elsewhere), two runs ticked
    open the run page's comparison, and an owner pins a version from its row after a confirmation."""
    from atelier_platform.catalog.models import ProjectPlugin
    from tests.frontend.browsing import shot, sign_in
    from tests.frontend.test_evaluation_set_page import run_of

    owner = _owner(project, member, empty_plugin_registry)
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    v3 = ModelVersion.objects.create(plugin_id="chatbot", version="v3", model_dir="chat/v3")
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v2)
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions", cases=[
        {"input": {"messages": [{"role": "user", "content": "Where is my parcel?"}]}, "params": {}, "reference": "On its way."}])
    runs = [run_of(project, reference_set, day, answered_by="default", chrf=chrf, bleu=chrf / 4)
            for day, chrf in ((1, 28.4), (3, 30.1))]
    runs += [run_of(project, reference_set, day, version=v2, chrf=chrf, bleu=chrf / 4)
             for day, chrf in ((4, 41.0), (6, 44.6), (9, 43.2))]
    runs += [run_of(project, reference_set, day, version=v3, chrf=chrf, bleu=chrf / 4)
             for day, chrf in ((8, 52.3), (10, 57.9))]
    run_of(project, reference_set, 11, version=v3, status=RunStatus.RUNNING)
    elsewhere = []
    page = sign_in(browser, live_server.url, owner.username)
    page.on("request", lambda request: elsewhere.append(request.url) if not request.url.startswith(live_server.url) else None)
    page.goto(f"{live_server.url}/settings/#evaluation")
    page.locator("#evaluation a.set-history").click()
    expect(page.locator("#set-name")).to_contain_text("Support questions")
    expect(page.locator("#trend-chart circle.trend-point")).to_have_count(7)
    expect(page.locator("#trend-chart g.trend-series")).to_have_count(3)
    expect(page.locator(f"#trend-chart g.pinned[data-series='v{v2.pk}'] polyline")).to_have_attribute("stroke-width", "3.5")
    expect(page.locator("#trend-legend .pinned")).to_contain_text("v2 · chat/v2")
    box = page.locator("#trend-chart").bounding_box()
    assert box["width"] > 500 and box["height"] > 150  # drawn, at the card's width
    shot(page, "68-evaluation-set-trend")
    assert elsewhere == []

    newest_v3, oldest = runs[-1], runs[0]
    page.locator(f"tr[data-run='{newest_v3.pk}'] input[type=checkbox]").check()
    page.locator(f"tr[data-run='{oldest.pk}'] input[type=checkbox]").check()
    page.locator("#compare-runs button").click()
    expect(page.locator("#compared-metrics")).to_contain_text("B · v3 · chat/v3")
    assert page.url.endswith(f"/evaluation/runs/{oldest.pk}/?compare={newest_v3.pk}")

    page.locator("#set-link").click()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f"tr[data-run='{newest_v3.pk}'] .pin-version button").click()
    expect(page.locator("#set-notice")).to_contain_text("jobs that start from now on use model version v3 (chat/v3)")
    expect(page.locator(f"tr[data-run='{newest_v3.pk}'] .pinned-chip")).to_be_visible()
    expect(page.locator(f"#trend-chart g.pinned[data-series='v{v3.pk}']")).to_have_count(1)
    assert ProjectPlugin.objects.get(project=project, plugin_id="chatbot").model_version == v3
    shot(page, "69-evaluation-set-pinned")
