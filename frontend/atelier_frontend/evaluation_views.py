"""An evaluation run's page: its progress while its jobs run, then each case's question, the model's answer, the
reference and the case's chrF, and where the case gives them its ranking against the relevant items (hit, MRR, NDCG)
or its sources against those expected (recall, precision), worst first by the run's primary metric, failed cases
with their error (an image run: the prompt, the reference
image beside the generated one and their similarity, FID and KID above); beside it, another run of the same
reference set, answer against answer. Members of the project read it; another project's run is not found. Owners
cancel a run while it goes (``run_cancel``)."""

from __future__ import annotations

import uuid

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from atelier_platform.accounts.roles import Capability
from atelier_platform.evaluation.models import EvaluationRun, RunStatus
from atelier_platform.jobs.models import Job

from atelier_frontend.projects import needs

#: how the cases are listed: the worst answer first (failed, then lowest chrF), in the set's order, or (with a
#: run to compare) the largest difference between the two answers' chrF first
ORDERS = ("worst", "set", "difference")
REFRESH_MS = 3000


def _run_of(project, run_id) -> EvaluationRun:
    run = (EvaluationRun.objects.filter(project=project, pk=run_id)
           .select_related("reference_set", "model_version").first())
    if run is None:
        raise Http404(_("No such evaluation run in this project."))
    return run


def _model_words(run: EvaluationRun) -> str:
    if run.model_version is not None:
        return f"{run.model_version.version} · {run.model_version.model_dir}"
    named = (run.metrics or {}).get("model_versions") or []
    return _("current model: %(model)s") % {"model": ", ".join(named) if named else _("the plugin's default model")}


def _questions(run: EvaluationRun, results: list[dict]) -> dict[str, str]:
    """Each case's question as its job was asked it (the set may have changed since), by job id."""
    from atelier_frontend.views import _summary

    job_ids = [r["job_id"] for r in results if r.get("job_id")]
    return {str(pk): _summary(data, 400, run.plugin_id)
            for pk, data in Job.objects.filter(project=run.project_id, pk__in=job_ids).values_list("pk", "input")}


def _badness(result: dict | None, primary: str = "chrf") -> tuple:
    """Lower is worse: a failed case first, then the lowest primary score; cases without one (a mixed set's text-only
    ones) after those that have it, by their chrF."""
    if result is None or result.get("status") == "failed":
        return (0, 0.0)
    from atelier_platform.evaluation.comparison import score_of

    value = score_of(result, primary)
    if value is not None:
        return (1, value)
    chrf = result.get("chrf")
    return (2, float(chrf) if chrf is not None else -1.0)


@needs(Capability.JOBS_READ)
def run_page(request, here, run_id):
    from atelier_frontend.views import page

    run = _run_of(here.project, run_id)
    if request.GET.get("part") == "live":
        return render(request, "atelier_frontend/_evaluation_progress.html", {"run": run, "model": _model_words(run)})
    others = list(EvaluationRun.objects.filter(project=here.project, reference_set=run.reference_set)
                  .exclude(pk=run.pk).filter(status=RunStatus.SUCCEEDED).select_related("model_version")
                  .defer("results").order_by("-created_at")[:50])
    compared = None
    raw = request.GET.get("compare", "")
    if raw:
        try:
            compare_id = uuid.UUID(raw)
        except ValueError:
            raise Http404(_("No such evaluation run in this project.")) from None
        # only a run of the same set (of this project, then): another's reads as none at all
        compared = (EvaluationRun.objects.filter(project=here.project, reference_set=run.reference_set, pk=compare_id)
                    .exclude(pk=run.pk).select_related("model_version").first())
        if compared is None:
            raise Http404(_("No such evaluation run of this reference set."))
    order = request.GET.get("order", "worst")
    if order not in ORDERS or (order == "difference" and compared is None):
        order = "worst"
    results = run.results or []
    questions = _questions(run, results)
    from atelier_platform.evaluation import comparison
    from atelier_platform.evaluation.relevance import gains_of
    from atelier_platform.evaluation.services import IMAGE_PLUGINS

    images = run.plugin_id in IMAGE_PLUGINS
    primary = comparison.primary_score(run.plugin_id, results)
    # the API's comparison of the same two runs (its delta is this run's score minus B's; the page shows B minus A)
    pairs = comparison.case_pairs(run, compared) if compared is not None else []
    set_changed = any(pair.reference_changed for pair in pairs)
    inputs_changed = any(pair.input_changed for pair in pairs)  # a question edited, its reference kept
    rows = []
    for result, pair in zip(results, pairs or [None] * len(results)):
        other = pair.other if pair is not None else None
        difference = round(0.0 - pair.delta, 4) if pair is not None and pair.delta is not None else None
        row = {"case": result, "other": other, "question": questions.get(result.get("job_id"), ""),
               "difference": difference,
               "expected_items": list(gains_of(result["reference_items"]).items()) if result.get("reference_items") else []}
        if images:  # where the browser fetches both pictures (the API's downloads, this project's only)
            row["image_url"] = _image_url(here.project, result)
            row["other_image_url"] = _image_url(here.project, other) if other is not None else None
            reference = result.get("reference") if isinstance(result.get("reference"), dict) else {}
            row["reference_url"] = (f"/api/v1/evaluation/reference-sets/{run.reference_set_id}/images/"
                                    f"{reference['image']}/?project={here.project.slug}") if reference.get("image") else None
        rows.append(row)
    if run.is_finished:
        if order == "worst":
            rows.sort(key=lambda row: (_badness(row["case"], primary), row["case"]["index"]))
        elif order == "difference":
            rows.sort(key=lambda row: (-abs(row["difference"]) if row["difference"] is not None else 0,
                                       row["case"]["index"]))
    return page(request, "atelier_frontend/evaluation_run.html", {
        "run": run, "model": _model_words(run), "rows": rows, "compared": compared,
        "compared_model": _model_words(compared) if compared is not None else "",
        "others": [(other, _model_words(other)) for other in others], "order": order, "set_changed": set_changed, "inputs_changed": inputs_changed,
        "refresh_ms": REFRESH_MS, "can_evaluate": here.can(Capability.ADMIN), "images": images,
        "primary": primary, "ranking": _has(run, results, "ranking_cases", "reference_items"),
        "retrieval": _has(run, results, "retrieval_cases", "reference_sources"),
        "text": any(isinstance(r.get("reference"), str) for r in results),
        "metric_rows": [(run, "A · " + _model_words(run))]
        + ([(compared, "B · " + _model_words(compared))] if compared is not None else []),
    })


def _has(run: EvaluationRun, results: list[dict], metric: str, reference: str) -> bool:
    """Whether the run scores that kind of reference (its metrics once scored, its cases' references before)."""
    return metric in (run.metrics or {}) or any(reference in r for r in results)


def _image_url(project, result: dict) -> str | None:
    image = result.get("image")
    if not image:
        return None
    return f"/api/v1/outputs/{image['output_id']}/files/{image['file_id']}/?project={project.slug}"


@needs(Capability.ADMIN)
@require_POST
def run_cancel(request, here, run_id):
    """Cancel a run going, through the service the API uses; one that finished meanwhile shows how it did."""
    from atelier_platform.evaluation import services

    run = _run_of(here.project, run_id)
    try:
        services.cancel_run(run, actor=f"user:{request.user.pk}")
    except services.RunFinished:
        pass  # finished (or cancelled by another owner) meanwhile: the page shows how
    except services.RunGone:
        raise Http404(_("No such evaluation run in this project.")) from None
    return redirect("evaluation-run", run_id=run.pk)
