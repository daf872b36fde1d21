"""Members and invitations over the API (``/api/v1/members/``, ``/api/v1/invitations/``), for systems that provision
people: the settings page's rules (``accounts.members``, ``accounts.invitations``) with stable codes, a caller that
gives only roles whose capabilities it holds, and invitations made with a key that stand only while the key works."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import ApiKey, Invitation, Membership
from atelier_platform.accounts.roles import Capability
from atelier_platform.accounts.services import issue_api_key, revoke_api_key
from atelier_platform.moderation.models import AuditEvent
from tests.factories import MembershipFactory, UserFactory, colleagues

pytestmark = pytest.mark.django_db
EVERY_SCOPE = list(Capability.values)


@pytest.fixture
def keyed(project, client_for):
    """A client with a key of ``project`` holding ``scopes``; the key is on ``client.key``."""
    def make(scopes=EVERY_SCOPE, target=None):
        issued = issue_api_key(target or project, scopes=list(scopes))
        client = client_for(issued.raw)
        client.key = issued.api_key
        return client

    return make


@pytest.fixture
def admin_api(keyed):
    return keyed()


@pytest.fixture
def owner_member(project):
    return MembershipFactory(project=project, user=UserFactory(username="olga", email="olga@example.com"), role="owner")


def error_of(response) -> dict:
    return response.json()["error"]


def test_members_are_listed_with_their_role_and_joining_time_newest_first_never_their_address(project, admin_api, owner_member):
    MembershipFactory(project=project, user=UserFactory(username="vera"), role="viewer")
    response = admin_api.get("/api/v1/members/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["username"] for row in rows] == ["vera", "olga"]
    assert "olga@example.com" not in response.content.decode()
    assert rows[1] == {"id": owner_member.pk, "username": "olga", "role": "owner",
                       "joined_at": rows[1]["joined_at"]} and rows[1]["joined_at"]
    assert [row["username"] for row in admin_api.get("/api/v1/members/?role=owner").json()["results"]] == ["olga"]
    assert [row["username"] for row in admin_api.get("/api/v1/members/?username=vera").json()["results"]] == ["vera"]
    assert admin_api.get(f"/api/v1/members/{owner_member.pk}/").json()["username"] == "olga"


@pytest.mark.parametrize("scopes", [["jobs:read", "jobs:write"], ["jobs:read"], ["reviews:read", "reviews:write"]])
def test_editor_viewer_and_reviewer_keys_are_refused(keyed, owner_member, scopes):
    client = keyed(scopes)
    for method, url, body in [("get", "/api/v1/members/", None), ("post", "/api/v1/members/", {}),
                              ("patch", f"/api/v1/members/{owner_member.pk}/", {"role": "viewer"}),
                              ("delete", f"/api/v1/members/{owner_member.pk}/", None),
                              ("get", "/api/v1/invitations/", None), ("post", "/api/v1/invitations/", {})]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403 and error_of(response)["code"] == "permission_denied", (method, url)


def signed_in_api(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add_member(client, project, username, role="viewer"):
    return client.post("/api/v1/members/", {"username": username, "role": role}, content_type="application/json",
                       HTTP_X_ATELIER_PROJECT=project.slug)


def test_a_colleague_is_added_by_username_and_the_audit_names_the_person(project, owner_member):
    newcomer = UserFactory(username="newcomer", email="new@example.com")
    colleagues(owner_member.user, newcomer)  # they work together in another project already
    response = add_member(signed_in_api(owner_member.user), project, "newcomer", "reviewer")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "newcomer" and body["role"] == "reviewer"
    assert "new@example.com" not in response.content.decode()  # added without their consent: their address stays theirs
    assert response["Location"] == f"/api/v1/members/{body['id']}/"
    event = AuditEvent.objects.get(action="member_added")
    assert event.actor == f"user:{owner_member.user.pk}" and event.after == {"user": "newcomer", "role": "reviewer"}


def test_no_stranger_is_added_without_consent_and_an_unknown_username_is_answered_alike(project, owner_member,
                                                                                         admin_api):
    """Anyone's account joined any project by its username (a project admin pulled in whoever they liked), and the
    answers told which usernames exist. A person adds only someone they share a project with; a key, no person, no
    one; the others are invited, and an unknown username gets the very same answer."""
    UserFactory(username="stranger")
    colleague = UserFactory(username="colleague")
    colleagues(colleague, MembershipFactory(project=project, role="viewer").user)  # works with another member, not olga
    owner = signed_in_api(owner_member.user)
    answers = {name: add_member(owner, project, name) for name in ("stranger", "colleague", "nobody")}
    for name, response in answers.items():
        assert response.status_code == 400, name
        error = error_of(response)
        assert error["code"] == "invitation_required", name
        assert "POST /api/v1/invitations/" in error["message"]
        assert error["details"]["invite_with"] == "/api/v1/invitations/"
    said = {name: response.content.decode().replace(name, "NAME") for name, response in answers.items()}
    assert said["stranger"] == said["colleague"] == said["nobody"]  # nothing tells which usernames exist
    # a key is no person: it invites even the colleague of one of the project's members
    colleagues(owner_member.user, colleague)
    response = admin_api.post("/api/v1/members/", {"username": "colleague", "role": "viewer"}, format="json")
    assert response.status_code == 400 and error_of(response)["code"] == "invitation_required"
    assert response.content.decode().replace("colleague", "NAME") == said["nobody"]
    assert not Membership.objects.filter(project=project, user__username__in=["stranger", "colleague"]).exists()
    assert not AuditEvent.objects.filter(action="member_added").exists()
    # olga works with the colleague now; an operator (Django staff) adds anyone
    assert add_member(owner, project, "colleague").status_code == 201
    operator = UserFactory(username="operator", is_staff=True)
    MembershipFactory(project=project, user=operator, role="owner")
    assert add_member(signed_in_api(operator), project, "stranger").status_code == 201


def test_adding_refuses_an_unknown_user_a_member_and_a_bad_role_with_stable_codes(project, admin_api, owner_member):
    response = admin_api.post("/api/v1/members/", {"username": "nobody", "role": "editor"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invitation_required" and "nobody" in error_of(response)["details"]["username"][0]
    response = admin_api.post("/api/v1/members/", {"username": "olga", "role": "viewer"}, format="json")
    assert response.status_code == 409 and error_of(response)["code"] == "already_a_member"
    owner_member.refresh_from_db()
    assert owner_member.role == "owner"  # not demoted by an "addition"
    response = admin_api.post("/api/v1/members/", {"username": "olga", "role": "king"}, format="json")
    assert response.status_code == 400 and "role" in error_of(response)["details"]
    response = admin_api.post("/api/v1/members/", {"username": "olga", "role": "viewer", "team": "x"}, format="json")
    assert response.status_code == 400 and "team" in error_of(response)["details"]
    assert not AuditEvent.objects.exists()


def test_a_role_is_changed_the_same_role_changes_nothing_and_the_last_owner_stays(project, admin_api, owner_member):
    editor = MembershipFactory(project=project, user=UserFactory(username="ed"), role="editor")
    response = admin_api.patch(f"/api/v1/members/{editor.pk}/", {"role": "viewer"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "viewer"
    assert admin_api.patch(f"/api/v1/members/{editor.pk}/", {"role": "viewer"}, format="json").status_code == 200
    events = AuditEvent.objects.filter(action="member_role_changed")
    assert [(event.before["role"], event.after["role"]) for event in events] == [("editor", "viewer")]
    response = admin_api.patch(f"/api/v1/members/{owner_member.pk}/", {"role": "editor"}, format="json")
    assert response.status_code == 409 and error_of(response)["code"] == "last_owner"
    response = admin_api.delete(f"/api/v1/members/{owner_member.pk}/")
    assert response.status_code == 409 and error_of(response)["code"] == "last_owner"
    owner_member.refresh_from_db()
    assert owner_member.role == "owner"


def test_a_member_is_removed_and_an_owner_leaving_loses_the_invitations_they_sent(project, admin_api, owner_member):
    second = MembershipFactory(project=project, user=UserFactory(username="sam"), role="owner")
    issued = invitations.invite(project, f"user:{second.user.pk}", email="alex@example.com", role="editor",
                                invited_by=second.user)
    response = admin_api.delete(f"/api/v1/members/{second.pk}/")
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=second.pk).exists()
    assert Invitation.objects.get(pk=issued.invitation.pk).revoked_at is not None
    assert list(AuditEvent.objects.values_list("action", "actor")) == [
        ("invitation_created", f"user:{second.user.pk}"), ("member_removed", f"key:{admin_api.key.prefix}"),
        ("invitation_revoked", f"key:{admin_api.key.prefix}")]
    assert admin_api.delete(f"/api/v1/members/{second.pk}/").status_code == 404


def test_another_projects_member_is_not_found_and_stays(project, other_project, admin_api):
    theirs = MembershipFactory(project=other_project, user=UserFactory(), role="editor")
    for method, body in [("get", None), ("patch", {"role": "viewer"}), ("delete", None)]:
        response = getattr(admin_api, method)(f"/api/v1/members/{theirs.pk}/", body, format="json")
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", method
    theirs.refresh_from_db()
    assert theirs.role == "editor"
    # nor is their account added to this project by its username: they are invited, and agree or not
    response = admin_api.post("/api/v1/members/", {"username": theirs.user.username, "role": "viewer"}, format="json")
    assert response.status_code == 400 and error_of(response)["code"] == "invitation_required"
    assert not Membership.objects.filter(project=project, user=theirs.user).exists()


def test_a_key_gives_only_roles_whose_capabilities_it_holds(project, keyed, owner_member):
    """A key with admin alone manages keys and policies, but makes no one an owner (the role holds every scope) or an
    editor (it cannot submit jobs itself), and neither demotes nor removes an owner: it grants nothing it lacks."""
    admin_only = keyed(["admin"])
    # the role is checked before the username is looked up: its refusal tells nothing of who exists
    response = admin_only.post("/api/v1/members/", {"username": "nobody", "role": "owner"}, format="json")
    assert response.status_code == 403 and error_of(response)["code"] == "role_not_grantable"
    assert "jobs:write" in error_of(response)["details"]["missing"]
    admin_reader = keyed(["admin", "jobs:read"])
    response = admin_reader.post("/api/v1/members/", {"username": "nobody", "role": "editor"}, format="json")
    assert response.status_code == 403 and error_of(response)["details"] == {"role": "editor", "missing": ["jobs:write"]}
    viewer = MembershipFactory(project=project, user=UserFactory(username="newcomer"), role="viewer")
    MembershipFactory(project=project, user=UserFactory(), role="owner")
    for method, body in [("patch", {"role": "viewer"}), ("delete", None)]:
        response = getattr(admin_reader, method)(f"/api/v1/members/{owner_member.pk}/", body, format="json")
        assert response.status_code == 403 and error_of(response)["code"] == "role_not_grantable", method
    response = admin_reader.patch(f"/api/v1/members/{viewer.pk}/", {"role": "owner"}, format="json")
    assert response.status_code == 403
    response = admin_only.post("/api/v1/invitations/", {"email": "x@example.com", "role": "owner"}, format="json")
    assert response.status_code == 403 and error_of(response)["code"] == "role_not_grantable"
    assert not Invitation.objects.exists()
    owner_member.refresh_from_db()
    assert owner_member.role == "owner"
    # every scope: every role
    every = keyed()
    assert every.patch(f"/api/v1/members/{viewer.pk}/", {"role": "owner"}, format="json").json()["role"] == "owner"


def test_a_key_takes_back_only_invitations_to_roles_it_could_give(project, keyed, admin_api):
    """A key with admin and jobs:read could not invite an owner, but revoked an owner's invitation to be owner, or
    replaced it (inviting the address again as viewer): it undid what it could not do, as it may not remove an
    owner."""
    to_owner = admin_api.post("/api/v1/invitations/", {"email": "boss@example.com", "role": "owner",
                                                       "send_email": False}, format="json").json()
    admin_reader = keyed(["admin", "jobs:read"])
    response = admin_reader.post(f"/api/v1/invitations/{to_owner['id']}/revoke/")
    assert response.status_code == 403 and error_of(response)["details"]["role"] == "owner"
    response = admin_reader.post("/api/v1/invitations/", {"email": "Boss@example.com", "role": "viewer",
                                                          "send_email": False}, format="json")
    assert response.status_code == 403 and error_of(response)["code"] == "role_not_grantable"
    assert invitations.state_of(Invitation.objects.get(pk=to_owner["id"])) == "open"
    assert Invitation.objects.count() == 1
    # one to a role it could give, it revokes and replaces
    to_viewer = admin_reader.post("/api/v1/invitations/", {"email": "v@example.com", "role": "viewer",
                                                           "send_email": False}, format="json").json()
    again = admin_reader.post("/api/v1/invitations/", {"email": "v@example.com", "role": "viewer", "send_email": False},
                              format="json")
    assert again.status_code == 201 and again.json()["replaced"] == to_viewer["id"]
    assert admin_reader.post(f"/api/v1/invitations/{again.json()['id']}/revoke/").json()["state"] == "revoked"


def test_a_signed_in_owner_uses_the_api_as_the_settings_page(project, owner_member):
    client = Client()
    client.force_login(owner_member.user)
    colleagues(owner_member.user, UserFactory(username="newcomer"))
    response = client.post("/api/v1/members/", {"username": "newcomer", "role": "owner"},
                           content_type="application/json", HTTP_X_ATELIER_PROJECT=project.slug)
    assert response.status_code == 201
    assert AuditEvent.objects.get(action="member_added").actor == f"user:{owner_member.user.pk}"
    response = client.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "editor"},
                           content_type="application/json", HTTP_X_ATELIER_PROJECT=project.slug)
    assert response.status_code == 201 and response.json()["invited_by"] == "olga"
    assert "olga invited you" in mail.outbox[0].subject


def test_an_invitation_answers_its_link_once_and_is_listed_without_it(project, admin_api, owner_member):
    response = admin_api.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "reviewer"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    token, link = body["token"], body["link"]
    assert link == f"http://testserver/invite/{token}/"
    assert body["email_delivery"] == "sent" and body["replaced"] is None and body["state"] == "open"
    assert body["invited_by"] is None and body["invited_by_key"] == admin_api.key.prefix
    assert [message.to for message in mail.outbox] == [["alex@example.com"]] and link in mail.outbox[0].body
    assert Invitation.objects.get().token_hash == invitations.hash_token(token)
    assert Client().get(f"/invite/{token}/").status_code == 200
    event = AuditEvent.objects.get(action="invitation_created")
    assert event.actor == f"key:{admin_api.key.prefix}"
    listed = admin_api.get("/api/v1/invitations/")
    assert [row["email"] for row in listed.json()["results"]] == ["alex@example.com"]
    one = admin_api.get(f"/api/v1/invitations/{body['id']}/")
    for answer in (listed, one):
        text = answer.content.decode()
        assert token not in text and invitations.hash_token(token) not in text and "token" not in text


def test_inviting_an_address_again_replaces_the_invitation_and_says_so(project, admin_api):
    first = admin_api.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "viewer"}, format="json").json()
    second = admin_api.post("/api/v1/invitations/", {"email": "ALEX@example.com", "role": "editor"}, format="json")
    assert second.status_code == 201 and second.json()["replaced"] == first["id"]
    assert Client().get(f"/invite/{first['token']}/").status_code == 404
    assert admin_api.get(f"/api/v1/invitations/{first['id']}/").json()["state"] == "revoked"
    assert [row["role"] for row in admin_api.get("/api/v1/invitations/").json()["results"]] == ["editor"]
    assert len(mail.outbox) == 2


def test_no_e_mail_when_the_caller_sends_the_link_itself_and_the_answer_says_when_it_failed(project, admin_api,
                                                                                            settings):
    response = admin_api.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "viewer",
                                                        "send_email": False}, format="json")
    assert response.json()["email_delivery"] == "not_requested" and mail.outbox == []
    settings.EMAIL_BACKEND = "tests.support.mail.RefusingBackend"
    response = admin_api.post("/api/v1/invitations/", {"email": "sam@example.com", "role": "viewer"}, format="json")
    assert response.status_code == 201 and response.json()["email_delivery"] == "failed"
    assert Invitation.objects.filter(email="sam@example.com", revoked_at__isnull=True).exists()
    settings.EMAIL_BACKEND = invitations.DUMMY_BACKEND
    response = admin_api.post("/api/v1/invitations/", {"email": "kim@example.com", "role": "viewer"}, format="json")
    assert response.json()["email_delivery"] == "not_configured"


def test_bad_invitations_are_refused_with_stable_codes(project, admin_api):
    response = admin_api.post("/api/v1/invitations/", {"email": "not an address", "role": "viewer"}, format="json")
    assert response.status_code == 400 and "email" in error_of(response)["details"]
    response = admin_api.post("/api/v1/invitations/", {"email": "a@example.com", "role": "boss"}, format="json")
    assert response.status_code == 400 and "role" in error_of(response)["details"]
    MembershipFactory(project=project, user=UserFactory(username="sam", email="sam@example.com"), role="viewer")
    response = admin_api.post("/api/v1/invitations/", {"email": "Sam@example.com", "role": "editor"}, format="json")
    assert response.status_code == 409 and error_of(response)["code"] == "already_member"
    assert not Invitation.objects.exists() and mail.outbox == []


def test_an_invitation_made_with_a_key_goes_when_the_key_is_revoked_or_expires(project, keyed, admin_api):
    sender = keyed()
    made = sender.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "editor"}, format="json").json()
    revoke_api_key(sender.key, actor="user:1")
    assert Client().get(f"/invite/{made['token']}/").status_code == 404
    assert Invitation.objects.get(pk=made["id"]).revoked_at is not None
    assert AuditEvent.objects.filter(action="invitation_revoked", object_id=str(made["id"])).exists()

    expiring = keyed()
    made = expiring.post("/api/v1/invitations/", {"email": "sam@example.com", "role": "editor"}, format="json").json()
    ApiKey.objects.filter(pk=expiring.key.pk).update(expires_at=timezone.now())
    assert Client().get(f"/invite/{made['token']}/").status_code == 404  # read as revoked, though no one revoked it
    assert admin_api.get("/api/v1/invitations/").json()["results"] == []
    assert admin_api.get(f"/api/v1/invitations/{made['id']}/").json()["state"] == "revoked"
    with pytest.raises(invitations.InvitationUnusable):
        invitations.accept(made["token"], UserFactory())


def test_an_invitation_is_revoked_once_and_an_accepted_one_is_a_conflict(project, admin_api):
    made = admin_api.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "editor"}, format="json").json()
    response = admin_api.post(f"/api/v1/invitations/{made['id']}/revoke/")
    assert response.status_code == 200 and response.json()["state"] == "revoked"
    assert admin_api.post(f"/api/v1/invitations/{made['id']}/revoke/").status_code == 200  # again: nothing changes
    assert AuditEvent.objects.filter(action="invitation_revoked").count() == 1
    assert Client().get(f"/invite/{made['token']}/").status_code == 404

    made = admin_api.post("/api/v1/invitations/", {"email": "sam@example.com", "role": "editor"}, format="json").json()
    joiner = UserFactory()
    invitations.accept(made["token"], joiner)
    response = admin_api.post(f"/api/v1/invitations/{made['id']}/revoke/")
    assert response.status_code == 409 and error_of(response)["code"] == "invitation_used"
    shown = admin_api.get(f"/api/v1/invitations/{made['id']}/").json()
    assert shown["state"] == "accepted" and shown["accepted_by"] == joiner.username


def test_another_projects_invitation_is_not_found_and_stays(project, other_project, admin_api):
    theirs = invitations.invite(other_project, "user:1", email="alex@example.com", role="editor")
    for method, url in [("get", f"/api/v1/invitations/{theirs.invitation.pk}/"),
                        ("post", f"/api/v1/invitations/{theirs.invitation.pk}/revoke/")]:
        response = getattr(admin_api, method)(url)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert admin_api.get("/api/v1/invitations/").json()["results"] == []
    assert invitations.usable(theirs.token)


def test_odd_filters_and_ids_are_refused_not_crashed(admin_api):
    for url in ("/api/v1/members/?username=%00", "/api/v1/members/?role=king", "/api/v1/members/?cursor=abc",
                "/api/v1/invitations/?cursor=abc"):
        response = admin_api.get(url)
        assert response.status_code == 400 and error_of(response)["code"] == "validation_error", url
    for url in ("/api/v1/members/99999999999999999/", "/api/v1/invitations/99999999999999999/revoke/"):
        response = admin_api.generic("GET" if "revoke" not in url else "POST", url)
        assert response.status_code == 404, url
    response = admin_api.post("/api/v1/members/", {"username": "a\x00b", "role": "viewer"}, format="json")
    assert response.status_code == 400 and "username" in error_of(response)["details"]
