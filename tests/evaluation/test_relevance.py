"""Ranking and retrieval references: a recommender's ranking scored against the items relevant for a profile (hit
rate, MRR, NDCG), a chatbot's sources against the knowledge-base documents expected (recall, precision); checked
when a set is saved, scored from real jobs on tiny models."""

from __future__ import annotations

import math

import pytest

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from atelier_platform.evaluation import relevance, services
from atelier_platform.evaluation.models import RunStatus
from atelier_platform.jobs.errors import InvalidJobInput
from atelier_platform.knowledge.services import upsert_document
from atelier_workers import knowledge
from tests.evaluation.conftest import chat_case
from tests.evaluation.test_runs import run_all

ITEMS = [
    {"id": "wool", "title": "Merino wool throw", "description": "A warm wool throw for cosy evenings on the sofa."},
    {"id": "mug", "title": "Stoneware coffee mug", "description": "A handmade mug for morning coffee."},
    {"id": "tent", "title": "Two-person tent", "description": "A light tent that packs small for camping."},
    {"id": "rug", "title": "Kilim wool rug", "description": "A geometric wool rug for the living room."},
]

RETURNS = "# Returns policy\n\n## Window\nReturns are accepted within 45 days of delivery, unused and in their box.\n"
SHIPPING = "# Shipping\n\n## Costs\nStandard shipping is free on orders over $75. Express delivery costs $12.\n"
WARRANTY = "# Warranty\n\n## Furniture\nSolid wood furniture carries a 5-year warranty against defects.\n"


def recommend_case(interests="I love warm wool for cosy evenings", **extra) -> dict:
    return {"input": {"profile": {"interests": interests}, "items": ITEMS, "count": 3, "variants": 1},
            "params": {"max_chars": 120}, **extra}


def ranked(*item_ids) -> dict:
    return {"recommendations": [{"rank": rank, "item_id": item_id, "title": item_id, "score": 0.5, "copy": []}
                                for rank, item_id in enumerate(item_ids, start=1)]}


def dcg(gains) -> float:
    return sum(gain / math.log2(position + 1) for position, gain in enumerate(gains, start=1))


