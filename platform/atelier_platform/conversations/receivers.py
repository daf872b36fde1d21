from django.dispatch import receiver

from atelier_platform.conversations.services import record_reply
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES
from atelier_platform.jobs.signals import job_succeeded
from atelier_platform.moderation.review import output_review_changed


def _reply_of(output) -> str | None:
    reply = output.content.get("reply") if isinstance(output.content, dict) else None
    return reply if isinstance(reply, str) else None


@receiver(job_succeeded)
def append_released_reply(sender, job, outputs, **kwargs):
    """A chat job's reply joins its thread once it may be delivered: at once when released after
    screening; under review before release, only when a reviewer approves it (below). Unreviewed
    or rejected text never shows in the thread, nor is it fed back to the model on the next turn."""
    for output in outputs:
        if _reply_of(output) is not None:
            if output.review_state in DELIVERABLE_REVIEW_STATES:
                record_reply(job, _reply_of(output))
            return


@receiver(output_review_changed)
def append_approved_reply(sender, output, state, **kwargs):
    if state in DELIVERABLE_REVIEW_STATES and _reply_of(output) is not None and output.index == 0:
        record_reply(output.job, _reply_of(output))  # the approved text, edits included
