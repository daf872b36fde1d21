"""Running one job on this worker process: claim it, keep it alive, run the plugin, store the result.

The model cache lives for the life of the process, so a plugin loads its model once and every
later job of the same plugin and model directory reuses it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atelier_sdk import GenerationRequest, JobCancelled, OutputItem, Plugin, PluginError, PluginRegistry, RunContext
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.models_dir import ModelDirError, resolve_model_dir
from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.lifecycle import Claim, ProducedOutput
from atelier_workers import knowledge

logger = logging.getLogger("atelier.worker")


def resolve_device(requested: str) -> str:
    """``auto`` picks the first CUDA device when torch sees one, else the CPU."""
    if requested != "auto":
        return requested
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def model_dir_for(job, plugin_class: type[Plugin]) -> tuple[Path | None, str | None]:
    """The model directory a job runs with, and its version name: the project's pinned version,
    else the plugin's default directory; None for a plugin that needs no model files."""
    setting = ProjectPlugin.objects.filter(project_id=job.project_id, plugin_id=job.plugin_id).select_related("model_version").first()
    pinned = setting.model_version if setting else None
    relative = pinned.model_dir if pinned else plugin_class.manifest.default_model_dir
    if not relative:
        return None, None
    try:
        return resolve_model_dir(relative), (pinned.version if pinned else "default")
    except ModelDirError as error:
        raise PluginError(f"{error} (worker {worker_name()})", code="model_not_found") from None


def worker_name() -> str:
    return get_config().worker_name or f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class LoadedModel:
    plugin: Plugin
    load_seconds: float


class ModelCache:
    """Loaded plugin instances of this process, least recently used dropped first."""

    def __init__(self, device: str, max_models: int = 4) -> None:
        self.device = device
        self.max_models = max_models
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()

    def get(self, plugin_class: type[Plugin], model_dir: Path | None) -> LoadedModel:
        key = (plugin_class.manifest.id, plugin_class.manifest.version, str(model_dir))
        loaded = self._models.get(key)
        if loaded is not None:
            self._models.move_to_end(key)
            return loaded
        while len(self._models) >= self.max_models:
            _, evicted = self._models.popitem(last=False)
            evicted.plugin.unload()
        started = time.perf_counter()
        instance = plugin_class()
        instance.load(self.device, model_dir)
        loaded = LoadedModel(plugin=instance, load_seconds=time.perf_counter() - started)
        logger.info("loaded %s on %s in %.2f s", key, self.device, loaded.load_seconds)
        self._models[key] = loaded
        return loaded


class Heartbeat:
    """A thread that proves the claim alive and notices a cancel, while the plugin computes."""

    def __init__(self, claim: Claim, interval_s: float) -> None:
        self.claim = claim
        self.interval_s = interval_s
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.job.pk}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s * 2 + 5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    ours, cancel = lifecycle.heartbeat(str(self.claim.job.pk), self.claim.token)
                except Exception:
                    logger.exception("heartbeat for job %s failed; will try again", self.claim.job.pk)
                    continue
                if cancel:
                    self.cancelled.set()
                if not ours:
                    self.lost.set()
                    self.cancelled.set()
                    return
        finally:
            connection.close()


def screen_output(job, produced: ProducedOutput, policy) -> ProducedOutput:
    """Screen one output (its texts and primary images); mask personal data if the project asks."""
    from atelier_sdk.safety import Target

    from atelier_platform.moderation.screening import IMAGE_TYPES, collect_texts, mask_personal_data, screen

    images = [(f"files.{name}", data) for name, media_type, data, role in produced.files
              if media_type in IMAGE_TYPES and role == "primary"]
    report = screen(job.project, Target.OUTPUT, collect_texts(produced.content, "content"), images, policy=policy)
    content = mask_personal_data(produced.content, report["findings"]) if policy.mask_personal_data else produced.content
    return ProducedOutput(content=content, files=produced.files, safety=report)


