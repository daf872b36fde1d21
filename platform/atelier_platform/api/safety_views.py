"""A project's safety policy, blocklist and allow list (owners)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.schema import error_responses
from atelier_platform.api.serializers import (
    AllowlistImportSerializer,
    AllowlistRemoveSerializer,
    AllowlistSerializer,
    BlocklistImportSerializer,
    BlocklistRemoveSerializer,
    BlocklistSummarySerializer,
    ListImportResultSerializer,
    ListRemovalResultSerializer,
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


def removed(request, serializer_class, field: str, remove) -> Response:
    """A removal from a list (a POST to its ``remove/`` with the terms or entries, as an import names them): done by the
    service ``remove`` in one transaction, all or none. What the list does not hold (another project's, a typo) is a
    404 naming each by its place in the body, and nothing is removed."""
    incoming = serializer_class(data=request.data)
    incoming.is_valid(raise_exception=True)
    try:
        result = remove(request.access.project, actor_of(request), incoming.validated_data[field])
    except policies.NotInList as error:
        missing = NotFound(f"Not in the list: nothing was removed ({len(error.message_dict)} of "
                           f"{len(incoming.validated_data[field])} not found).")
        missing.details = error.message_dict
        raise missing from None
    except DjangoValidationError as error:
        raise ValidationError(error.message_dict) from None
    return Response(result)


class SafetyPolicyView(APIView):
    required_capabilities = {"get": Capability.ADMIN, "patch": Capability.ADMIN}

    @extend_schema(responses=SafetyPolicySerializer)
    def get(self, request):
        return Response(policies.policy_json(policy_for(request.access.project)))

    @extend_schema(request=SafetyPolicySerializer, responses={200: SafetyPolicySerializer, **error_responses(400, 403)},
                   description="Changes the fields given. Changing content_retention_days needs the scope content:erase "
                               "as well (a retention erases content for good): 403 without it, nothing changed.")
    def patch(self, request):
        incoming = SafetyPolicySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            policy = policies.update_policy(request.access.project, actor_of(request), incoming.validated_data,
                                            granted_by=request.access.capabilities)
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from None
        except policies.RetentionNotGrantable as error:
            raise PermissionDenied(str(error)) from None
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



class BlocklistRemovalView(APIView):
    """A POST to a path of its own, not a DELETE with a body: OpenAPI 3.0 gives a DELETE no body (the schema, and the
    clients made from it, could not say what to send), and some proxies drop one."""

    required_capabilities = {"post": Capability.ADMIN}

    @extend_schema(request=BlocklistRemoveSerializer, responses={200: ListRemovalResultSerializer, **error_responses(400, 404)},
                   description="Remove terms, all or none: a term the list does not hold is a 404 and nothing is removed.")
    def post(self, request):
        return removed(request, BlocklistRemoveSerializer, "terms", policies.remove_blocklist_terms)


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



class AllowlistRemovalView(APIView):
    """As ``BlocklistRemovalView``, for the allow list's entries."""

    required_capabilities = {"post": Capability.ADMIN}

    @extend_schema(request=AllowlistRemoveSerializer, responses={200: ListRemovalResultSerializer, **error_responses(400, 404)},
                   description="Remove entries, all or none: an entry the list does not hold is a 404 and nothing is "
                               "removed.")
    def post(self, request):
        return removed(request, AllowlistRemoveSerializer, "entries", policies.remove_allowlist_entries)
