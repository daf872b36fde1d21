"""A limit on failed sign-ins, against password guessing on the dashboard's and the admin's sign-in forms.

Each failed sign-in (Django's ``user_login_failed``, whichever form asked) counts against the username
and against the client's address, in the same shared one-minute windows as the API's rate limit
(``usage.ratelimit``). Once either has had its fill in the last minute, a sign-in with that username or
from that address is answered 429 with Retry-After before the password is checked, whether it is right
or not: a guesser learns nothing more until the window moves on. The username's limit is the tighter one
(one account guessed at from many addresses); the address's (many accounts tried from one place) is
higher, as people behind one proxy or NAT share it. Successful sign-ins count for nothing.
"""

from __future__ import annotations

import hashlib
import unicodedata

from django.http import HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

from atelier_platform.config import get_config
from atelier_platform.usage import ratelimit

#: The sign-in forms this guards, by URL name.
SIGN_IN_VIEWS = ("login", "admin:login")


def _username_key(username: str) -> str:
    # As the sign-in form cleans it (NFKC, stripped), and case-folded: "Alice" and "alice" count together.
    # Hashed: a posted username of any length names a counter of fixed size.
    return hashlib.sha256(unicodedata.normalize("NFKC", username).strip().casefold().encode()).hexdigest()[:32]


def _limits(request, username: str | None) -> list[tuple[str, int]]:
    """(counter identity, failures allowed per minute) for this attempt; 0 turns a limit off."""
    config = get_config()
    limits = []
    if username is not None and config.sign_in_failures_per_minute:
        limits.append((f"signin:user:{_username_key(username)}", config.sign_in_failures_per_minute))
    address = request.META.get("REMOTE_ADDR") if request is not None else None
    if address and config.sign_in_failures_per_minute_per_address:
        limits.append((f"signin:address:{address}", config.sign_in_failures_per_minute_per_address))
    return limits


def record_failure(sender, credentials, request=None, **kwargs) -> None:
    """``user_login_failed`` receiver: count the failure against the username and the address."""
    username = credentials.get("username")
    for identity, limit in _limits(request, username if isinstance(username, str) else None):
        ratelimit.hit(identity, limit)


def retry_after_s(request, username: str) -> int:
    """Seconds until this sign-in may be tried, 0 when it may be now."""
    waits = [0]
    for identity, limit in _limits(request, username):
        decision = ratelimit.peek(identity, limit)
        if decision is not None and not decision.allowed:
            waits.append(decision.retry_after_s)
    return max(waits)


def _sign_in_paths() -> frozenset[str]:
    """The forms' paths as ``request.path_info`` reads them: without the prefix of a site served under one."""
    prefix, paths = get_script_prefix(), set()
    for name in SIGN_IN_VIEWS:
        try:
            paths.add("/" + reverse(name).removeprefix(prefix).lstrip("/"))
        except NoReverseMatch:  # a URLconf without the dashboard or the admin
            continue
    return frozenset(paths)


class SignInThrottleMiddleware:
    """Answers 429 to a sign-in posted while its username or address is over the failure limit."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self._paths: frozenset[str] | None = None

    def __call__(self, request):
        if request.method == "POST":
            if self._paths is None:
                self._paths = _sign_in_paths()
            if request.path_info in self._paths:
                wait = retry_after_s(request, request.POST.get("username", ""))
                if wait:
                    return HttpResponse(
                        f"Too many failed sign-ins for this username or from this address. Try again in {wait} s.\n",
                        status=429, content_type="text/plain; charset=utf-8", headers={"Retry-After": str(wait)})
        return self.get_response(request)
