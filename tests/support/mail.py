"""E-mail backends for tests: one whose server refuses every message."""

from __future__ import annotations

import smtplib

from django.core.mail.backends.base import BaseEmailBackend


class RefusingBackend(BaseEmailBackend):
    """As an SMTP server that refuses the recipient: ``send_messages`` raises, as Django's SMTP backend does."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPRecipientsRefused({m.to[0]: (550, b"mailbox unavailable") for m in email_messages})
