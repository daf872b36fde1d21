"""In a real browser: a recommender run's page with its ranking metrics and each case's ranked items marked, beside
another run, in English and in Chinese."""

from __future__ import annotations

from tests.frontend.browsing import BROWSER_TESTS, PASSWORD, SHOTS, shot, sign_in
from tests.frontend.test_evaluation_run_relevance import ranking_run

pytestmark = BROWSER_TESTS


def test_in_a_browser_ranking_runs_compared_in_english_and_chinese(live_server, browser, expect, project, member,
                                                                   empty_plugin_registry):
    from atelier_platform.catalog.services import set_plugin_enabled
    from atelier_platform.evaluation.models import ReferenceSet
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
    from tests.frontend.test_evaluation_run_relevance import ITEMS

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    cases = [{"input": {"profile": {"interests": i}, "items": ITEMS, "count": 3}, "params": {}, "reference": None,
              "reference_items": r, **extra}
             for i, r, extra in (("wool", ["wool", "rug"], {}), ("camping", {"tent": 2}, {}), ("coffee", ["mug"], {"k": 1}))]
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="recommender_copy", name="Shoppers", cases=cases)
    earlier = ranking_run(project, reference_set, [["mug", "tent", "wool"], ["tent", "mug", "wool"], ["mug"]], "v1")
    later = ranking_run(project, reference_set, [["wool", "rug", "mug"], ["mug", "wool", "tent"], None], "v2")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/evaluation/runs/{later.pk}/")
    expect(page.locator("#run-metrics")).to_contain_text("NDCG@k")
    page.locator("#run-view select[name=compare]").select_option(str(earlier.pk))
    page.locator("#run-view button").click()
    expect(page.locator("#compared-metrics")).to_contain_text("B ·")
    expect(page.locator("#run-cases tbody tr").first).to_have_attribute("data-case-status", "failed")
    expect(page.locator("#run-cases tr[data-case='1'] .case-answer li.relevant")).to_contain_text("tent")
    shot(page, "68-evaluation-ranking-compared")
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("#run-metrics")).to_contain_text("命中率@k")
    expect(page.locator("#run-cases tr[data-case='1']")).to_contain_text("相关商品")
    shot(page, "69-evaluation-ranking-zh-hans")
