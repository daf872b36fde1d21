"""A project's safety policy, blocklist and allow list (owners)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.serializers import (
    AllowlistImportSerializer,
    AllowlistSerializer,
    BlocklistImportSerializer,
    BlocklistSummarySerializer,
    ListImportResultSerializer,
    SafetyPolicySerializer,
)
from atelier_platform.moderation import policies
from atelier_platform.moderation.models import BlocklistEntry
from atelier_platform.moderation.screening import policy_for


def actor_of(request) -> str:
    access = request.access
    return f"key:{access.api_key.prefix}" if access.api_key else f"user:{access.user.pk}"


def imported(request, serializer_class, field: str, import_list) -> Response:
    """A list import (the blocklist's, the allow list's): checked by ``serializer_class``, done by the service
    ``import_list`` in one transaction, its refusals as 400s naming each entry."""
    incoming = serializer_class(data=request.data)
    incoming.is_valid(raise_exception=True)
    try:
        result = import_list(request.access.project, actor_of(request), incoming.validated_data[field],
                             replace=incoming.validated_data["replace"])
    except DjangoValidationError as error:
        raise ValidationError(error.message_dict) from None
    return Response(result)


class SafetyPolicyView(APIView):
    required_capabilities = {"get": Capability.ADMIN, "patch": Capability.ADMIN}

    @extend_schema(responses=SafetyPolicySerializer)
    def get(self, request):
        return Response(policies.policy_json(policy_for(request.access.project)))

    @extend_schema(request=SafetyPolicySerializer, responses=SafetyPolicySerializer)
    def patch(self, request):
        incoming = SafetyPolicySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            policy = policies.update_policy(request.access.project, actor_of(request), incoming.validated_data)
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from None
        return Response(policies.policy_json(policy))


class BlocklistView(APIView):
    """Counts and categories only on GET: the terms themselves are not echoed back."""

    required_capabilities = {"get": Capability.ADMIN, "post": Capability.ADMIN}

    @extend_schema(responses=BlocklistSummarySerializer)
    def get(self, request):
        entries = BlocklistEntry.objects.filter(project=request.access.project)
        by_category = {}
        for category in entries.values_list("category", flat=True):
            by_category[category] = by_category.get(category, 0) + 1
        return Response({"total": sum(by_category.values()), "by_category": by_category})

    @extend_schema(request=BlocklistImportSerializer, responses=ListImportResultSerializer)
    def post(self, request):
        return imported(request, BlocklistImportSerializer, "terms", policies.import_blocklist)


class AllowlistView(APIView):
    """Words the classifiers must not count against a text, and contacts the project publishes itself. Shown in
    full on GET (nothing secret in it, unlike the blocklist); never an exception to the blocklist."""

    required_capabilities = {"get": Capability.ADMIN, "post": Capability.ADMIN}

    @extend_schema(responses=AllowlistSerializer)
    def get(self, request):
        return Response(policies.allowlist_json(request.access.project))

    @extend_schema(request=AllowlistImportSerializer, responses=ListImportResultSerializer)
    def post(self, request):
        return imported(request, AllowlistImportSerializer, "entries", policies.import_allowlist)