class JobRunner:
    def __init__(self, registry: PluginRegistry, cache: ModelCache) -> None:
        self.registry = registry
        self.cache = cache
        self.name = worker_name()

    def run(self, job_id: str) -> str:
        claim = lifecycle.claim_job(job_id, self.name)
        if claim is None:
            logger.info("job %s is not queued (finished, cancelled or running elsewhere); message dropped", job_id)
            return "skipped"
        job = claim.job
        token = claim.token
        try:
            with Heartbeat(claim, get_config().job_heartbeat_s) as beat:
                outputs, provenance = self._generate(claim, beat)
        except JobCancelled:
            lifecycle.fail_job(job_id, token, "cancelled", "Cancelled while running.")
            return "cancelled"
        except SoftTimeLimitExceeded:
            lifecycle.fail_job(job_id, token, "time_limit", f"Exceeded its time limit of {job.time_limit_s} s.")
            return "failed"
        except PluginError as error:
            if error.transient:
                return lifecycle.retry_or_fail(job_id, token, error.code, error.message)
            lifecycle.fail_job(job_id, token, error.code, error.message)
            return "failed"
        except Exception as error:  # a bug in the plugin: fail the job, keep the worker
            logger.exception("plugin %s crashed on job %s", job.plugin_id, job_id)
            lifecycle.fail_job(job_id, token, "plugin_crashed", f"{type(error).__name__}: {error}")
            return "failed"
        return lifecycle.complete_job(job_id, token, outputs, provenance)

    def _generate(self, claim: Claim, beat: Heartbeat) -> tuple[list[ProducedOutput], dict[str, Any]]:
        job = claim.job
        plugin_class = self.registry.get(job.plugin_id)
        if plugin_class is None:
            from atelier_sdk import TransientPluginError

            raise TransientPluginError(f"Plugin {job.plugin_id!r} is not installed on worker {self.name}.", code="plugin_unavailable")
        model_dir, model_version = model_dir_for(job, plugin_class)
        loaded = self.cache.get(plugin_class, model_dir)
        request = GenerationRequest(
            job_id=str(job.pk),
            input=plugin_class.Input.model_validate(job.input),
            params=plugin_class.Params.model_validate(job.params),
            seed=job.seed,
        )
        context = RunContext(
            self.cache.device,
            on_progress=lambda job_id, fraction, detail: lifecycle.record_progress(job_id, claim.token, fraction, detail),
            is_cancelled=lambda job_id: beat.cancelled.is_set(),
            retriever=knowledge.retrieve,
        )
        results = loaded.plugin.generate([request], context)
        if beat.cancelled.is_set():
            raise JobCancelled(str(job.pk))
        if len(results) != 1:
            raise PluginError(f"Plugin returned {len(results)} results for 1 request.", code="plugin_contract")
        result = results[0]
        if isinstance(result, PluginError):
            raise result
        provenance = {
            "plugin": plugin_class.manifest.id,
            "plugin_version": plugin_class.manifest.version,
            "model_dir": str(model_dir) if model_dir else None,
            "model_version": model_version,
            "seed": job.seed,
            "worker": self.name,
            "device": self.cache.device,
            "generated_at": timezone.now().isoformat(),
        }
        from atelier_platform.moderation.screening import policy_for

        policy = policy_for(job.project)  # once per job, not once per output
        produced = [self._produced(plugin_class, item) for item in result]
        return [screen_output(job, output, policy) for output in produced], provenance

    @staticmethod
    def _produced(plugin_class: type[Plugin], item: OutputItem) -> ProducedOutput:
        if not isinstance(item, OutputItem):
            raise PluginError(f"Plugin returned {type(item).__name__}, not OutputItem.", code="plugin_contract")
        content = plugin_class.Output.model_validate(item.content.model_dump()).model_dump(mode="json")
        files = tuple((a.name, a.media_type, a.data, a.role) for a in item.artifacts)
        return ProducedOutput(content=content, files=files)
