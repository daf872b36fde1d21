"""Rate limit per caller: ``ATELIER_RATE_LIMIT_PER_MINUTE`` requests a minute per API key (a key's
own ``rate_limit_per_minute`` when it is lower) or per signed-in person, across every web process.

DRF runs throttles after authentication and permissions, so unauthenticated and forbidden
requests are answered (401/403) without being counted.
"""

from __future__ import annotations

from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from atelier_platform.accounts.models import ApiKey
from atelier_platform.config import get_config
from atelier_platform.usage import ratelimit


class RateLimited(Throttled):
    default_code = "rate_limited"

    def __init__(self, decision: ratelimit.RateDecision, who: str) -> None:
        # Not passed as ``wait``: DRF would append its own "Expected available in N seconds." to the message.
        super().__init__(detail=f"Rate limit of {decision.limit} requests per minute for this {who} reached; "
                                f"retry after {decision.retry_after_s} s (the Retry-After header).")
        self.wait = decision.retry_after_s  # the Retry-After header (api.errors)
        self.details = {"limit": decision.limit, "window_s": ratelimit.WINDOW_S, "retry_after_s": decision.retry_after_s}


def caller_limit(request) -> tuple[str, int, str] | None:
    """(counter identity, requests per minute, what the caller is) or None when not limited."""
    default = get_config().rate_limit_per_minute
    auth = request.auth
    if isinstance(auth, ApiKey):
        own = auth.rate_limit_per_minute
        if own is None:
            limit = default
        elif own and default:
            # A key's own limit only lowers the server's: a key made under a higher server limit must not
            # keep it once the operator lowers ATELIER_RATE_LIMIT_PER_MINUTE.
            limit = min(own, default)
        else:
            limit = own  # 0 (an operator's "none" in the admin), or a key's limit on a server without one
        # The prefix, not the row id: ids can be reused (a restored database), prefixes are random.
        return f"key:{auth.prefix}", limit, "API key"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}:{user.get_username()}", default, "user"
    return None


class CallerRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        found = caller_limit(request)
        if found is None:
            return True
        identity, limit, who = found
        if limit <= 0:
            return True
        decision = ratelimit.hit(identity, limit)
        if decision is None:
            return True
        request._request.atelier_rate = decision  # the guard middleware adds the X-RateLimit-* headers
        if not decision.allowed:
            raise RateLimited(decision, who)
        return True

    def wait(self):
        return None
