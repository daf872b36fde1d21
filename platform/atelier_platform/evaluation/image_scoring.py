"""Scoring an image run, on a worker (task ``atelier.score_evaluation``; ``atelier_workers.evaluation``).

The run's cases were collected when its jobs finished (``services._collect_images``): each answered case names its
generated image (its first output's primary file), each case its reference image (by sha256, as the set held it
when the run started). Here the files are read from storage, given to the feature extractor and the scores
(``atelier_plugins.image.features.score``: FID, KID, each case's cosine similarity) stored on the run.

Idempotent: the scores are computed outside any lock, then stored only if the run still waits for them
(``scoring_sent_at``); a second delivery of the task, or a resend by the sweeper, finds nothing to do. The model
code is passed in (``extractor`` and ``score``), so that nothing here imports torch.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone

from atelier_platform.evaluation.models import EvaluationRun, ReferenceImage, RunStatus
from atelier_platform.jobs.models import OutputFile

logger = logging.getLogger("atelier.evaluation")


class ScoringFailed(Exception):
    """Scoring cannot succeed however often it is tried (no extractor, no reference image left): the run fails."""


def _read(field_file) -> bytes | None:
    try:
        with field_file.open("rb") as handle:
            return handle.read()
    except (FileNotFoundError, OSError):
        return None


def waiting(run_id) -> EvaluationRun | None:
    return EvaluationRun.objects.filter(pk=run_id, scoring_sent_at__isnull=False).first()


def score_run(run_id, load_extractor: Callable[[], tuple[Any, str]], score: Callable) -> str:
    """Score an image run waiting for it; returns what happened: ``scored``, ``not_waiting`` (scored already, given up,
    or deleted). ``load_extractor()`` gives the feature extractor and its name; ``score(extractor, references,
    generated)`` the scores. Their errors propagate (the task retries, then gives up: ``give_up``)."""
    run = waiting(run_id)
    if run is None:
        return "not_waiting"
    results = [dict(case) for case in run.results or []]
    shas = {case["reference"]["image"] for case in results if isinstance(case.get("reference"), dict)}
    stored = {image.sha256: image for image in ReferenceImage.objects.filter(reference_set_id=run.reference_set_id,
                                                                              sha256__in=shas)}
    file_ids = [case["image"]["file_id"] for case in results if case.get("image")]
    generated_files = {file.pk: file for file in OutputFile.objects.filter(pk__in=file_ids, output__job__project=run.project_id)}
    references, generated, scored_cases = [], [], []
    for case in results:
        reference = case.get("reference") if isinstance(case.get("reference"), dict) else {}
        image = stored.get(reference.get("image"))
        reference_bytes = _read(image.file) if image is not None else None
        if reference_bytes is None:
            if case["status"] == "succeeded":
                case.update(status="failed", error={"code": "reference_missing",
                                                    "message": "The case's reference image is no longer stored."})
            continue
        made = None
        if case["status"] == "succeeded":
            file = generated_files.get(case["image"]["file_id"])
            made = _read(file.file) if file is not None else None
            if made is None:
                case.update(status="failed", error={"code": "image_missing",
                                                    "message": "The generated image is no longer stored."})
        references.append(reference_bytes)
        generated.append(made)
        scored_cases.append(case)
    if not any(made is not None for made in generated):
        raise ScoringFailed("no generated image and reference image left to compare.")
    extractor, extractor_name = load_extractor()
    scores = score(extractor, references, generated)
    for case, similarity in zip(scored_cases, scores.similarities):
        case["similarity"] = similarity
    succeeded = [case for case in results if case["status"] == "succeeded"]
    similarities = [case["similarity"] for case in succeeded if case.get("similarity") is not None]
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(pk=run_id, scoring_sent_at__isnull=False).first()
        if run is None:  # another delivery stored its scores first, or the run was deleted meanwhile
            return "not_waiting"
        failed = len(results) - len(succeeded)
        run.results = results
        run.cases_failed = failed
        run.metrics = {
            **(run.metrics or {}),
            "succeeded": len(succeeded), "failed": failed,
            "fid": scores.fid, "kid": scores.kid_mean, "kid_std": scores.kid_std,
            "kid_subset_size": scores.kid_subset_size, "not_scored": scores.reasons,
            "mean_similarity": round(sum(similarities) / len(similarities), 4) if similarities else None,
            "feature_extractor": extractor_name, "features": scores.num_features,
            "images": {"generated": sum(1 for made in generated if made is not None), "references": len(references)},
            "scoring": "done",
        }
        run.scoring_sent_at = None
        if run.status != RunStatus.CANCELLED:
            run.status = RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED
            if not succeeded:
                run.error_message = "Every case failed; see each case's error."
            run.finished_at = timezone.now()
        run.save()
        # its end (a cancelled run's too: it ended waiting for these scores)
        from atelier_platform.evaluation.services import announce_finished

        announce_finished(run)
    return "scored"


def give_up(run_id, reason: str) -> bool:
    """Fail the run's scoring for good (the task's retries spent, or an error no retry mends); False when the run
    no longer waits for it."""
    from atelier_platform.evaluation.services import _scoring_failed

    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(pk=run_id, scoring_sent_at__isnull=False).first()
        if run is None:
            return False
        _scoring_failed(run, reason)
    logger.warning("scoring evaluation run %s failed for good: %s", run_id, reason)
    return True
