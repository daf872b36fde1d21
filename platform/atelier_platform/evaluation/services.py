"""Evaluation: a project's reference sets, and runs that answer them with a model version and score the answers.

A run submits one job per case through the real queue (``jobs.submission.submit_evaluation_jobs``: purpose
``evaluation``, the run's model version instead of the project's pin, a low priority), in the transaction that
saves the run; each job is published when it commits. As the jobs finish (the job signals, ``receivers``; the
beat sweeper as the safety net, ``sweep_runs``) the run's progress is counted, and once every job has finished
its answers are scored with sacrebleu: corpus BLEU and chrF of the succeeded cases against their references,
chrF per case. A case whose job failed, was blocked or whose output screening blocked counts as failed; the run
goes on without it. A run whose every case failed fails.

A run going can be cancelled (``cancel_run``): its unfinished jobs are cancelled as any job is (queued ones at once,
running ones at their next step, their outputs discarded), the cases that had finished are scored, the others
count as failed, and the run is ``cancelled`` at once (no longer one of the project's runs going).

Text plugins whose output has one text to score (``OUTPUT_TEXT``) are scored in the process that sees the last
job finish. The ``image`` plugin (``IMAGE_PLUGINS``) is scored against reference images (``images``) with a vision
model's features, which needs torch: once its jobs have finished the run's cases are collected here and a scoring
task is sent to a CPU worker (``image_scoring``); the run stays ``running`` until the worker has computed FID, KID
and each case's similarity, and fails, saying so, when scoring fails for good.
"""

from __future__ import annotations

import hashlib
import json
import logging
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from pydantic import ValidationError

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import installed_plugin
from atelier_platform.catalog.registry import get_registry
from atelier_platform.evaluation import images as reference_images
from atelier_platform.evaluation import metrics, relevance
from atelier_platform.evaluation.models import EvaluationCase, EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.errors import InvalidJobInput, JobServiceError, UnknownPlugin
from atelier_platform.jobs.models import FINISHED_STATUSES, Job, JobStatus, ReviewState
from atelier_platform.moderation import audit

logger = logging.getLogger("atelier.evaluation")

MAX_CASES = 500
MAX_REFERENCE_CHARS = 10_000
#: runs of one project queued or running at once: each holds up to MAX_CASES jobs on the workers
MAX_ACTIVE_RUNS = 3
#: evaluation jobs wait behind a caller's jobs (default priority 5) on a busy queue
EVALUATION_PRIORITY = 1
#: the seed of a case that names none: two versions answer the same case with the same randomness
DEFAULT_SEED = 0
#: the key of a case's result holding its input's fingerprint (``input_fingerprint``), written when its run starts:
#: a case whose question was edited (its reference kept) asks something else, and two runs of it compare nothing fair.
#: Runs started before it was recorded have none.
INPUT_FINGERPRINT = "input_sha256"


def _chatbot_text(content: dict[str, Any]) -> str:
    return str(content.get("reply") or "")


def _recommender_text(content: dict[str, Any]) -> str:
    """The first copy variant of each recommended item, in rank order, a line each."""
    lines = []
    for item in sorted(content.get("recommendations") or [], key=lambda r: r.get("rank", 0)):
        variants = item.get("copy") or []
        if variants:
            lines.append(str(variants[0].get("text") or ""))
    return "\n".join(lines)


#: The plugins a run can score, and the text of an output that is scored against the reference.
OUTPUT_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "chatbot": _chatbot_text,
    "recommender_copy": _recommender_text,
}


#: The plugins whose answers are images, scored against a reference image each (FID, KID, similarity) on a worker.
IMAGE_PLUGINS = frozenset({"image"})
#: how many times a run's scoring task is sent (the sweeper sends it again when overdue) before the run fails
MAX_SCORING_SENDS = 3


def evaluable_plugin_ids() -> list[str]:
    return sorted({*OUTPUT_TEXT, *IMAGE_PLUGINS})


class EvaluationError(JobServiceError):
    code = "invalid_evaluation"


class PluginNotEvaluable(EvaluationError):
    code = "plugin_not_evaluable"


class UnknownModelVersion(EvaluationError):
    code = "unknown_model_version"


class TooManyRuns(EvaluationError):
    status_code = 409
    code = "evaluation_runs_busy"


class ReferenceSetBusy(EvaluationError):
    status_code = 409
    code = "reference_set_busy"


class ReferenceSetGone(EvaluationError):
    status_code = 404
    code = "not_found"


class RunGone(EvaluationError):
    status_code = 404
    code = "not_found"


class RunFinished(EvaluationError):
    status_code = 409
    code = "evaluation_run_finished"


# --- what may be evaluated ------------------------------------------------------------------------------

def evaluable_plugin(plugin_id: str):
    """The installed plugin ``plugin_id`` if a run can score it; else a 400 that says why."""
    plugin = installed_plugin(plugin_id) if isinstance(plugin_id, str) else None
    if plugin is None:
        available = sorted(p.manifest.id for p in get_registry().available())
        raise UnknownPlugin(f"No plugin named {plugin_id!r} is installed.",
                            details={"plugin": [f"Choose one of: {', '.join(available) or '(none installed)'}."]})
    if plugin_id not in OUTPUT_TEXT and plugin_id not in IMAGE_PLUGINS:
        supported = ", ".join(evaluable_plugin_ids())
        raise PluginNotEvaluable(
            f"Plugin {plugin_id!r} cannot be evaluated yet: evaluation scores text answers and images, and only "
            f"{supported} are supported.", details={"plugin": [f"Choose one of: {supported}."]})
    return plugin


