"""Invitations: an owner brings a new colleague into a project by e-mail address, with a role.

Inviting makes a link ``/invite/<token>/``: the token is 256 random bits, shown to the owner once (to copy, like a
new API key) and e-mailed to the address; only its SHA-256 is stored, so a copy of the database opens nothing. The
link is the credential: whoever holds it may accept it, signed in with any account or with one they create on its
page. Accounts here carry no verified e-mail address (an operator types it in the admin, a visitor on the
invitation's page), so requiring the account's address to match would prove nothing; what limits a link that went
astray is that it works once, for 7 days, that the owner may revoke it, and that the project's members list and its
audit log say who joined through it (``invitation_accepted`` names the invited address and the account).

An invitation is *open* until accepted, revoked, or replaced: inviting an address that already has an open
invitation revokes that one (its link stops working) and makes a new one, with the role now chosen, as GitHub's
"resend" does; an open invitation past ``expires_at`` has expired. Each invitation, revocation and acceptance is in
the project's audit log.

Refusals carry codes (``ValidationError.code``, ``InvitationUnusable.code``) that the dashboard says in its language.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Invitation, Membership, Project
from atelier_platform.accounts.roles import Role

logger = logging.getLogger("atelier.invitations")

#: How long a link works.
LIFETIME = timedelta(days=7)
#: The longest address an invitation takes (RFC 5321's limit on a path, Django's EmailField's).
MAX_EMAIL_LENGTH = 254
DUMMY_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
#: What an invitation may be (``state_of``)
STATES = ("open", "expired", "accepted", "revoked")


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation: ``token`` goes into the link shown once and e-mailed, and is never stored."""

    invitation: Invitation
    token: str
    replaced: Invitation | None = None


class InvitationUnusable(Exception):
    """The token names no invitation that may be accepted. ``code``: ``invitation_not_found`` (unknown or revoked:
    told apart from each other, a link's holder could learn which links once existed), ``invitation_expired`` or
    ``invitation_used``."""

    def __init__(self, code: str, invitation: Invitation | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.invitation = invitation


class AlreadyMember(Exception):
    """The account accepting is a member of the project already: its role is left as it is, and the invitation stays
    open (the owner who opened their own link to try it did not use it up)."""

    def __init__(self, membership: Membership) -> None:
        super().__init__(f"{membership.user} is already a member of {membership.project} as {membership.role}")
        self.membership = membership


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_email(email: str) -> str:
    """The address as typed, without surrounding spaces; refused (code ``invalid_email``) unless it is one address."""
    email = (email or "").strip()
    if not email or len(email) > MAX_EMAIL_LENGTH or "\x00" in email:
        raise ValidationError("“%(email)s” is not an e-mail address.", code="invalid_email", params={"email": email[:80]})
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError("“%(email)s” is not an e-mail address.", code="invalid_email",
                              params={"email": email[:80]}) from None
    return email


def _view(invitation: Invitation) -> dict:
    return {"email": invitation.email, "role": invitation.role, "expires_at": invitation.expires_at.isoformat()}


def open_invitations(project: Project):
    """The project's invitations neither accepted nor revoked (expired ones included: the owner sees that a link
    lapsed unused), newest first, with who sent each."""
    from django.db.models import Exists, OuterRef, Q

    sender_owns = Exists(Membership.objects.filter(project=OuterRef("project_id"), user=OuterRef("invited_by_id"),
                                                   role=Role.OWNER))
    # one whose sender is no longer an owner, or whose key no longer works, is read as revoked (``_sender_left``):
    # not listed as open
    key_works = Q(invited_by_key__revoked_at__isnull=True) & (
        Q(invited_by_key__expires_at__isnull=True) | Q(invited_by_key__expires_at__gt=timezone.now()))
    return (Invitation.objects.filter(project=project, accepted_at__isnull=True, revoked_at__isnull=True)
            .filter(Q(invited_by__isnull=True) | Q(sender_owns)).filter(Q(invited_by_key__isnull=True) | key_works)
            .select_related("invited_by", "invited_by_key").order_by("-created_at"))


@transaction.atomic
def invite(project: Project, actor: str, *, email: str, role: str, invited_by: AbstractBaseUser | None = None,
           invited_by_key: ApiKey | None = None, granted_by=None, lifetime: timedelta = LIFETIME) -> IssuedInvitation:
    """A new invitation of ``email`` to ``project`` as ``role`` (an owner too: an owner may make owners), sent by a
    member (``invited_by``) or through the API with a key (``invited_by_key``): it stands while its sender owns the
    project, or while the key works. An open invitation of the same address (in any case) is revoked first and
    returned as ``replaced``: its link stops working, and only the new one joins. Refused (``ValidationError``) for
    an address that is not one (``invalid_email``), a role that is not one (``unknown_role``), and an address of an
    account that is a member already (``already_member``: change its role in the members list); with
    ``granted_by`` (the caller's capabilities), a role it does not hold every capability of, or an open invitation
    of the address to such a role, which this one would replace (``members.RoleNotGrantable``)."""
    from atelier_platform.accounts.members import check_grantable, check_role
    from atelier_platform.moderation import audit

    email = normalise_email(email)
    check_role(role)
    if granted_by is not None:
        check_grantable(role, granted_by)
    member = (Membership.objects.filter(project=project, user__email__iexact=email).select_related("user")
              .order_by("user__username").first())
    if member is not None:
        raise ValidationError("%(email)s is the address of %(username)s, a member of this project already: change "
                              "their role in the list of members.", code="already_member",
                              params={"email": email, "username": member.user.get_username()})
    now = timezone.now()
    earlier = list(Invitation.objects.select_for_update()
                   .filter(project=project, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True))
    if granted_by is not None:
        # replacing revokes: an owner's invitation to be owner is not for a key with admin alone to take back
        for old in earlier:
            check_grantable(old.role, granted_by)
    for old in earlier:
        old.revoked_at = now
        old.save(update_fields=["revoked_at"])
        audit.record(project, actor, "invitation_revoked", old, before=_view(old), after={"replaced": True})
    token = secrets.token_urlsafe(32)  # 256 bits
    try:
        with transaction.atomic():  # a savepoint: the refusal below leaves the outer transaction usable
            invitation = Invitation.objects.create(project=project, email=email, role=role, token_hash=hash_token(token),
                                                   invited_by=invited_by, invited_by_key=invited_by_key,
                                                   expires_at=now + lifetime)
    except IntegrityError:
        # another owner invited the same address in the same instant: theirs stands
        raise ValidationError("%(email)s was invited by someone else just now: see the list of invitations.",
                              code="invited_meanwhile", params={"email": email}) from None
    audit.record(project, actor, "invitation_created", invitation, after=_view(invitation))
    return IssuedInvitation(invitation=invitation, token=token, replaced=earlier[0] if earlier else None)


def revoke(invitation: Invitation, actor: str) -> bool:
    """Revoke an open invitation: its link stops working at once. False (and nothing written) when it was accepted
    or revoked already."""
    from atelier_platform.moderation import audit

    with transaction.atomic():
        revoked = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True) \
            .update(revoked_at=timezone.now())
        invitation.refresh_from_db(fields=["revoked_at", "accepted_at"])
        if revoked:
            audit.record(invitation.project, actor, "invitation_revoked", invitation, before=_view(invitation))
    return bool(revoked)


