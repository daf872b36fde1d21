"""A reply held for review joins its conversation thread when a reviewer approves it (a reply
released at once joins it when stored: services.record_released_reply)."""

from django.dispatch import receiver

from atelier_platform.conversations.services import record_reply, reply_of
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES
from atelier_platform.moderation.review import output_review_changed


@receiver(output_review_changed)
def append_approved_reply(sender, output, state, **kwargs):
    if state in DELIVERABLE_REVIEW_STATES and reply_of(output) is not None and output.index == 0:
        record_reply(output.job, reply_of(output))  # the approved text, edits included
