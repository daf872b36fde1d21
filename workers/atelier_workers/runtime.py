"""Running jobs on this worker process, in batches: claim, gather company, run, store each result.

A message names one job. The worker claims it, then claims queued jobs that may share its
batch (same plugin version, batch key and model; see ``lifecycle.claim_company``), waiting for
more only while more keep arriving, at most ``ATELIER_BATCH_MAX_WAIT_MS``: an idle worker starts
a lone job at once. The plugin gets the whole batch in one ``generate`` call; each job's result
is then screened; the results that come together (at one decoding step, or when the call returns)
are stored in one transaction, and any job that cannot join them on its own, so one job failing
fails that job only:

- a plugin that returns a ``PluginError`` for an item fails (or, if transient, retries) that item;
- a plugin that raises for the whole batch, or runs out of device memory, has the batch split
  in halves and run again, until the culprit is alone and fails alone with a clear error.

Every job of a batch shares one claim token, so the batch's heartbeat is two queries however
large it is, and the guarantees of single jobs hold: a worker that dies loses its claims to the
sweeper, and a result written under a lost claim is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from atelier_sdk import (GenerationRequest, JobCancelled, OutputItem, Plugin, PluginError, PluginRegistry, Regeneration,
                         RunContext, TransientPluginError, is_out_of_memory)
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from pydantic import ValidationError

from atelier_platform.catalog.models import DEFAULT_MODEL_NAME, ModelVersion, ProjectPlugin
from atelier_platform.catalog.models_dir import ModelDirError, relative_model_dir, resolve_model_dir
from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerState
from atelier_platform.fleet.stats import WorkerStats
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.lifecycle import Claim, JobCompletion, ProducedOutput
from atelier_platform.jobs.models import Job
from atelier_platform.prepared_reads import PreparedRead
from atelier_workers import knowledge
from atelier_workers.heartbeat import BatchHeartbeat
from atelier_workers.model_cache import ModelCache, release_device_memory
from atelier_workers.soft_limit import SoftLimitWatch

logger = logging.getLogger("atelier.worker")

#: Between two looks for company while jobs keep arriving.
COMPANY_POLL_S = 0.005
#: A batch this young screens its outputs with the safety policy read when its jobs were claimed.
POLICY_FRESH_S = 1.0


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
    """The model directory a job runs with, and its version name: the version the job names (an evaluation
    job's), else the project's pinned version, else the plugin's default directory; None for a plugin that
    needs no model files."""
    return model_dir_for_job(job.project_id, job.model_version_id, plugin_class)


def model_dir_for_job(project_id: int, model_version_id: int | None,
                      plugin_class: type[Plugin]) -> tuple[Path | None, str | None]:
    if model_version_id is None:
        return model_dir_for_project(project_id, plugin_class)
    version = _model_version_read.first(pk=model_version_id)
    if version is None or version.plugin_id != plugin_class.manifest.id:
        raise PluginError(f"The model version this job names is not a model of {plugin_class.manifest.id}.",
                          code="model_not_found")
    if not version.is_available_to(project_id):
        # the evaluation service offers only the project's own and shared versions; this holds if a row says otherwise
        raise PluginError("The model version this job names is private to another project.", code="model_not_found")
    return _resolved(version.model_dir, version.version)


_model_version_read = PreparedRead(lambda pk: ModelVersion.objects.filter(pk=pk).order_by()[:1],
                                   pk=ModelVersion._meta.pk)


#: A project's setting for a plugin with its pinned model; (project, plugin) is unique: no ordering.
_model_pin_read = PreparedRead(
    lambda project_id, plugin_id: ProjectPlugin.objects.filter(project_id=project_id, plugin_id=plugin_id)
    .select_related("model_version").order_by()[:1],
    project_id=ProjectPlugin._meta.get_field("project"), plugin_id=ProjectPlugin._meta.get_field("plugin_id"),
)


def model_dir_for_project(project_id: int, plugin_class: type[Plugin]) -> tuple[Path | None, str | None]:
    setting = _model_pin_read.first(project_id=project_id, plugin_id=plugin_class.manifest.id)
    pinned = setting.model_version if setting else None
    if pinned is not None and not pinned.is_available_to(project_id):
        # another tenant's private version (every way of pinning refuses it): never run on its weights nor
        # name it in this project's provenance, and no silent fall back to the default either
        raise PluginError("The project's pinned model version is private to another project: pin a shared version, "
                          "one of the project's own or the default in its settings.", code="model_not_found")
    return _resolved(pinned.model_dir if pinned else plugin_class.manifest.default_model_dir,
                     pinned.version if pinned else DEFAULT_MODEL_NAME)


def _resolved(relative: str, version: str) -> tuple[Path | None, str | None]:
    if not relative:
        return None, None
    try:
        return resolve_model_dir(relative), version
    except ModelDirError as error:
        # The job's error is read by every jobs:read key of the project: it names the model as the project knows it
        # (relative to the models root), never the worker's host or its paths, which the worker's log keeps.
        logger.warning("model directory %r on worker %s: %s", relative, worker_name(), error)
        raise PluginError(without_server_paths(str(error)), code="model_not_found") from None


def without_server_paths(message: str) -> str:
    """``message`` with the models root's path taken out: a model directory as the project names it (relative to
    the root), and the root by its setting's name."""
    root = str(get_config().resolved_models_root)
    return message.replace(root + os.sep, "").replace(root, "(ATELIER_MODELS_ROOT)")