class TestTheMetrics:
    def test_hit_rate_reciprocal_rank_and_ndcg_against_their_textbook_definitions(self):
        scored = relevance.score_ranking(ranked("mug", "wool", "tent"), ["wool", "rug"], None)
        assert scored["k"] == 3 and scored["hit"] == 1.0 and scored["reciprocal_rank"] == 0.5
        # DCG@3 of (0, 1, 0) over the ideal (1, 1, 0): the rug, relevant, was left out
        assert scored["ndcg"] == round(dcg([0, 1, 0]) / dcg([1, 1, 0]), 4)
        assert scored["ranked"] == [{"id": "mug", "gain": 0}, {"id": "wool", "gain": 1}, {"id": "tent", "gain": 0}]
        assert scored["missed"] == ["rug"]

        perfect = relevance.score_ranking(ranked("wool", "rug", "mug"), ["wool", "rug"], None)
        assert (perfect["hit"], perfect["reciprocal_rank"], perfect["ndcg"]) == (1.0, 1.0, 1.0)
        none = relevance.score_ranking(ranked("mug", "tent"), ["wool"], None)
        assert (none["hit"], none["reciprocal_rank"], none["ndcg"]) == (0.0, 0.0, 0.0)

    def test_graded_gains_and_a_stated_k(self):
        graded = {"rug": 3, "wool": 1}
        scored = relevance.score_ranking(ranked("wool", "rug", "mug"), graded, None)
        assert scored["ndcg"] == round(dcg([1, 3, 0]) / dcg([3, 1, 0]), 4)
        at_one = relevance.score_ranking(ranked("wool", "rug", "mug"), graded, 1)
        assert at_one["k"] == 1 and at_one["ndcg"] == round(1 / 3, 4) and at_one["missed"] == ["rug"]
        # a k beyond the items returned: the ideal order fills it, the missing places earn nothing (no tie credit)
        short = relevance.score_ranking(ranked("wool"), graded, 3)
        assert short["ndcg"] == round(dcg([1]) / dcg([3, 1]), 4)

    def test_a_single_candidate_is_scored_too(self):
        """scikit-learn refuses NDCG over one document: a filler makes it two without changing it."""
        assert relevance.score_ranking(ranked("wool"), ["wool"], None)["ndcg"] == 1.0
        assert relevance.ndcg_at_k([0], [1], 1) == 0.0

    def test_source_recall_and_precision_count_documents_not_passages(self):
        output = {"sources": [{"source_id": "returns", "chunk_id": "returns#0", "title": "Returns", "score": 0.9},
                              {"source_id": "returns", "chunk_id": "returns#1", "title": "Returns", "score": 0.8},
                              {"source_id": "shipping", "chunk_id": "shipping#0", "title": "Shipping", "score": 0.4}]}
        scored = relevance.score_retrieval(output, ["returns", "warranty"], None)
        assert scored["k"] == 3 and scored["recall"] == 0.5 and scored["precision"] == 0.5
        assert scored["cited"] == [{"source_id": "returns", "title": "Returns", "expected": True},
                                   {"source_id": "shipping", "title": "Shipping", "expected": False}]
        assert scored["missed"] == ["warranty"]
        first = relevance.score_retrieval(output, ["returns"], 1)
        assert (first["recall"], first["precision"]) == (1.0, 1.0)
        nothing = relevance.score_retrieval({"sources": []}, ["returns"], None)
        assert (nothing["recall"], nothing["precision"]) == (0.0, 0.0)

    def test_averages_are_over_the_answered_cases_that_have_the_reference(self):
        results = [{"reference_items": ["a"], "ranking": {"hit": 1.0, "reciprocal_rank": 1.0, "ndcg": 1.0}},
                   {"reference_items": ["a"], "ranking": {"hit": 0.0, "reciprocal_rank": 0.0, "ndcg": 0.0}},
                   {"reference_items": ["a"]},  # failed: not scored
                   {"reference": "text only"}]
        assert relevance.averages(results) == {"ranking_cases": 2, "hit_rate": 0.5, "mrr": 0.5, "ndcg": 0.5}
        assert relevance.averages([{"reference": "x"}]) == {}


# --- sets ------------------------------------------------------------------------------------------------------

@pytest.fixture
def recommender(project, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)
    return project


def index_now(document):
    knowledge.index_document(str(document.pk))


@pytest.fixture
def knowledge_base(project):
    for source_id, title, content in (("policies/returns", "Returns policy", RETURNS),
                                      ("policies/shipping", "Shipping", SHIPPING),
                                      ("policies/warranty", "Warranty", WARRANTY)):
        upsert_document(project, source_id=source_id, title=title, content=content, index_now=index_now)
    return project


def knowledge_case(question, sources, reference=None, **input_fields) -> dict:
    case = {"input": {"messages": [{"role": "user", "content": question}], "top_k": 2, **input_fields},
            "params": {"max_new_tokens": 8}, "reference_sources": sources}
    if reference is not None:
        case["reference"] = reference
    return case


def refusal(project, plugin, cases) -> dict:
    with pytest.raises(InvalidJobInput) as refused:
        services.create_reference_set(project, plugin_id=plugin, name="n", cases=cases, actor="test")
    return refused.value.details


