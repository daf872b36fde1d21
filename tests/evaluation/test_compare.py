"""GET /api/v1/evaluation/runs/{id}/compare/?to=...: two ended runs of a set, metric by metric (which way is better)
and case by case, worst regression first; refused clearly for runs that do not compare."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import comparison, services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job
from tests.evaluation.test_runs import make_set, run_all

RUNS = "/api/v1/evaluation/runs/"


def compare(client, run, to, **query):
    return client.get(f"{RUNS}{run.pk}/compare/", {"to": str(to.pk) if hasattr(to, "pk") else to, **query})


@pytest.mark.django_db(transaction=True)
def test_a_new_version_against_the_current_one_metric_by_metric_and_worst_case_first(chat_project, api):
    # References that are the current model's own answers: it scores 100 on each, another version less.
    probe = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="probe"), actor="t"))
    reference_set = make_set(chat_project, [case["output"] for case in probe.results], name="own answers")
    current = run_all(services.start_run(chat_project, reference_set, actor="test"))
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    candidate = services.start_run(chat_project, reference_set, model_version_id=v2.pk, actor="test")
    lifecycle.cancel_job(Job.objects.get(evaluation_case__run=candidate, evaluation_case__index=2))
    candidate = run_all(candidate)
    assert current.metrics["chrf"] == 100.0 and candidate.metrics["chrf"] < 100.0

    response = compare(api, candidate, current)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["run"]["id"] == str(candidate.pk) and body["to"]["id"] == str(current.pk)
    assert body["run"]["model_version"] == {"id": v2.pk, "version": "v2"} and body["to"]["model_version"] is None
    assert body["case_score"] == "chrf" and body["set_changed"] is False
    metrics = {m["name"]: m for m in body["metrics"]}
    assert set(metrics) == {"chrf", "bleu", "mean_case_chrf", "failed"}
    assert {m["better"] for name, m in metrics.items() if name != "failed"} == {"higher"}
    assert (metrics["failed"]["better"], metrics["failed"]["run"], metrics["failed"]["to"]) == ("lower", 1, 0)
    chrf = metrics["chrf"]
    assert (chrf["run"], chrf["to"]) == (candidate.metrics["chrf"], 100.0)
    assert chrf["delta"] == pytest.approx(candidate.metrics["chrf"] - 100.0) and chrf["change"] == "regressed"

    cases = body["cases"]
    assert cases["count"] == 3 and cases["next"] is None
    # the case the candidate failed first, then the answered ones by how far they fell
    assert cases["results"][0]["index"] == 2 and cases["results"][0]["change"] == "newly_failed"
    assert cases["results"][0]["error"] == "cancelled" and cases["results"][0]["to_status"] == "succeeded"
    scored = cases["results"][1:]
    assert [c["change"] for c in scored] == ["scored", "scored"]
    assert [c["delta"] for c in scored] == sorted(c["delta"] for c in scored)
    for case in scored:
        assert case["delta"] == pytest.approx(case["score"] - 100.0) and case["to_score"] == 100.0
        assert case["output"] == candidate.results[case["index"]]["output"]
        assert case["to_output"] == current.results[case["index"]]["output"]

    # The other way round: the current version improves on the candidate, and the case it answers comes last.
    back = compare(api, current, candidate).json()
    assert {m["name"]: m["change"] for m in back["metrics"]}["chrf"] == "improved"
    assert back["cases"]["results"][-1]["change"] == "fixed"

    # Paged: a page of one, then the next through its link.
    first = compare(api, candidate, current, limit=1).json()["cases"]
    assert [c["index"] for c in first["results"]] == [2] and "offset=1" in first["next"]
    second = api.get(first["next"]).json()["cases"]
    assert second["offset"] == 1 and second["results"][0]["index"] == cases["results"][1]["index"]


def ended_run(project, reference_set, *, chrf, status=RunStatus.SUCCEEDED, plugin="chatbot", metrics=None, **fields):
    fields.setdefault("results", [{"index": 0, "job_id": None, "status": "succeeded", "output": "x", "reference": "r",
                                   "chrf": chrf, "error": None}])
    return EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id=plugin, status=status, cases_total=1, cases_done=1,
        finished_at=timezone.now() if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED) else None,
        metrics=metrics if metrics is not None else {"chrf": chrf, "bleu": chrf / 2, "mean_case_chrf": chrf}, **fields)


@pytest.mark.django_db
class TestRefused:
    @pytest.fixture
    def runs(self, project):
        reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
        return reference_set, ended_run(project, reference_set, chrf=50.0), ended_run(project, reference_set, chrf=60.0)

    def test_without_to_or_with_no_id(self, api, runs):
        _, run, _ = runs
        for query in ({}, {"to": "not-an-id"}):
            response = api.get(f"{RUNS}{run.pk}/compare/", query)
            assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
            assert "to" in response.json()["error"]["details"]

    def test_a_page_out_of_bounds(self, api, runs):
        _, run, to = runs
        for query in ({"limit": 0}, {"limit": comparison.MAX_CASE_LIMIT + 1}, {"offset": -1}, {"limit": "many"}):
            response = compare(api, run, to, **query)
            assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", query

    def test_the_run_itself_and_a_run_of_another_set(self, api, project, runs):
        _, run, _ = runs
        response = compare(api, run, run)
        assert response.status_code == 400 and response.json()["error"]["code"] == "evaluation_runs_not_comparable"
        other_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="other", cases=[])
        response = compare(api, run, ended_run(project, other_set, chrf=10.0))
        assert response.status_code == 400 and response.json()["error"]["code"] == "evaluation_runs_not_comparable"
        assert "another reference set" in response.json()["error"]["message"]

    def test_another_projects_run_and_an_unknown_one_are_not_found(self, api, other_project, runs):
        _, run, _ = runs
        theirs_set = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="s", cases=[])
        theirs = ended_run(other_project, theirs_set, chrf=99.0)
        for to in (theirs, uuid.uuid4()):
            response = compare(api, run, to if hasattr(to, "pk") else str(to))
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
            assert "99.0" not in response.content.decode()
        assert compare(api, theirs, run).status_code == 404  # nor is theirs compared from ours

    def test_a_run_going_or_still_being_scored(self, api, project, runs):
        reference_set, run, _ = runs
        going = ended_run(project, reference_set, chrf=0.0, status=RunStatus.RUNNING, metrics={})
        response = compare(api, run, going)
        assert response.status_code == 409 and response.json()["error"]["code"] == "evaluation_run_not_finished"
        assert response.json()["error"]["details"] == {"to": {"id": str(going.pk), "status": "running"}}
        # a cancelled image run whose answered cases a worker still scores has not ended for a comparison
        scoring = ended_run(project, reference_set, chrf=0.0, status=RunStatus.CANCELLED, scoring_sent_at=timezone.now())
        response = compare(api, scoring, run)
        assert response.status_code == 409 and "still being scored" in response.json()["error"]["message"]

    def test_a_key_without_jobs_read_is_refused(self, project, make_key, client_for, runs):
        _, run, to = runs
        response = compare(client_for(make_key(project, scopes=["reviews:read"]).raw), run, to)
        assert response.status_code == 403


@pytest.mark.django_db
def test_image_runs_compare_fid_and_kid_lower_is_better(project):
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="image", name="pictures", cases=[])

    def image_run(fid, kid, similarity):
        return ended_run(project, reference_set, chrf=None, plugin="image",
                         metrics={"fid": fid, "kid": kid, "mean_similarity": similarity, "scoring": "done"})

    candidate, baseline = image_run(12.0, 0.02, 0.8), image_run(10.0, 0.03, 0.9)
    compared = comparison.compare(candidate, baseline)
    shown = {change.name: (change.better, change.delta, change.change) for change in compared.metrics}
    assert shown.pop("failed") == ("lower", None, None)  # these runs' metrics count no cases
    assert shown == {"fid": ("lower", 2.0, "regressed"), "kid": ("lower", -0.01, "improved"),
                     "mean_similarity": ("higher", pytest.approx(-0.1), "regressed")}
    assert compared.metric("fid").drop == 2.0 and compared.metric("kid").drop == -0.01
    assert compared.metric("mean_similarity").drop == pytest.approx(0.1)
    # a figure a run lacks (FID of one image) compares to nothing
    lonely = image_run(None, None, 0.7)
    assert comparison.compare(lonely, baseline).metric("fid").change is None


@pytest.mark.django_db
def test_a_changed_set_is_said(project):
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
    before = ended_run(project, reference_set, chrf=50.0)
    after = ended_run(project, reference_set, chrf=50.0)
    after.results = [{**after.results[0], "reference": "another"}]
    assert comparison.compare(after, before).set_changed
    assert comparison.compare(after, before).cases[0].reference_changed


@pytest.mark.django_db
def test_a_case_asked_with_another_input_under_the_same_reference_is_a_changed_set(project, api):
    """Each run keeps a fingerprint of each case's input and params: a question edited, its expected answer kept,
    asks something else, so the two runs' figures measure other questions and no gate can hold."""
    from atelier_platform.evaluation import gate

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
    before = ended_run(project, reference_set, chrf=50.0)
    after = ended_run(project, reference_set, chrf=50.0)
    for run, fingerprint in ((before, "a" * 64), (after, "b" * 64)):
        run.results[0]["input_sha256"] = fingerprint
        run.save(update_fields=["results"])
    compared = comparison.compare(after, before)
    assert compared.set_changed and compared.changed_cases() == (0,) and compared.inputs_compared
    assert compared.cases[0].input_changed and not compared.cases[0].reference_changed
    held = gate.check(compared, {"chrf": 100.0})
    assert not any(result.passed for result in held)
    assert "the reference set was changed between the runs (cases #0)" in held[0].reason
    body = compare(api, after, before).json()
    assert body["set_changed"] is True and body["inputs_compared"] is True
    assert body["cases"]["results"][0]["input_changed"] is True
    assert body["cases"]["results"][0]["reference_changed"] is False
    schema = api.get("/api/v1/schema/?format=json").json()["components"]["schemas"]
    assert "input_sha256" in schema["CaseResult"]["properties"]
    assert "input_sha256" not in schema["CaseResult"].get("required", [])  # older runs have none
    assert "input_changed" in schema["CaseChange"]["properties"] and "inputs_compared" in schema["RunComparison"]["properties"]