def worker_name() -> str:
    return get_config().worker_name or f"{socket.gethostname()}:{os.getpid()}"


def _inference_mode():
    """``torch.inference_mode`` around every plugin call once torch is loaded (no autograd records,
    less memory), whatever the plugin remembered; a no-op for plugins without torch."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters taken out of every string: a model may emit one, and
    PostgreSQL's JSON cannot store it (the job would fail to save)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


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
    """Runs the batches of one worker process; keeps its models warm and its figures."""

    def __init__(self, registry: PluginRegistry, cache: ModelCache, *, stats: WorkerStats | None = None) -> None:
        config = get_config()
        self.registry = registry
        self.cache = cache
        self.stats = stats or WorkerStats()
        self.name = worker_name()
        self.max_wait_s = config.batch_max_wait_ms / 1000
        self.max_batch_cap = config.max_batch_size
        # Not ready until the process's start (safety checks, preloaded models) is done or a first batch runs:
        # the state reporter starts with the runner, and its first report would say ready before either.
        self.state = WorkerState.STARTING
        self.detail = ""
        self.current_jobs = 0
        self.soft_limit = SoftLimitWatch()

    def max_batch_size(self, plugin_class: type[Plugin]) -> int:
        size = plugin_class.manifest.max_batch_size
        return min(size, self.max_batch_cap) if self.max_batch_cap else size

    # -- one message -------------------------------------------------------------------------
    def run(self, job_id: str) -> str:
        """Run the job a message named, with whatever company it finds; returns that job's outcome."""
        # Celery's soft limit counts from the task's start, so the batch's deadline does too
        task_started = time.monotonic()
        self.soft_limit.arm()
        claim = lifecycle.claim_job(job_id, self.name)
        if claim is None:
            logger.info("job %s is not queued (finished, cancelled or running elsewhere) or is a retry not due yet; "
                        "message dropped", job_id)
            return "skipped"
        return self.run_claimed(claim, task_started)

    def run_claimed(self, claim: Claim, task_started: float) -> str:
        leader = claim.job
        batch = _Batch(self, claim.token, [leader], deadline=task_started + leader.time_limit_s)
        plugin_class = self.registry.get(leader.plugin_id)
        try:
            if plugin_class is None:
                raise TransientPluginError(f"Plugin {leader.plugin_id!r} is not installed on worker {self.name}.",
                                           code="plugin_unavailable")
            model_dir, model_version = model_dir_for(leader, plugin_class)
            batch.add(self._gather_company(leader, claim.token, plugin_class, (model_dir, model_version)))
        except PluginError as error:
            batch.finish_all(error)
            return batch.outcomes[str(leader.pk)]
        if self.state == WorkerState.UNHEALTHY:
            # The reason was for the state left here; kept, it would stay on a ready worker's report (and
            # hide the safety checks not running there). A failure in this batch sets its own again.
            self.detail = ""
        self.state, self.current_jobs = WorkerState.BUSY, len(batch.by_id)
        try:
            batch.run(plugin_class, model_dir, model_version)
        except SoftTimeLimitExceeded:
            batch.finish_all(batch.time_limit_error())
        finally:
            self.current_jobs = 0
            if self.state == WorkerState.BUSY:
                self.state = WorkerState.READY
        return batch.outcomes.get(str(leader.pk), "lost")

    def _gather_company(self, leader: Job, token, plugin_class: type[Plugin],
                        model: tuple[Path | None, str | None]) -> list[Job]:
        """Claim compatible queued jobs, up to the batch size, waiting only while they keep coming."""
        room = self.max_batch_size(plugin_class) - 1
        if room <= 0 or lifecycle.runs_alone(leader):
            return []
        same_model_cache: dict[tuple[int, int | None], bool] = {(leader.project_id, leader.model_version_id): True}

        def same_model(project_id: int, model_version_id: int | None) -> bool:
            # A job naming a model version (an evaluation's) runs with it, not with its project's pin.
            key = (project_id, model_version_id)
            if key not in same_model_cache:
                try:
                    # The version's name too, not only its files: each output's provenance names the batch's
                    # version, and a project pinned to "v1" (registered on the default's files) must read "v1".
                    same_model_cache[key] = model_dir_for_job(project_id, model_version_id, plugin_class) == model
                except PluginError:
                    same_model_cache[key] = False
            return same_model_cache[key]

        company: list[Job] = []
        deadline = time.monotonic() + self.max_wait_s
        quiet_after = max(COMPANY_POLL_S * 2, self.max_wait_s / 4)
        last_arrival = None
        while True:
            found = lifecycle.claim_company(leader, token, self.name, room - len(company), same_model)
            now = time.monotonic()
            if found:
                company += found
                last_arrival = now
            if len(company) >= room or now >= deadline or last_arrival is None or now - last_arrival >= quiet_after:
                return company
            time.sleep(min(COMPANY_POLL_S, max(0.0, deadline - now)))


