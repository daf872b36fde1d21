"""What a job's badge says to the people who use its content, and a running job's progress in words.

A run that succeeded is not content ready to use: its outputs may wait for a reviewer, or have been
blocked by screening or rejected. So where the run succeeded the badge names its outputs' review
states instead ("Awaiting review", "Approved", "Released", "Output blocked", "Rejected"), each with its count
when a job's outputs differ; queued, running, failed, cancelled and blocked jobs keep their run state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from atelier_platform.jobs.models import JobStatus, Output, ReviewState
from atelier_frontend.texts import WORDS

#: Each review state's badge and what it tells a content user, in the order a job's badges are shown:
#: what still waits for someone first, then what may be used, then what may not.
REVIEW_BADGES = {
    ReviewState.PENDING: (_("Awaiting review"), _("Ran; its output waits for a reviewer before anyone may use it.")),
    ReviewState.APPROVED: (_("Approved"), _("Approved by a reviewer: ready to use.")),
    ReviewState.RELEASED: (_("Released"), _("Released after screening: ready to use; a sample is audited later.")),
    # not "Blocked": that is the run state of a job whose input screening refused (the list's status filter)
    ReviewState.BLOCKED: (_("Output blocked"), _("Blocked by screening: not to be used.")),
    ReviewState.REJECTED: (_("Rejected"), _("Rejected by a reviewer: not to be used.")),
}


@dataclass(frozen=True)
class Badge:
    status: str  # the run state, as data-status says it
    review_state: str  # "" for a run state's badge
    label: str
    hint: str = ""
    count: int | None = None  # shown when a job's outputs are in different states


def _count_of(state: str) -> str:
    return f"outputs_{state}"


def with_review_state_counts(jobs: QuerySet) -> QuerySet:
    """``jobs`` with how many outputs each has in each review state, for ``badges``, counted in the query that reads
    the jobs: a list that may be empty (the create page's recent prompts) then reads as often with rows as without,
    which a prefetch, skipped for no rows, does not. One correlated count per state, so that a sliced list counts
    the outputs of the rows it keeps only (on PostgreSQL, the newest-first index scan stops at the limit)."""
    def counted(state):
        outputs = (Output.objects.filter(job=OuterRef("pk"), review_state=state).order_by().values("job")
                   .annotate(n=Count("pk")).values("n"))
        return Coalesce(Subquery(outputs), 0)

    return jobs.annotate(**{_count_of(state): counted(state) for state in REVIEW_BADGES})


def _review_state_counts(job) -> Counter:
    """How many of a succeeded job's outputs are in each review state (none at zero): from the counts
    ``with_review_state_counts`` added, else from its prefetched outputs."""
    if hasattr(job, _count_of(ReviewState.PENDING)):
        return +Counter({state: getattr(job, _count_of(state)) for state in REVIEW_BADGES})
    return Counter(output.review_state for output in job.outputs.all())


def badges(job) -> list[Badge]:
    """The badges of ``job``'s status cell. For a succeeded job only, reads its outputs' review states: the counts of
    ``with_review_state_counts``, or else ``job.outputs.all()``, which the pages prefetch (``only("job_id",
    "review_state")`` is enough)."""
    if getattr(job, "erased_at", None) is not None:
        # what its outputs were matters no more: nobody may use them, and no reviewer will decide them
        return [Badge(job.status, "", gettext("Content erased"), gettext(
            "%(status)s; its content was erased since. The job stays in the history and usage.") % {
            "status": WORDS[job.get_status_display()]})]
    if job.status != JobStatus.SUCCEEDED:
        return [Badge(job.status, "", str(WORDS[job.get_status_display()]))]
    counts = _review_state_counts(job)
    if not counts:
        return [Badge(job.status, "", str(WORDS[job.get_status_display()]), gettext("Ran, and produced no output."))]
    mixed = len(counts) > 1
    # an evaluation run's job (``JobPurpose.EVALUATION``): its outputs open no review item, so "awaiting review" is
    # never over for them; they are answers to score, not content
    evaluation = getattr(job, "is_evaluation", False)
    return [Badge(job.status, state, *(map(str, EVALUATION_BADGE) if evaluation and state == ReviewState.PENDING
                                       else (str(label), str(hint))), counts[state] if mixed else None)
            for state, (label, hint) in REVIEW_BADGES.items() if counts[state]]


#: The badge of an evaluation job's output in place of "Awaiting review"
EVALUATION_BADGE = (_("Evaluation answer"), _("Answered a case of an evaluation run: scored against its reference, "
                                             "never reviewed, not content to use."))


def progress_words(detail: dict | None) -> str:
    """What a running job's plugin reported beside its fraction (``Job.progress_detail``), in words:
    "37 of 64 tokens", "12 of 30 steps", "3 of 8 copy variants written"; "" when it said nothing we know."""
    detail = detail if isinstance(detail, dict) else {}

    def whole(name):
        value = detail.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    tokens, max_tokens = whole("tokens"), whole("max_new_tokens")
    step, steps = whole("step"), whole("steps")
    copy_done, copy_total = whole("copy_done"), whole("copy_total")
    if step is not None and steps:
        return ngettext("%(step)s of %(steps)s step", "%(step)s of %(steps)s steps", steps) % {"step": step, "steps": steps}
    if step is not None:
        return gettext("step %(step)s") % {"step": step}
    if tokens is not None and max_tokens:
        return ngettext("%(tokens)s of %(max)s token", "%(tokens)s of %(max)s tokens", max_tokens) % {
            "tokens": tokens, "max": max_tokens}
    if tokens is not None:
        return ngettext("%(tokens)s token", "%(tokens)s tokens", tokens) % {"tokens": tokens}
    if copy_done is not None and copy_total:
        return ngettext("%(done)s of %(total)s copy variant written", "%(done)s of %(total)s copy variants written",
                        copy_total) % {"done": copy_done, "total": copy_total}
    if detail.get("stage") == "ranked" and whole("items") is not None:
        return ngettext("%(n)s item ranked", "%(n)s items ranked", detail["items"]) % {"n": detail["items"]}
    return ""


def progress_line(job) -> str:
    """A running job's progress beside its bar: "58%", and what its plugin counted ("58% · 37 of 64 tokens")."""
    fraction = job.progress if isinstance(job.progress, (int, float)) else 0
    words = progress_words(job.progress_detail)
    percent = f"{round(fraction * 100)}%"
    return f"{percent} · {words}" if words else percent
