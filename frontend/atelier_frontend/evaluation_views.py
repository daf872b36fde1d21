"""An evaluation run's page: its progress while its jobs run, then each case's question, the model's answer, the
reference and the case's chrF, and where the case gives them its ranking against the relevant items (hit, MRR, NDCG)
or its sources against those expected (recall, precision), worst first by the run's primary metric, failed cases
with their error (an image run: the prompt, the reference
image beside the generated one and their similarity, FID and KID above); beside it, another run of the same
reference set, answer against answer. Members of the project read it; another project's run is not found. Owners
cancel a run while it goes (``run_cancel``).

A reference set's page (``set_page``): its runs newest first, each with the model that answered it and the set's
primary figures, and the trend of its primary metric across its succeeded runs, one line per model version; two runs
ticked open the run page's comparison (``set_compare``); owners evaluate a version again (``set_evaluate``) and pin
one (``set_pin``), through the services the settings page uses. The set's watch (``evaluation.watch``: the set
evaluated every few hours, each run gated against the previous) shows there, with its next run and its last
verdict; owners create, change, switch off and delete it (``set_watch``, ``set_watch_delete``)."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from atelier_platform.accounts.roles import Capability
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
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
    from atelier_frontend.labels import answering_model_label

    named = (run.metrics or {}).get("model_versions") or []
    if not named:  # going, or no case answered: which model the current one is shows once one answers
        return _("current model")
    return _("current model: %(model)s") % {"model": ", ".join(answering_model_label(name) for name in named)}


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


# --- a reference set's page ---------------------------------------------------------------------------------------

#: a run's figures as the dashboard words them (the run page's and the settings page's words): label, decimals
FIGURE_WORDS = {"chrf": ("chrF", 1), "bleu": ("BLEU", 1), "ndcg": ("NDCG@k", 3), "hit_rate": (gettext_lazy("Hit rate@k"), 3),
                "source_recall": (gettext_lazy("Source recall@k"), 3),
                "source_precision": (gettext_lazy("Source precision@k"), 3), "fid": ("FID", 2),
                "mean_similarity": (gettext_lazy("Mean similarity"), 3)}
#: the notice of an owner's action on a set's page, shown once on the page the redirect leads to
SET_NOTICE_SESSION = "atelier_evaluation_set_notice"


def _set_of(project, set_id) -> ReferenceSet:
    found = ReferenceSet.objects.filter(project=project, pk=set_id).with_case_count().first()
    if found is None:
        raise Http404(_("No such reference set in this project."))
    return found


def _series_words(key: str, versions: dict) -> str:
    """A trend line's model (``history.answered_by``'s key) in words."""
    from atelier_platform.evaluation import history

    if key.startswith("v"):
        version = versions.get(int(key[1:]))
        return f"{version.version} · {version.model_dir}" if version is not None else key
    if key == history.DEFAULT:
        return _("the plugin's default model")
    if key.startswith("gone:"):
        return key[len("gone:"):]
    return _("current model")


def _page_number(raw: str) -> int:
    from atelier_frontend.schema_form import whole_number

    return whole_number(raw[:12]) or 1  # (the history bounds it: an unbounded number overflows the OFFSET)


@needs(Capability.JOBS_READ)
def set_page(request, here, set_id):
    return _set_page(request, here, _set_of(here.project, set_id))


def _set_page(request, here, reference_set, errors=(), status=200, watch_errors=(), watch_form=None):
    import uuid

    from atelier_platform.catalog.registry import get_registry
    from atelier_platform.evaluation import comparison, history

    from atelier_frontend.evaluation_chart import chart
    from atelier_frontend.views import page

    found = history.set_history(here.project, reference_set, _page_number(request.GET.get("page", "")))
    can_evaluate = here.can(Capability.ADMIN)
    evaluable = {version.pk for version in found.evaluable}
    labels = {key: _series_words(key, found.versions) for key in set(found.answered.values())}
    rows = []
    for run in found.runs:
        key = found.answered[run.pk]
        figures = []
        for name in found.figures:
            value = comparison.figure(run.metrics, name)
            figures.append({"name": name, "value": value,
                            "shown": f"{value:.{FIGURE_WORDS[name][1]}f}" if value is not None else "—"})
        rows.append({"run": run, "model": _model_words(run), "key": key, "pinned": key == found.pinned_key,
                     "figures": figures, "comparable": comparison.is_scored(run), "verdict": _verdict_of(run),
                     # the owner's actions: evaluate the same model again, pin the version it named
                     "once": uuid.uuid4().hex if can_evaluate else "",
                     "evaluate": can_evaluate and (run.model_version_id is None or run.model_version_id in evaluable),
                     "pin": can_evaluate and run.model_version_id in evaluable and key != found.pinned_key})
    plugin = get_registry().get(reference_set.plugin_id)
    return page(request, "atelier_frontend/evaluation_set.html", {
        "reference_set": reference_set, "plugin_name": plugin.manifest.name if plugin else reference_set.plugin_id,
        "history": found, "rows": rows, "figure_labels": [FIGURE_WORDS[name][0] for name in found.figures],
        "trend": chart(found.series, labels), "trend_label": FIGURE_WORDS.get(found.trend_metric, (found.trend_metric,))[0],
        "trend_places": FIGURE_WORDS.get(found.trend_metric, ("", 3))[1],
        "pinned_words": _series_words(found.pinned_key, found.versions),
        "can_evaluate": can_evaluate, "once": uuid.uuid4().hex if can_evaluate else "",
        "notice": request.session.pop(SET_NOTICE_SESSION, "") if request.method == "GET" else "",
        "errors": list(errors),
        **_watch_context(here, reference_set, found, can_evaluate, watch_errors, watch_form),
    }, status=status)


@needs(Capability.JOBS_READ)
@require_GET
def set_compare(request, here, set_id):
    """Two runs ticked on a set's page, side by side on the run page: the older as A, the newer as B, so that each
    difference (B minus A) reads as what changed since."""
    reference_set = _set_of(here.project, set_id)
    ids = []
    for raw in request.GET.getlist("run"):
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            ids = []
            break
    runs = list(EvaluationRun.objects.filter(project=here.project, reference_set=reference_set, pk__in=ids)
                .only("id", "created_at").order_by("created_at", "id")) if len(set(ids)) == 2 else []
    if len(runs) != 2:  # none, one, three, the same twice, or a run not of this set (another project's too)
        return _set_page(request, here, reference_set, errors=[_("Tick two runs of this reference set to compare them.")],
                         status=400)
    older, newer = runs
    return redirect(f"{reverse('evaluation-run', kwargs={'run_id': older.pk})}?compare={newer.pk}")


@needs(Capability.ADMIN)
@require_POST
def set_evaluate(request, here, set_id):
    """Evaluate a model on the set from its page: the settings page's Evaluate, its one-time token and checks."""
    from atelier_frontend.settings_views import start_evaluation

    reference_set = _set_of(here.project, set_id)
    posted = {"reference_set": str(reference_set.pk), "model_version": request.POST.get("model_version", ""),
              "once": request.POST.get("once", "")}
    try:
        with transaction.atomic():  # the run and its key's row, or neither
            notice = start_evaluation(here.project, request.user, f"user:{request.user.pk}", posted)
    except ValidationError as error:
        return _set_page(request, here, reference_set, errors=error.messages, status=400)
    request.session[SET_NOTICE_SESSION] = notice
    return redirect("evaluation-set", set_id=reference_set.pk)


