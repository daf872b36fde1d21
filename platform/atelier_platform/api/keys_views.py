"""API keys of the caller's project (capability ``admin``): create (the key is shown once), list, rename, revoke."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from atelier_platform.accounts import services as accounts
from atelier_platform.accounts.models import ApiKey
from atelier_platform.accounts.roles import Capability
from atelier_platform.api.filters import ApiKeyFilter
from atelier_platform.api.idempotency import idempotency_key
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import IDEMPOTENCY_PARAMETER, error_responses
from atelier_platform.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    ApiKeyUpdateSerializer,
    ApiKeyWithSecretSerializer,
)
from atelier_platform.config import get_config
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.usage import idempotency


class ApiKeyAlreadyIssued(JobServiceError):
    status_code = 409
    code = "api_key_already_issued"


def actor_of(request) -> str:
    access = request.access
    return f"key:{access.api_key.prefix}" if access.api_key else f"user:{access.user.pk}"


def _within_callers_limit(request, wanted: int | None) -> int | None:
    """The new key's own limit, never above the calling key's own: otherwise a key held to a low limit would
    mint a key at the server's limit and go on at that pace. Asked for none, it inherits the caller's."""
    caller = request.access.api_key
    ceiling = caller.rate_limit_per_minute if caller is not None else None
    if not ceiling:  # a person, a key at the server's limit, or one an operator freed of limits (0)
        return wanted
    if wanted is None:
        return ceiling
    if wanted > ceiling:
        raise ValidationError({"rate_limit_per_minute": [
            f"At most the calling key's own limit, {ceiling}: a key cannot make a faster one."]})
    return wanted


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Keys are listed with their prefix, never their secret; revoking is immediate (the next request gets 401)."""

    required_capabilities = {name: Capability.ADMIN
                             for name in ("list", "retrieve", "create", "partial_update", "revoke", "destroy")}
    serializer_class = ApiKeySerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = ApiKeyFilter
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        # Scoped to the caller's project: another project's key is "not found". Whether each key's maker is
        # still a member is read in the same query.
        return accounts.with_maker_membership(
            ApiKey.objects.filter(project=self.request.access.project).select_related("created_by"))

    @extend_schema(responses={200: ApiKeySerializer(many=True), **error_responses(400, 403)},
                   summary="The project's API keys, newest first (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ApiKeySerializer, **error_responses(403, 404)}, summary="One API key")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=ApiKeyCreateSerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ApiKeyWithSecretSerializer, **error_responses(400, 403, 409, 422)},
        summary="Create an API key (the answer holds the key, shown once)",
        description="Scopes must be among the caller's own. The raw key is never stored, so it cannot be shown "
                    "again: a retry with the same Idempotency-Key answers 409 api_key_already_issued naming the key "
                    "(revoke it and create another if the first answer was lost).",
    )
    def create(self, request):
        incoming = ApiKeyCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        server_limit = get_config().rate_limit_per_minute
        wanted_limit = data.get("rate_limit_per_minute")
        if wanted_limit is not None and server_limit and wanted_limit > server_limit:
            raise ValidationError({"rate_limit_per_minute": [f"At most the server's limit, {server_limit}."]})
        data["rate_limit_per_minute"] = _within_callers_limit(request, wanted_limit)
        key = idempotency_key(request)
        if key is None:
            return self._issue(request, data)
        fingerprint = idempotency.body_fingerprint(request.path, data)
        with idempotency.hold(request.access.project, "api-keys", key, fingerprint) as held:
            if held.is_replay:
                raise ApiKeyAlreadyIssued(
                    "This Idempotency-Key already created a key, whose secret cannot be shown again; revoke it "
                    "and create another if you lost it.", details=held.replay,
                )
            response = self._issue(request, data)
            held.complete(response.status_code, {"id": response.data["id"], "prefix": response.data["prefix"]})
            return response

    def _issue(self, request, data) -> Response:
        access = request.access
        try:
            issued = accounts.create_api_key(
                access.project, actor_of(request), granted_by=access.capabilities, scopes=data.get("scopes"),
                name=data["name"], created_by=access.user, rate_limit_per_minute=data.get("rate_limit_per_minute"),
                expires_at=data.get("expires_at"),
            )
        except accounts.ScopeNotGrantable as error:
            raise PermissionDenied(str(error)) from None
        body = {**ApiKeySerializer(issued.api_key).data, "key": issued.raw}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/api-keys/{issued.api_key.pk}/"})

    @extend_schema(request=ApiKeyUpdateSerializer, responses={200: ApiKeySerializer, **error_responses(400, 403, 404)},
                   summary="Rename an API key (only its name can change; audited)",
                   description="The body holds `name` alone: scopes, limits and expiry are fixed when a key is made, "
                               "and a body naming them is refused (400) rather than half applied.")
    def partial_update(self, request, pk=None):
        api_key = self.get_object()
        incoming = ApiKeyUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        api_key = accounts.rename_api_key(api_key, incoming.validated_data["name"], actor_of(request))
        return Response(ApiKeySerializer(api_key).data)

    @extend_schema(request=None, responses={200: ApiKeySerializer, **error_responses(403, 404)},
                   summary="Revoke an API key now (revoking again changes nothing)")
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        api_key = accounts.revoke_api_key(self.get_object(), actor=actor_of(request))
        return Response(ApiKeySerializer(api_key).data)

    @extend_schema(responses={204: None, **error_responses(403, 404)},
                   summary="Revoke an API key (the row stays, revoked, for the audit and its jobs)")
    def destroy(self, request, pk=None):
        accounts.revoke_api_key(self.get_object(), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
