"""Celery tasks of webhooks, on the platform queue. Messages carry a delivery id, nothing else."""

from atelier_platform.celery_app import DELIVER_WEBHOOK_TASK, SWEEP_WEBHOOKS_TASK
from atelier_platform.tasking import atelier_task
from atelier_platform.webhooks import delivery


@atelier_task(DELIVER_WEBHOOK_TASK)
def deliver_webhook(task, delivery_id: str) -> str:
    # Retries are not Celery retries: a failed attempt schedules the next one on the row and
    # publishes a delayed message, so the row always says what happens next.
    return delivery.attempt(delivery_id)


@atelier_task(SWEEP_WEBHOOKS_TASK)
def sweep_webhooks(task) -> int:
    return delivery.sweep()