@needs(Capability.ADMIN)
@require_POST
def set_pin(request, here, set_id):
    """Pin the version a run of the set named, through the catalog's service (its checks, its audit event), leaving
    the plugin switched on or off as it is."""
    from atelier_platform.catalog.configuration import configure_plugin
    from atelier_platform.catalog.registry import get_registry
    from atelier_platform.jobs.errors import InvalidJobInput, UnknownPlugin

    from atelier_frontend.schema_form import whole_number
    from atelier_frontend.settings_views import pin_words

    reference_set = _set_of(here.project, set_id)
    # a number that is no id is no version either: refused as one the plugin does not have
    version_id = whole_number(request.POST.get("model_version", "")) or -1
    try:
        configured = configure_plugin(here.project, reference_set.plugin_id, f"user:{request.user.pk}",
                                      model_version=version_id)
    except UnknownPlugin:
        return _set_page(request, here, reference_set, errors=[_("No such plugin is installed.")], status=400)
    except InvalidJobInput:
        # another project's private version reads as no version at all: a forged id learns nothing of it
        return _set_page(request, here, reference_set, errors=[_("No such model version for this plugin.")], status=400)
    name = get_registry().get(reference_set.plugin_id).manifest.name
    request.session[SET_NOTICE_SESSION] = (pin_words(name, configured) if "model_version" in configured.changed
                                           else _("%(plugin)s: nothing changed.") % {"plugin": name})
    return redirect("evaluation-set", set_id=reference_set.pk)