class _Batch:
    """The jobs of one plugin call, and the storing of each one's result."""

    def __init__(self, runner: JobRunner, token, jobs: list[Job], *, deadline: float) -> None:
        self.runner = runner
        self.token = token
        self.deadline = deadline  # time.monotonic() at which the batch's time limit is up
        self.time_limit_s = jobs[0].time_limit_s
        self.by_id: dict[str, Job] = {str(job.pk): job for job in jobs}
        self.outcomes: dict[str, str] = {}  # job id -> its outcome, once stored
        self.beat: BatchHeartbeat | None = None
        self.plugin_class: type[Plugin] | None = None
        self.provenance: dict[str, Any] = {}
        self._policies: dict[int, Any] = {}
        self.images = 0
        self.generate_started: float | None = None
        self.generate_ended: float | None = None
        self.claimed_at = time.monotonic()

    def add(self, jobs: list[Job]) -> None:
        self.by_id.update((str(job.pk), job) for job in jobs)

    def time_is_up(self) -> bool:
        # The signal first: Celery's timer starts a little before ``deadline``'s clock does, so a limit the
        # plugin swallowed can fire while the clock still reads "in time".
        return self.runner.soft_limit.fired or time.monotonic() >= self.deadline

    def time_limit_error(self) -> PluginError:
        return PluginError(f"Exceeded its time limit of {self.time_limit_s} s.", code="time_limit")

    def run(self, plugin_class: type[Plugin], model_dir: Path | None, model_version: str | None) -> None:
        runner = self.runner
        self.plugin_class = plugin_class
        jobs = self.by_id
        with BatchHeartbeat(self.token, list(jobs)) as beat:
            self.beat = beat
            try:
                loaded = runner.cache.get(plugin_class, model_dir)
            except PluginError as error:
                self.finish_all(error)
                return
            except SoftTimeLimitExceeded:  # an Exception too: the time is up, not the model broken
                raise
            except Exception as error:
                logger.exception("loading %s from %s failed", plugin_class.manifest.id, model_dir)
                runner.state, runner.detail = WorkerState.UNHEALTHY, f"loading {plugin_class.manifest.id} failed: {error}"
                # The reason, which may hold paths, is the operator's: the log above and the worker's state (the
                # workers page, owners only). The job's error says what kind of failure it was.
                self.finish_all(TransientPluginError(f"The model could not be loaded ({type(error).__name__}); an operator "
                                                     "finds why in the worker's log and on the workers page.",
                                                     code="model_load_failed"))
                return
            requests = []
            for job_id, job in jobs.items():
                if beat.is_cancelled(job_id):
                    # Asked to cancel (or taken back) while its company gathered or its model loaded: the
                    # heartbeat has said so already; running it would only spend the device on a discarded result.
                    self.finish_many({job_id: JobCancelled(job_id)})
                    continue
                try:
                    requests.append(GenerationRequest(
                        job_id=job_id, input=plugin_class.Input.model_validate(job.input),
                        params=plugin_class.Params.model_validate(job.params), seed=job.seed,
                        regeneration=Regeneration(note=job.review_note) if job.regenerated_from_id is not None else None,
                    ))
                except ValidationError as error:
                    self.finish_many({job_id: PluginError(f"The stored job no longer matches the plugin's schema: {error}",
                                                          code="invalid_input")})
            # Every reader of the job sees this (any jobs:read key): what made the output and how, enough to make
            # it again (with the seed and timings added per job), and nothing of the servers. The model directory
            # is relative to the models root, as a project pins it and GET /workers/ shows it, not the host's
            # path; which worker ran the job is Job.worker, for operators (it was here as host:pid).
            self.provenance = {
                "plugin": plugin_class.manifest.id,
                "plugin_version": plugin_class.manifest.version,
                "model_dir": relative_model_dir(model_dir),
                "model_version": model_version,
                "device": runner.cache.device,
                "batch_size": len(requests),
            }
            context = RunContext(
                runner.cache.device,
                on_progress=beat.progress,
                is_cancelled=beat.is_cancelled,
                retriever=knowledge.retrieve,
                on_results=self.finish_many,
            )
            started = self.generate_started = time.perf_counter()
            results = self.generate_isolated(loaded.plugin, requests, context)
            self.generate_ended = time.perf_counter()
            elapsed = self.generate_ended - started
            self.finish_many({request.job_id: result for request, result in zip(requests, results)})
            self._count_batch(requests, elapsed)
            if runner.state == WorkerState.UNHEALTHY and not any(
                isinstance(r, PluginError) and r.code == "out_of_memory" for r in results
            ):
                runner.state, runner.detail = WorkerState.BUSY, ""

    # -- running the plugin, isolating failures --------------------------------------------------
    def generate_isolated(self, plugin: Plugin, requests: list[GenerationRequest], context: RunContext) -> list:
        """One result per request; a batch-wide failure is split until it fails only its own job.

        Celery's soft time limit is an exception raised wherever the plugin is, and a plugin's own
        ``except Exception`` (around a retrieval, one job's ranking) may catch it and carry on: so once the
        batch's time is up, whatever the call returned or raised, its successes are stored and the rest
        fail with ``time_limit``; nothing is split or run again."""
        if not requests:
            return []
        try:
            with _inference_mode():
                results = plugin.generate(requests, context)
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:
            if self.time_is_up():
                raise SoftTimeLimitExceeded() from error
            return self._after_failure(plugin, requests, context, error)
        if not isinstance(results, list) or len(results) != len(requests):
            count = len(results) if isinstance(results, list) else type(results).__name__
            if len(requests) > 1 and not self.time_is_up():
                # Which result is whose is unknown: a plugin that drops (or adds) one job's result breaks the
                # whole batch like a crash, and is split the same way, so that only that job fails.
                logger.warning("plugin %s returned %s results for a batch of %d; splitting it to find the job",
                               plugin.manifest.id, count, len(requests))
                return self._split(plugin, requests, context)
            results = [PluginError(f"Plugin returned {count} results for {len(requests)} requests.",
                                   code="plugin_contract")] * len(requests)
        if self.time_is_up():
            self.finish_many({request.job_id: result for request, result in zip(requests, results)})
            raise SoftTimeLimitExceeded()
        return results

    def _after_failure(self, plugin: Plugin, requests: list[GenerationRequest], context: RunContext,
                       error: Exception) -> list:
        """The results of a plugin call that raised ``error`` for the whole batch."""
        if isinstance(error, JobCancelled):
            # The plugin stopped the whole call for one cancelled job: that job is done; run the rest again.
            job_id = error.args[0] if error.args else None
            if len(requests) == 1:
                return [error]
            if job_id not in {r.job_id for r in requests}:
                return self._split(plugin, requests, context)
            again = iter(self.generate_isolated(plugin, [r for r in requests if r.job_id != job_id], context))
            return [error if r.job_id == job_id else next(again) for r in requests]
        if isinstance(error, PluginError):
            return [error] * len(requests)
        if is_out_of_memory(error):
            release_device_memory(self.runner.cache.device)
            if len(requests) == 1:
                self.runner.state = WorkerState.UNHEALTHY
                self.runner.detail = f"out of device memory on a single job: {error}"
                return [PluginError(
                    f"The device ran out of memory even for this job alone ({self.runner.cache.device}): "
                    "ask for less (fewer tokens, a smaller image) or run it on a larger device.",
                    code="out_of_memory",
                )]
            logger.warning("out of memory on a batch of %d; splitting it in two", len(requests))
            self.runner.stats.count("oom_splits")
            return self._split(plugin, requests, context)
        if len(requests) == 1:
            logger.error("plugin %s crashed on job %s", plugin.manifest.id, requests[0].job_id, exc_info=error)
            return [PluginError(f"{type(error).__name__}: {error}", code="plugin_crashed")]
        logger.warning("plugin %s crashed on a batch of %d (%s); splitting it to find the job that fails",
                       plugin.manifest.id, len(requests), error)
        return self._split(plugin, requests, context)

    def _split(self, plugin, requests, context) -> list:
        """Run each half on its own. The first half's results are stored before the second half runs: a
        time limit reached there then fails only the jobs without a result."""
        half = len(requests) // 2
        first = self.generate_isolated(plugin, requests[:half], context)
        self.finish_many({request.job_id: result for request, result in zip(requests[:half], first)})
        return first + self.generate_isolated(plugin, requests[half:], context)

    # -- storing results ----------------------------------------------------------------------------
    def finish_all(self, error: PluginError) -> None:
        self.finish_many({job_id: error for job_id in self.by_id})

    def finish_many(self, results: dict[str, Any]) -> None:
        """Store results that came together: those a plugin handed over at one step, or the rest when its
        call returns. Each job's result is stored once (a result handed over early is not stored again).
        The successes go in one transaction; a failure, a cancel or a lost claim is stored job by job, and
        so is every job of a group the database refused, so that one bad job fails alone."""
        # The model's own time for these jobs ends here: results handed over during the plugin call, or
        # the call's end; screening and storing come after it.
        result_at = self.generate_ended or time.perf_counter()
        completions: list[JobCompletion] = []
        for job_id, result in results.items():
            if job_id in self.outcomes:
                continue
            job = self.by_id.get(job_id)
            if job is None:
                logger.warning("plugin delivered a result for job %s, which is not in its batch", job_id)
                continue
            try:
                prepared = self._prepare(job, result, result_at)
            except SoftTimeLimitExceeded:
                raise
            except Exception as error:
                prepared = self._not_stored(job, error)
            if isinstance(prepared, JobCompletion):
                completions.append(prepared)
            else:
                self._stored(job, prepared)
        if not completions:
            return
        if len(completions) == 1:
            outcomes = {str(completions[0].job.pk): self._complete_alone(completions[0])}
        else:
            try:
                outcomes = lifecycle.complete_jobs(self.token, completions)
            except lifecycle.NotAllOurs:  # a cancel asked or a claim lost meanwhile: each gets its own outcome
                outcomes = {str(c.job.pk): self._complete_alone(c) for c in completions}
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.warning("storing %d results together failed; storing them one by one", len(completions),
                               exc_info=True)
                outcomes = {str(c.job.pk): self._complete_alone(c) for c in completions}
        for completion in completions:
            self._stored(completion.job, outcomes[str(completion.job.pk)])

    def _complete_alone(self, completion: JobCompletion) -> str:
        job = completion.job
        try:
            return lifecycle.complete_job(job.pk, self.token, completion.outputs, completion.provenance,
                                          policy=completion.policy, job=job, progress_detail=completion.progress_detail)
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:
            return self._not_stored(job, error)

    def _not_stored(self, job: Job, error: Exception) -> str:
        """A result that could not be screened or stored (the database refused a row, a check crashed):
        the job is retried with backoff, and fails after its last attempt with ``store_failed`` and the
        reason. Where even that cannot be written (the database is gone), it stays running under this
        claim, and the sweeper queues it again once its heartbeats stop."""
        logger.exception("storing the result of job %s failed", job.pk)
        try:
            return lifecycle.retry_or_fail(str(job.pk), self.token, "store_failed",
                                           f"The result could not be stored: {type(error).__name__}: {error}")
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("job %s: could not record that its result was not stored; the sweeper will retry it", job.pk)
            return "error"

    def _stored(self, job: Job, outcome: str) -> None:
        job_id = str(job.pk)
        self.outcomes[job_id] = outcome
        if self.beat is not None:
            self.beat.finished(job_id)
        stats = self.runner.stats
        counter = {"succeeded": "jobs_succeeded", "failed": "jobs_failed", "queued": "jobs_retried",
                   "cancelled": "jobs_cancelled"}.get(outcome)
        if counter:
            stats.count(counter)
        if job.started_at:
            stats.observe("run_seconds", (timezone.now() - job.started_at).total_seconds())
            if job.enqueued_at:
                stats.observe("queue_wait_seconds", max(0.0, (job.started_at - job.enqueued_at).total_seconds()))

    def _prepare(self, job: Job, result, result_at: float) -> JobCompletion | str:
        """A success, screened and ready to store with others; anything else is stored here, and its
        outcome returned."""
        job_id = str(job.pk)
        if isinstance(result, JobCancelled) or (self.beat is not None and job_id in self.beat.cancelled):
            return "cancelled" if lifecycle.fail_job(job_id, self.token, "cancelled", "Cancelled while running.") else "lost"
        if isinstance(result, PluginError) and self.time_is_up():
            # not retried as the plugin's error: that may be the time limit, caught by the plugin itself
            result = self.time_limit_error()
        if isinstance(result, PluginError):
            if result.transient:
                return lifecycle.retry_or_fail(job_id, self.token, result.code, result.message)
            return "failed" if lifecycle.fail_job(job_id, self.token, result.code, result.message) else "lost"
        try:
            if not isinstance(result, list):
                raise PluginError(f"Plugin returned {type(result).__name__} for a job, not a list of OutputItem.",
                                  code="plugin_contract")
            produced = [self._produced(item) for item in result]
        except PluginError as error:
            return "failed" if lifecycle.fail_job(job_id, self.token, error.code, error.message) else "lost"
        from atelier_platform.moderation.screening import IMAGE_TYPES

        self.images += sum(1 for p in produced for _, media_type, _, role in p.files if media_type in IMAGE_TYPES and role == "primary")
        policy = self._policy(job)
        outputs = [screen_output(job, output, policy) for output in produced]
        provenance = {**self.provenance, "seed": job.seed, "generated_at": timezone.now().isoformat()}
        if self.generate_started is not None:
            # the model's own time for this job: from the batch's plugin call to this job's result
            provenance["generate_seconds"] = round(result_at - self.generate_started, 4)
        return JobCompletion(job, outputs, provenance, policy,
                             progress_detail=self.beat.detail_of(job_id) if self.beat is not None else {})

    def _policy(self, job: Job):
        """The project's safety policy, once per project per batch: the one read with the claim while the
        batch is younger than ``POLICY_FRESH_S`` (a change saved since is at most that old), else read again,
        so that a long batch screens with the policy as it is when its results come."""
        if job.project_id not in self._policies:
            from atelier_platform.moderation.screening import policy_for

            fresh = time.monotonic() - self.claimed_at > POLICY_FRESH_S
            self._policies[job.project_id] = policy_for(job.project, fresh=fresh)
        return self._policies[job.project_id]

    def _produced(self, item: OutputItem) -> ProducedOutput:
        if not isinstance(item, OutputItem):
            raise PluginError(f"Plugin returned {type(item).__name__}, not OutputItem.", code="plugin_contract")
        try:
            content = self.plugin_class.Output.model_validate(item.content.model_dump()).model_dump(mode="json")
        except (ValidationError, AttributeError) as error:
            raise PluginError(f"Plugin output does not match its Output schema: {error}", code="plugin_contract") from None
        files = tuple((a.name, a.media_type, a.data, a.role) for a in item.artifacts)
        return ProducedOutput(content=without_nul(content), files=files)

    def _count_batch(self, requests: list[GenerationRequest], seconds: float) -> None:
        stats = self.runner.stats
        stats.count("batches")
        stats.observe("batch_size", len(requests))
        stats.count("generation_seconds", seconds)
        tokens = sum(int(self.beat.detail_of(r.job_id).get("tokens", 0) or 0) for r in requests) if self.beat else 0
        images = self.images
        stats.count("tokens", tokens)
        stats.count("images", images)
        if seconds > 0:
            stats.set_gauge("tokens_per_second", tokens / seconds)
            stats.set_gauge("images_per_second", images / seconds)

