"""Reference sets (a project's own questions with the answers it expects) and evaluation runs (a model
version's answers to them, scored)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from atelier_platform.accounts.models import ApiKey, Project


class JSONArrayLength(models.Func):
    """The number of items of a JSON array column, counted by the database (PostgreSQL's jsonb, SQLite's JSON text)."""

    function = "json_array_length"
    output_field = models.IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="jsonb_array_length", **extra)


class ReferenceSetQuerySet(models.QuerySet):
    def with_case_count(self) -> "ReferenceSetQuerySet":
        """Without the cases (a set may hold a megabyte of them), with their number (``case_count``): for lists."""
        return self.defer("cases").annotate(case_count=JSONArrayLength("cases"))


class ReferenceSet(models.Model):
    """Cases for one plugin: ``[{"input": {...}, "params": {...}, "reference": "the expected text"}]``, each input
    valid for the plugin's input schema (``services.checked_cases``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reference_sets")
    plugin_id = models.CharField(max_length=63)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    cases = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReferenceSetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="one_reference_set_name_per_project")]

    def __str__(self) -> str:
        return f"{self.name} ({self.plugin_id}, {len(self.cases)} cases)"


def reference_image_path(instance: "ReferenceImage", filename: str) -> str:
    return f"evaluation/{instance.reference_set.project_id}/{instance.reference_set_id}/{instance.sha256[:32]}-{filename}"


class ReferenceImage(models.Model):
    """The image a case of an image set expects, stored as generated files are (media storage, not the database):
    a case's ``reference`` names it by its SHA-256 (``{"image": sha256, ...}``); one file per distinct image of a
    set. It goes with its set (the file too: ``receivers``)."""

    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE, related_name="images")
    sha256 = models.CharField(max_length=64)
    media_type = models.CharField(max_length=30)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    file = models.FileField(upload_to=reference_image_path, max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reference_set", "id"]
        constraints = [models.UniqueConstraint(fields=["reference_set", "sha256"], name="one_file_per_reference_image")]

    def __str__(self) -> str:
        return f"reference image {self.sha256[:12]} of {self.reference_set_id}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    #: stopped by a member before every case had finished (``services.cancel_run``): the finished cases scored
    CANCELLED = "cancelled", "Cancelled"


FINISHED_RUN_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class EvaluationRun(models.Model):
    """One model version's answers to a reference set: one evaluation job per case (``jobs.Job.purpose``), scored
    with sacrebleu once every job has finished (``services.finish_if_done``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluation_runs")
    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE, related_name="runs")
    plugin_id = models.CharField(max_length=63)
    #: the version evaluated; null: the project's current model (its pin, else the plugin's default) at run time
    # RESTRICT, not PROTECT: a version in use cannot be deleted alone, but goes with its project (jobs and all)
    model_version = models.ForeignKey("catalog.ModelVersion", null=True, blank=True, on_delete=models.RESTRICT,
                                      related_name="evaluation_runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cases_total = models.PositiveIntegerField(default=0)
    cases_done = models.PositiveIntegerField(default=0)
    cases_failed = models.PositiveIntegerField(default=0)
    #: corpus BLEU and chrF of the succeeded cases against their references, and the counts behind them
    metrics = models.JSONField(default=dict, blank=True)
    #: per case, in the set's order: job id, status, output text, reference, chrF, error
    results = models.JSONField(default=list, blank=True)
    error_message = models.TextField(blank=True, default="")
    #: an image run whose answers wait for a worker to score them (``image_scoring``): when the scoring task was
    #: last sent (the sweeper sends it again when overdue), and how many times; None once scored or given up
    scoring_sent_at = models.DateTimeField(null=True, blank=True)
    scoring_attempts = models.PositiveSmallIntegerField(default=0)
    #: the watch that started it (``watch``); null for a run someone started, or once its watch was deleted
    schedule = models.ForeignKey("EvaluationSchedule", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="runs")
    #: a scheduled run's verdict once it ended (``watch.judge``): outcome, the run it was measured against, the
    #: gates; empty for other runs and while it goes
    watch = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="evaluation_run_project_newest"),
                   models.Index(fields=["status"], name="evaluation_run_status"),
                   models.Index(fields=["schedule", "-created_at"], name="evaluation_run_schedule_newest")]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES

    def __str__(self) -> str:
        return f"evaluation {self.id} of {self.reference_set_id} ({self.status})"


class EvaluationCase(models.Model):
    """The job that answers one case of a run; how a finished job finds its run."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="cases")
    index = models.PositiveIntegerField()
    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="evaluation_case")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="one_job_per_evaluation_case")]


class EvaluationSchedule(models.Model):
    """A watch on the model in production: the set evaluated every ``interval_hours`` (beat starts each due one's run
    through the API's service, ``watch.start_due``), each scheduled run measured against the watch's previous
    succeeded one with the limits of ``max_drop`` (the ``evaluate`` command's gate). One per reference set."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluation_schedules")
    reference_set = models.OneToOneField(ReferenceSet, on_delete=models.CASCADE, related_name="schedule")
    #: the version evaluated; null: the version the project pins when each run starts (the default model if none)
    model_version = models.ForeignKey("catalog.ModelVersion", null=True, blank=True, on_delete=models.RESTRICT,
                                      related_name="evaluation_schedules")
    interval_hours = models.PositiveIntegerField()
    #: each gated metric's largest allowed drop against the previous run (``gate.checked_max_drops``)
    max_drop = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    #: when beat starts the next run (the first tick at or after it); moved on by whole intervals when claimed
    next_run_at = models.DateTimeField()
    last_run = models.ForeignKey(EvaluationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    #: the last time it was due and started nothing, and why (``watch.SKIPPED_*``, with a message in English)
    last_skipped_at = models.DateTimeField(null=True, blank=True)
    last_skip_code = models.CharField(max_length=40, blank=True, default="")
    last_skip_message = models.TextField(blank=True, default="")
    #: the first due start that failed (refused, or an error) since the watch last started a run: set, the streak was
    #: announced (``evaluation_watch.failed_to_start``) and is not again; cleared by the next run it starts, or by the
    #: owner changing the watch (``watch.update_schedule``)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="evaluation_schedule_due")]

    def __str__(self) -> str:
        return f"watch of {self.reference_set_id} every {self.interval_hours} h"