@pytest.mark.django_db
def test_runs_started_before_inputs_were_fingerprinted_compare_as_before_and_say_so(project, api):
    """An older run has no fingerprint: its cases compare by their references alone (not failed for it), and the
    comparison says an edited input could not be seen."""
    from atelier_platform.evaluation import gate

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
    figures = {"chrf": 50.0, "bleu": 25.0, "mean_case_chrf": 50.0, "failed": 0}
    old = ended_run(project, reference_set, chrf=50.0, metrics=figures)
    new = ended_run(project, reference_set, chrf=50.0, metrics=figures)
    new.results[0]["input_sha256"] = "c" * 64
    new.save(update_fields=["results"])
    for run, to in ((new, old), (old, new)):
        compared = comparison.compare(run, to)
        assert not compared.set_changed and not compared.cases[0].input_changed and not compared.inputs_compared
        assert all(result.passed for result in gate.check(compared, {"chrf": 0.0}))
    body = compare(api, new, old).json()
    assert body["set_changed"] is False and body["inputs_compared"] is False
    assert body["cases"]["results"][0]["input_changed"] is False


@pytest.mark.django_db
def test_ranking_runs_compare_their_ndcg_hit_rate_and_mrr_case_by_case_and_a_gate_holds_them(project):
    """A recommender set of relevant items: its runs compare (and are gated) by the ranking metrics, each case by its
    NDCG; a set without them has no NDCG, and a gate on it cannot pass."""
    from atelier_platform.evaluation import gate

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="recommender_copy", name="rank", cases=[])

    def ranking_run(ndcg, case_ndcgs):
        return ended_run(project, reference_set, chrf=None, plugin="recommender_copy",
                         metrics={"chrf": None, "bleu": None, "ranking_cases": len(case_ndcgs), "ndcg": ndcg,
                                  "hit_rate": 1.0, "mrr": ndcg},
                         results=[{"index": index, "job_id": None, "status": "succeeded", "output": "x",
                                   "reference": None, "reference_items": ["wool"], "chrf": None, "error": None,
                                   "ranking": {"k": 3, "hit": 1.0, "reciprocal_rank": value, "ndcg": value}}
                                  for index, value in enumerate(case_ndcgs)])

    candidate, baseline = ranking_run(0.6, [1.0, 0.2]), ranking_run(0.8, [0.9, 0.7])
    compared = comparison.compare(candidate, baseline)
    shown = {change.name: change.delta for change in compared.metrics}
    assert set(shown) == {"chrf", "bleu", "mean_case_chrf", "ndcg", "hit_rate", "mrr", "failed"}  # no source metrics
    assert shown["ndcg"] == pytest.approx(-0.2) and compared.metric("ndcg").change == "regressed"
    assert [(pair.index, pair.delta) for pair in compared.cases] == [(1, pytest.approx(-0.5)), (0, pytest.approx(0.1))]
    assert comparison.score_path(compared.cases[0].score) == "ranking.ndcg"
    held = gate.check(compared, {"ndcg": 0.25})[1]
    failed = gate.check(compared, {"ndcg": 0.1})[1]
    assert held.passed and not failed.passed and "ndcg dropped by 0.2" in failed.reason

    text_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="text", cases=[])
    text = comparison.compare(ended_run(project, text_set, chrf=50.0), ended_run(project, text_set, chrf=40.0))
    assert "ndcg" not in {change.name for change in text.metrics}
    absent = gate.check(text, {"ndcg": 1.0})[1]
    assert not absent.passed and "could not be compared" in absent.reason