def evaluable_model_versions(project: Project, plugin_id: str) -> QuerySet[ModelVersion]:
    """The model versions ``project`` may evaluate for ``plugin_id``: shared ones and the project's own (the
    catalog's rule: another tenant's private version is neither listed nor run). The one place that says so:
    the API's checks, the dashboard and the runs all ask here."""
    return ModelVersion.objects.available_to(project).filter(plugin_id=plugin_id)


def evaluable_model_version(project: Project, plugin_id: str, version_id) -> ModelVersion | None:
    """The version a run names (None: the project's current model), among those the project may evaluate."""
    if version_id is None:
        return None
    found = evaluable_model_versions(project, plugin_id).filter(pk=version_id).first() if isinstance(version_id, int) else None
    if found is None:
        raise UnknownModelVersion(f"No model version {version_id!r} of {plugin_id} that this project may evaluate.",
                                  details={"model_version": [f"Choose a model version of {plugin_id}, or none for the "
                                                             "project's current model."]})
    return found


# --- reference sets -------------------------------------------------------------------------------------

def _image_reference(reference: Any, known: Mapping[str, dict], decoded: dict[str, Any],
                     budget: reference_images.PixelBudget | None = None) -> Any:
    """An image case's reference as its case stores it (``images.CheckedImage.reference``); ``BadImage`` saying why
    not. Base64 (a ``data:`` URL too) is decoded and checked; ``{"image": sha256}`` names an image the set holds
    already (a set's cases as the API shows them, sent back changed). ``decoded`` collects the new images."""
    if isinstance(reference, dict) and set(reference) <= {"image", "media_type", "width", "height", "url"}:
        sha = reference.get("image")
        if isinstance(sha, str) and sha in known:
            # what the set holds of the image, not what the request says of it (a NUL there failed the save, a
            # media type or size sent back changed was stored as the image's)
            return dict(known[sha])
        raise reference_images.BadImage("No image of this set has that sha256: send the image itself, as base64.",
                                        "unknown_image")
    data = reference_images.decode_base64(reference)
    # an image checked for an earlier case is not decoded again: 500 cases of one 4096x4096 picture took two minutes
    checked = decoded.get(hashlib.sha256(data).hexdigest()) or reference_images.check_image(data, budget)
    decoded[checked.sha256] = checked
    return checked.reference()


def _case_error(field_errors: list | None, path: str, code: str, message: str, **ctx) -> list[str]:
    """One of the checker's own refusals: its English for the API's details, and, in ``field_errors``, an error as
    pydantic's are kept (``type``: a stable code, ``ctx``: the values in the message), for the dashboard to word it
    in its language by its code as it does a plugin's ``atelier_sdk.input_error``."""
    if field_errors is not None:
        field_errors.append({"type": code, "loc": (path,), "msg": message, "ctx": ctx})
    return [message]


