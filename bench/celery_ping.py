"""A bare Celery app on Atelier's broker, for bench/overhead.py's baseline: one no-op task and a
result backend, nothing else (no database, no validation, no screening)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")

from atelier_platform.celery_app import _broker_options  # noqa: E402
from atelier_platform.config import get_config  # noqa: E402

QUEUE = "bench_ping"

config = get_config()
if config.uses_embedded_broker:
    results = config.data_dir.resolve() / "ping-results"
    results.mkdir(parents=True, exist_ok=True)
    result_backend = f"file://{results}"
else:
    result_backend = config.resolved_broker_url
app = Celery("bench_ping", broker=config.resolved_broker_url, backend=result_backend)
app.conf.update(
    broker_transport_options=_broker_options(config),
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_acks_late=True, worker_prefetch_multiplier=1, task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.ping")
def ping() -> str:
    return "pong"
