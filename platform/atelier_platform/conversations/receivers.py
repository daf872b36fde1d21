"""A chat reply's place in its thread follows its review: a reply held for review joins the thread when
a reviewer approves it (a reply released at once joins it when stored: services.record_released_reply);
an edit replaces its text; a rejection, of a held reply or of one released and then audited, leaves it
out of the thread."""

from django.dispatch import receiver

from atelier_platform.conversations.services import place_reply, reply_of
from atelier_platform.moderation.review import output_review_changed


@receiver(output_review_changed)
def follow_review(sender, output, state, **kwargs):
    if reply_of(output) is not None and output.index == 0:
        place_reply(output)
