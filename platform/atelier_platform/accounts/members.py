"""A project's members: added by username, given another role, removed. One set of rules for the settings page and
the API (``/api/v1/members/``).

- Adding by username needs no consent of the person added, so it is only for someone they already work with: the
  calling *person* shares a project with them (any project, any role), or is an operator (Django staff). Anyone else
  joins by invitation (``accounts.invitations``), which they accept or not; an API key is no person and invites. An
  account that does not exist and one the caller may not add get the same refusal (``invitation_required``), so
  usernames cannot be probed for; the role is checked before the name is looked up, for the same reason.

- A project keeps at least one owner: the owner rows are locked until the change commits, so two owners demoting or
  removing each other at once leave one.
- An owner who stops being one (demoted, removed) has their open invitations revoked: an invitation grants a role
  with its sender's authority, and only while they hold it (``invitations.revoke_sent_by``).
- A caller grants no more than it holds (``granted_by``: its capabilities, always said): a role may be given only by a caller
  holding every capability of that role, and a member changed or removed only by one holding every capability of
  the member's role. A signed-in owner holds them all; a key with ``admin`` alone may not make anyone an owner (nor
  an editor: it cannot submit jobs itself), nor demote or remove an owner. The same rule as a key's scopes
  (``services.create_api_key``): a key cannot mint more power than it has.
- Each change is in the project's audit log (``member_added``, ``member_role_changed``, ``member_removed``) with its
  actor (``user:<id>`` or ``key:<prefix>``).

Refusals carry codes (``ValidationError.code``) that the dashboard says in its language; a refusal due to the
project's state rather than the request (``last_owner``, ``already_a_member``) is a ``MembershipConflict``, which
the API answers with 409.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Membership, Project
from atelier_platform.accounts.roles import ROLE_CAPABILITIES, Role

#: The longest username Django's user model takes: a longer one names nobody, and is not looked up.
MAX_USERNAME_LENGTH = 150


class MembershipConflict(ValidationError):
    """Refused for the project's state (the last owner, someone who is a member already), not for the request's
    form: the API answers 409 with the code; the settings page as any refusal."""


class RoleNotGrantable(PermissionError):
    """The caller does not hold every capability of a role it would give, or of the role of the member it would
    change or remove."""

    code = "role_not_grantable"

    def __init__(self, role: str, missing: list[str]) -> None:
        super().__init__(f"Giving or taking the role {role!r} needs every capability it grants, and the caller lacks "
                         f"{', '.join(missing)}: ask an owner.")
        self.role = role
        self.missing = missing


@dataclass(frozen=True)
class MemberChange:
    """What a change did: the membership (its role now; removed: as it was), its role before, and how many open
    invitations its member had sent that were revoked as they stopped being an owner."""

    membership: Membership
    before: str | None
    revoked_invitations: int = 0

    @property
    def changed(self) -> bool:
        """(a role change) Whether the role is another now: the same role again changes nothing."""
        return self.before != self.membership.role


def check_role(role) -> str:
    if not isinstance(role, str) or role not in Role.values:
        raise ValidationError("Unknown role %(role)r; use one of %(roles)s.", code="unknown_role",
                              params={"role": str(role)[:40], "roles": ", ".join(Role.values)})
    return role


def check_grantable(role: str, granted_by) -> None:
    """``RoleNotGrantable`` unless ``granted_by`` holds every capability of ``role``."""
    missing = sorted(ROLE_CAPABILITIES[role] - set(granted_by))
    if missing:
        raise RoleNotGrantable(role, missing)


def _view(membership: Membership) -> dict:
    return {"user": membership.user.get_username(), "role": membership.role}


def may_add_directly(user, added_by) -> bool:
    """Whether ``added_by`` (the calling person; None for an API key) may add ``user`` without their consent: an
    operator (Django staff) may add anyone; a person, someone they already share a project with."""
    if added_by is None or not getattr(added_by, "is_authenticated", False) or not added_by.is_active:
        return False
    if added_by.is_staff or added_by.is_superuser:
        return True
    return Membership.objects.filter(user=user, project__memberships__user=added_by).exists()


def _invitation_required(username: str) -> ValidationError:
    # One answer for an account that does not exist and one the caller may not add: no probing for usernames.
    return ValidationError("No account %(username)r that you may add directly: only people who already share a "
                           "project with you can be added by username. Invite the person by e-mail address instead "
                           "(POST /api/v1/invitations/, or Invitations in the project's settings); they join when they "
                           "accept.", code="invitation_required", params={"username": username[:80]})


@transaction.atomic
def add(project: Project, actor: str, *, username: str, role: str, granted_by, added_by) -> Membership:
    """``username``'s account joins ``project`` as ``role``, added by ``added_by`` (the calling person; None for an API
    key). Refused: an unknown role, a role the caller may not give (``RoleNotGrantable``), someone who is a member
    already (a ``MembershipConflict``, ``already_a_member``: their role is changed, checked, in the list of members),
    and alike (``invitation_required``) no such account or one ``may_add_directly`` refuses: they are invited."""
    from atelier_platform.moderation import audit

    # the role first: a refusal that came only for an existing account would tell that it exists
    check_role(role)
    check_grantable(role, granted_by)
    username = username.strip() if isinstance(username, str) else ""
    user = None
    if username and len(username) <= MAX_USERNAME_LENGTH and "\x00" not in username:
        user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise _invitation_required(username)
    if Membership.objects.filter(project=project, user=user).exists():
        raise _already_a_member(user)  # the list of members shows them to this caller anyway
    if not may_add_directly(user, added_by):
        raise _invitation_required(username)
    try:
        with transaction.atomic():  # a savepoint: the refusal below leaves the caller's transaction usable
            membership = Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        # made a member by someone else in the same instant: adding would change their role unchecked (the last
        # owner demoted) and audit it as an addition
        raise _already_a_member(user) from None
    audit.record(project, actor, "member_added", membership, after=_view(membership))
    return membership


def _already_a_member(user) -> MembershipConflict:
    return MembershipConflict("%(username)s is already a member of this project: change their role instead.",
                              code="already_a_member", params={"username": user.get_username()})


def _locked(project: Project, membership: Membership) -> tuple[Membership, int]:
    """The member's row as it is now, and the number of owners, locked until the transaction ends: the owners first,
    always in the same order, then the member, so that changes of two members at once wait for each other rather
    than deadlock. ``Membership.DoesNotExist`` if it is not the project's (it left meanwhile)."""
    owners = list(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER)
                  .order_by("pk").values_list("pk", flat=True))
    current = (Membership.objects.select_for_update(of=("self",)).select_related("user")
               .get(project=project, pk=membership.pk))
    return current, len(owners)