def revoke_sent_by(project: Project, user, actor: str) -> int:
    """Revoke the open invitations ``user`` sent for ``project``: called as they stop being its owner (demoted,
    removed). An invitation grants a role with its sender's authority, and only while they hold it. How many."""
    sent = Invitation.objects.filter(project=project, invited_by=user, accepted_at__isnull=True, revoked_at__isnull=True)
    return sum(revoke(invitation, actor) for invitation in sent.select_related("project"))


def revoke_sent_by_key(api_key: ApiKey, actor: str) -> int:
    """Revoke the open invitations made with ``api_key``: called as it is revoked (a key that expires is read as
    revoked, ``_sender_left``). How many."""
    sent = Invitation.objects.filter(invited_by_key=api_key, accepted_at__isnull=True, revoked_at__isnull=True)
    return sum(revoke(invitation, actor) for invitation in sent.select_related("project"))


def find(token: str) -> Invitation | None:
    """The invitation whose link holds ``token``, whatever its state, or None."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    return (Invitation.objects.select_related("project", "invited_by", "accepted_by")
            .filter(token_hash=hash_token(token)).first())


def usable(token: str, now: datetime | None = None) -> Invitation:
    """The invitation ``token`` opens, if it may still be accepted; else ``InvitationUnusable``."""
    return _check(find(token), now or timezone.now())


def _check(invitation: Invitation | None, now: datetime) -> Invitation:
    if invitation is None or invitation.revoked_at is not None or _sender_left(invitation):
        raise InvitationUnusable("invitation_not_found")
    if invitation.accepted_at is not None:
        raise InvitationUnusable("invitation_used", invitation)
    if invitation.expires_at <= now:
        raise InvitationUnusable("invitation_expired", invitation)
    return invitation


def state_of(invitation: Invitation, now: datetime | None = None, *, sender_checked: bool = False) -> str:
    """``accepted``, ``revoked`` (or replaced, or its sender's authority gone: ``_sender_left``), ``expired`` or
    ``open``. ``sender_checked``: the invitation comes from ``open_invitations``, which checked its sender."""
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None or (not sender_checked and _sender_left(invitation)):
        return "revoked"
    return "expired" if invitation.expires_at <= (now or timezone.now()) else "open"


def _sender_left(invitation: Invitation) -> bool:
    """Whether the member who sent an open invitation is no longer the project's owner, however that came about (the
    settings page and the API revoke their invitations then; a change in the admin or a shell does not), or the key
    it was made with no longer works (revoked, expired): it is then read as revoked. An invitation without a sender
    (an operator's, or one whose sender's account was deleted) stands."""
    if invitation.accepted_at is not None:
        return False
    if invitation.invited_by_key_id is not None:
        key = ApiKey.objects.filter(pk=invitation.invited_by_key_id).only("revoked_at", "expires_at").first()
        if key is None or not key.is_active:
            return True
    if invitation.invited_by_id is None:
        return False
    return not Membership.objects.filter(project_id=invitation.project_id, user_id=invitation.invited_by_id,
                                         role=Role.OWNER).exists()


@transaction.atomic
def accept(token: str, user: AbstractBaseUser) -> Membership:
    """``user`` joins the invitation's project with its role, and the invitation is used up: in one transaction,
    the invitation locked meanwhile (two people accepting one link at once: one of them joins). Refused with
    ``InvitationUnusable``, or ``AlreadyMember`` (the role is not changed, the invitation stays open)."""
    from atelier_platform.moderation import audit

    locked = None
    if isinstance(token, str) and token and len(token) <= 200:
        locked = (Invitation.objects.select_for_update(of=("self",)).select_related("project")
                  .filter(token_hash=hash_token(token)).first())
    now = timezone.now()
    invitation = _check(locked, now)
    existing = Membership.objects.filter(project=invitation.project, user=user).select_related("project", "user").first()
    if existing is not None:
        raise AlreadyMember(existing)
    membership = Membership.objects.create(project=invitation.project, user=user, role=invitation.role)
    invitation.accepted_at, invitation.accepted_by = now, user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    actor = f"user:{user.pk}"
    username = user.get_username()
    audit.record(invitation.project, actor, "invitation_accepted", invitation,
                 before=_view(invitation), after={"user": username, "role": invitation.role})
    audit.record(invitation.project, actor, "member_added", membership,
                 after={"user": username, "role": membership.role, "invitation": invitation.pk})
    return membership


def link_for(request, token: str) -> str:
    """The link to send: on ATELIER_PUBLIC_URL where it is set (behind a proxy the request's own host may be an
    inner one), else on the address the request reached the server at."""
    from django.urls import reverse

    from atelier_platform.config import get_config

    path = reverse("invitation", args=[token])
    public = get_config().public_url.rstrip("/")
    return f"{public}{path}" if public else request.build_absolute_uri(path)


def english_mail(issued: IssuedInvitation, link: str, inviter: str) -> dict[str, str]:
    """The e-mail of an invitation made through the API, which speaks English (the settings page writes its own, in
    the owner's language, with the same words). ``inviter``: a member's username, or a key's name."""
    invitation = issued.invitation
    names = {"inviter": inviter, "project": invitation.project.name, "role": invitation.role, "link": link,
             "expires": invitation.expires_at.strftime("%Y-%m-%d %H:%M")}
    return {
        # one line: a line break in a header is refused (Django's guard against header injection)
        "subject": " ".join(("%(inviter)s invited you to %(project)s on Atelier" % names).split()),
        "body": ("%(inviter)s invited you to join the project “%(project)s” on Atelier as %(role)s.\n\n"
                 "Open this link to accept, with your account or a new one:\n%(link)s\n\n"
                 "The link works once, until %(expires)s (UTC). If you did not expect this invitation, ignore this "
                 "e-mail.\n") % names,
    }


def mail_configured() -> bool:
    """Whether e-mail goes anywhere: without ``ATELIER_EMAIL_HOST`` the settings choose the dummy backend."""
    return settings.EMAIL_BACKEND != DUMMY_BACKEND


def send(issued: IssuedInvitation, *, subject: str, body: str) -> str:
    """E-mail the invitation (its text written by the caller, in the inviting owner's language). Answers ``sent``,
    ``not_configured`` (no mail server: nothing tried) or ``failed`` (the server refused or could not be reached:
    logged). Never raises: the invitation stands either way, and its link is the owner's to pass on. Call it outside
    a transaction, so that a slow mail server holds no lock."""
    if not mail_configured():
        return "not_configured"
    try:
        send_mail(subject, body, None, [issued.invitation.email], fail_silently=False)
    except Exception:  # an SMTP refusal, a refused connection, a time-out, a bad address: whatever the backend raises
        logger.warning("invitation %s to project %s: the e-mail could not be sent", issued.invitation.pk,
                       issued.invitation.project_id, exc_info=True)
        return "failed"
    return "sent"
