"""The invitation's page, ``/invite/<token>/``: what the link an owner sent opens (``accounts.invitations`` does the
work). GET only shows; joining is a POST with the CSRF token. A signed-in person joins with the account they are
signed in with; a visitor without one creates it there (Django's password validators apply) and is signed in.
A link that opens nothing answers 404, the same page whether it never existed or was revoked, and one expired or
used already answers 410. The e-mail's words are here too, written in the inviting owner's language."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import formats
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from atelier_frontend.projects import switch
from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Membership

#: (status, why) of a link that opens nothing, by the service's code
UNUSABLE = {"invitation_not_found": 404, "invitation_expired": 410, "invitation_used": 410}


def invitation_link(request, token: str) -> str:
    """The link to send, built as the API builds it (``invitations.link_for``)."""
    return invitations.link_for(request, token)


def invitation_mail(issued: invitations.IssuedInvitation, link: str, inviter) -> dict[str, str]:
    """The e-mail's subject and body, in the language of the page the owner invited from."""
    invitation = issued.invitation
    names = {"inviter": inviter.get_username(), "project": invitation.project.name, "role": _(invitation.role),
             "link": link, "expires": formats.date_format(invitation.expires_at, "DATETIME_FORMAT")}
    return {
        # one line: a line break in a header is refused (Django's guard against header injection)
        "subject": " ".join((_("%(inviter)s invited you to %(project)s on Atelier") % names).split()),
        "body": _("%(inviter)s invited you to join the project “%(project)s” on Atelier as %(role)s.\n\n"
                  "Open this link to accept, with your account or a new one:\n%(link)s\n\n"
                  "The link works once, until %(expires)s (UTC). If you did not expect this invitation, ignore this "
                  "e-mail.\n") % names,
    }


class SignUpForm(UserCreationForm):
    """A new account: a username (unique, in any case) and a password twice, checked by Django's validators
    (against the username and the invited address too)."""

    def validate_password_for_user(self, user, password_field_name="password1"):
        # what is wrong with the password is said under it (Django's form says it under the repetition)
        super().validate_password_for_user(user, password_field_name=password_field_name)


def _render(request, context: dict, status: int = 200):
    if request.user.is_authenticated:
        from atelier_frontend.views import page

        return page(request, "atelier_frontend/invitation.html", context, status=status)
    return render(request, "atelier_frontend/invitation.html", {"here": None, **context}, status=status)


def _unusable(request, refusal: invitations.InvitationUnusable):
    invitation = refusal.invitation
    mine = (invitation is not None and refusal.code == "invitation_used" and request.user.is_authenticated
            and invitation.accepted_by_id == request.user.pk)
    return _render(request, {"unusable": refusal.code, "invitation": invitation if refusal.code != "invitation_not_found"
                             else None, "joined": mine}, status=UNUSABLE[refusal.code])


def _joined(request, membership: Membership):
    switch(request, membership.project.slug)
    messages.success(request, _("You joined %(project)s as %(role)s.") % {"project": membership.project.name,
                                                                         "role": _(membership.role)})
    return redirect("home")


@never_cache  # the page holds the token (and a form with the CSRF token)
def invitation(request, token: str):
    try:
        invitation = invitations.usable(token)
    except invitations.InvitationUnusable as refusal:
        return _unusable(request, refusal)
    context = {"invitation": invitation, "token": token}
    user = request.user
    if user.is_authenticated:
        membership = Membership.objects.filter(project=invitation.project, user=user).first()
        if membership is not None:
            # their role is left as it is, and the invitation stays open for whoever it was meant for
            return _render(request, {**context, "member": membership}, status=409 if request.method == "POST" else 200)
        if request.method == "POST":
            try:
                return _joined(request, invitations.accept(token, user))
            except invitations.InvitationUnusable as refusal:
                return _unusable(request, refusal)
            except invitations.AlreadyMember as already:
                return _render(request, {**context, "member": already.membership}, status=409)
        return _render(request, context)
    form = SignUpForm(request.POST if request.method == "POST" else None)
    form.instance.email = invitation.email  # the similarity validator compares the password with it too
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():  # no account is left behind by an invitation that went meanwhile
                user = form.save()
                membership = invitations.accept(token, user)
        except invitations.InvitationUnusable as refusal:
            return _unusable(request, refusal)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return _joined(request, membership)
    return _render(request, {**context, "form": form}, status=400 if form.is_bound else 200)