@pytest.mark.django_db
class TestSets:
    def test_relevant_items_instead_of_a_reference_text_as_a_list_or_graded(self, recommender):
        cases = [recommend_case(reference_items=["wool", "rug"]), recommend_case(reference_items={"rug": 2, "wool": 1}, k=2),
                 recommend_case(reference="Copy we like.", reference_items=["wool"])]
        saved = services.create_reference_set(recommender, plugin_id="recommender_copy", name="n", cases=cases,
                                              actor="test").cases
        assert saved[0]["reference"] is None and saved[0]["reference_items"] == ["wool", "rug"] and "k" not in saved[0]
        assert saved[1]["reference_items"] == {"rug": 2, "wool": 1} and saved[1]["k"] == 2
        assert saved[2]["reference"] == "Copy we like."

    def test_relevant_items_must_be_among_the_cases_candidates_and_the_refusal_names_them(self, recommender):
        details = refusal(recommender, "recommender_copy", [
            recommend_case(reference_items=["wool"]), recommend_case(reference_items=["wool", "sofa"]),
            recommend_case(reference_items={"rug": 0, "nope": 1}), recommend_case(reference_items=["mug", "mug"]),
            recommend_case(reference_items=[]), recommend_case(reference_items="wool"), recommend_case(),
            recommend_case(reference="x", k=2), recommend_case(reference_items=["wool"], k=11),
            recommend_case(reference_items=["wool"], reference_sources=["x"])])
        assert "No candidate item of this case has the id 'sofa'" in details["cases.1.reference_items.1"][0]
        assert set(details) == {"cases.1.reference_items.1", "cases.2.reference_items.rug", "cases.2.reference_items.nope",
                                "cases.3.reference_items.1", "cases.4.reference_items", "cases.5.reference_items",
                                "cases.6.reference", "cases.7.k", "cases.8.k", "cases.9"}
        assert "reference_items" in details["cases.6.reference"][0]  # a case needs one reference or another
        assert "reference_sources" in details["cases.9"][0]  # a chatbot's kind is not a recommender's

    def test_more_relevant_items_than_a_case_has_candidates_are_refused_whole(self, recommender):
        """100,000 repeated ids were 100,000 refusals: a request of a megabyte answered with one of forty."""
        details = refusal(recommender, "recommender_copy", [recommend_case(reference_items=["wool"] * 100_000),
                                                            recommend_case(reference_items={str(n): 1 for n in range(201)})])
        assert details == {"cases.0.reference_items": ["At most 200 relevant items (a case has at most 200 candidates)."],
                           "cases.1.reference_items": ["At most 200 relevant items (a case has at most 200 candidates)."]}

    def test_expected_sources_are_documents_of_the_projects_knowledge_base_by_id_or_title(self, knowledge_base, chatbot):
        set_plugin_enabled(knowledge_base, "chatbot", True)
        saved = services.create_reference_set(knowledge_base, plugin_id="chatbot", name="n", actor="test", cases=[
            knowledge_case("How long do I have to return a rug?", ["Returns policy"]),
            knowledge_case("Is delivery free?", ["policies/shipping", "warranty"], reference="Over $75.")]).cases
        assert saved[0]["reference_sources"] == ["policies/returns"] and saved[0]["reference"] is None
        assert saved[1]["reference_sources"] == ["policies/shipping", "policies/warranty"]

    def test_an_unknown_or_foreign_document_is_refused_naming_the_case(self, knowledge_base, chatbot, other_project):
        set_plugin_enabled(knowledge_base, "chatbot", True)
        upsert_document(other_project, source_id="secret", title="Secret", content=RETURNS, index_now=index_now)
        details = refusal(knowledge_base, "chatbot", [
            knowledge_case("q", ["policies/returns"]), knowledge_case("q", ["secret"]),
            knowledge_case("q", ["policies/returns"], use_knowledge=False), knowledge_case("q", []),
            knowledge_case("q", ["Returns policy", "policies/returns"]), {**chat_case("q", "r"), "reference_items": ["a"]}])
        assert set(details) == {"cases.1.reference_sources.0", "cases.2.reference_sources", "cases.3.reference_sources",
                                "cases.4.reference_sources.1", "cases.5"}
        assert "no document with the id or title 'secret'" in details["cases.1.reference_sources.0"][0]

    def test_a_changed_set_is_checked_against_the_knowledge_base_too(self, knowledge_base, chatbot):
        set_plugin_enabled(knowledge_base, "chatbot", True)
        reference_set = services.create_reference_set(knowledge_base, plugin_id="chatbot", name="n", actor="test",
                                                      cases=[knowledge_case("q", ["Shipping"])])
        with pytest.raises(InvalidJobInput) as refused:
            services.update_reference_set(reference_set, actor="test", cases=[knowledge_case("q", ["Gone"])])
        assert set(refused.value.details) == {"cases.0.reference_sources.0"}


