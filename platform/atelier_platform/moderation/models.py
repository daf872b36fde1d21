from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from atelier_platform.accounts.models import Project

DEFAULT_REJECT_REASONS = ["unsafe", "off_brand", "factually_wrong", "low_quality", "other"]


class ReviewMode(models.TextChoices):
    REVIEW_BEFORE_RELEASE = "review_before_release", "Review before release"
    RELEASE_AFTER_SCREENING = "release_after_screening", "Release after screening, audit after"


def default_thresholds() -> dict:
    """Per category: at or above ``review`` an output is held for review; at or above ``block`` it is blocked."""
    from atelier_sdk.safety import Category

    strict = {Category.SEXUAL_MINORS: {"review": 0.2, "block": 0.5}}
    return {c.value: strict.get(c, {"review": 0.5, "block": 0.9}) for c in Category}


#: the shortest and longest review lease a policy may set, in seconds (the API, the dashboard and the model)
LEASE_SECONDS = (30, 86_400)
#: the shortest and longest content retention a policy may set, in days (a day; ten years)
RETENTION_DAYS = (1, 3650)


class SafetyPolicy(models.Model):
    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="safety_policy")
    review_mode = models.CharField(max_length=40, choices=ReviewMode.choices, default=ReviewMode.REVIEW_BEFORE_RELEASE)
    audit_sample_percent = models.PositiveSmallIntegerField(default=10, help_text="under release-after-screening")
    thresholds = models.JSONField(default=default_thresholds)
    mask_personal_data = models.BooleanField(default=False, help_text="mask e-mails, phones, cards... in outputs")
    second_review_for_flagged = models.BooleanField(default=False)
    forbid_self_approval = models.BooleanField(default=True)
    reject_reasons = models.JSONField(default=list, blank=True, help_text="empty: the default reasons")
    # a day at most, as the API allows: a longer lease keeps an item from other reviewers for good, and one
    # past the dates the database holds makes every claim of the queue fail
    lease_seconds = models.PositiveIntegerField(default=600, validators=[MinValueValidator(LEASE_SECONDS[0]),
                                                                         MaxValueValidator(LEASE_SECONDS[1])])
    #: Generated content (inputs, outputs, files, review texts, chat turns) of finished jobs older than this many days
    #: is erased by the retention task (``jobs.erasure.erase_expired_content``); empty: kept for good. Nullable without
    #: a default, so that adding it is a plain ALTER TABLE on SQLite too (no rebuild of a table the triggers stand on).
    content_retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(RETENTION_DAYS[0]), MaxValueValidator(RETENTION_DAYS[1])],
        help_text="erase the content of finished jobs older than this many days; empty: keep it for good")
    updated_at = models.DateTimeField(auto_now=True)
    #: Bumped by database triggers (migration 0002) on every insert, update or delete of the project's
    #: blocklist rows, whatever wrote them; screening rebuilds its compiled blocklist when it moves.
    #: Never written by Django: saves name their fields, so that an older copy cannot set it back.
    blocklist_revision = models.PositiveIntegerField(
        default=0, editable=False, help_text="bumped by the database on every change to the project's blocklist")
    #: The same for the project's allow list (migration 0005), and written as rarely.
    #: On SQLite the triggers of both lists stand on this table: a migration that makes SQLite rebuild it (adding
    #: or altering a column) must drop both sets first and create them again after, as 0005 does.
    allowlist_revision = models.PositiveIntegerField(
        default=0, editable=False, help_text="bumped by the database on every change to the project's allow list")

    def clean(self) -> None:
        # English for the API; each refusal's code and values let the dashboard say it in its reader's language
        if self.audit_sample_percent > 100:
            raise ValidationError({"audit_sample_percent": ValidationError("At most 100.", code="audit_sample_above_100")})
        for category, limits in (self.thresholds or {}).items():
            review, block = limits.get("review"), limits.get("block")
            if not (isinstance(review, (int, float)) and isinstance(block, (int, float)) and 0 <= review <= block <= 1):
                raise ValidationError({"thresholds": ValidationError(
                    "%(category)s: need 0 <= review <= block <= 1 (review %(review)s, block %(block)s).",
                    code="thresholds_out_of_order", params={"category": category, "review": review, "block": block})})

    @property
    def reasons(self) -> list[str]:
        return list(self.reject_reasons or DEFAULT_REJECT_REASONS)


