"""An evaluation run's page for rankings and sources: the ranking and retrieval metrics at the top (both runs' when
compared), each case's ranked items with the relevant ones marked or its sources with the expected ones marked,
worst first by NDCG (recall), in English and in Chinese."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import relevance, services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.models import Job, JobPurpose

pytestmark = pytest.mark.django_db

ITEMS = [{"id": item_id, "title": item_id.title()} for item_id in ("wool", "mug", "tent", "rug")]


@pytest.fixture
def recommender(project, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)


def ranked(*item_ids) -> dict:
    return {"recommendations": [{"rank": rank, "item_id": item_id, "title": item_id, "score": 0.5, "copy": []}
                                for rank, item_id in enumerate(item_ids, start=1)]}


def ranking_run(project, reference_set, rankings, version_label="v1"):
    """A scored run whose case i ranked ``rankings[i]`` (None: failed), each scored as ``services._score`` does."""
    results = []
    for index, (case, ranking) in enumerate(zip(reference_set.cases, rankings)):
        job = Job.objects.create(project=project, plugin_id="recommender_copy", status="succeeded", seed=0,
                                 purpose=JobPurpose.EVALUATION, input=case["input"])
        result = {"index": index, "job_id": str(job.pk), "reference": case.get("reference"), "output": "",
                  "chrf": None, "status": "succeeded", "error": None, **services._other_references(case)}
        if ranking is None:
            result.update(status="failed", error={"code": "plugin_error", "message": "Ranking failed."})
        else:
            result["ranking"] = relevance.score_ranking(ranked(*ranking), case["reference_items"], case.get("k"))
        results.append(result)
    return EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id="recommender_copy", status=RunStatus.SUCCEEDED,
        cases_total=len(results), cases_done=len(results), results=results, finished_at=timezone.now(),
        metrics={"bleu": None, "chrf": None, "cases": len(results), "succeeded": len(results),
                 "failed": 0, "mean_case_chrf": None, **relevance.averages(results), "model_versions": [version_label]})


@pytest.fixture
def ranking_set(project, recommender):
    def case(interests, reference_items, **extra):
        return {"input": {"profile": {"interests": interests}, "items": ITEMS, "count": 3}, "params": {},
                "reference": None, "reference_items": reference_items, **extra}

    return ReferenceSet.objects.create(project=project, plugin_id="recommender_copy", name="ranking", cases=[
        case("wool", ["wool", "rug"]), case("camping", {"tent": 2}), case("coffee", ["mug"], k=1)])


def case_order(page: str) -> list[str]:
    return re.findall(r'<tr data-case="(\d+)"', page)


def row_of(page: str, index: int) -> str:
    return re.search(rf'<tr data-case="{index}" [^>]*>(.*?)</tr>', page, re.S).group(1)


def test_the_ranking_metrics_head_the_page_and_each_case_marks_its_relevant_items(project, ranking_set, signed_in):
    run = ranking_run(project, ranking_set, [["wool", "rug", "mug"], ["mug", "wool", "tent"], ["mug", "tent", "rug"]])
    page = signed_in(project, "viewer").get(f"/evaluation/runs/{run.pk}/").content.decode()
    metrics = re.search(r'id="run-metrics">(.*?)</table>', page, re.S).group(1)
    assert "Hit rate@k" in metrics and "NDCG@k" in metrics and "MRR" in metrics and "chrF" not in metrics
    assert re.search(r'class="mono metric-ndcg">0\.833<', metrics)  # (1 + 0.5 + 1) / 3, as averaged
    assert re.search(r'class="mono metric-hit-rate">1\.000<', metrics)
    assert "3 answered cases with relevant items" in page
    # worst first by NDCG: the tent found third (0.5), then the two perfect rankings in the set's order
    assert case_order(page) == ["1", "0", "2"]
    camping = row_of(page, 1)
    assert re.search(r'<li class="relevant" data-item="tent"><span aria-label="relevant">✓</span> <code>tent</code>',
                     camping)
    assert '<li class="muted" data-item="mug">' in camping and "(gain 2)" in camping and "NDCG@3 0.500" in camping
    coffee = row_of(page, 2)
    assert "k = 1" in coffee and "NDCG@1 1.000" in coffee and 'class="muted beyond-k" data-item="tent"' in coffee


def test_compared_runs_show_both_rankings_and_the_difference_of_their_ndcg(project, ranking_set, signed_in):
    first = ranking_run(project, ranking_set, [["wool", "rug", "mug"], ["mug", "wool", "tent"], None])
    second = ranking_run(project, ranking_set, [["mug", "tent", "wool"], ["tent", "mug", "wool"], ["mug"]], "v2")
    page = signed_in(project, "viewer").get(f"/evaluation/runs/{first.pk}/?compare={second.pk}").content.decode()
    compared = re.search(r'id="compared-metrics">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'metric-ndcg">0\.769<', compared) and "B ·" in compared  # (0.307 + 1 + 1) / 3
    assert case_order(page) == ["2", "1", "0"]  # failed first
    camping = row_of(page, 1)
    assert "NDCG@3 0.500" in camping and "NDCG@3 1.000" in camping and "+0.500" in camping
    wool = row_of(page, 0)
    assert "-0.693" in wool  # B found the wool third: 0.307 - 1
    assert "NDCG@k" in re.search(r'name="compare">(.*?)</select>', page, re.S).group(1)


def test_a_grounded_chatbot_run_marks_the_expected_sources_and_sorts_by_recall(project, signed_in, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    cases = [{"input": {"messages": [{"role": "user", "content": q}]}, "params": {}, "reference": reference,
              "reference_sources": sources}
             for q, reference, sources in (("Returns?", "45 days.", ["kb/returns"]), ("Shipping?", None, ["kb/shipping"]))]
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="kb", cases=cases)
    passages = [[("kb/returns", "Returns > Window")], [("kb/returns", "Returns > Window"), ("kb/care", "Care")]]
    results = []
    for index, (case, sources) in enumerate(zip(cases, passages)):
        job = Job.objects.create(project=project, plugin_id="chatbot", status="succeeded", seed=0,
                                 purpose=JobPurpose.EVALUATION, input=case["input"])
        output = {"reply": f"Answer {index}", "sources": [{"source_id": s, "chunk_id": f"{s}#0", "title": t, "score": 0.5}
                                                         for s, t in sources]}
        results.append({"index": index, "job_id": str(job.pk), "reference": case["reference"], "output": output["reply"],
                        "chrf": 55.0 if case["reference"] else None, "status": "succeeded", "error": None,
                        "reference_sources": case["reference_sources"],
                        "retrieval": relevance.score_retrieval(output, case["reference_sources"], None)})
    run = EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id="chatbot", status=RunStatus.SUCCEEDED, cases_total=2,
        cases_done=2, results=results, finished_at=timezone.now(),
        metrics={"bleu": 5.0, "chrf": 55.0, "bleu_tokenize": "13a", "cases": 2, "succeeded": 2, "failed": 0,
                 "mean_case_chrf": 55.0, **relevance.averages(results), "model_versions": ["v1"]})
    client = signed_in(project, "viewer")
    page = client.get(f"/evaluation/runs/{run.pk}/").content.decode()
    metrics = re.search(r'id="run-metrics">(.*?)</table>', page, re.S).group(1)
    assert "chrF" in metrics and "Source recall@k" in metrics and re.search(r'metric-source-recall">0\.500<', metrics)
    assert case_order(page) == ["1", "0"]  # recall 0 first
    shipping = row_of(page, 1)
    assert "Expected sources: <code>kb/shipping</code>" in shipping
    assert '<li class="muted" data-source="kb/returns">' in shipping and '<li class="muted" data-source="kb/care">' in shipping
    assert "Expected, not among the sources: <code>kb/shipping</code>" in shipping and "Recall@2 0.000" in shipping
    returns = row_of(page, 0)
    assert '<li class="relevant" data-source="kb/returns"><span aria-label="expected">✓</span>' in returns
    assert "chrF 55.0" in returns and "Precision 1.000" in returns

    client.cookies["django_language"] = "zh-hans"
    chinese = client.get(f"/evaluation/runs/{run.pk}/").content.decode()
    assert "Source recall@k" not in chinese and "Expected sources" not in chinese and "Recall@" not in chinese


def test_the_settings_card_sums_a_ranking_set_up_by_ndcg_and_links_its_run(project, ranking_set, signed_in):
    """A set of rankings alone has no chrF: its card showed an empty link where the run's score belongs."""
    run = ranking_run(project, ranking_set, [["wool", "rug", "mug"], ["mug", "wool", "tent"], ["mug"]], "default")
    page = signed_in(project, "owner").get("/settings/").content.decode()
    card = re.search(rf'<table class="list" data-reference-set="{ranking_set.pk}">(.*?)</table>', page, re.S).group(1)
    assert "<th>NDCG@k</th><th>Hit rate@k</th>" in card and "chrF" not in card
    assert re.search(rf'href="/evaluation/runs/{run.pk}/" class="run-link"[^>]*>0\.833</a>', card)