# --- runs --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def copy_models_root(tmp_path_factory):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
    from tests.support.tiny_recommender import build_tiny_copy_lm

    root = tmp_path_factory.mktemp("recommender-evaluation-models")
    build_tiny_copy_lm(root / RecommenderCopyPlugin.manifest.default_model_dir)
    return root


@pytest.mark.django_db(transaction=True)
def test_a_recommender_run_scores_its_rankings_and_the_copy_where_a_case_has_a_text(recommender, copy_models_root,
                                                                                  monkeypatch):
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: copy_models_root))
    cases = [recommend_case(reference_items=["wool", "rug"]),
             recommend_case("Camping trips in the mountains", reference_items={"tent": 2}, reference="A light tent."),
             recommend_case("Coffee every morning", reference_items=["rug"], k=1)]
    reference_set = services.create_reference_set(recommender, plugin_id="recommender_copy", name="rank", cases=cases,
                                                  actor="test")
    run = run_all(services.start_run(recommender, reference_set, actor="test"))
    assert run.status == RunStatus.SUCCEEDED, run.results
    wool, tent, coffee = run.results
    # the real ranking (the packaged MiniLM): wool things first for wool, the tent for camping, the mug for coffee
    assert {entry["id"] for entry in wool["ranking"]["ranked"][:2]} == {"wool", "rug"}
    assert (wool["ranking"]["hit"], wool["ranking"]["reciprocal_rank"], wool["ranking"]["ndcg"]) == (1.0, 1.0, 1.0)
    assert wool["chrf"] is None and tent["chrf"] is not None  # the copy only where a text is expected
    assert tent["ranking"]["ranked"][0] == {"id": "tent", "gain": 2} and tent["ranking"]["ndcg"] == 1.0
    assert coffee["ranking"]["k"] == 1 and coffee["ranking"]["ranked"][0]["id"] == "mug"
    assert (coffee["ranking"]["hit"], coffee["ranking"]["ndcg"]) == (0.0, 0.0)
    metrics = run.metrics
    assert metrics["ranking_cases"] == 3 and metrics["hit_rate"] == round(2 / 3, 4)
    assert metrics["mrr"] == round(2 / 3, 4) and metrics["ndcg"] == round(2 / 3, 4)
    assert metrics["chrf"] is not None and metrics["mean_case_chrf"] == tent["chrf"]  # over the one text case


