"""Celery tasks of exports: the run on the exports queue (a worker of its own), the cleanup on the platform queue.
Messages carry an export's id, nothing else; the work is
``services``'."""

from atelier_platform.celery_app import DELETE_EXPIRED_EXPORTS_TASK, RUN_EXPORT_TASK
from atelier_platform.exports import services
from atelier_platform.tasking import atelier_task


@atelier_task(RUN_EXPORT_TASK)
def run_export(task, export_id: str) -> str:
    # delivered twice, or after its worker died: the claim on the export's row says whether anything is left to do
    return services.run_export(export_id)


@atelier_task(DELETE_EXPIRED_EXPORTS_TASK)
def delete_expired_exports(task) -> int:
    return services.delete_expired()