def _case_errors(plugin, index: int, case: Any, field_errors: list | None = None, *,
                 known_images: Mapping[str, dict] = MappingProxyType({}), decoded: dict | None = None,
                 documents: dict[str, str] | None = None, pixels: reference_images.PixelBudget | None = None
                 ) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """One case normalised, or its errors by field (``cases.3.input.messages``); pydantic's errors behind them, and
    the checker's own with their codes (``evaluation.*``), are added to ``field_errors`` (for the dashboard to word
    them in its language). An image case's new reference image goes into ``decoded`` (by sha256). ``documents``: the
    project's knowledge base (source id → title), which a chatbot case's ``reference_sources`` name."""
    from atelier_platform.jobs.submission import as_sent, nul_paths, pydantic_error_details, rooted_errors

    where = f"cases.{index}"
    if not isinstance(case, dict):
        return None, {where: _case_error(field_errors, where, "evaluation.case_not_object",
                                         "A case is an object with input, reference and optional params.")}
    errors: dict[str, list[str]] = {}

    def refuse(path: str, code: str, message: str, **ctx) -> None:
        errors[path] = _case_error(field_errors, path, code, message, **ctx)

    kind = relevance.REFERENCE_FIELDS.get(plugin.manifest.id)  # the reference this plugin takes besides a text
    allowed = {"input", "params", "reference", *((kind, "k") if kind else ())}
    unknown = sorted(set(case) - allowed)
    if unknown and kind is None:
        refuse(where, "evaluation.unknown_fields", f"Unknown fields: {', '.join(unknown)} (a case has input, params and "
               "reference).", names=", ".join(unknown))
    elif unknown:
        refuse(where, "evaluation.unknown_fields", f"Unknown fields: {', '.join(unknown)} (a case has input, params and "
               f"reference, and may have {kind} and k).", names=", ".join(unknown), field=kind)
    reference = case.get("reference")
    # a text is optional where another kind of reference is given (a blank one, as a CSV's empty cell, is none)
    other_kind = kind is not None and case.get(kind) is not None
    if other_kind and (reference is None or (isinstance(reference, str) and not reference.strip())):
        reference = None
    elif plugin.manifest.id in IMAGE_PLUGINS:
        try:
            reference = _image_reference(reference, known_images, decoded if decoded is not None else {}, pixels)
        except reference_images.BadImage as bad:
            refuse(f"{where}.reference", f"evaluation.image_{bad.reason}", bad.message, **bad.params)
    elif not isinstance(reference, str) or not reference.strip():
        if kind is not None and reference is None:
            refuse(f"{where}.reference", "evaluation.reference_missing", f"The expected answer, a non-empty text, or "
                   f"{kind}: a case needs at least one reference.", field=kind)
        else:
            refuse(f"{where}.reference", "evaluation.reference_blank", "The expected answer, a non-empty text.")
    elif len(reference) > MAX_REFERENCE_CHARS:
        refuse(f"{where}.reference", "evaluation.reference_too_long", f"At most {MAX_REFERENCE_CHARS} characters.",
               max_length=MAX_REFERENCE_CHARS)
    elif "\x00" in reference:  # PostgreSQL's jsonb cannot store it: a 400 here, not a failed insert
        refuse(f"{where}.reference", "evaluation.nul_character", "The NUL character (\\u0000) is not allowed.")
    input_data, params = case.get("input"), case.get("params", {})
    for name, value in (("input", input_data), ("params", params)):
        if not isinstance(value, dict):
            refuse(f"{where}.{name}", "evaluation.not_object", "An object.")
            continue
        for path in nul_paths(value, f"{where}.{name}"):
            refuse(path, "evaluation.nul_character", "The NUL character (\\u0000) is not allowed.")
        if any(key.startswith(f"{where}.{name}") for key in errors):
            continue
        model = plugin.Input if name == "input" else plugin.Params
        try:
            as_sent(model, value)
        except ValidationError as exc:
            errors.update(pydantic_error_details(exc, f"{where}.{name}"))
            if field_errors is not None:
                field_errors.extend(rooted_errors(exc, f"{where}.{name}"))
    if isinstance(input_data, dict) and input_data.get("conversation_id"):
        refuse(f"{where}.input.conversation_id", "evaluation.conversation_id_in_case",
               "A case is self-contained: put its turns in messages.")
    normal = {"input": input_data, "params": params, "reference": reference}
    if other_kind:
        if kind == relevance.RANKING_FIELD:
            normal[kind] = relevance.check_reference_items(case[kind], input_data, where, refuse)
        else:
            normal[kind] = relevance.check_reference_sources(case[kind], input_data, documents or {}, where, refuse)
    if "k" in case and "k" in allowed:
        if not other_kind:
            refuse(f"{where}.k", "evaluation.k_without_reference", f"k is the cut-off of the metrics of {kind}: give "
                   f"{kind} too, or leave k out.", field=kind)
        else:
            normal["k"] = relevance.check_k(case["k"], where, refuse)
    if errors:
        return None, errors
    return normal, {}


def checked_cases(plugin_id: str, cases: Any, project: Project | None = None) -> list[dict[str, Any]]:
    """``cases`` checked against the plugin's schemas (and ``project``'s knowledge base, which a chatbot case's
    ``reference_sources`` name); a 400 naming every bad case's index and field."""
    return _checked_cases(plugin_id, cases, project=project)[0]


def _checked_cases(plugin_id: str, cases: Any, known_images: Mapping[str, dict] = MappingProxyType({}), *,
                   project: Project | None = None) -> tuple[list[dict[str, Any]], list]:
    """``checked_cases``, and the new reference images of an image set (``images.CheckedImage``, to store)."""
    plugin = evaluable_plugin(plugin_id)
    if not isinstance(cases, list) or not cases:
        raise InvalidJobInput("A reference set needs at least one case.", details={"cases": ["Send a non-empty list."]})
    if len(cases) > MAX_CASES:
        raise InvalidJobInput(f"At most {MAX_CASES} cases per reference set; this one has {len(cases)}.",
                              details={"cases": [f"At most {MAX_CASES} cases."]}, code="limit_exceeded")
    documents = None
    if project is not None and any(isinstance(case, dict) and relevance.RETRIEVAL_FIELD in case for case in cases):
        from atelier_platform.knowledge.models import KnowledgeDocument

        documents = dict(KnowledgeDocument.objects.filter(project=project).values_list("source_id", "title"))
    checked, problems, field_errors, decoded, pixels = [], {}, [], {}, reference_images.PixelBudget()
    for index, case in enumerate(cases):
        normal, errors = _case_errors(plugin, index, case, field_errors, known_images=known_images, decoded=decoded,
                                      documents=documents, pixels=pixels)
        problems.update(errors)
        checked.append(normal)
    if problems:
        bad = sorted({int(name.split(".")[1]) for name in problems})
        raise InvalidJobInput(f"{len(bad)} of {len(cases)} cases do not match the plugin's schema (index "
                              f"{', '.join(map(str, bad[:10]))}{', ...' if len(bad) > 10 else ''}).", details=problems,
                              field_errors=field_errors)
    return checked, list(decoded.values())