@pytest.mark.django_db(transaction=True)
def test_a_chatbot_run_scores_the_sources_its_answers_were_grounded_in(knowledge_base, chat_project):
    reference_set = services.create_reference_set(knowledge_base, plugin_id="chatbot", name="kb", actor="test", cases=[
        knowledge_case("How many days do I have to return an unused item?", ["Returns policy"]),
        knowledge_case("Is standard shipping free over $75?", ["Shipping", "Warranty"], reference="Yes, over $75."),
        knowledge_case("Hello there", ["Warranty"], top_k=1),
        chat_case("Text only", "reference text")])
    run = run_all(services.start_run(knowledge_base, reference_set, actor="test"))
    assert run.status == RunStatus.SUCCEEDED, run.results
    returns, shipping, warranty, text_only = run.results
    assert returns["retrieval"]["cited"][0] == {"source_id": "policies/returns", "title": "Returns policy > Window",
                                               "expected": True}  # the title of its first passage
    assert returns["retrieval"]["recall"] == 1.0 and returns["retrieval"]["precision"] == 0.5  # 2 passages, 2 documents
    cited = [source["source_id"] for source in shipping["retrieval"]["cited"]]
    assert cited[0] == "policies/shipping" and shipping["retrieval"]["missed"] == (
        [] if "policies/warranty" in cited else ["policies/warranty"])
    assert shipping["retrieval"]["recall"] == (1.0 if "policies/warranty" in cited else 0.5)
    assert warranty["retrieval"]["k"] == 1 and len(warranty["retrieval"]["cited"]) == 1
    assert "retrieval" not in text_only and text_only["chrf"] is not None
    expected_recall = round((1.0 + shipping["retrieval"]["recall"] + warranty["retrieval"]["recall"]) / 3, 4)
    assert run.metrics["retrieval_cases"] == 3 and run.metrics["source_recall"] == expected_recall
    assert run.metrics["mean_case_chrf"] == round((shipping["chrf"] + text_only["chrf"]) / 2, 2)


# --- the API and the uploads ---------------------------------------------------------------------------------

@pytest.fixture
def admin_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin", "jobs:read", "jobs:write"]).raw)


def upload(client, content: str, *, filename="cases.csv", plugin="chatbot", name="support"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/v1/evaluation/reference-sets/upload/",
                       {"plugin": plugin, "name": name, "file": SimpleUploadedFile(filename, content.encode())},
                       format="multipart")


