"""Invitations (accounts.invitations): made by an owner with a role, accepted once by whoever holds the link,
refused once expired, revoked, replaced or used; only a hash of the token is stored; each step audited."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Invitation, Membership
from atelier_platform.moderation.models import AuditEvent
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project):
    return MembershipFactory(project=project, role="owner").user


def invite(project, owner, email="alex@example.com", role="reviewer", **options):
    return invitations.invite(project, f"user:{owner.pk}", email=email, role=role, invited_by=owner, **options)


def audit_actions(project):
    return list(AuditEvent.objects.filter(project=project).order_by("id").values_list("action", flat=True))


def test_an_invitation_stores_only_a_hash_of_its_256_bit_token_and_expires_in_7_days(project, owner):
    issued = invite(project, owner)
    stored = Invitation.objects.get()
    assert len(issued.token) >= 43  # token_urlsafe(32): 32 random bytes
    assert stored.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    assert issued.token not in str(list(Invitation.objects.values()))
    assert stored.email == "alex@example.com" and stored.role == "reviewer" and stored.invited_by == owner
    assert timedelta(days=7) - timedelta(minutes=1) < stored.expires_at - timezone.now() <= timedelta(days=7)
    created = AuditEvent.objects.get(action="invitation_created")
    assert created.actor == f"user:{owner.pk}" and created.after["email"] == "alex@example.com"
    assert issued.token not in str(created.after)


def test_accepting_joins_with_the_role_once(project, owner):
    issued = invite(project, owner, role="reviewer")
    newcomer = UserFactory()
    membership = invitations.accept(issued.token, newcomer)
    assert (membership.project, membership.user, membership.role) == (project, newcomer, "reviewer")
    invitation = Invitation.objects.get()
    assert invitation.accepted_at is not None and invitation.accepted_by == newcomer
    assert audit_actions(project) == ["invitation_created", "invitation_accepted", "member_added"]
    accepted = AuditEvent.objects.get(action="invitation_accepted")
    assert accepted.actor == f"user:{newcomer.pk}" and accepted.after == {"user": newcomer.username, "role": "reviewer"}
    with pytest.raises(invitations.InvitationUnusable) as refused:
        invitations.accept(issued.token, UserFactory())
    assert refused.value.code == "invitation_used"
    assert Membership.objects.filter(project=project).count() == 2


def test_an_expired_invitation_is_refused_and_joins_nobody(project, owner):
    issued = invite(project, owner)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(invitations.InvitationUnusable) as refused:
        invitations.accept(issued.token, UserFactory())
    assert refused.value.code == "invitation_expired"
    assert Membership.objects.filter(project=project).count() == 1
    assert Invitation.objects.get().accepted_at is None


def test_revoked_and_unknown_tokens_are_refused_alike(project, owner):
    issued = invite(project, owner)
    assert invitations.revoke(Invitation.objects.get(), f"user:{owner.pk}") is True
    assert invitations.revoke(Invitation.objects.get(), f"user:{owner.pk}") is False  # once
    codes = []
    for token in (issued.token, "no-such-token", "", "x" * 5000, "bad\x00token"):
        with pytest.raises(invitations.InvitationUnusable) as refused:
            invitations.accept(token, UserFactory())
        codes.append(refused.value.code)
    assert set(codes) == {"invitation_not_found"}
    assert audit_actions(project) == ["invitation_created", "invitation_revoked"]
    assert Membership.objects.filter(project=project).count() == 1


def test_an_accepted_invitation_cannot_be_revoked(project, owner):
    issued = invite(project, owner)
    invitations.accept(issued.token, UserFactory())
    assert invitations.revoke(Invitation.objects.get(), f"user:{owner.pk}") is False
    assert Invitation.objects.get().revoked_at is None


def test_a_member_accepting_keeps_their_role_and_the_invitation_stays_open(project, owner):
    issued = invite(project, owner, role="viewer")
    with pytest.raises(invitations.AlreadyMember) as refused:
        invitations.accept(issued.token, owner)
    assert refused.value.membership.role == "owner"
    assert Membership.objects.get(project=project, user=owner).role == "owner"
    assert Invitation.objects.get().is_open
    newcomer = UserFactory()
    assert invitations.accept(issued.token, newcomer).role == "viewer"  # still works for the person it was meant for


def test_inviting_an_address_again_replaces_the_open_invitation(project, owner):
    first = invite(project, owner, email="Alex@Example.com", role="viewer")
    second = invite(project, owner, email="alex@example.com", role="editor")
    assert second.replaced.pk == first.invitation.pk
    with pytest.raises(invitations.InvitationUnusable) as refused:
        invitations.accept(first.token, UserFactory())
    assert refused.value.code == "invitation_not_found"
    assert list(invitations.open_invitations(project)) == [second.invitation]
    assert invitations.accept(second.token, UserFactory()).role == "editor"
    assert audit_actions(project)[:3] == ["invitation_created", "invitation_revoked", "invitation_created"]


def test_the_database_holds_one_open_invitation_per_address_and_project(project, owner, other_project):
    from django.db import IntegrityError, transaction

    invite(project, owner, email="sam@example.com")
    invite(other_project, owner, email="sam@example.com")  # another project's is its own
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(project=project, email="SAM@example.com", role="viewer", token_hash="0" * 64,
                                  expires_at=timezone.now())


@pytest.mark.parametrize("email", ["", "   ", "not-an-address", "a@", "two@example.com, more@example.com",
                                   "x" * 250 + "@example.com", "nul\x00@example.com"])
def test_a_bad_address_is_refused_and_nothing_is_made(project, owner, email):
    with pytest.raises(ValidationError) as refused:
        invite(project, owner, email=email)
    assert refused.value.code == "invalid_email"
    assert not Invitation.objects.exists() and not AuditEvent.objects.exists()


def test_an_unknown_role_is_refused_and_owner_is_a_role_to_invite_with(project, owner):
    with pytest.raises(ValidationError) as refused:
        invite(project, owner, role="admin")
    assert refused.value.code == "unknown_role" and not Invitation.objects.exists()
    issued = invite(project, owner, role="owner")
    assert invitations.accept(issued.token, UserFactory()).role == "owner"


def test_an_address_of_a_member_is_refused(project, owner):
    MembershipFactory(project=project, user=UserFactory(username="sam", email="Sam@Example.com"), role="viewer")
    with pytest.raises(ValidationError) as refused:
        invite(project, owner, email="sam@example.com")
    assert refused.value.code == "already_member" and refused.value.params["username"] == "sam"


def test_the_mail_goes_to_the_address_and_a_failure_loses_nothing(project, owner):
    issued = invite(project, owner)
    assert invitations.send(issued, subject="Join us", body="the link") == "sent"
    assert [(m.to, m.subject) for m in mail.outbox] == [(["alex@example.com"], "Join us")]
    with override_settings(EMAIL_BACKEND="tests.support.mail.RefusingBackend"):
        assert invitations.send(issued, subject="Join us", body="the link") == "failed"
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
        assert invitations.send(issued, subject="Join us", body="the link") == "not_configured"
    assert Invitation.objects.get().is_open


def test_without_a_mail_host_the_settings_send_nothing():
    """The operator's setting: no ATELIER_EMAIL_HOST, no mail server tried (the dummy backend)."""
    import subprocess
    import sys

    def backend(**env):
        import os

        code = ("import django; django.setup(); from django.conf import settings; "
                "print(settings.EMAIL_BACKEND, getattr(settings, 'EMAIL_USE_SSL', False), settings.DEFAULT_FROM_EMAIL)")
        environment = {name: value for name, value in os.environ.items() if not name.startswith("ATELIER_EMAIL_")}
        environment.update({"DJANGO_SETTINGS_MODULE": "atelier_platform.settings", **env})
        return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                              check=True).stdout.split()

    assert backend()[0] == "django.core.mail.backends.dummy.EmailBackend"
    assert backend(ATELIER_EMAIL_HOST="smtp.example.com", ATELIER_EMAIL_SECURITY="tls",
                   ATELIER_EMAIL_FROM="team@example.com") == \
        ["django.core.mail.backends.smtp.EmailBackend", "True", "team@example.com"]


def test_operators_list_invitations_without_their_hashes_and_revoke_them_audited(admin_client, admin_user, project,
                                                                                  owner):
    issued = invite(project, owner)
    listing = admin_client.get("/admin/accounts/invitation/")
    assert listing.status_code == 200 and "alex@example.com" in listing.content.decode()
    detail = admin_client.get(f"/admin/accounts/invitation/{issued.invitation.pk}/change/").content.decode()
    assert issued.invitation.token_hash not in detail and issued.token not in detail
    assert admin_client.get("/admin/accounts/invitation/add/").status_code == 403
    response = admin_client.post("/admin/accounts/invitation/", {"action": "revoke",
                                                                 "_selected_action": [issued.invitation.pk]})
    assert response.status_code == 302
    with pytest.raises(invitations.InvitationUnusable):
        invitations.usable(issued.token)
    event = AuditEvent.objects.get(action="invitation_revoked")
    assert event.actor == f"user:{admin_user.pk}" and event.project == project