def _name_taken(project: Project, name: str, but=None) -> None:
    taken = ReferenceSet.objects.filter(project=project, name=name)
    if but is not None:
        taken = taken.exclude(pk=but.pk)
    if taken.exists():
        raise EvaluationError(f"The project has a reference set named {name!r} already.",
                              details={"name": ["Choose another name."]}, code="validation_error")


def create_reference_set(project: Project, *, plugin_id: str, name: str, cases: Any, description: str = "",
                         actor: str, user=None) -> ReferenceSet:
    cases, new_images = _checked_cases(plugin_id, cases, project=project)
    _name_taken(project, name)
    try:
        with reference_images.files_removed_unless_committed(), transaction.atomic():
            reference_set = ReferenceSet.objects.create(project=project, plugin_id=plugin_id, name=name, cases=cases,
                                                        description=description, created_by=user)
            reference_images.store_images(reference_set, new_images)
            audit.record(project, actor, "reference_set_created", reference_set,
                         after={"name": name, "plugin": plugin_id, "cases": len(cases)})
    except IntegrityError:  # the same name saved by another request meanwhile
        _name_taken(project, name)
        raise
    return reference_set


def update_reference_set(reference_set: ReferenceSet, *, actor: str, **changes) -> ReferenceSet:
    """Change the name, description or cases; the plugin stays (a set's cases are its plugin's inputs). An image
    set's images no case names any more go (their files too), unless a run of it not yet scored still needs them."""
    new_images = []
    if "cases" in changes:
        known = {image.sha256: {"image": image.sha256, "media_type": image.media_type, "width": image.width,
                                "height": image.height} for image in reference_set.images.all()}
        changes["cases"], new_images = _checked_cases(reference_set.plugin_id, changes["cases"], known,
                                                        project=reference_set.project)
    if "name" in changes:
        _name_taken(reference_set.project, changes["name"], but=reference_set)
    if not changes:
        return reference_set
    before = {"name": reference_set.name, "cases": len(reference_set.cases)}
    try:
        with reference_images.files_removed_unless_committed(), transaction.atomic():
            if "cases" in changes and reference_set.plugin_id in IMAGE_PLUGINS:
                # as start_run takes it: a run starting meanwhile has its references kept, or starts after this
                _lock_project(reference_set.project_id)
            for name, value in changes.items():
                setattr(reference_set, name, value)
            reference_set.save(update_fields=[*changes, "updated_at"])
            if "cases" in changes and reference_set.plugin_id in IMAGE_PLUGINS:
                reference_images.store_images(reference_set, new_images)
                reference_images.prune_images(reference_set, reference_images.referenced_shas(reference_set.cases)
                                              | _images_runs_need(reference_set))
            audit.record(reference_set.project, actor, "reference_set_changed", reference_set, before=before,
                         after={"name": reference_set.name, "cases": len(reference_set.cases)})
    except IntegrityError:  # the same name given to another set by another request meanwhile
        _name_taken(reference_set.project, changes.get("name", reference_set.name), but=reference_set)
        raise
    return reference_set


def _images_runs_need(reference_set: ReferenceSet) -> set[str]:
    """The reference images of the set's runs that are not scored yet (going, or cancelled and waiting to be)."""
    needed: set[str] = set()
    for results in reference_set.runs.filter(Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
                                             | Q(scoring_sent_at__isnull=False)).values_list("results", flat=True):
        needed |= reference_images.referenced_shas(results or [])
    return needed


def delete_reference_set(reference_set: ReferenceSet, *, actor: str) -> None:
    """Delete a set and its runs' records (their jobs stay in the project's history); refused while a run of it
    is still going."""
    with transaction.atomic():
        # The project's row, as start_run locks it: a run being started meanwhile has committed when this looks (and
        # refuses the deletion), and one started after finds its set gone.
        _lock_project(reference_set.project_id)
        if reference_set.runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists():
            raise ReferenceSetBusy("A run of this reference set is still going; delete it once the run has finished.")
        audit.record(reference_set.project, actor, "reference_set_deleted", reference_set,
                     before={"name": reference_set.name, "cases": len(reference_set.cases)})
        reference_set.delete()


# --- runs --------------------------------------------------------------------------------------------------

def _case_params(plugin, case: dict[str, Any]) -> dict[str, Any]:
    params = dict(case.get("params") or {})
    if "seed" in plugin.Params.model_fields and params.get("seed") is None:
        params["seed"] = DEFAULT_SEED
    return params


def _case_input(plugin, case: dict[str, Any]) -> dict[str, Any]:
    """The case's input; with seed 0 where the plugin takes its seed there (the image plugin) and the case names none."""
    data = dict(case["input"])
    if ("seed" not in plugin.Params.model_fields and "seed" in plugin.Input.model_fields
            and data.get("seed") is None and not (case.get("params") or {}).get("seed")):
        data["seed"] = DEFAULT_SEED
    return data