class BlocklistEntry(models.Model):
    """A project's term (or regular expression) that screening flags, in a category.

    Triggers on this table bump the policy's ``blocklist_revision``. On SQLite a migration that has to
    rebuild this table drops them: such a migration must create them again (see migration 0002);
    ``tests/platform/test_moderation.py`` fails if they are missing.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="blocklist")
    pattern = models.CharField(max_length=500)
    is_regex = models.BooleanField(default=False)
    category = models.CharField(max_length=40, default="custom")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pattern"]
        constraints = [models.UniqueConstraint(fields=["project", "pattern", "is_regex"], name="one_blocklist_entry_per_pattern")]


class AllowKind(models.TextChoices):
    TERM = "term", "Word or phrase"
    EMAIL = "email", "E-mail address"
    PHONE = "phone", "Phone number"
    URL = "url", "Web address"


class AllowlistEntry(models.Model):
    """A project's exception to its classifiers: a word or phrase they must not count against a text (``term``),
    or a contact value the project publishes itself, which is not personal data (``email``, ``phone``, ``url``).
    Never an exception to the blocklist.

    ``value`` is what the owner entered, shown back to them; ``normalised`` is what screening compares (a term
    as the screening's normalisation writes it, an e-mail lower-cased, a phone number in E.164), so "+1 800 555
    0142" and "1-800-555-0142" are one entry. Triggers on this table bump the policy's ``allowlist_revision``
    (migration 0005; the same caveat about SQLite table rebuilds as ``BlocklistEntry``).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="allowlist")
    kind = models.CharField(max_length=10, choices=AllowKind.choices)
    value = models.CharField(max_length=500)
    normalised = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "normalised"]
        constraints = [models.UniqueConstraint(fields=["project", "kind", "normalised"], name="one_allowlist_entry_per_value")]


class ReviewItemState(models.TextChoices):
    OPEN = "open", "Waiting for a decision"
    DECIDED = "decided", "Decided"


class ReviewItem(models.Model):
    """One output waiting for people. The lease makes sure two reviewers never hold it at once."""

    output = models.OneToOneField("jobs.Output", on_delete=models.CASCADE, related_name="review")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_items")
    state = models.CharField(max_length=20, choices=ReviewItemState.choices, default=ReviewItemState.OPEN)
    priority = models.PositiveSmallIntegerField(default=5)
    flagged = models.BooleanField(default=False)
    categories = models.JSONField(default=list, help_text="categories screening flagged")
    sampled = models.BooleanField(default=False, help_text="released already; in the queue as an audit sample")
    approvals = models.JSONField(default=list, help_text="who approved so far (second-reviewer rule)")
    lease_holder = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["project", "state", "-priority", "created_at"], name="review_queue_order")]


class ReviewAction(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    EDIT = "edit", "Edit and approve"
    REGENERATE = "regenerate", "Ask for regeneration"


class ReviewDecision(models.Model):
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    action = models.CharField(max_length=20, choices=ReviewAction.choices)
    reason = models.CharField(max_length=50, blank=True)
    comment = models.TextField(blank=True)
    original_content = models.JSONField(null=True, blank=True)
    edited_content = models.JSONField(null=True, blank=True)
    regenerated_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_by = models.CharField(max_length=100)
    decided_by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decided_at"]


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only: entries cannot be changed.")

    def redact(self, redacted: dict[int, tuple[Any, Any]], *, chunk: int = 500) -> int:
        """The one change the log allows: the ``before`` and ``after`` of the events named (by id) replaced by
        copies with the erased content taken out (``jobs.erasure``), when a person's data must go. The event
        itself stays (who did what, to what, when), and no other field changes; nothing is deleted. A few
        statements of ``chunk`` events each, however many events."""
        ids = list(redacted)
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            whens = {side: [models.When(pk=pk, then=models.Value(redacted[pk][index], output_field=models.JSONField()))
                            for pk in part] for index, side in enumerate(("before", "after"))}
            # ELSE the column itself (never taken: every row named has its WHEN) gives the CASE the column's type:
            # a chunk whose every ``before`` is NULL was a CASE of NULLs, which PostgreSQL took for text and refused
            models.QuerySet.update(self.model._base_manager.filter(pk__in=part), **{
                side: models.Case(*whens[side], default=models.F(side), output_field=models.JSONField())
                for side in ("before", "after")})
        return len(ids)

    def delete(self):
        raise PermissionError("The audit log is append-only: entries cannot be deleted.")


class AuditEvent(models.Model):
    """Append-only record of every state change and admin action: who, what, when, before, after."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.CharField(max_length=100)
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        # The audit log's search (the settings page, GET /audit/) narrows a project's events by action, by actor and
        # by object: without these, each search and each of its "who" and "what" lists read all of a project's log.
        indexes = [
            models.Index(fields=["project", "action", "id"], name="audit_project_action"),
            models.Index(fields=["project", "actor", "id"], name="audit_project_actor"),
            models.Index(fields=["project", "object_id"], name="audit_project_object"),
        ]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit log is append-only: entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only: entries cannot be deleted.")
