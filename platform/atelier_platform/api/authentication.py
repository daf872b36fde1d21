"""``Authorization: Bearer <api key>``: the key identifies its project and carries its scopes."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from atelier_platform.accounts.models import ApiKey
from atelier_platform.accounts.services import ApiKeyExpired, authenticate_api_key

#: Read with the key, in the same query: every job submission screens its input under the project's
#: safety policy and checks its quota (two queries saved per request; a missing row costs nothing).
PROJECT_SETTINGS_READ_WITH_KEY = ("safety_policy", "quota")


class ApiKeyPrincipal:
    """``request.user`` for a request made with an API key: authenticated, but not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"


class ExpiredApiKey(AuthenticationFailed):
    """401 ``expired_api_key``: the key is right but past its expiry, which the answer names (and nothing else)."""

    def __init__(self, expired: ApiKeyExpired) -> None:
        when = expired.expires_at.isoformat().replace("+00:00", "Z")
        super().__init__(f"The API key expired at {when}; ask a project owner for a new one.", code="expired_api_key")
        self.details = {"expired_at": when}


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            parts = header.decode("ascii").split()
        except UnicodeDecodeError:
            raise AuthenticationFailed("The Authorization header must be ASCII.", code="malformed_api_key") from None
        if not parts or parts[0].lower() != self.keyword:
            raise AuthenticationFailed(
                "Unsupported Authorization scheme; send 'Authorization: Bearer <api key>'.", code="malformed_api_key"
            )
        if len(parts) != 2:
            raise AuthenticationFailed(
                "Malformed Authorization header; send 'Authorization: Bearer <api key>'.", code="malformed_api_key"
            )
        try:
            api_key = authenticate_api_key(parts[1], project_related=PROJECT_SETTINGS_READ_WITH_KEY)
        except ApiKeyExpired as expired:
            raise ExpiredApiKey(expired) from None
        if api_key is None:
            raise AuthenticationFailed("The API key is unknown or revoked.", code="invalid_api_key")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="atelier"'
