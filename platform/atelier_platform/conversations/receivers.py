from django.dispatch import receiver

from atelier_platform.conversations.services import record_reply
from atelier_platform.jobs.signals import job_succeeded


@receiver(job_succeeded)
def append_reply_to_conversation(sender, job, outputs, **kwargs):
    """A chat job's first output with a ``reply`` becomes the thread's assistant turn."""
    for output in outputs:
        reply = output.content.get("reply") if isinstance(output.content, dict) else None
        if isinstance(reply, str):
            record_reply(job, reply)
            return