def input_fingerprint(input_data: dict[str, Any], params: dict[str, Any]) -> str:
    """SHA-256 of a case's input and params as its job is asked them (the seed a case leaves out included), as
    canonical JSON (keys sorted, no spaces, UTF-8): the same question gives the same fingerprint, whatever order its
    set wrote its keys in."""
    canonical = json.dumps({"input": input_data, "params": params}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def start_run(project: Project, reference_set: ReferenceSet, *, model_version_id=None, actor: str, user=None,
              api_key=None, schedule=None) -> EvaluationRun:
    """Start a run of ``reference_set`` with a model version (None: the project's current model): the run and
    one queued evaluation job per case, all or nothing; the jobs are published once they commit. ``schedule``: the
    watch that starts it (``watch``), judged against the watch's previous run when it ends."""
    from atelier_platform.jobs.submission import JobRequest, submit_evaluation_jobs

    if reference_set.project_id != project.pk:  # callers look sets up in the project; a guard all the same
        raise EvaluationError("No such reference set.", code="not_found")
    plugin = evaluable_plugin(reference_set.plugin_id)
    version = evaluable_model_version(project, reference_set.plugin_id, model_version_id)
    requests = [JobRequest(reference_set.plugin_id, _case_input(plugin, case), _case_params(plugin, case),
                           priority=EVALUATION_PRIORITY)
                for case in reference_set.cases]
    with transaction.atomic():
        # The project's row, locked, makes concurrent starts take turns at counting its active runs, and a start and
        # a deletion of the set take turns too.
        _lock_project(project.pk)
        if not ReferenceSet.objects.filter(pk=reference_set.pk).exists():  # deleted while this start waited
            raise ReferenceSetGone("No such reference set in this project.")
        active = EvaluationRun.objects.filter(project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count()
        if active >= MAX_ACTIVE_RUNS:
            raise TooManyRuns(f"The project has {active} evaluation runs going (at most {MAX_ACTIVE_RUNS}); start "
                              "another once one has finished.")
        run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id=reference_set.plugin_id,
                                           model_version=version, created_by=user, api_key=api_key,
                                           cases_total=len(requests), schedule=schedule)
        jobs = submit_evaluation_jobs(project, requests, model_version=version, submitted_by=user)
        EvaluationCase.objects.bulk_create([EvaluationCase(run=run, index=index, job=job) for index, job in enumerate(jobs)])
        # each case's reference as it is now: the set may be changed while the run goes, and scored against its own;
        # and what it asked, fingerprinted, for a comparison to see a question edited under the same reference
        run.results = [{"index": index, "job_id": str(job.pk), "status": "pending", "output": None,
                        "reference": case.get("reference"), "chrf": None, "error": None, **_other_references(case),
                        INPUT_FINGERPRINT: input_fingerprint(request.input, request.params)}
                       for index, (job, case, request) in enumerate(zip(jobs, reference_set.cases, requests))]
        run.save(update_fields=["results"])
        audit.record(project, actor, "evaluation_started", run,
                     after={"reference_set": reference_set.name, "model_version": version.version if version else None,
                            "cases": len(jobs)})
        if any(job.status in FINISHED_STATUSES for job in jobs):  # inputs blocked by screening: finished already
            transaction.on_commit(lambda: finish_if_done(run.pk), robust=True)
    return run


def _other_references(case: dict[str, Any]) -> dict[str, Any]:
    """A case's ranking or retrieval reference and its cut-off, as its result keeps them (only those it has)."""
    return {name: case[name] for name in (relevance.RANKING_FIELD, relevance.RETRIEVAL_FIELD, "k")
            if case.get(name) is not None}


#: the Idempotency-Key scope of run starts: the API's POST /evaluation/runs/ and the dashboard's Evaluate (whose keys
#: are its forms' one-time tokens, ``dashboard:...``)
RUN_SCOPE = "evaluation/runs"


def start_run_once(project: Project, reference_set: ReferenceSet, *, idempotency_key: str | None, model_version_id=None,
                   actor: str, user=None, api_key=None, schedule=None) -> tuple[EvaluationRun, bool]:
    """``start_run`` with an Idempotency-Key, as a batch of jobs takes one (``usage.idempotency``): the same key with
    the same set and version gives the first run back (False: not started now); with another, 422
    ``idempotency_key_reused``; while the first start runs, 409 ``idempotency_in_flight``. Without a key, a start."""
    from atelier_platform.usage import idempotency

    if not idempotency_key:
        return start_run(project, reference_set, model_version_id=model_version_id, actor=actor, user=user,
                         api_key=api_key, schedule=schedule), True
    fingerprint = idempotency.body_fingerprint(RUN_SCOPE, str(reference_set.pk), model_version_id)
    with idempotency.hold(project, RUN_SCOPE, idempotency_key, fingerprint) as held:
        if held.is_replay:
            run = EvaluationRun.objects.filter(project=project, pk=held.replay["run_id"]).first()
            if run is None:  # deleted since with its reference set (which the caller found again: made anew)
                raise RunGone("The run this Idempotency-Key started was deleted; use a new key to start another.")
            return run, False
        run = start_run(project, reference_set, model_version_id=model_version_id, actor=actor, user=user,
                        api_key=api_key, schedule=schedule)
        # kept as long as a batch's: a retry a day later must not start the run again
        held.complete(201, {"run_id": str(run.pk)}, keep_for=idempotency.FOR_GOOD)
        return run, True


def _lock_project(project_id) -> None:
    """The project's row locked: starts, deletions and cancels of its runs take turns. FOR NO KEY UPDATE, which those
    take in turn all the same, but which lets rows that name the project be written meanwhile (PostgreSQL; elsewhere
    the lock is a no-op): a 500-case start held FOR UPDATE stopped every job submission of the project (each insert
    checks its project's key) until it committed, and a cancel waited for a worker storing an answer (its audit
    record names the project) while that worker waited for it."""
    list(Project.objects.select_for_update(no_key=True).filter(pk=project_id).values_list("pk", flat=True))


def record_finished_jobs(job_ids: Iterable) -> None:
    """Count the finished jobs into their runs (called after their finish commits)."""
    run_ids = set(EvaluationCase.objects.filter(job_id__in=list(job_ids)).values_list("run_id", flat=True))
    for run_id in run_ids:
        try:
            finish_if_done(run_id)
        except Exception:  # the sweeper finishes it later; a job's finish must not fail over its run
            logger.exception("could not update evaluation run %s", run_id)


def finish_if_done(run_id) -> EvaluationRun | None:
    """Update a run's progress from its jobs; score and finish it once all have finished."""
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished or run.scoring_sent_at is not None:  # finished, or a worker scores it
            return run
        counts = run.cases.aggregate(
            done=Count("pk", filter=Q(job__status__in=list(FINISHED_STATUSES))),
            failed=Count("pk", filter=Q(job__status__in=[JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED])),
            first_started=Min("job__started_at"),
            present=Count("pk"),
        )
        now = timezone.now()
        # a case whose job an operator deleted (the admin; its case row goes with it) will never finish: failed
        gone = max(0, run.cases_total - counts["present"])
        run.cases_done, run.cases_failed = counts["done"] + gone, counts["failed"] + gone
        # when a worker first took one of its jobs (a run whose every input was blocked never ran one: its finish)
        run.started_at = run.started_at or counts["first_started"] or (now if run.cases_done >= run.cases_total else None)
        if run.cases_done < run.cases_total:
            if run.cases_done:
                run.status = RunStatus.RUNNING
            run.save(update_fields=["cases_done", "cases_failed", "started_at", "status"])
            return run
        _score(run)
        if run.plugin_id in IMAGE_PLUGINS and run.metrics.get("scoring") == "pending":
            run.status = RunStatus.RUNNING  # until a worker has scored its images
            _send_scoring(run)
        else:
            run.finished_at = now
            announce_finished(run)
        run.save()
    return run


def _score(run: EvaluationRun) -> None:
    """The run's results and metrics from its finished jobs (an image run's: the cases collected, the metrics left
    to a worker, ``image_scoring``). Each answered case is scored for each reference it has: its text (chrF; corpus
    BLEU and chrF over those cases), its ranking (``reference_items``) or its sources (``reference_sources``)."""
    if run.plugin_id in IMAGE_PLUGINS:
        _collect_images(run)
        return
    text_of = OUTPUT_TEXT[run.plugin_id]
    cases = list(run.cases.select_related("job").order_by("index"))
    outputs = {}
    for job_id, index, content, state, provenance in (
            Job.objects.filter(evaluation_case__run=run).values_list("pk", "outputs__index", "outputs__content",
                                                                     "outputs__review_state", "outputs__provenance")):
        if index == 0:
            outputs[job_id] = (content, state, provenance)
    started = {case["index"]: case for case in run.results or []}  # each case's references as they were when it started
    by_index = {case.index: case for case in cases}
    results, hypotheses, refs, model_names = [], [], [], set()
    for index in sorted(set(started) | set(by_index)):
        result, found = _case_result(index, by_index.get(index), started, outputs)
        if found is not None:
            content, _, provenance = found
            content = content or {}
            text = text_of(content)
            model_names.add((provenance or {}).get("model_version"))
            result.update(status="succeeded", output=text)
            if isinstance(result["reference"], str):
                result["chrf"] = metrics.sentence_chrf(text, result["reference"])
                hypotheses.append(text)
                refs.append(result["reference"])
            if relevance.RANKING_FIELD in result:
                result["ranking"] = relevance.score_ranking(content, result[relevance.RANKING_FIELD], result.get("k"))
            if relevance.RETRIEVAL_FIELD in result:
                result["retrieval"] = relevance.score_retrieval(content, result[relevance.RETRIEVAL_FIELD],
                                                                result.get("k"))
        results.append(result)
    failed = sum(1 for r in results if r["status"] == "failed")
    run.results = results
    run.cases_done, run.cases_failed = len(results), failed
    run.metrics = {
        **metrics.corpus_scores(hypotheses, refs),
        "cases": len(results), "succeeded": len(results) - failed, "failed": failed,
        "mean_case_chrf": round(sum(r["chrf"] for r in results if r["chrf"] is not None) / len(hypotheses), 2)
        if hypotheses else None,
        **relevance.averages(results),
        # which model answered: the run's version, or what "current" was when the jobs ran
        "model_versions": sorted(name for name in model_names if name),
    }
    if failed < len(results):
        run.status = RunStatus.SUCCEEDED
    else:
        run.status = RunStatus.FAILED
        run.error_message = "Every case failed; see each case's error."


def _case_result(index: int, case, started: dict, outputs: dict) -> tuple[dict, Any]:
    """A case's result with its failure (job failed, blocked, deleted, cancelled) said, and its first output (content,
    review state, provenance) when it has one to score."""
    begun = started.get(index, {})
    result = {"index": index, "job_id": str(case.job.pk) if case else begun.get("job_id"),
              "reference": begun.get("reference", ""), "output": None, "chrf": None, "status": "failed", "error": None,
              **_other_references(begun)}
    if begun.get(INPUT_FINGERPRINT):  # kept from the start (a run started before fingerprints has none)
        result[INPUT_FINGERPRINT] = begun[INPUT_FINGERPRINT]
    if case is None:  # its job was deleted (the admin), and its case row with it
        result["error"] = {"code": "job_deleted", "message": "The case's job was deleted before it was scored."}
        return result, None
    job = case.job
    found = outputs.get(job.pk)
    if job.status not in FINISHED_STATUSES:  # only when the run is cancelled: its job is asked to stop
        result["error"] = {"code": "cancelled", "message": "The run was cancelled before this case finished."}
    elif job.status != JobStatus.SUCCEEDED:
        result["error"] = {"code": job.error_code or job.status, "message": job.error_message}
    elif found is None:
        result["error"] = {"code": "no_output", "message": "The job produced no output."}
    elif found[1] == ReviewState.BLOCKED:
        result["error"] = {"code": "output_blocked", "message": "Screening blocked the output."}
    else:
        return result, found
    return result, None


def _collect_images(run: EvaluationRun) -> None:
    """An image run's cases from its finished jobs: each answered case's generated image (its first output's primary
    file) beside its reference, the failed ones with their error; the metrics wait for a worker (``scoring``:
    ``pending``) unless no case was answered (the run fails here: nothing to score)."""
    from atelier_platform.jobs.models import OutputFile

    cases = {case.index: case for case in run.cases.select_related("job")}
    outputs = {}
    for output_id, job_id, state, provenance in (
            Job.objects.filter(evaluation_case__run=run, outputs__index=0)
            .values_list("outputs__pk", "pk", "outputs__review_state", "outputs__provenance")):
        outputs[job_id] = (output_id, state, provenance)
    files = dict(OutputFile.objects.filter(output_id__in=[o[0] for o in outputs.values()], role="primary")
                 .values_list("output_id", "pk"))
    started = {case["index"]: case for case in run.results or []}
    results, model_names = [], set()
    for index in sorted(set(started) | set(cases)):
        result, found = _case_result(index, cases.get(index), started, outputs)
        result.update(image=None, similarity=None)
        if found is not None:
            output_id, _, provenance = found
            if output_id not in files:
                result["error"] = {"code": "no_output", "message": "The job produced no image."}
            else:
                model_names.add((provenance or {}).get("model_version"))
                result.update(status="succeeded", image={"output_id": str(output_id), "file_id": files[output_id]})
        results.append(result)
    failed = sum(1 for r in results if r["status"] == "failed")
    run.results = results
    run.cases_done, run.cases_failed = len(results), failed
    run.metrics = {"cases": len(results), "succeeded": len(results) - failed, "failed": failed,
                   "model_versions": sorted(name for name in model_names if name),
                   "fid": None, "kid": None, "kid_std": None, "mean_similarity": None,
                   "scoring": "pending" if failed < len(results) else "none"}
    if failed == len(results):
        run.status = RunStatus.FAILED
        run.error_message = "Every case failed; see each case's error."


def _send_scoring(run: EvaluationRun) -> None:
    """Mark the run's images waiting for a worker, and send the scoring task once this commits (the sweeper sends
    it again if it is lost: ``sweep_runs``)."""
    run.scoring_sent_at = timezone.now()
    run.scoring_attempts += 1
    run_id = str(run.pk)
    transaction.on_commit(lambda: publish_scoring(run_id), robust=True)


def publish_scoring(run_id: str) -> bool:
    from atelier_platform.celery_app import QUEUE_CPU, SCORE_EVALUATION_TASK, app, publish_or_leave_to_sweeper

    # maybe inside a web request (a cancel): a hung broker must not hold it for long
    return publish_or_leave_to_sweeper(app, SCORE_EVALUATION_TASK, [run_id], queue=QUEUE_CPU,
                                       what=f"the scoring of evaluation run {run_id}")


def cancel_run(run: EvaluationRun, *, actor: str) -> EvaluationRun:
    """Stop a run going: ask its unfinished jobs to cancel, all at once (the jobs' own cancel: a queued one is cancelled
    at once, a running one at its next step, its outputs discarded), score the cases that had finished (the others
    count as failed), and mark the run cancelled, which frees its place among the project's runs going at once.
    A finished run (cancelled already included) answers 409 and nothing changes."""
    from atelier_platform.jobs import lifecycle

    with transaction.atomic():
        # The project's row first, as start_run and delete_reference_set take it, then the run's, as finish_if_done
        # takes it: a job's finish counted meanwhile has committed when this looks, and one counted after finds the
        # run finished. Without the key: a worker storing a job's answer holds that job's row and writes rows naming
        # the project (audit records); a full lock here would wait for it while it waited for this, at that job.
        _lock_project(run.project_id)
        locked = EvaluationRun.objects.select_for_update().filter(pk=run.pk, project_id=run.project_id).first()
        if locked is None:  # its reference set deleted meanwhile, and the run with it
            raise RunGone("No such evaluation run in this project.")
        run = locked
        if run.status == RunStatus.CANCELLED:
            raise RunFinished("The run was cancelled already; nothing more to cancel.")
        if run.is_finished:
            raise RunFinished(f"The run has finished already ({run.status}); only a run still going can be cancelled.")
        before = run.status
        # all at once, not job by job (a 500-case run took 2.8 s and 4,500 queries under the project's lock); a job
        # whose finish committed meanwhile is left as it finished, and scored so
        asked = lifecycle.cancel_jobs(Job.objects.filter(evaluation_case__run=run).exclude(
            status__in=list(FINISHED_STATUSES)).values_list("pk", flat=True)).asked
        if run.scoring_sent_at is None:  # else its jobs had all finished: a worker scores it already
            _score(run)
            if run.metrics.get("scoring") == "pending":  # an image run: its answered cases are scored by a worker
                _send_scoring(run)
        now = timezone.now()
        answered = run.metrics.get("succeeded", 0)
        run.status = RunStatus.CANCELLED
        run.error_message = (f"Cancelled; the {answered} of {run.cases_total} cases answered before are scored, the others "
                             "count as failed.")
        run.started_at = run.started_at or Job.objects.filter(evaluation_case__run=run).aggregate(
            first=Min("started_at"))["first"]
        run.finished_at = now
        run.save()
        if run.scoring_sent_at is None:  # else it ends when a worker has scored its answered cases
            announce_finished(run)
        audit.record(run.project, actor, "evaluation_run_cancelled", run, before={"status": before},
                     after={"status": run.status, "reference_set": run.reference_set.name,
                            "cases": run.cases_total, "answered": answered, "jobs_cancelled": asked})
    return run


def announce_finished(run: EvaluationRun) -> None:
    """Send ``evaluation_run_finished`` for a run that has just ended (in the caller's transaction, under the run's
    row lock), once that commits: each way a run ends calls this where it ends it, so once per run. A scheduled run
    is judged here first (``watch.judge``), in the same transaction."""
    from atelier_platform.evaluation import watch
    from atelier_platform.evaluation.signals import evaluation_run_finished

    watch.judge(run)  # a scheduled run's verdict, committed with its end: the webhook then reads it
    run_id = run.pk
    transaction.on_commit(lambda: evaluation_run_finished.send(sender=EvaluationRun, run_id=run_id), robust=True)


def sweep_runs() -> int:
    """Finish the runs whose jobs have all finished but whose finish was missed (a receiver that crashed, a
    process that stopped between a job's commit and its signal). Run by beat with the job sweeper."""
    finished = 0
    for run_id in (EvaluationRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], scoring_sent_at=None)
                   .values_list("pk", flat=True)[:200]):
        run = finish_if_done(run_id)
        finished += bool(run is not None and run.is_finished)
    resend_overdue_scoring()
    return finished


