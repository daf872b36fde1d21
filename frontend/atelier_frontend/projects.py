"""The dashboard's current project: one of the signed-in person's memberships, kept in the session.

Every dashboard view acts on exactly one project, like the API does; the person switches it in
the header. What the navigation shows and what a view allows both come from the role's
capabilities (``accounts.roles``), the same vocabulary the API checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Membership, Project
from atelier_platform.accounts.roles import ROLE_CAPABILITIES, Capability

SESSION_KEY = "atelier_project"


@dataclass(frozen=True)
class Current:
    project: Project | None
    role: str | None
    capabilities: frozenset[str]
    memberships: list[Membership]

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


def current(request) -> Current:
    """The project this request acts on (cached on the request: one query per request)."""
    cached = getattr(request, "_atelier_current", None)
    if cached is not None:
        return cached
    memberships = list(Membership.objects.filter(user=request.user).select_related("project").order_by("project__slug"))
    wanted = request.session.get(SESSION_KEY)
    chosen = next((m for m in memberships if m.project.slug == wanted), memberships[0] if memberships else None)
    if chosen is None:
        result = Current(project=None, role=None, capabilities=frozenset(), memberships=[])
    else:
        result = Current(project=chosen.project, role=chosen.role, capabilities=ROLE_CAPABILITIES[chosen.role],
                         memberships=memberships)
    request._atelier_current = result
    return result


def switch(request, slug: str) -> bool:
    if Membership.objects.filter(user=request.user, project__slug=slug).exists():
        request.session[SESSION_KEY] = slug
        request.__dict__.pop("_atelier_current", None)
        return True
    return False


NAVIGATION = [
    # (url name, label, capability needed)
    ("create", _("Create"), Capability.JOBS_WRITE),
    ("chat", _("Chat"), Capability.JOBS_WRITE),
    ("jobs", _("Jobs"), Capability.JOBS_READ),
    ("library", _("Library"), Capability.JOBS_READ),
    ("review", _("Review"), Capability.REVIEWS_WRITE),
    ("usage", _("Usage"), Capability.JOBS_READ),
    ("workers", _("Workers"), Capability.ADMIN),
    ("settings", _("Settings"), Capability.ADMIN),
]


def needs(capability: str):
    """A dashboard view for signed-in members whose role in the current project has ``capability``."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            here = current(request)
            if here.project is None:
                return render(request, "atelier_frontend/no_project.html",
                              {"here": here, "invitation_days": invitations.LIFETIME.days}, status=403)
            if not here.can(capability):
                request.atelier_needed = capability  # for the 403 page to name the projects whose role opens it
                raise PermissionDenied("Your role in this project does not open this page.")
            return view(request, here, *args, **kwargs)

        return wrapped

    return decorate
