from __future__ import annotations

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models.manager import BaseManager
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from atelier_platform.accounts.models import MAX_KEY_RATE_LIMIT_PER_MINUTE
from atelier_platform.instants import in_utc
from atelier_platform.jobs.models import WITHHELD_REVIEW_STATES, Job, JobPurpose, Output, OutputFile, is_final
from atelier_platform.jobs.regenerations import link_regenerations, links_of
from atelier_platform.moderation.models import LEASE_SECONDS, RETENTION_DAYS


class StrictSerializer(serializers.Serializer):
    """Unknown fields are an error, not silently dropped: a typo like ``parmas`` must be heard."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class FieldsBuiltOnce(serializers.ModelSerializer):
    """A ModelSerializer that builds its fields from the model once per class, not once per instance.

    DRF introspects the model again for every serializer it creates (``get_fields``): for a job with
    one output that was 80% of writing the answer (0.5 of 0.6 ms), on every poll and every waited
    job. What it builds depends only on the class (its Meta and declared fields), so it is built
    once and each instance gets a copy, as DRF copies declared fields, since fields are bound to
    their serializer.
    """

    def get_fields(self):
        built = type(self).__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            type(self)._fields_built_once = built  # per class: a subclass builds its own
        return copy.deepcopy(built)


class JobCreateSerializer(StrictSerializer):
    plugin = serializers.CharField(max_length=63, help_text="Plugin id, as listed by GET /api/v1/plugins/.")
    input = serializers.DictField(help_text="Input object; must match the plugin's input_schema.")
    params = serializers.DictField(required=False, default=dict, help_text="Must match the plugin's params_schema.")
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5, help_text="0 (lowest) to 9 (most urgent).")
    webhook = serializers.CharField(
        max_length=2000, required=False, trim_whitespace=True,
        help_text="A URL that receives this job's own events (job.succeeded, job.failed, job.cancelled, output.flagged, "
                  "output.review_changed), signed like any delivery. It must lie under one of the project's webhook "
                  "endpoints (same scheme, host and port; the endpoint's path or below it), whose secret signs them; "
                  "its query is yours (e.g. https://app.example.com/hooks/atelier?order=123).")


class OutputFileSerializer(FieldsBuiltOnce):
    url = serializers.SerializerMethodField(help_text="Download with the same credentials (Bearer key or session).")

    class Meta:
        model = OutputFile
        fields = ["id", "role", "media_type", "size", "url"]

    def get_url(self, file: OutputFile) -> str:
        return f"/api/v1/outputs/{file.output_id}/files/{file.pk}/"


class OutputSerializer(FieldsBuiltOnce):
    files = OutputFileSerializer(many=True, read_only=True)

    class Meta:
        model = Output
        fields = ["id", "index", "content", "review_state", "final", "provenance", "safety", "files", "created_at"]

    final = serializers.SerializerMethodField(help_text="true when the content may be used: approved, or released after "
                                                        "screening, and not erased since")
    content = serializers.JSONField(allow_null=True, help_text="null on the jobs and outputs endpoints for an output blocked "
                                    "by screening or rejected by a reviewer; null everywhere (the review queue too) for "
                                    "one whose job's content was erased")

    def get_final(self, output: Output) -> bool:
        return is_final(output)


#: The safety check whose evidence names the project's own blocklist terms.
BLOCKLIST_CHECK = "blocklist"


def report_for_callers(report):
    """A screening report as the jobs API shows it: the blocklist's evidence keeps where it matched and
    what, not which term. The list is the project's (even its owners see only counts); a caller who read a
    pattern could write around it."""
    if not isinstance(report, dict) or not report.get("findings"):
        return report
    findings = [
        {**finding, "evidence": [{k: v for k, v in e.items() if k != "detail"} for e in finding.get("evidence") or []]}
        if finding.get("check") == BLOCKLIST_CHECK else finding
        for finding in report["findings"]
    ]
    return {**report, "findings": findings}


class DeliveredOutputSerializer(OutputSerializer):
    """An output as the jobs and outputs endpoints hand it out: one blocked by screening or rejected by a
    reviewer keeps its state and safety report, never its content or files; no report names a blocklist
    term (``OutputSerializer``, whole, is for reviewers)."""

    def to_representation(self, output: Output) -> dict:
        data = super().to_representation(output)
        # an erased job's outputs keep their state and report; what is left of their content (token counts) and
        # their file rows (no file) are the usage report's, not content
        if output.review_state in WITHHELD_REVIEW_STATES or output.job.erased_at is not None:
            data["content"], data["files"] = None, []
        data["safety"] = report_for_callers(data["safety"])
        return data


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class JobProgressSerializer(serializers.Serializer):
    fraction = serializers.FloatField()
    detail = serializers.DictField()


class JobListSerializer(serializers.ListSerializer):
    """Jobs with their regeneration links read for all of them at once (two queries at most), not job by job."""

    def to_representation(self, data):
        jobs = list(data.all() if isinstance(data, BaseManager) else data)
        link_regenerations(jobs)
        return super().to_representation(jobs)


class JobSummarySerializer(FieldsBuiltOnce):
    plugin = serializers.CharField(source="plugin_id")
    project = serializers.CharField(source="project.slug")
    regenerated_from = serializers.SerializerMethodField(
        help_text="The job whose output a reviewer sent back for regeneration, which this job makes another try at "
                  "(same input, a new seed); null for a job submitted by a caller.")
    regenerated_as = serializers.SerializerMethodField(
        help_text="The jobs a reviewer queued to regenerate this job's outputs (a regenerate decision, which rejects "
                  "the output), oldest first; empty when none was. Follow the last one for the newest try.")
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    cancel_requested = serializers.SerializerMethodField()
    webhook = serializers.SerializerMethodField(help_text="The URL this job's own events go to (null: none was named).")
    purpose = serializers.ChoiceField(
        choices=JobPurpose.choices, read_only=True,
        help_text="request: a caller's job; evaluation: one case of an evaluation run (/api/v1/evaluation/runs/), whose "
                  "outputs open no review item, are never final content and fire no webhook. Filter the list with "
                  "?purpose=request to leave evaluation jobs out.")

    metadata = serializers.DictField(
        child=serializers.CharField(), read_only=True,
        help_text="The caller's own key/value pairs, as sent with the request (the metadata of an OpenAI Responses API "
                  "call, POST /v1/responses; a regeneration keeps its job's): never read by the plugin. {} when none "
                  "were sent, and once the job's content is erased.")
    erased_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When the job's content was erased (DELETE /jobs/{id}/, a conversation's erasure, or the project's "
                  "content retention); null while it is kept. An erased job keeps its plugin, status and timings for "
                  "quotas and usage; its input, params and metadata read {} and its outputs have no content or files.")
    erased_by = serializers.SerializerMethodField(
        help_text="Who erased it, as the audit log names actors: user:<id>, key:<prefix>, or retention (the project's "
                  "content_retention_days); null while it is kept.")

    class Meta:
        model = Job
        list_serializer_class = JobListSerializer
        fields = [
            "id", "project", "plugin", "plugin_version", "purpose", "status", "priority", "input", "params", "seed",
            "attempts", "max_attempts", "progress", "error", "cancel_requested", "input_screening",
            "regenerated_from", "regenerated_as", "metadata",
            "created_at", "started_at", "finished_at", "webhook", "erased_at", "erased_by",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_erased_by(self, job: Job) -> str | None:
        if job.erased_at is None:
            return None
        return job.erased_by or None

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(JobProgressSerializer(allow_null=True))
    def get_progress(self, job: Job) -> dict | None:
        if job.progress is None:
            return None
        return {"fraction": job.progress, "detail": job.progress_detail}

    def get_cancel_requested(self, job: Job) -> bool:
        return job.cancel_requested_at is not None

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_regenerated_from(self, job: Job) -> str | None:
        origin = links_of(job).regenerated_from
        return str(origin) if origin else None

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_regenerated_as(self, job: Job) -> list[str]:
        return [str(job_id) for job_id in links_of(job).regenerated_as]

    def get_webhook(self, job: Job) -> str | None:
        return job.webhook or None

    def to_representation(self, job: Job) -> dict:
        data = super().to_representation(job)
        data["input_screening"] = report_for_callers(data["input_screening"])
        return data


class JobSerializer(JobSummarySerializer):
    outputs = DeliveredOutputSerializer(many=True, read_only=True)

    class Meta(JobSummarySerializer.Meta):
        fields = [*JobSummarySerializer.Meta.fields, "outputs"]


class PluginSerializer(serializers.Serializer):
    id = serializers.CharField()
    version = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    modality = serializers.CharField()
    resource_class = serializers.CharField()
    max_batch_size = serializers.IntegerField()
    time_limit_s = serializers.IntegerField()
    enabled = serializers.BooleanField(help_text="Whether the caller's project may submit jobs to it.")
    input_schema = serializers.DictField()
    params_schema = serializers.DictField()
    output_schema = serializers.DictField()
    editable_output_fields = serializers.ListField(
        child=serializers.CharField(),
        help_text="The output fields a reviewer may change in an edit decision, as paths (`reply`; `[]`: every item "
                  "of a list); the output schema marks them `\"editable\": true`. Empty: outputs are approved, "
                  "rejected or regenerated, never edited.")


class KnowledgeDocumentCreateSerializer(StrictSerializer):
    source_id = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$", help_text="Your stable name for the document; re-posting it updates it.",
        error_messages={"invalid": "Use 1 to 200 letters, digits, '.', '_', '/' or '-', starting with a letter or a digit "
                                   "(such as en/returns)."},
    )
    title = serializers.CharField(max_length=300)
    content = serializers.CharField(max_length=500_000, trim_whitespace=False)
    format = serializers.ChoiceField(choices=["text", "markdown", "html"], default="markdown")

    def validate_content(self, value: str) -> str:
        # Kept as sent (its spaces may matter), but blank it would index to no passage at all.
        if not value.strip():
            raise serializers.ValidationError("The document is blank: send its text.")
        return value


class KnowledgeDocumentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    source_id = serializers.CharField()
    title = serializers.CharField()
    format = serializers.CharField()
    state = serializers.CharField()
    error = serializers.CharField()
    revision = serializers.IntegerField()
    chunk_count = serializers.IntegerField()
    embedding_model = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    indexed_at = serializers.DateTimeField(allow_null=True)


class ConversationMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField(help_text="Its place in the thread, from 0; a reply placed or removed later moves "
                                               "the turns after it.")
    role = serializers.CharField()
    content = serializers.CharField(help_text="Empty when the turn was erased (erased).")
    erased = serializers.SerializerMethodField(help_text="true when its job's content was erased: the turn keeps its "
                                                         "place, not its text, and no model is given it again.")
    job = serializers.UUIDField(source="job_id", allow_null=True)
    created_at = serializers.DateTimeField()

    def get_erased(self, message) -> bool:
        return getattr(message, "job_erased_at", None) is not None  # conversations.services.with_erasure's


class ConversationSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    plugin = serializers.CharField(source="plugin_id")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="When its latest turn was added or changed.")
    message_count = serializers.IntegerField(help_text="Turns in the whole thread.")
    url = serializers.SerializerMethodField(help_text="GET it for its latest turns; DELETE it to erase it.")

    def get_url(self, conversation) -> str:
        return f"/api/v1/conversations/{conversation.pk}/"


class ConversationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    plugin = serializers.CharField(source="plugin_id")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    message_count = serializers.IntegerField(help_text="Turns in the whole thread.")
    messages = ConversationMessageSerializer(many=True, help_text="The latest turns, oldest first: ?page_size= of them "
                                                                  "(default 50, at most 200).")
    earlier_messages = serializers.URLField(allow_null=True, help_text=(
        "The turns before these: a page of GET /conversations/{id}/messages/ (newest first; follow its next). "
        "Null when the thread starts with these."))


class ReviewDecisionInputSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=["approve", "reject", "edit", "regenerate"])
    reason = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    comment = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    content = serializers.JSONField(required=False, default=None, help_text=(
        "action edit: the whole output as output.content shows it, changed only in the plugin's editable_output_fields "
        "(GET /api/v1/plugins/); any other change is refused with 400 field_not_editable"))


class ReviewDecisionSerializer(serializers.Serializer):
    action = serializers.CharField()
    reason = serializers.CharField()
    comment = serializers.CharField()
    decided_by = serializers.CharField()
    decided_at = serializers.DateTimeField()
    regenerated_job = serializers.UUIDField(source="regenerated_job_id", allow_null=True)
    diff = serializers.SerializerMethodField()

    def get_diff(self, decision) -> str:
        from atelier_platform.moderation.review import content_diff

        if decision.edited_content is None:
            return ""
        return content_diff(decision.original_content, decision.edited_content)


class ReviewItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    priority = serializers.IntegerField()
    flagged = serializers.BooleanField()
    categories = serializers.ListField(child=serializers.CharField())
    sampled = serializers.BooleanField()
    approvals = serializers.ListField(child=serializers.CharField())
    lease_holder = serializers.CharField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    job = serializers.UUIDField(source="output.job_id")
    plugin = serializers.CharField(source="output.job.plugin_id")
    job_input = serializers.JSONField(source="output.job.input")
    input_screening = serializers.JSONField(source="output.job.input_screening")
    output = OutputSerializer()
    decisions = ReviewDecisionSerializer(many=True)

    def to_representation(self, item) -> dict:
        # The whole output (a reviewer judges a rejected one too), but its reports as every caller sees them:
        # where the blocklist matched and what, never which term; a key with reviews:read may also write prompts.
        data = super().to_representation(item)
        data["input_screening"] = report_for_callers(data["input_screening"])
        data["output"]["safety"] = report_for_callers(data["output"]["safety"])
        if item.output.job.erased_at is not None:  # as the jobs endpoints show it: its token counts and file rows
            data["output"]["content"], data["output"]["files"] = None, []  # are the usage report's, not content
        return data


class AuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField()
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()


class SafetyPolicySerializer(StrictSerializer):
    review_mode = serializers.ChoiceField(choices=["review_before_release", "release_after_screening"], required=False)
    audit_sample_percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    thresholds = serializers.DictField(child=serializers.DictField(child=serializers.FloatField(min_value=0, max_value=1)), required=False)
    mask_personal_data = serializers.BooleanField(required=False)
    second_review_for_flagged = serializers.BooleanField(required=False)
    forbid_self_approval = serializers.BooleanField(required=False)
    reject_reasons = serializers.ListField(child=serializers.RegexField(r"^[a-z][a-z0-9_]{0,49}$"), min_length=1, max_length=50, required=False)
    lease_seconds = serializers.IntegerField(min_value=LEASE_SECONDS[0], max_value=LEASE_SECONDS[1], required=False)
    content_retention_days = serializers.IntegerField(
        min_value=RETENTION_DAYS[0], max_value=RETENTION_DAYS[1], required=False, allow_null=True,
        help_text="Erase the content of finished jobs older than this many days (1 to 3650), as DELETE /jobs/{id}/ "
                  "does, once an hour; jobs with an output still waiting for a reviewer, and the cases of evaluation "
                  "runs, are kept. null (the default): keep content for good. Changing it needs the scope content:erase "
                  "as well as admin.")

    def validate_thresholds(self, value):
        from atelier_sdk.safety import Category

        unknown = sorted(set(value) - {c.value for c in Category})
        if unknown:
            raise serializers.ValidationError(f"Unknown categories: {', '.join(unknown)}.")
        for category, limits in value.items():
            # one of the two may be given alone: the other keeps its value (``policies.update_policy``)
            if not limits or set(limits) - {"review", "block"}:
                raise serializers.ValidationError(f"{category}: give review, block or both, each between 0 and 1.")
            if len(limits) == 2 and limits["review"] > limits["block"]:
                raise serializers.ValidationError(f"{category}: give review <= block, both between 0 and 1.")
        return value


class BlocklistTermSerializer(StrictSerializer):
    pattern = serializers.CharField(max_length=500, trim_whitespace=False)
    is_regex = serializers.BooleanField(default=False)
    category = serializers.ChoiceField(choices=[
        "sexual", "sexual/minors", "hate", "harassment", "violence", "self-harm", "illicit",
        "personal_data", "prompt_injection", "spam", "custom"], default="custom")


class BlocklistImportSerializer(StrictSerializer):
    terms = BlocklistTermSerializer(many=True, max_length=100_000)
    replace = serializers.BooleanField(default=False, help_text="replace the whole list instead of adding")


class BlocklistRemovedTermSerializer(StrictSerializer):
    pattern = serializers.CharField(max_length=500, trim_whitespace=False,
                                    help_text="the term as stored: a plain one whatever its case, a regular expression exactly")
    is_regex = serializers.BooleanField(default=False)
    category = serializers.CharField(required=False, help_text="ignored: the body of an import may be sent as it is")


class BlocklistRemoveSerializer(StrictSerializer):
    terms = BlocklistRemovedTermSerializer(many=True, min_length=1, max_length=1_000)


class AllowlistEntrySerializer(StrictSerializer):
    value = serializers.CharField(max_length=500, help_text="a word or phrase, or a contact the project publishes")
    kind = serializers.ChoiceField(choices=["term", "email", "phone", "url"], required=False,
                                   help_text="omitted: an e-mail address, web address or phone number when the value "
                                             "reads as one, else a term")


class AllowlistImportSerializer(StrictSerializer):
    entries = AllowlistEntrySerializer(many=True, max_length=1_000)
    replace = serializers.BooleanField(default=False, help_text="replace the whole list instead of adding")


class AllowlistRemoveSerializer(StrictSerializer):
    entries = AllowlistEntrySerializer(many=True, min_length=1, max_length=1_000)


class ListRemovalResultSerializer(serializers.Serializer):
    removed = serializers.IntegerField(help_text="entries removed (a plain blocklist term removes each of its spellings)")
    total = serializers.IntegerField(help_text="entries in the list now")


class ListImportResultSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField(help_text="entries the import replaced (only with replace)")
    total = serializers.IntegerField(help_text="entries in the list now")


class BlocklistSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_category = serializers.DictField(child=serializers.IntegerField(), help_text="terms per category; the terms "
                                                                                    "themselves are not shown")


class AllowlistSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    entries = AllowlistEntrySerializer(many=True)


# --- batches, outputs ------------------------------------------------------------------------------------

class JobBatchCreateSerializer(StrictSerializer):
    jobs = JobCreateSerializer(many=True, allow_empty=False,
                               help_text="Up to ATELIER_MAX_JOBS_PER_REQUEST (100) jobs: all are created, or none.")


class JobBatchSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True, help_text="The jobs, in the order they were sent.")


class OutputDetailSerializer(DeliveredOutputSerializer):
    job = serializers.UUIDField(source="job_id", read_only=True)
    plugin = serializers.CharField(source="job.plugin_id", read_only=True)

    class Meta(OutputSerializer.Meta):
        fields = ["id", "job", "plugin", *OutputSerializer.Meta.fields[1:]]


# --- API keys --------------------------------------------------------------------------------------------

class InstantInputField(serializers.DateTimeField):
    """An ISO 8601 date-time with its offset, in UTC (``instants``): one without an offset names no one moment,
    and one beyond the years UTC holds (9999-12-31T23:00-05:00) is refused here rather than failing the insert."""

    default_error_messages = {
        "invalid": "Not a time: give an ISO 8601 date-time with its offset, e.g. 2027-01-31T18:00:00Z.",
        "naive": "Give the time with its offset (Z for UTC, or e.g. +08:00): without one it names no single moment.",
        "out_of_range": "This time lies beyond the years 1 to 9999 once in UTC.",
    }

    def to_internal_value(self, value):
        # Python reads "2030-01-01T00:00:00\x00Z" as a time: a control character is no part of one
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            self.fail("invalid")
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:  # well formed, but no such time (February 30th, hour 25)
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if parsed.tzinfo is None:
            self.fail("naive")
        converted = in_utc(parsed)
        if converted is None:
            self.fail("out_of_range")
        return converted


def _scope_choices() -> list[str]:
    from atelier_platform.accounts.roles import Capability

    return list(Capability.values)


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                 help_text="A label shown in key lists.")
    # An empty list is refused, not read as "not said": asking for no scope must not give the default ones.
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=_scope_choices()), required=False, min_length=1, max_length=20,
        allow_empty=False,  # its message below comes first; min_length puts minItems in the schema
        error_messages={"empty": "A key needs at least one scope. Leave out 'scopes' for the default: jobs:read jobs:write."},
        help_text="Scopes of the new key (at least one), among the caller's own; left out: jobs:read jobs:write.",
    )
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, max_value=MAX_KEY_RATE_LIMIT_PER_MINUTE, required=False, allow_null=True, default=None,
        help_text="Requests per minute for this key, at most the server's ATELIER_RATE_LIMIT_PER_MINUTE; "
                  "empty: the server's limit.",
    )
    expires_at = InstantInputField(
        required=False, allow_null=True, default=None,
        help_text="When the key stops working (ISO 8601 with its offset, e.g. 2027-01-31T18:00:00Z): after it, "
                  "requests with the key get 401 expired_api_key. In the future, at most 3650 days away; left out "
                  "or null: the key does not expire.",
    )

    def validate_expires_at(self, value):
        from atelier_platform.accounts.services import check_expiry

        try:
            return check_expiry(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


#: What a key holds besides its name: fixed once it is made (a key with other powers is another key).
_KEY_FIELDS_NOT_EDITABLE = ("scopes", "rate_limit_per_minute", "expires_at", "prefix", "key", "id", "created_at",
                            "created_by", "created_by_is_member", "last_used_at", "revoked_at", "active", "expired")


class ApiKeyUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, allow_blank=True,
                                 help_text="The key's new label (what it may do does not change).")

    def to_internal_value(self, data):
        if isinstance(data, dict):
            fixed = sorted(set(data) & set(_KEY_FIELDS_NOT_EDITABLE))
            if fixed:
                raise serializers.ValidationError({name: [
                    "Only a key's name can be changed: for other scopes, a limit or an expiry, create a new key and "
                    "revoke this one."] for name in fixed})
        return super().to_internal_value(data)


class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key reads atl_<prefix>_<secret>: the prefix tells keys apart.")
    scopes = serializers.ListField(child=serializers.CharField())
    rate_limit_per_minute = serializers.IntegerField(allow_null=True, help_text="null: the server's limit")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, default=None,
        help_text="The member who created the key; null for a key made with another API key (the audit log's "
                  "api_key_created event names that key, key:<prefix>), by manage.py, or whose creator was deleted.")
    created_by_is_member = serializers.SerializerMethodField(
        help_text="false: the member who created the key has left the project (the key still works until it is "
                  "revoked or expires); null: no member created it.")
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="to the minute")
    revoked_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="null: the key does not expire")
    expired = serializers.BooleanField(source="is_expired", help_text="past its expires_at: refused with 401")
    active = serializers.BooleanField(source="is_active", help_text="neither revoked nor expired")

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_created_by_is_member(self, api_key) -> bool | None:
        from atelier_platform.accounts.services import maker_is_member

        return maker_is_member(api_key)


class ApiKeyWithSecretSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The whole key, shown this once: store it now. Only a hash is kept.")


# --- members and invitations ------------------------------------------------------------------------------

def _role_choices() -> list[tuple[str, str]]:
    from atelier_platform.accounts.roles import Role

    return Role.choices


ROLE_HELP = ("owner (every capability: members, keys, policies), editor (jobs:read jobs:write), reviewer (jobs:read "
             "reviews:read reviews:write) or viewer (jobs:read). A caller gives only a role whose capabilities it holds "
             "itself (else 403 role_not_grantable): only a key with every scope, or a signed-in owner, makes owners.")


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The membership's id (not the account's): PATCH and DELETE /members/{id}/.")
    username = serializers.CharField(source="user.username")
    # No e-mail address: a member may be added by username without their consent, so an address shown here would
    # let any project's admin key read the address of any account on the instance (the dashboard shows none either).
    role = serializers.ChoiceField(choices=_role_choices())
    joined_at = serializers.DateTimeField(source="created_at")


class MemberCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150, help_text="An existing account's username (an operator creates "
                                                              "accounts; invite anyone else by e-mail address).")
    role = serializers.ChoiceField(choices=_role_choices(), help_text=ROLE_HELP)


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=_role_choices(), help_text=ROLE_HELP)


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    role = serializers.ChoiceField(choices=_role_choices())
    state = serializers.SerializerMethodField(
        help_text="open (its link joins), expired, accepted, or revoked (also when replaced by a newer invitation of "
                  "the address, or when its sender is no longer an owner or its key was revoked or expired)")
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True, default=None,
                                       help_text="The member who sent it; null when a key or an operator did.")
    invited_by_key = serializers.CharField(source="invited_by_key.prefix", allow_null=True, default=None,
                                           help_text="The prefix of the API key it was made with; null otherwise.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    accepted_by = serializers.CharField(source="accepted_by.username", allow_null=True, default=None,
                                        help_text="The account that joined with it.")
    revoked_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=["open", "expired", "accepted", "revoked"]))  # STATES
    def get_state(self, invitation) -> str:
        from atelier_platform.accounts.invitations import state_of

        return state_of(invitation, sender_checked=self.context.get("sender_checked", False))


class InvitationCreateSerializer(StrictSerializer):
    email = serializers.CharField(max_length=254, help_text="The address to invite.")
    role = serializers.ChoiceField(choices=_role_choices(), help_text=ROLE_HELP)
    send_email = serializers.BooleanField(
        default=True, help_text="false: no e-mail goes; the caller passes the link on itself (an SSO portal, a "
                                "provisioning system's own message).")


class InvitationIssuedSerializer(InvitationSerializer):
    token = serializers.CharField(help_text="The link's secret, shown this once: only its hash is kept.")
    link = serializers.CharField(help_text="The link to open, /invite/<token>/ on ATELIER_PUBLIC_URL (else on the "
                                           "address this request reached): it works once, for 7 days.")
    email_delivery = serializers.ChoiceField(
        choices=["sent", "failed", "not_configured", "not_requested"],
        help_text="sent; failed (the mail server refused or could not be reached: pass the link on yourself, the "
                  "invitation stands); not_configured (no ATELIER_EMAIL_HOST: nothing was sent); not_requested "
                  "(send_email was false)")
    replaced = serializers.IntegerField(
        allow_null=True, help_text="The id of the open invitation of the same address that this one replaced (revoked: "
                                   "its link no longer works); null when there was none.")


# --- usage and quotas ------------------------------------------------------------------------------------

class UsageQuerySerializer(serializers.Serializer):
    to = serializers.DateField(required=False, help_text="last day (UTC), inclusive; default today")
    plugin = serializers.CharField(required=False, max_length=63)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False, help_text="first day (UTC); default 29 days before 'to'")
        return fields


class UsageJobsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    blocked = serializers.IntegerField()


class UsageTokensSerializer(serializers.Serializer):
    prompt = serializers.IntegerField()
    completion = serializers.IntegerField()
    total = serializers.IntegerField()


class UsageFiguresSerializer(serializers.Serializer):
    jobs = UsageJobsSerializer(help_text="jobs submitted that day, by their status now")
    tokens = UsageTokensSerializer(help_text="as the outputs report them (usage.prompt_tokens, usage.completion_tokens)")
    images = serializers.IntegerField(help_text="primary image files generated")
    compute_seconds = serializers.FloatField(help_text="sum of finished_at - started_at")


class UsageRowSerializer(UsageFiguresSerializer):
    date = serializers.DateField()
    plugin = serializers.CharField()


class UsageReportSerializer(serializers.Serializer):
    plugin = serializers.CharField(allow_null=True)
    totals = UsageFiguresSerializer()
    results = UsageRowSerializer(many=True, help_text="per UTC day and plugin, oldest first; days without jobs are left out")

    def get_fields(self):
        fields = super().get_fields()
        return {"from": serializers.DateField(), "to": serializers.DateField(), **fields}


class JobsQuotaSerializer(serializers.Serializer):
    """Jobs are counted in whole numbers, as the 429 ``quota_exceeded`` details count them."""

    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited")
    used = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateTimeField()


class ComputeQuotaSerializer(serializers.Serializer):
    limit = serializers.FloatField(allow_null=True, help_text="seconds; null: unlimited")
    used = serializers.FloatField()
    remaining = serializers.FloatField(allow_null=True)
    resets_at = serializers.DateTimeField()


class QuotaSerializer(serializers.Serializer):
    jobs_per_day = JobsQuotaSerializer()
    compute_seconds_per_month = ComputeQuotaSerializer()
    rate_limit_per_minute = serializers.IntegerField(allow_null=True, help_text="of the calling key or person; null: none")


class PluginSettingsSerializer(serializers.Serializer):
    plugin = serializers.CharField(help_text="The plugin's id.")
    enabled = serializers.BooleanField(help_text="Whether the project may submit jobs to it.")
    model_version = serializers.IntegerField(
        allow_null=True, help_text="Id of the pinned model version (GET /api/v1/model-versions/); null: the plugin's "
                                   "default model.")
    model_version_name = serializers.CharField(allow_null=True, help_text="The pinned version's name; null: none pinned.")
    defaults = serializers.DictField(help_text="The project's default params, merged under each caller's params "
                                               "(the caller's win); {}: none.")
    updated_at = serializers.DateTimeField(allow_null=True, help_text="Last change; null: never configured.")


class RequireEvaluationSerializer(StrictSerializer):
    """The evaluation a promotion requires (checked by ``evaluation.gate.promotion_requirement``)."""

    reference_set = serializers.CharField(max_length=100, help_text="The reference set's name or id.")
    max_drop = serializers.DictField(
        child=serializers.FloatField(min_value=0), allow_empty=False,
        help_text="Each metric's largest allowed drop, in its units: chrf, bleu, mean_case_chrf (text); fid, kid "
                  "(a rise), mean_similarity (images). {\"chrf\": 1.5}")


class PluginSettingsUpdateSerializer(StrictSerializer):
    """What a PATCH may change; each field left out keeps its value."""

    enabled = serializers.BooleanField(required=False, help_text="Switch the plugin on or off for the project.")
    model_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**31 - 1,
        help_text="Pin a model version of this plugin that the project may use (a shared one or its own: "
                  "GET /api/v1/model-versions/?plugin=); null: the plugin's default model. Promoting a version and "
                  "rolling back are both a pin.")
    defaults = serializers.DictField(
        required=False, help_text="The project's default params, replacing the ones saved as a whole ({}: none); each "
                                  "field must be one of the plugin's params_schema, with a value it takes.")
    require_evaluation = RequireEvaluationSerializer(
        required=False, help_text="With model_version: pin it only if its newest succeeded run of the reference set "
                                  "fell no further than max_drop against the newest run of the version pinned now; "
                                  "else 409 evaluation_required (a run missing) or evaluation_gate_failed (with the "
                                  "numbers in details.gates), and nothing changes.")


class ModelVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    plugin = serializers.CharField(source="plugin_id")
    version = serializers.CharField()
    model_dir = serializers.CharField(help_text="The model directory, relative to the models root.")
    description = serializers.CharField()
    shared = serializers.SerializerMethodField(help_text="true: every project may pin it; false: this project's own.")
    pinned = serializers.SerializerMethodField(help_text="Whether the project's setting of the plugin pins it.")
    created_at = serializers.DateTimeField()

    def get_shared(self, version) -> bool:
        return version.project_id is None

    def get_pinned(self, version) -> bool:
        return self.context.get("pins", {}).get(version.plugin_id) == version.pk