@pytest.mark.django_db
def test_a_run_that_fails_more_cases_than_its_baseline_fails_the_gate_unless_a_failed_limit_allows_it(project):
    """Metrics average the answered cases only: a version failing most of a set scored as well as one answering it
    all, and passed every limit."""
    from atelier_platform.evaluation import gate

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
    baseline = ended_run(project, reference_set, chrf=80.0)
    baseline.metrics.update(cases=10, succeeded=10, failed=0)
    candidate = ended_run(project, reference_set, chrf=81.0)
    candidate.metrics.update(cases=10, succeeded=1, failed=9)
    compared = comparison.compare(candidate, baseline)
    results = {result.metric: result for result in gate.check(compared, {"chrf": 1.0})}
    assert results["chrf"].passed and not results["failed"].passed
    assert results["failed"].reason == ("1 of 10 cases answered, against 10 of 10 in the baseline: 9 more failed "
                                        "(at most 0 more allowed)")
    assert all(result.passed for result in gate.check(compared, {"chrf": 1.0, "failed": 9}))
    assert gate.check(compared, {}) == []  # no limit asked: nothing gated


def hundred_cases(project, reference_set, *, status, answered, chrf):
    """A run of 100 cases of which the first ``answered`` were answered (each chrF ``chrf``), the others failed, as a
    run cancelled part-way (or whose jobs timed out) has them."""
    results = [{"index": index, "job_id": None, "reference": "r", "status": "succeeded", "output": "x", "chrf": chrf,
                "error": None} if index < answered else
               {"index": index, "job_id": None, "reference": "r", "status": "failed", "output": None, "chrf": None,
                "error": {"code": "cancelled", "message": "The run was cancelled before this case finished."}}
               for index in range(100)]
    run = ended_run(project, reference_set, chrf=chrf, status=status, results=results,
                    metrics={"chrf": chrf, "bleu": chrf / 2, "mean_case_chrf": chrf, "cases": 100,
                             "succeeded": answered, "failed": 100 - answered})
    EvaluationRun.objects.filter(pk=run.pk).update(cases_total=100, cases_done=100, cases_failed=100 - answered)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_cancelled_run_is_never_gated_and_one_answering_fewer_cases_fails_saying_how_many_of_how_many(project):
    """A run cancelled with 3 of 100 cases answered, those 3 well: its metrics average those 3 and beat a complete
    baseline's. It compares (the run page, the API), but no gate measures it, as the candidate nor as the baseline,
    whatever the limits (a failed=100 allowed every failure); a succeeded run answering 3 of 100 (its other jobs timed
    out) fails, naming the cases answered of how many, unless a failed limit allows that many more."""
    from atelier_platform.evaluation import gate

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="s", cases=[])
    baseline = hundred_cases(project, reference_set, status=RunStatus.SUCCEEDED, answered=100, chrf=70.0)
    cancelled = hundred_cases(project, reference_set, status=RunStatus.CANCELLED, answered=3, chrf=95.0)
    generous = {"chrf": 1.0, "failed": 100}
    compared = comparison.compare(cancelled, baseline)
    assert compared.metric("chrf").change == "improved"  # what a gate passed
    with pytest.raises(gate.GateError) as refused:
        gate.check(compared, generous)
    assert refused.value.message.startswith(f"Run {cancelled.pk}, the run, was cancelled with 3 of 100 cases answered: "
                                            "only a succeeded run, every case asked, can be gated")
    assert refused.value.details["answered"] == 3 and refused.value.details["cases"] == 100
    later = hundred_cases(project, reference_set, status=RunStatus.SUCCEEDED, answered=100, chrf=70.0)
    with pytest.raises(gate.GateError, match=f"Run {cancelled.pk}, the baseline, was cancelled with 3 of 100"):
        gate.check(comparison.compare(later, cancelled), generous)
    assert gate.check(compared, {}) == []  # no limit asked: nothing gated, nothing refused

    partial = hundred_cases(project, reference_set, status=RunStatus.SUCCEEDED, answered=3, chrf=95.0)
    results = {result.metric: result for result in gate.check(comparison.compare(partial, baseline), {"chrf": 1.0})}
    assert results["chrf"].passed and not results["failed"].passed
    assert results["failed"].reason == ("3 of 100 cases answered, against 100 of 100 in the baseline: 97 more failed "
                                        "(at most 0 more allowed)")
    assert results["failed"].as_dict()["answered"] == {"run": {"answered": 3, "cases": 100},
                                                       "to": {"answered": 100, "cases": 100}}
    allowed = gate.check(comparison.compare(partial, baseline), {"chrf": 1.0, "failed": 97})
    assert all(result.passed for result in allowed)
    assert allowed[0].reason == ("3 of 100 cases answered, against 100 of 100 in the baseline: 97 more failed (at most "
                                 "97 more allowed)")
    fixed = gate.check(comparison.compare(baseline, partial), {"chrf": 30.0})[0]
    assert fixed.passed and fixed.reason == "failed held (100 of 100 cases answered, against 3 of 100 in the baseline)"
