from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.prepared_reads import PreparedRead


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    BLOCKED = "blocked", "Blocked"


class JobPurpose(models.TextChoices):
    #: a caller's request: quotas, review routing and webhooks as the project sets them
    REQUEST = "request", "Request"
    #: one case of an evaluation run (``atelier_platform.evaluation``): screened as any job, but its outputs open no
    #: review item and are never final content, it fires no webhook and is not counted in the jobs-per-day quota
    EVALUATION = "evaluation", "Evaluation"


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BLOCKED})


class Job(models.Model):
    """One generation request. This row is the truth about the job; broker messages carry its id.

    A worker owns a running job through ``claim_token``, set when it claims the row; every write
    it makes afterwards checks the token, so a worker that lost its claim (declared dead by the
    sweeper, then woke up) cannot overwrite the work of the one that took over.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    plugin_id = models.CharField(max_length=63)
    plugin_version = models.CharField(max_length=50)
    resource_class = models.CharField(max_length=10)
    input = models.JSONField()
    #: the input's texts, case-folded, for the dashboard's search (``searchable_text``): the JSON as the
    #: database stores it escapes quotes, and on SQLite every letter outside ASCII
    search_text = models.TextField(blank=True, default="", editable=False)
    params = models.JSONField(default=dict)
    seed = models.BigIntegerField()
    priority = models.PositiveSmallIntegerField(default=5)
    #: jobs of one plugin version with equal keys may run in one batch (``Plugin.batch_key``, hashed)
    batch_key = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)

    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    time_limit_s = models.PositiveIntegerField(default=600)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    progress = models.FloatField(null=True, blank=True)
    progress_detail = models.JSONField(default=dict, blank=True)
    input_screening = models.JSONField(default=dict, blank=True)
    regenerated_from = models.ForeignKey("Output", null=True, blank=True, on_delete=models.SET_NULL, related_name="regenerations")
    review_note = models.TextField(blank=True, help_text="the reviewer's note when this job regenerates a rejected output")

    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    #: the endpoint the key was sent to: a key is one request per project and per endpoint
    idempotency_scope = models.CharField(max_length=40, blank=True, default="jobs")
    request_fingerprint = models.CharField(max_length=64, blank=True)
    #: where this job's own events are delivered as well (``webhook`` of the submission): a URL under one of the
    #: project's webhook endpoints, whose secret signs them (webhooks.services.job_webhook_endpoint)
    webhook = models.CharField(max_length=2000, blank=True, default="")
    purpose = models.CharField(max_length=20, choices=JobPurpose.choices, default=JobPurpose.REQUEST)
    #: the model version this job must run with, instead of its project's pin (set only by the evaluation service)
    # RESTRICT, not PROTECT: a version in use cannot be deleted alone, but goes with its project (jobs and all)
    model_version = models.ForeignKey("catalog.ModelVersion", null=True, blank=True, on_delete=models.RESTRICT,
                                      related_name="jobs")
    #: the caller's own key/value pairs (OpenAI's ``metadata`` of a response: up to 16 strings), given back as sent;
    #: never read by the plugin, and erased with the content (``jobs.erasure``): they may name a person
    metadata = models.JSONField(default=dict, blank=True)
    #: submitted not to be waited for (OpenAI's ``background: true``): the caller polls it, and may cancel it as
    #: OpenAI's background responses are cancelled (``openai_compat.responses.cancel_response``)
    background = models.BooleanField(default=False)

    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    #: when the job's content was erased (``jobs.erasure``): the row stays as a tombstone, for quotas and usage
    erased_at = models.DateTimeField(null=True, blank=True)
    #: who erased it, as the audit log names actors (``user:12``, ``key:ab12cd34ef56``, ``retention``)
    erased_by = models.CharField(max_length=100, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    #: when the newest message for this job was due at a worker (a retry's is in the future)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    enqueue_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="job_project_newest"),
            models.Index(fields=["status", "enqueued_at"], name="job_status_enqueued"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
            # a worker looks for queued company of the job it claimed: same plugin and batch key
            models.Index(fields=["status", "plugin_id", "batch_key", "-priority", "created_at"], name="job_batch_company"),
            # the retention sweep: a project's oldest finished jobs whose content is still there
            models.Index(fields=["project", "finished_at"], condition=Q(erased_at__isnull=True), name="job_content_kept"),
            # a project's evaluation jobs, newest first: the jobs page asks on every view whether there are any (to say
            # they are left out), and lists them when asked; without it, both read every job of a big project
            models.Index(fields=["project", "-created_at"], condition=Q(purpose=JobPurpose.EVALUATION),
                         name="job_project_evaluations"),
        ]
        # The searches' trigram indexes (PostgreSQL only) are not declared here: jobs.search_indexes says why.
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_scope", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="one_job_per_idempotency_key_per_endpoint",
            ),
            models.CheckConstraint(condition=Q(priority__lte=9), name="job_priority_0_to_9"),
        ]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    @property
    def is_evaluation(self) -> bool:
        return self.purpose == JobPurpose.EVALUATION

    def __str__(self) -> str:
        return f"{self.plugin_id} job {self.id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and not self.search_text:  # a job's input never changes after it is created
            self.search_text = searchable_text(self.input)
        super().save(*args, **kwargs)


#: how much of a long input the search looks at: its start (a system prompt, the first turn) and its end
#: (the latest turns of a conversation)
SEARCH_TEXT_HEAD, SEARCH_TEXT_TAIL = 1000, 3000


def searchable_text(value) -> str:
    """The strings of a job's input, one per line and case-folded, as the dashboard's search matches them."""
    from atelier_platform.moderation.screening import collect_texts  # the texts screening reads, in order

    text = "\n".join(text for _, text in collect_texts(value, "input")).casefold().replace("\x00", "")
    if len(text) > SEARCH_TEXT_HEAD + SEARCH_TEXT_TAIL:
        text = f"{text[:SEARCH_TEXT_HEAD]}\n{text[-SEARCH_TEXT_TAIL:]}"
    return text


class ReviewState(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    RELEASED = "released", "Released after screening"
    BLOCKED = "blocked", "Blocked by screening"


#: Outputs a client may use as final content.
DELIVERABLE_REVIEW_STATES = frozenset({ReviewState.APPROVED, ReviewState.RELEASED})
#: Outputs whose content and files the jobs API never hands out (reviewers still see them in review).
WITHHELD_REVIEW_STATES = frozenset({ReviewState.BLOCKED, ReviewState.REJECTED})


def final_content() -> Q:
    """The outputs that are final content (``final`` on the API, the dashboard's library): approved, or released
    after screening; never pending, rejected or blocked ones, nor an evaluation's (pending for good), nor one whose
    job's content was erased (``jobs.erasure``: it keeps its review state, not its content)."""
    return Q(review_state__in=sorted(str(state) for state in DELIVERABLE_REVIEW_STATES), job__erased_at__isnull=True)


def is_final(output: "Output") -> bool:
    """``final_content`` of one output in hand (its job read with it)."""
    return output.review_state in DELIVERABLE_REVIEW_STATES and output.job.erased_at is None


class Output(models.Model):
    """One piece of content a job produced: an instance of the plugin's Output model."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    content = models.JSONField()
    provenance = models.JSONField(default=dict)
    safety = models.JSONField(default=dict, blank=True)
    review_state = models.CharField(max_length=20, choices=ReviewState.choices, default=ReviewState.PENDING)
    #: the content's final texts (what a reviewer may edit: a reply, each copy variant; a ranked item's title),
    #: case-folded, for the library's search (``jobs.library.output_search_text``); follows every edit
    search_text = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "index"]
        # The last line of defence against a job's outputs being written twice.
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_output_per_job_index")]
        indexes = [
            # the content library and GET /outputs/ list newest first (jobs.library.LIBRARY_ORDERING): without it, each
            # page, searched or not, sorted all of a project's outputs to show 24 of them
            models.Index(fields=["-created_at", "-id"], name="output_newest"),
        ]

    def __str__(self) -> str:
        return f"output {self.index} of {self.job_id}"

    def save(self, *args, **kwargs) -> None:
        # a review's edit changes the content: what the library finds changes with it (bulk_create, which skips
        # this, sets it itself: jobs.lifecycle)
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "content" in update_fields:
            from atelier_platform.jobs.library import output_search_text

            self.search_text = output_search_text(self.job.plugin_id, self.content)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "search_text"}
        super().save(*args, **kwargs)


def output_file_path(instance: "OutputFile", filename: str) -> str:
    return f"outputs/{instance.output.job.project_id}/{instance.output.job_id}/{instance.output.index}-{filename}"


class OutputFile(models.Model):
    output = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="files")
    role = models.CharField(max_length=30, default="primary")
    media_type = models.CharField(max_length=100)
    file = models.FileField(upload_to=output_file_path, max_length=500)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["output", "role"]


def _outputs_in_order() -> models.QuerySet:
    return Output.objects.order_by("index")


def _files_in_order() -> models.QuerySet:
    return OutputFile.objects.order_by("role", "id")


def outputs_with_files() -> models.Prefetch:
    """Jobs' outputs in order with their files, for ``prefetch_related``. Ordered within each job only:
    the models' default orderings sort by the parent's own ordering, which joins ``jobs_job`` into both
    queries (and into the query planner's work) to order the rows of a single job."""
    files = models.Prefetch("files", queryset=_files_in_order())
    return models.Prefetch("outputs", queryset=_outputs_in_order().prefetch_related(files))


def prefetch_outputs_with_files(job: Job) -> Job:
    """``prefetch_related_objects([job], outputs_with_files())`` for one job, by two prepared reads: the
    same queries (the files' only when there are outputs), the same objects, caches and related links, at
    a fraction of the ORM's cost of building them (most of a waited job's reread). Read on every call:
    nothing is kept between calls."""
    outputs = _outputs_read(job_id=job.pk)
    files_of: dict[uuid.UUID, list[OutputFile]] = {}
    if outputs:
        for file in _files_read(job_id=job.pk):
            files_of.setdefault(file.output_id, []).append(file)
    output_link, file_link = Output._meta.get_field("job"), OutputFile._meta.get_field("output")
    for output in outputs:
        output_link.set_cached_value(output, job)
        files = files_of.get(output.pk, [])
        for file in files:
            file_link.set_cached_value(file, output)
        _keep_prefetched(output, "files", files, _files_in_order())
    _keep_prefetched(job, "outputs", outputs, _outputs_in_order())
    return job


def prefetch_no_outputs(job: Job) -> Job:
    """``prefetch_related_objects([job], Prefetch("outputs", queryset=Output.objects.none()))`` without the
    ORM's work: a job that has no outputs yet (the one a request has just created) shows none, with no query."""
    _keep_prefetched(job, "outputs", [], Output.objects.none())
    return job


def _keep_prefetched(instance: models.Model, name: str, rows: list, queryset: models.QuerySet) -> None:
    """What ``prefetch_related_objects`` leaves on ``instance`` for the reverse relation ``name``: its
    manager's queryset (``queryset`` filtered to the instance) holding ``rows``."""
    if not hasattr(instance, "_prefetched_objects_cache"):
        instance._prefetched_objects_cache = {}
    cached = getattr(instance, name)._apply_rel_filters(queryset)
    cached._result_cache = rows
    cached._prefetch_done = True
    instance._prefetched_objects_cache[name] = cached


def read_again(job: Job) -> Job:
    """``job`` as it is now, with its outputs and their files, for a request that held it while it ran
    (``Prefer: wait``). Its project is the one already in hand (a job never moves), so the row is read
    without the join. Raises ``Job.DoesNotExist`` when the job was deleted meanwhile."""
    fresh = _job_read.first(pk=job.pk)
    if fresh is None:
        raise Job.DoesNotExist(f"job {job.pk} no longer exists")
    fresh.project = job.project
    return prefetch_outputs_with_files(fresh)


_job_read = PreparedRead(lambda pk: Job.objects.filter(pk=pk), pk=Job._meta.pk)
_outputs_read = PreparedRead(lambda job_id: _outputs_in_order().filter(job_id=job_id), job_id=Output._meta.get_field("job"))
#: Every file of the job's outputs, in the order each output's files are prefetched (``outputs_with_files``).
_files_read = PreparedRead(lambda job_id: _files_in_order().filter(output__job_id=job_id),
                           job_id=Output._meta.get_field("job"))