@pytest.mark.django_db
class TestOverTheApi:
    def test_a_csv_names_the_expected_sources_by_bars_or_a_json_list(self, knowledge_base, chatbot, admin_api):
        set_plugin_enabled(knowledge_base, "chatbot", True)
        created = upload(admin_api, 'question,reference,reference_sources\n'
                                    'Can I return it?,Within 45 days.,Returns policy | policies/shipping\n'
                                    'Is delivery free?,,"[""Shipping""]"\n'
                                    'Hello?,Hello.,\n')
        assert created.status_code == 201, created.content
        cases = created.json()["cases"]
        assert cases[0]["reference_sources"] == ["policies/returns", "policies/shipping"]
        assert cases[1]["reference"] is None and cases[1]["reference_sources"] == ["policies/shipping"]
        assert "reference_sources" not in cases[2] and cases[2]["reference"] == "Hello."
        # without a reference column: each case's sources are its reference
        only = upload(admin_api, "question,reference_sources\nCan I return it?,policies/returns\n", name="only")
        assert only.status_code == 201, only.content

    def test_a_csvs_unknown_sources_and_bad_lists_are_named_by_line_and_column(self, knowledge_base, chatbot, admin_api):
        set_plugin_enabled(knowledge_base, "chatbot", True)
        unknown = upload(admin_api, "question,reference,reference_sources\nA?,a,policies/returns\nB?,b,Nowhere|Shipping\n"
                                    "C?,,\n")
        assert unknown.status_code == 400
        assert unknown.json()["error"]["details"]["file"] == [
            "Line 3, reference_sources: The project's knowledge base has no document with the id or title 'Nowhere'.",
            "Line 4, reference: The expected answer, a non-empty text."]
        bad = upload(admin_api, 'question,reference_sources\nA?,"[""Shipping"""\n')
        assert bad.status_code == 400 and bad.json()["error"]["details"]["file"] == [
            'Line 2: reference_sources: a cell that starts with [ is a JSON list, such as ["a", "b"]; else separate the '
            'names with |.']

    def test_json_lines_take_relevant_items_and_a_refusal_names_the_line_and_the_item(self, recommender, admin_api):
        import json

        good = json.dumps(recommend_case(reference_items={"wool": 2, "rug": 1}, k=2))
        created = upload(admin_api, good + "\n", filename="cases.jsonl", plugin="recommender_copy")
        assert created.status_code == 201, created.content
        assert created.json()["cases"][0]["reference_items"] == {"wool": 2, "rug": 1}
        bad = upload(admin_api, good + "\n" + json.dumps(recommend_case(reference_items=["wool", "sofa"])) + "\n",
                     filename="cases.jsonl", plugin="recommender_copy", name="bad")
        assert bad.status_code == 400 and bad.json()["error"]["details"]["file"] == [
            "Line 2, reference_items.1: No candidate item of this case has the id 'sofa': name one of the case's input "
            "items."]

    def test_the_run_detail_shows_the_ranking_metrics_and_the_schema_documents_them(self, recommender, admin_api, api):
        from atelier_platform.evaluation.models import EvaluationRun
        from atelier_platform.jobs.models import Job, JobPurpose

        reference_set = services.create_reference_set(recommender, plugin_id="recommender_copy", name="rank",
                                                      cases=[recommend_case(reference_items=["wool"])], actor="test")
        case = reference_set.cases[0]
        job = Job.objects.create(project=recommender, plugin_id="recommender_copy", status="succeeded", seed=0,
                                 purpose=JobPurpose.EVALUATION, input=case["input"])
        result = {"index": 0, "job_id": str(job.pk), "reference": None, "output": "", "chrf": None,
                  "status": "succeeded", "error": None, "reference_items": ["wool"],
                  "ranking": relevance.score_ranking(ranked("mug", "wool"), ["wool"], None)}
        run = EvaluationRun.objects.create(project=recommender, reference_set=reference_set, plugin_id="recommender_copy",
                                           status=RunStatus.SUCCEEDED, cases_total=1, cases_done=1, results=[result],
                                           metrics={"cases": 1, "succeeded": 1, "failed": 0,
                                                    **relevance.averages([result])})
        body = api.get(f"/api/v1/evaluation/runs/{run.pk}/").json()  # any member reads it
        assert body["metrics"]["ndcg"] == round(1 / math.log2(3), 4) and body["metrics"]["mrr"] == 0.5
        assert body["results"][0]["ranking"]["ranked"] == [{"id": "mug", "gain": 0}, {"id": "wool", "gain": 1}]
        schema = admin_api.get("/api/v1/schema/?format=json").json()["components"]["schemas"]
        assert {"hit_rate", "mrr", "ndcg", "source_recall", "source_precision"} <= set(schema["RunMetrics"]["properties"])
        assert {"ranking", "retrieval", "reference_items", "reference_sources"} <= set(schema["CaseResult"]["properties"])
        assert {"reference_items", "reference_sources", "k"} <= set(schema["Case"]["properties"])
        assert "reference" not in schema["Case"].get("required", [])


@pytest.mark.django_db
def test_the_dashboard_words_the_new_refusals_by_their_code_in_chinese(recommender):
    from django.utils import translation

    from atelier_frontend.evaluation_words import CASE_ERRORS
    from atelier_frontend.field_errors import shown_details

    with pytest.raises(InvalidJobInput) as refused:
        services.create_reference_set(recommender, plugin_id="recommender_copy", name="n", actor="test", cases=[
            recommend_case(reference_items=["sofa"]), recommend_case(), recommend_case(reference_items={"rug": 0}),
            recommend_case(reference_items=["wool"] * 201)])
    with translation.override("zh-hans"):
        shown = shown_details(refused.value, CASE_ERRORS)
    assert shown["cases.0.reference_items.0"] == ["该用例的候选商品中没有 ID 为 sofa 的商品：请指定用例输入中的商品。"]
    assert shown["cases.1.reference"] == ["预期回答（非空文本）或 reference_items：每个用例至少需要一种参考。"]
    assert shown["cases.2.reference_items.rug"] == ["增益：大于 0 且不超过 100 的数。"]
    assert shown["cases.3.reference_items"] == ["最多 200 个相关商品（一个用例最多有 200 个候选商品）。"]