# --- the set's watch ----------------------------------------------------------------------------------------------

#: a scheduled run's verdict in words (``watch.judge``'s outcomes), and whether it is an alert
VERDICT_WORDS = {"passed": gettext_lazy("passed"), "regressed": gettext_lazy("regressed"),
                 "failed": gettext_lazy("failed"), "baseline": gettext_lazy("baseline (first run)"),
                 "set_changed": gettext_lazy("not compared: the set changed"),
                 "cancelled": gettext_lazy("cancelled: not gated"), "not_judged": gettext_lazy("not judged")}


def _verdict_of(run: EvaluationRun) -> dict | None:
    """A scheduled run's verdict as the page shows it: its words, the metrics that failed, and the comparison with
    the run it was measured against (that run as A, this one as B: each difference reads as what changed since)."""
    verdict = run.watch if isinstance(run.watch, dict) else {}
    if not verdict:
        return None
    compared_to = verdict.get("compared_to")
    return {"outcome": verdict.get("outcome"), "words": VERDICT_WORDS.get(verdict.get("outcome"), verdict.get("outcome")),
            "failed_metrics": verdict.get("failed_metrics") or [],
            "compare_url": (f"{reverse('evaluation-run', kwargs={'run_id': compared_to})}?compare={run.pk}"
                            if compared_to else "")}


def _limits_text(plugin_id: str, max_drop: dict) -> str:
    """A watch's limits as the form takes them (the evaluate command's --max-drop), in the order the gate names the
    metrics (the database keeps a JSON object's keys in its own order): ``chrf=1.5, bleu=2``."""
    from atelier_platform.evaluation import gate

    order = {name: index for index, name in enumerate(gate.metric_names(plugin_id))}
    return ", ".join(f"{name}={value:g}" for name, value in sorted((max_drop or {}).items(),
                                                                    key=lambda item: order.get(item[0], len(order))))


def _watch_context(here, reference_set, found, can_edit: bool, errors, posted) -> dict:
    from atelier_platform.evaluation import gate, watch
    from atelier_platform.evaluation.models import EvaluationSchedule
    from atelier_platform.evaluation.services import IMAGE_PLUGINS

    schedule = (EvaluationSchedule.objects.filter(project=here.project, reference_set=reference_set)
                .select_related("model_version", "last_run").defer("last_run__results").first())
    context = {"watch": schedule, "watch_errors": list(errors), "watch_metrics": ", ".join(
        gate.metric_names(reference_set.plugin_id)), "watch_images": reference_set.plugin_id in IMAGE_PLUGINS,
        "watch_min_hours": watch.MIN_INTERVAL_HOURS,
        "watch_max_hours": watch.MAX_INTERVAL_HOURS, "watch_model": "", "watch_last": None, "watch_skip": ""}
    if schedule is not None:
        version = schedule.model_version
        context["watch_model"] = (f"{version.version} · {version.model_dir}" if version is not None
                                  else _("the version pinned when each run starts"))
        context["watch_limits"] = _limits_text(reference_set.plugin_id, schedule.max_drop)
        context["watch_due"] = schedule.enabled and schedule.next_run_at <= timezone.now()
        if schedule.last_run is not None:
            context["watch_last"] = {"run": schedule.last_run, "verdict": _verdict_of(schedule.last_run)}
        if schedule.last_skipped_at is not None:
            context["watch_skip"] = (_("The previous run was still going: no run was started.")
                                     if schedule.last_skip_code == watch.SKIPPED_RUN_GOING
                                     else _("The run could not start: %(reason)s") % {"reason": schedule.last_skip_message})
    if can_edit:
        if posted is not None:  # a refused form, as it was sent
            form = {"interval_hours": posted.get("interval_hours", ""), "max_drop": posted.get("max_drop", ""),
                    "model_version": posted.get("model_version", ""), "enabled": bool(posted.get("enabled"))}
        elif schedule is not None:
            form = {"interval_hours": str(schedule.interval_hours), "max_drop": context["watch_limits"],
                    "model_version": str(schedule.model_version_id or ""), "enabled": schedule.enabled}
        else:
            form = {"interval_hours": "24", "max_drop": f"{gate.metric_names(reference_set.plugin_id)[0]}=1.5",
                    "model_version": "", "enabled": True}
        context["watch_form"] = form
        context["watch_versions"] = found.evaluable
    return context


