"""Evaluation's periodic task, on the platform queue: beat sends it every ``EVALUATION_WATCH_TICK_S``; the work is
``watch.start_due``'s."""

from atelier_platform.celery_app import START_EVALUATION_WATCHES_TASK
from atelier_platform.evaluation import watch
from atelier_platform.tasking import atelier_task


@atelier_task(START_EVALUATION_WATCHES_TASK)
def start_evaluation_watches(task) -> dict[str, int]:
    # exactly once per slot whoever runs it: the claim is the watch's row (two beats, a message delivered twice)
    return watch.start_due()