def _keep_an_owner(current: Membership, owners: int) -> None:
    if owners <= 1:
        raise MembershipConflict("A project keeps at least one owner: make someone else owner first.",
                                 code="last_owner", params={"username": current.user.get_username()})


@transaction.atomic
def change_role(project: Project, membership: Membership, actor: str, *, role: str, granted_by) -> MemberChange:
    """Give the member ``role``. The same role again changes and records nothing. Refused: an unknown role, a role
    (new or current) the caller may not give (``RoleNotGrantable``), the last owner's demotion (``last_owner``)."""
    from atelier_platform.moderation import audit

    check_role(role)
    current, owners = _locked(project, membership)
    check_grantable(role, granted_by)
    check_grantable(current.role, granted_by)
    before = current.role
    if role == before:
        return MemberChange(current, before)
    leaving = before == Role.OWNER
    if leaving:
        _keep_an_owner(current, owners)
    Membership.objects.filter(pk=current.pk).update(role=role)
    current.role = role
    audit.record(project, actor, "member_role_changed", current, before={"user": current.user.get_username(),
                                                                         "role": before}, after=_view(current))
    # an invitation grants a role with its sender's authority: it goes when they stop being an owner
    revoked = invitations.revoke_sent_by(project, current.user, actor) if leaving else 0
    return MemberChange(current, before, revoked)


@transaction.atomic
def remove(project: Project, membership: Membership, actor: str, *, granted_by) -> MemberChange:
    """The member leaves the project: they lose access at once. Refused: a member whose role the caller may not
    give (``RoleNotGrantable``), the last owner (``last_owner``)."""
    from atelier_platform.moderation import audit

    current, owners = _locked(project, membership)
    check_grantable(current.role, granted_by)
    leaving = current.role == Role.OWNER
    if leaving:
        _keep_an_owner(current, owners)
    audit.record(project, actor, "member_removed", current, before=_view(current))
    current.delete()
    revoked = invitations.revoke_sent_by(project, current.user, actor) if leaving else 0
    return MemberChange(current, current.role, revoked)
