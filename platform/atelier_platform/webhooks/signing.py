"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The secret reads ``whsec_<base64 of 32 random bytes>``; the key is the decoded bytes. A delivery
carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several of them
separated by spaces while secrets rotated away are still honoured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(encoded)


def sign(secret: str, event_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(secret_key(secret), f"{event_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_in_use: Iterable[str], event_id: str, timestamp: int, body: str) -> str:
    return " ".join(sign(secret, event_id, timestamp, body) for secret in secrets_in_use)


def secret_hint(secret: str) -> str:
    """Enough of a secret to tell two apart in a list, not enough to sign with."""
    return secret[: len(SECRET_PREFIX) + 4] + "…"