def resend_overdue_scoring(now=None) -> int:
    """Send the scoring task again for image runs waiting longer than ``ATELIER_JOB_REQUEUE_AFTER_S`` (its message
    lost, its worker gone); after ``MAX_SCORING_SENDS`` sends the run fails, saying so, instead of waiting for ever.
    A duplicate is harmless: the first task to store its scores ends the wait, the other finds nothing to do."""
    from datetime import timedelta

    from atelier_platform.config import get_config

    now = now or timezone.now()
    overdue_before = now - timedelta(seconds=get_config().job_requeue_after_s)
    sent = 0
    for run_id in EvaluationRun.objects.filter(scoring_sent_at__lt=overdue_before).values_list("pk", flat=True)[:200]:
        with transaction.atomic():
            run = EvaluationRun.objects.select_for_update().filter(pk=run_id, scoring_sent_at__lt=overdue_before).first()
            if run is None:
                continue
            if run.scoring_attempts >= MAX_SCORING_SENDS:
                _scoring_failed(run, f"its scoring task was sent {run.scoring_attempts} times and never finished (is a "
                                     "worker consuming the cpu queue?)")
                continue
            logger.warning("evaluation run %s still waits for its scores; sending its scoring task again", run_id)
            _send_scoring(run)
            run.save(update_fields=["scoring_sent_at", "scoring_attempts"])
            sent += 1
    return sent


def _scoring_failed(run: EvaluationRun, reason: str) -> None:
    """Give up scoring a run (locked by the caller): a running run fails, a cancelled one stays cancelled; either
    says why, and its metrics say ``scoring: failed``."""
    run.scoring_sent_at = None
    run.metrics = {**(run.metrics or {}), "scoring": "failed"}
    message = f"Scoring failed: {reason}"
    if run.status == RunStatus.CANCELLED:
        run.error_message = f"{run.error_message} {message}".strip()
    else:
        run.status = RunStatus.FAILED
        run.error_message = message
        run.finished_at = timezone.now()
    run.save()
    announce_finished(run)