def _watch_changes(project, reference_set, posted) -> dict:
    """The watch form's fields, checked as the API's are (the gate's own parsing of ``chrf=1.5``, the bounds of the
    interval, the versions the project may evaluate); a refusal in the page's words."""
    import re

    from atelier_platform.evaluation import gate, services, watch

    from atelier_frontend.schema_form import whole_number

    hours = whole_number(posted.get("interval_hours", "").strip()[:6])
    if hours is None or not watch.MIN_INTERVAL_HOURS <= hours <= watch.MAX_INTERVAL_HOURS:
        raise ValidationError(_("Run it every %(min)s to %(max)s hours (30 days).")
                              % {"min": watch.MIN_INTERVAL_HOURS, "max": watch.MAX_INTERVAL_HOURS})
    specs = [part for part in re.split(r"[,;\s]+", posted.get("max_drop", "")[:500]) if part]
    try:
        limits = gate.parse_max_drops(reference_set.plugin_id, specs)
    except gate.GateError:
        raise ValidationError(_("Limits not understood: write each as a metric, =, and its largest allowed drop, such "
                                "as chrf=1.5, each metric once (this set's metrics: %(metrics)s).")
                              % {"metrics": ", ".join(gate.metric_names(reference_set.plugin_id))}) from None
    chosen = posted.get("model_version", "")
    version_id = whole_number(chosen) if chosen else None
    if chosen and version_id is None:
        version_id = -1
    try:
        services.evaluable_model_version(project, reference_set.plugin_id, version_id)
    except services.UnknownModelVersion:
        raise ValidationError(_("No such model version for this plugin.")) from None
    return {"interval_hours": hours, "max_drop": limits, "model_version": version_id,
            "enabled": bool(posted.get("enabled"))}


@needs(Capability.ADMIN)
@require_POST
def set_watch(request, here, set_id):
    """Create the set's watch, or change it (its interval, limits, version; switched off with the box unticked),
    through the service the API uses (its checks, its audit)."""
    from atelier_platform.evaluation import watch
    from atelier_platform.evaluation.models import EvaluationSchedule
    from atelier_platform.jobs.errors import JobServiceError

    reference_set = _set_of(here.project, set_id)
    actor = f"user:{request.user.pk}"
    try:
        changes = _watch_changes(here.project, reference_set, request.POST)
        schedule = EvaluationSchedule.objects.filter(project=here.project, reference_set=reference_set).first()
        if schedule is None:
            version_id = changes.pop("model_version")
            watch.create_schedule(here.project, reference_set, model_version_id=version_id, actor=actor,
                                  user=request.user, **changes)
            notice = ngettext("Watch saved: the first run starts within a minute, then one every hour.",
                              "Watch saved: the first run starts within a minute, then one every %(hours)s hours.",
                              changes["interval_hours"]) % {"hours": changes["interval_hours"]}
        else:
            watch.update_schedule(schedule, actor=actor, **changes)
            notice = _("Watch saved.") if changes["enabled"] else _("Watch saved, switched off: no run starts until it "
                                                                    "is switched on again.")
    except ValidationError as error:
        return _set_page(request, here, reference_set, watch_errors=error.messages, watch_form=request.POST, status=400)
    except watch.ScheduleExists:  # another owner made one meanwhile
        return _set_page(request, here, reference_set, watch_errors=[_("This set has a watch already: reload the page "
                                                                       "to change it.")], watch_form=request.POST,
                         status=409)
    except JobServiceError as error:
        return _set_page(request, here, reference_set, watch_errors=[_("The watch could not be saved: %(reason)s")
                                                                     % {"reason": error.message}],
                         watch_form=request.POST, status=400)
    request.session[SET_NOTICE_SESSION] = notice
    return redirect(f"{reverse('evaluation-set', kwargs={'set_id': reference_set.pk})}#watch")


@needs(Capability.ADMIN)
@require_POST
def set_watch_delete(request, here, set_id):
    """Delete the set's watch (its runs stay in the history); one deleted meanwhile is gone all the same."""
    from atelier_platform.evaluation import watch
    from atelier_platform.evaluation.models import EvaluationSchedule

    reference_set = _set_of(here.project, set_id)
    schedule = EvaluationSchedule.objects.filter(project=here.project, reference_set=reference_set).first()
    if schedule is not None:
        try:
            watch.delete_schedule(schedule, actor=f"user:{request.user.pk}")
        except watch.ScheduleGone:
            pass
    request.session[SET_NOTICE_SESSION] = _("Watch deleted; its runs stay in the history.")
    return redirect("evaluation-set", set_id=reference_set.pk)
