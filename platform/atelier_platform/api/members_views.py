"""A project's members and invitations over the API (capability ``admin``), for systems that provision people (an HR
system, an SSO script). Thin: parse, scope to the caller's project, call ``accounts.members`` and
``accounts.invitations`` (the settings page's services), say their refusals with stable codes."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from atelier_platform.accounts import invitations, members
from atelier_platform.accounts.models import Invitation, Membership
from atelier_platform.accounts.roles import Capability
from atelier_platform.api.filters import MemberFilter
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import error_responses
from atelier_platform.api.serializers import (
    InvitationCreateSerializer,
    InvitationIssuedSerializer,
    InvitationSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
)
from atelier_platform.jobs.errors import JobServiceError


class Conflict(JobServiceError):
    """The project's state refuses the change (the last owner, a member already): 409 with the service's code."""

    status_code = 409


class RoleNotGrantable(JobServiceError):
    status_code = 403
    code = "role_not_grantable"


class InvitationRequired(JobServiceError):
    """No account by that username that the caller may add without the person's consent (or none at all: the same
    answer, so that usernames cannot be probed for): invite them instead."""

    status_code = 400
    code = "invitation_required"


#: The field of the request body each of the services' refusals by code is about: a 400 naming it
FIELD_OF_REFUSAL = {"unknown_role": "role", "invalid_email": "email"}


def refused(error: DjangoValidationError | members.RoleNotGrantable) -> Exception:
    """A refusal of ``accounts.members`` or ``accounts.invitations`` as the API answers it."""
    if isinstance(error, members.RoleNotGrantable):
        return RoleNotGrantable(str(error), details={"role": error.role, "missing": error.missing})
    message = next(iter(error))  # one message, its values put in
    if error.code == InvitationRequired.code:
        return InvitationRequired(message, details={"username": [message], "invite_with": "/api/v1/invitations/"})
    if error.code in FIELD_OF_REFUSAL:
        return ValidationError({FIELD_OF_REFUSAL[error.code]: [message]})
    # the project's state: a member already (or an address of one), the last owner, an address invited meanwhile
    return Conflict(message, code=error.code, details=error.params)


def _capabilities(request) -> frozenset[str]:
    return request.access.capabilities


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The project's members. Who may give which role: ``accounts.members``."""

    required_capabilities = {name: Capability.ADMIN
                             for name in ("list", "retrieve", "create", "partial_update", "destroy")}
    serializer_class = MemberSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = MemberFilter
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        # Scoped to the caller's project: another project's member is "not found".
        return Membership.objects.filter(project=self.request.access.project).select_related("user")

    @extend_schema(responses={200: MemberSerializer(many=True), **error_responses(400, 403)},
                   summary="The project's members, newest first (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: MemberSerializer, **error_responses(403, 404)}, summary="One member")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=MemberCreateSerializer, responses={201: MemberSerializer, **error_responses(400, 403, 409)},
        summary="Add an account someone of the project works with already, with a role (audited as member_added)",
        description="Adding needs no consent of the person added, so it is only for an account that shares a project "
                    "with the calling person (signed in), or for an operator (Django staff): anyone else is invited "
                    "(POST /api/v1/invitations/), and an API key, no person, always invites. 400 "
                    "`invitation_required` (with `details.username`) for such an account and, alike, for a username "
                    "no account has; 409 `already_a_member` for a member (change their role with PATCH); 403 "
                    "`role_not_grantable` for a role whose capabilities the caller does not all hold.",
    )
    def create(self, request):
        incoming = MemberCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            membership = members.add(request.access.project, actor_of(request), granted_by=_capabilities(request),
                                     added_by=request.access.user, **incoming.validated_data)
        except (DjangoValidationError, members.RoleNotGrantable) as error:
            raise refused(error) from None
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/members/{membership.pk}/"})

    @extend_schema(
        request=MemberUpdateSerializer, responses={200: MemberSerializer, **error_responses(400, 403, 404, 409)},
        summary="Give a member another role (audited as member_role_changed)",
        description="The same role again changes nothing. 409 `last_owner` for the demotion of the project's only "
                    "owner; 403 `role_not_grantable` when the caller does not hold every capability of the new role "
                    "or of the member's present one. An owner demoted loses the open invitations they sent.",
    )
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        incoming = MemberUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            change = members.change_role(request.access.project, membership, actor_of(request),
                                         role=incoming.validated_data["role"], granted_by=_capabilities(request))
        except Membership.DoesNotExist:  # removed meanwhile
            raise NotFound("No such member.") from None
        except (DjangoValidationError, members.RoleNotGrantable) as error:
            raise refused(error) from None
        return Response(MemberSerializer(change.membership).data)

    @extend_schema(
        responses={204: None, **error_responses(403, 404, 409)},
        summary="Remove a member: they lose access at once (audited as member_removed)",
        description="409 `last_owner` for the project's only owner; 403 `role_not_grantable` when the caller does not "
                    "hold every capability of the member's role. An owner removed loses the open invitations they sent.",
    )
    def destroy(self, request, pk=None):
        membership = self.get_object()
        try:
            members.remove(request.access.project, membership, actor_of(request), granted_by=_capabilities(request))
        except Membership.DoesNotExist:
            raise NotFound("No such member.") from None
        except (DjangoValidationError, members.RoleNotGrantable) as error:
            raise refused(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Invitations by e-mail address: the link's token is in the answer that makes it, and nowhere else."""

    required_capabilities = {name: Capability.ADMIN for name in ("list", "retrieve", "create", "revoke")}
    serializer_class = InvitationSerializer
    pagination_class = NewestFirstCursorPagination
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        # Scoped to the caller's project: another project's invitation is "not found".
        return (Invitation.objects.filter(project=self.request.access.project)
                .select_related("invited_by", "invited_by_key", "accepted_by"))

    @extend_schema(responses={200: InvitationSerializer(many=True), **error_responses(400, 403)},
                   summary="The project's open invitations, newest first (cursor pages)",
                   description="Open: neither accepted nor revoked, expired ones included (state says which).")
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(invitations.open_invitations(request.access.project))
        context = {**self.get_serializer_context(), "sender_checked": True}
        return self.get_paginated_response(InvitationSerializer(page, many=True, context=context).data)

    @extend_schema(responses={200: InvitationSerializer, **error_responses(403, 404)},
                   summary="One invitation, in whatever state (accepted: by whom)")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=InvitationCreateSerializer,
        responses={201: InvitationIssuedSerializer, **error_responses(400, 403, 409)},
        summary="Invite an e-mail address with a role (the answer holds the link, shown once)",
        description="The answer's `token` and `link` are shown this once (only a hash is kept), and `email_delivery` "
                    "says whether the e-mail went. An open invitation of the same address is replaced: revoked (its "
                    "link stops working) and named in `replaced`; so a retry after a lost answer makes a working "
                    "link and kills the lost one. 409 `already_member` for the address of a member's account; 403 "
                    "`role_not_grantable` for a role whose capabilities the caller does not all hold, or when the open "
                    "invitation it would replace is to such a role. An invitation "
                    "made with a key stands while the key works: revoking the key (or its expiry) revokes it.",
    )
    def create(self, request):
        incoming = InvitationCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data, access = incoming.validated_data, request.access
        try:
            issued = invitations.invite(access.project, actor_of(request), email=data["email"], role=data["role"],
                                        invited_by=access.user, invited_by_key=access.api_key,
                                        granted_by=access.capabilities)
        except (DjangoValidationError, members.RoleNotGrantable) as error:
            raise refused(error) from None
        # after the commit (``invite`` is its own transaction): a slow mail server holds no lock
        link = invitations.link_for(request, issued.token)
        delivery = "not_requested"
        if data["send_email"]:
            inviter = access.user.get_username() if access.user is not None else (access.api_key.name or
                                                                                   access.project.name)
            delivery = invitations.send(issued, **invitations.english_mail(issued, link, inviter))
        body = {**InvitationSerializer(issued.invitation).data, "token": issued.token, "link": link,
                "email_delivery": delivery, "replaced": issued.replaced.pk if issued.replaced else None}
        return Response(body, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/invitations/{issued.invitation.pk}/"})

    @extend_schema(request=None, responses={200: InvitationSerializer, **error_responses(403, 404, 409)},
                   summary="Revoke an invitation: its link stops working at once (audited)",
                   description="Revoking again changes nothing; 409 `invitation_used` for one accepted already; 403 "
                               "`role_not_grantable` for an invitation to a role whose capabilities the caller does "
                               "not all hold (as for removing a member of that role). The invitation stays, revoked, "
                               "for the record (hence a POST, not a DELETE).")
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        invitation = self.get_object()
        try:
            # taking back an invitation to a role is as much the caller's to do as removing a member of that role
            members.check_grantable(invitation.role, request.access.capabilities)
        except members.RoleNotGrantable as error:
            raise refused(error) from None
        if not invitations.revoke(invitation, actor_of(request)) and invitation.accepted_at is not None:
            raise Conflict(f"The invitation of {invitation.email} was accepted already: remove the member instead.",
                           code="invitation_used", details={"accepted_at": invitation.accepted_at.isoformat()})
        return Response(InvitationSerializer(invitation).data)
