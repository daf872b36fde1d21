"""Inviting people by e-mail from the settings page, and the invitation's page (/invite/<token>/) that the link
opens: owners only invite and revoke, the link is shown once and e-mailed, a failed e-mail loses nothing, a
visitor creates an account there, a signed-in person joins with a POST, and a link that opens nothing says so."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Invitation, Membership
from atelier_platform.moderation.models import AuditEvent
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
LINK = re.compile(r'<code id="invitation-link">(http://testserver/invite/([A-Za-z0-9_-]+)/)</code>')
STRONG = "violet tapestry 42 lanterns"


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def text_of(response) -> str:
    return response.content.decode()


def invite(client, email="alex@example.com", role="reviewer"):
    """Invite from the settings page; the page the redirect leads to, and the link it shows."""
    response = client.post("/settings/", {"action": "invite", "email": email, "role": role})
    assert response.status_code == 302 and response["Location"].endswith("#invitations")
    page = client.get(response["Location"].split("#")[0])
    found = LINK.search(text_of(page))
    return page, (found.group(1) if found else None), (found.group(2) if found else None)


def test_the_link_is_shown_once_e_mailed_and_the_invitation_listed(project, owner):
    page, link, token = invite(owner, "alex@example.com", "reviewer")
    assert link and "It was also e-mailed to alex@example.com." in text_of(page)
    assert "no-store" in page["Cache-Control"]  # the link is a secret in clear
    assert [message.to for message in mail.outbox] == [["alex@example.com"]]
    assert link in mail.outbox[0].body and owner.user.username in mail.outbox[0].subject
    assert Invitation.objects.get().token_hash == invitations.hash_token(token)
    later = text_of(owner.get("/settings/"))
    assert token not in later  # never shown again
    row = re.search(r'<tr data-invitation="alex@example.com">.*?</tr>', later, re.S).group(0)
    assert "reviewer" in row and owner.user.username in row and "Revoke" in row
    assert "invitation created" in later  # the audit log


def test_a_failed_e_mail_keeps_the_invitation_and_the_page_says_so(project, owner):
    with override_settings(EMAIL_BACKEND="tests.support.mail.RefusingBackend"):
        page, link, token = invite(owner)
    assert link and "could not be sent" in text_of(page) and "The invitation stands." in text_of(page)
    assert invitations.usable(token).email == "alex@example.com"
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"):
        page, link, _token = invite(owner, "sam@example.com")
    assert link and "No e-mail was sent: this server has no mail server set up" in text_of(page)


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_owners_invite_and_revoke(project, signed_in, owner, role):
    _page, _link, _token = invite(owner)
    invitation = Invitation.objects.get()
    someone = signed_in(project, role)
    assert someone.post("/settings/", {"action": "invite", "email": "eve@example.com", "role": "owner"}).status_code == 403
    assert someone.post("/settings/", {"action": "revoke_invitation", "invitation": invitation.pk}).status_code == 403
    assert list(Invitation.objects.values_list("email", "revoked_at")) == [("alex@example.com", None)]
    assert mail.outbox[-1].to == ["alex@example.com"] and len(mail.outbox) == 1


def test_another_projects_invitation_is_not_found_and_stays(project, other_project, owner):
    theirs = invitations.invite(other_project, "user:0", email="alex@example.com", role="viewer")
    response = owner.post("/settings/", {"action": "revoke_invitation", "invitation": theirs.invitation.pk})
    assert response.status_code == 404 and "No such invitation." in text_of(response)
    for unknown in ("999999", "abc", "99999999999999999999999"):
        assert owner.post("/settings/", {"action": "revoke_invitation", "invitation": unknown}).status_code == 404
    assert Invitation.objects.get().is_open and not AuditEvent.objects.filter(project=project).exists()


def test_revoking_stops_the_link_and_its_page_is_the_page_of_an_unknown_link(project, owner):
    _page, _link, token = invite(owner)
    invitation = Invitation.objects.get()
    response = owner.post("/settings/", {"action": "revoke_invitation", "invitation": invitation.pk}, follow=True)
    assert "The invitation of alex@example.com is revoked" in text_of(response)
    assert "No open invitations." in text_of(response)
    again = owner.post("/settings/", {"action": "revoke_invitation", "invitation": invitation.pk})
    assert again.status_code == 400 and "used or revoked already" in text_of(again)
    visitor = Client()
    revoked, unknown = visitor.get(f"/invite/{token}/"), visitor.get(f"/invite/{'A' * len(token)}/")
    assert revoked.status_code == unknown.status_code == 404

    def without_csrf(response):  # and the token, which the page's own address holds (the language form's "next")
        text = text_of(response).replace(token, "A" * len(token))
        return re.sub(r'(name="csrf-token" content|name="csrfmiddlewaretoken" value)="[^"]*"', "", text)

    assert without_csrf(revoked) == without_csrf(unknown)
    assert "This invitation link does not work" in text_of(revoked)
    assert list(AuditEvent.objects.filter(project=project).values_list("action", flat=True)) == [
        "invitation_created", "invitation_revoked"]


@pytest.mark.parametrize(("email", "role", "words"), [
    ("not-an-address", "editor", "is not an e-mail address"),
    ("", "editor", "is not an e-mail address"),
    ("alex@example.com", "admin", "is not a role"),
    ("alex@example.com", "", "is not a role"),
])
def test_bad_input_is_refused_in_the_invitations_section_and_nothing_is_made(project, owner, email, role, words):
    response = owner.post("/settings/", {"action": "invite", "email": email, "role": role})
    assert response.status_code == 400
    section = re.search(r'<section class="card" id="invitations" data-refused>.*?</section>', text_of(response), re.S)
    assert section and words in section.group(0)
    assert not Invitation.objects.exists() and not mail.outbox


def test_an_owner_may_be_invited_and_a_members_address_is_refused(project, owner):
    _page, link, token = invite(owner, "co-owner@example.com", "owner")
    assert Invitation.objects.get().role == "owner"
    MembershipFactory(project=project, user=UserFactory(username="sam", email="sam@example.com"), role="viewer")
    response = owner.post("/settings/", {"action": "invite", "email": "SAM@example.com", "role": "editor"})
    assert response.status_code == 400 and "the address of sam, a member of this project already" in text_of(response)


def test_inviting_an_address_again_replaces_the_invitation(project, owner):
    _page, _link, first = invite(owner, "alex@example.com", "viewer")
    page, _link, second = invite(owner, "alex@example.com", "editor")
    assert "The earlier invitation of this address is revoked" in text_of(page)
    assert Client().get(f"/invite/{first}/").status_code == 404
    assert Client().get(f"/invite/{second}/").status_code == 200
    assert list(invitations.open_invitations(project).values_list("role", flat=True)) == ["editor"]


def test_a_visitor_creates_an_account_and_joins_with_the_role(project, owner):
    _page, _link, token = invite(owner, "alex@example.com", "reviewer")
    visitor = Client()
    shown = visitor.get(f"/invite/{token}/")
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    assert f"Join {project.name}" in text_of(shown) and "as <strong>reviewer</strong>" in text_of(shown)
    weak = visitor.post(f"/invite/{token}/", {"username": "alex", "password1": "password", "password2": "password"})
    assert weak.status_code == 400 and "This password is too common." in text_of(weak)
    mismatched = visitor.post(f"/invite/{token}/", {"username": "alex", "password1": STRONG, "password2": STRONG + "!"})
    assert mismatched.status_code == 400 and "The two password fields didn’t match." in text_of(mismatched)
    taken = visitor.post(f"/invite/{token}/", {"username": owner.user.username.upper(), "password1": STRONG,
                                                "password2": STRONG})
    assert taken.status_code == 400 and "A user with that username already exists." in text_of(taken)
    like_address = visitor.post(f"/invite/{token}/", {"username": "bob", "password1": "alex@example.com",
                                                       "password2": "alex@example.com"})
    assert like_address.status_code == 400 and "too similar to the email address" in text_of(like_address)
    assert not get_user_model().objects.filter(username__in=["alex", "bob"]).exists()
    assert Invitation.objects.get().is_open

    joined = visitor.post(f"/invite/{token}/", {"username": "alex", "password1": STRONG, "password2": STRONG})
    assert joined.status_code == 302 and joined["Location"] == "/"
    alex = get_user_model().objects.get(username="alex")
    assert alex.email == "alex@example.com" and alex.check_password(STRONG)
    assert Membership.objects.get(project=project, user=alex).role == "reviewer"
    landing = visitor.get("/", follow=True)
    assert landing.redirect_chain[-1][0] == "/review/"  # a reviewer lands on the queue, signed in
    assert f"You joined {project.name} as reviewer." in text_of(landing)
    used = Client().get(f"/invite/{token}/")
    assert used.status_code == 410 and "This invitation has been used already" in text_of(used)


def test_a_signed_in_person_joins_with_a_post_not_by_opening_the_link(project, other_project, owner, signed_in):
    _page, _link, token = invite(owner, "alex@example.com", "editor")
    elsewhere = signed_in(other_project, "viewer")  # another project's member, a stranger to this one
    shown = elsewhere.get(f"/invite/{token}/")
    assert shown.status_code == 200 and 'id="join"' in text_of(shown) and elsewhere.user.username in text_of(shown)
    assert not Membership.objects.filter(project=project, user=elsewhere.user).exists()  # GET only shows
    joined = elsewhere.post(f"/invite/{token}/")
    assert joined.status_code == 302
    assert Membership.objects.get(project=project, user=elsewhere.user).role == "editor"
    assert elsewhere.get("/", follow=True).redirect_chain[-1][0] == "/create/"  # switched to the project joined
    assert elsewhere.session["atelier_project"] == project.slug


def test_a_member_opening_the_link_is_told_so_and_keeps_their_role(project, owner):
    _page, _link, token = invite(owner, "alex@example.com", "viewer")
    for response in (owner.get(f"/invite/{token}/"), owner.post(f"/invite/{token}/")):
        assert "You are a member of" in text_of(response) and "your role stays as it is" in text_of(response)
        assert 'id="join"' not in text_of(response)
    assert owner.post(f"/invite/{token}/").status_code == 409
    assert Membership.objects.get(project=project, user=owner.user).role == "owner"
    assert Invitation.objects.get().is_open


def test_an_expired_link_is_gone_and_creates_no_account(project, owner):
    _page, _link, token = invite(owner)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    visitor = Client()
    assert visitor.get(f"/invite/{token}/").status_code == 410
    response = visitor.post(f"/invite/{token}/", {"username": "alex", "password1": STRONG, "password2": STRONG})
    assert response.status_code == 410 and "This invitation has expired" in text_of(response)
    assert not get_user_model().objects.filter(username="alex").exists()
    settings_page = text_of(owner.get("/settings/"))
    row = re.search(r'<tr data-invitation="alex@example.com" class="revoked">.*?</tr>', settings_page, re.S)
    assert row and "expired" in row.group(0)


def test_joining_needs_the_forms_csrf_token(project, owner):
    _page, _link, token = invite(owner)
    visitor = Client(enforce_csrf_checks=True)
    response = visitor.post(f"/invite/{token}/", {"username": "alex", "password1": STRONG, "password2": STRONG})
    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="alex").exists() and Invitation.objects.get().is_open


def test_odd_tokens_get_the_page_of_an_unknown_link(db):
    visitor = Client()
    for token in ("x", "a" * 500, "%00", "..%2F"):
        assert visitor.get(f"/invite/{token}/").status_code == 404


def test_the_invitation_page_and_the_new_strings_in_chinese(project, owner):
    _page, _link, token = invite(owner, "alex@example.com", "reviewer")
    visitor = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = text_of(visitor.get(f"/invite/{token}/"))
    assert "加入" in page and "审核员" in page and "创建账户" in page
    owner.defaults["HTTP_ACCEPT_LANGUAGE"] = "zh-hans"
    settings_page = text_of(owner.get("/settings/"))
    assert "邀请" in settings_page and "Invitations" not in settings_page
    response = owner.post("/settings/", {"action": "invite", "email": "nope", "role": "editor"})
    assert "不是电子邮件地址" in text_of(response)


def test_the_settings_page_reads_a_fixed_number_of_times_whatever_the_invitations(project, owner):
    def count():
        owner.get("/settings/")
        with CaptureQueriesContext(connection) as queries:
            assert owner.get("/settings/").status_code == 200
        return len(queries)

    invitations.invite(project, "user:0", email="a0@example.com", role="viewer", invited_by=owner.user)
    few = count()
    for i in range(1, 20):
        invitations.invite(project, "user:0", email=f"a{i}@example.com", role="viewer",
                           invited_by=UserFactory())
    assert count() == few


def test_someone_with_an_account_signs_in_from_the_link_and_comes_back_to_join(project, owner):
    _page, _link, token = invite(owner, "alex@example.com", "viewer")
    alex = UserFactory(username="alex")
    visitor = Client()
    sign_in_link = re.search(r'<a href="([^"]+)" id="sign-in-instead">', text_of(visitor.get(f"/invite/{token}/"))).group(1)
    assert sign_in_link == f"/login/?next=/invite/{token}/"
    signed_in = visitor.post(sign_in_link, {"username": "alex", "password": "correct horse battery staple",
                                            "next": f"/invite/{token}/"})
    assert signed_in.status_code == 302 and signed_in["Location"] == f"/invite/{token}/"
    assert 'id="join"' in text_of(visitor.get(f"/invite/{token}/"))
    assert visitor.post(f"/invite/{token}/").status_code == 302
    assert Membership.objects.get(project=project, user=alex).role == "viewer"


def test_a_project_name_with_a_line_break_still_gets_its_e_mail_out(project, owner):
    project.name = "Shop\nBcc: everyone@example.com"
    project.save()
    page, link, _token = invite(owner)
    assert "It was also e-mailed to alex@example.com." in text_of(page)
    assert "\n" not in mail.outbox[0].subject and mail.outbox[0].bcc == []


def test_someone_in_no_project_yet_joins_from_the_link(project, owner):
    _page, _link, token = invite(owner, "alex@example.com", "viewer")
    loner = Client()
    loner.force_login(UserFactory(username="loner"))
    assert loner.get("/jobs/").status_code == 403  # no project yet: told so
    shown = loner.get(f"/invite/{token}/")
    assert shown.status_code == 200 and 'id="join"' in text_of(shown)
    assert loner.post(f"/invite/{token}/").status_code == 302
    assert loner.get("/", follow=True).redirect_chain[-1][0] == "/jobs/"  # a viewer lands on the jobs


def test_the_no_project_page_tells_of_invitations_in_english_and_chinese():
    """A signed-in person in no project was told only to ask an owner to add them: the page now says an owner
    may invite them by e-mail, and that a link they have opens the way in."""
    loner = Client()
    loner.force_login(UserFactory(username="loner"))
    page = loner.get("/jobs/")
    assert page.status_code == 403
    text = text_of(page)
    assert "Ask a project owner to add you, with the role your work needs." in text  # still said
    assert "An owner can invite you by e-mail address" in text and "<code>/invite/…/</code>" in text
    assert f"works once, for {invitations.LIFETIME.days} days." in text
    assert "If you have such a link, open it while signed in here" in text
    chinese = text_of(loner.get("/jobs/", HTTP_ACCEPT_LANGUAGE="zh-hans"))
    assert "请项目所有者把你加入项目" in chinese
    assert f"只能使用一次，有效期 {invitations.LIFETIME.days} 天" in chinese and "如果你已收到这样的链接" in chinese
    assert "An owner can invite you" not in chinese


def test_an_owners_invitations_go_when_they_stop_being_owner_and_a_link_from_a_sender_demoted_elsewhere_opens_nothing(
        project, owner, signed_in):
    """An invitation grants a role with its sender's authority: a sender demoted to editor (or removed) no longer
    brings anyone in as owner, reviewer or anything else through the links they sent."""
    _page, _link, token = invite(owner, "alex@example.com", "owner")
    other = signed_in(project, "owner")
    mine = Membership.objects.get(project=project, user=owner.user)
    response = other.post("/settings/", {"action": "set_role", "member": mine.pk, "role": "editor"})
    assert response.status_code == 302
    page = text_of(other.get("/settings/"))
    assert "is now editor (was owner). The invitation they sent was revoked." in page
    assert Invitation.objects.get().revoked_at is not None
    assert AuditEvent.objects.filter(action="invitation_revoked").count() == 1
    assert Client().get(f"/invite/{token}/").status_code == 404

    # demoted where the settings page is not (the admin, a shell): the link opens nothing, and is not listed as open
    _page, _link, second = invite(other, "sam@example.com", "reviewer")
    Membership.objects.filter(project=project, user=other.user).update(role="viewer")
    assert Client().get(f"/invite/{second}/").status_code == 404
    assert not invitations.open_invitations(project).exists()
    newcomer = UserFactory()
    with pytest.raises(invitations.InvitationUnusable):
        invitations.accept(second, newcomer)
    assert not Membership.objects.filter(user=newcomer).exists()


def test_the_dashboard_and_the_api_replace_each_others_invitations_alike(project, owner, client_for):
    """One rule wherever the address is invited again: the new invitation replaces the open one (its link stops
    working), and the answer says so, the API's in ``replaced``, the page's in words."""
    from atelier_platform.accounts.services import issue_api_key

    api = client_for(issue_api_key(project, scopes=["admin", "jobs:read", "jobs:write"]).raw)
    _page, _link, from_page = invite(owner, "alex@example.com", "viewer")
    response = api.post("/api/v1/invitations/", {"email": "alex@example.com", "role": "editor"}, format="json")
    first = Invitation.objects.get(token_hash=invitations.hash_token(from_page))
    assert response.status_code == 201 and response.json()["replaced"] == first.pk
    assert Client().get(f"/invite/{from_page}/").status_code == 404
    page, _link, _token = invite(owner, "alex@example.com", "reviewer")
    assert "The earlier invitation of this address is revoked" in text_of(page)
    assert Client().get(f"/invite/{response.json()['token']}/").status_code == 404
    assert list(invitations.open_invitations(project).values_list("role", flat=True)) == ["reviewer"]


def test_an_invitation_made_with_a_key_names_the_key_in_the_list(project, owner, client_for):
    from atelier_platform.accounts.services import issue_api_key

    key = issue_api_key(project, scopes=["admin", "jobs:read"], name="hr-sync")
    client_for(key.raw).post("/api/v1/invitations/", {"email": "vic@example.com", "role": "viewer"}, format="json")
    page = text_of(owner.get("/settings/"))
    row = re.search(r'<tr data-invitation="vic@example.com">.*?</tr>', page, re.S).group(0)
    assert f"API key hr-sync (atl_{key.api_key.prefix}_…)" in row
