"""Scoring image evaluation runs on a CPU worker (the platform sends the task once a run's jobs have finished)."""

import logging

from atelier_platform.celery_app import SCORE_EVALUATION_TASK
from atelier_platform.config import get_config
from atelier_platform.evaluation import image_scoring
from atelier_platform.tasking import atelier_task
from atelier_workers import evaluation

logger = logging.getLogger("atelier.evaluation")

#: tries of one delivery before the run's scoring fails (the sweeper's resends are counted apart)
MAX_RETRIES = 2


@atelier_task(SCORE_EVALUATION_TASK, max_retries=MAX_RETRIES)
def score_evaluation(task, run_id: str) -> str:
    from atelier_plugins.image.features import FeatureExtractorError

    try:
        return evaluation.score_run(run_id)
    except (FeatureExtractorError, image_scoring.ScoringFailed) as error:  # no retry mends these: say what to fix
        image_scoring.give_up(run_id, str(error))
        return "failed"
    except Exception as error:
        if task.request.retries < MAX_RETRIES:
            logger.warning("scoring evaluation run %s failed (%s: %s); trying again", run_id, type(error).__name__, error)
            config = get_config()
            delay = min(config.retry_backoff_max_s, config.retry_backoff_base_s * 2 ** task.request.retries)
            raise task.retry(exc=error, countdown=delay)
        logger.exception("scoring evaluation run %s failed", run_id)
        image_scoring.give_up(run_id, f"{type(error).__name__}: {error}")
        return "failed"
