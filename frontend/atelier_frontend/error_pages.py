"""The dashboard's error pages: not found (404), not allowed (403), a form the browser sent from a stale page
(CSRF, 403) and the server's own failure (500).

Each keeps its status and is a dashboard page: the header (navigation, project switcher, language), what
happened in plain words, and a way on: the project's jobs, the start page, the project that holds what was
asked for where the person is a member of it, or that their role there opens. Django's own pages were bare
English that left a person nowhere to go.

Under /api/ and /v1/ the same errors stay JSON in each API's shape (``api.errors``); these pages are for
people. The URLconf names them as its handlers and settings as ``CSRF_FAILURE_VIEW``.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import requires_csrf_token

from atelier_platform.accounts.roles import ROLE_CAPABILITIES, Capability
from atelier_platform.api.errors import early_error, is_api_path, json_not_found, json_server_error

from atelier_frontend.projects import NAVIGATION, current
from atelier_frontend.texts import WORDS

logger = logging.getLogger("atelier.frontend")

TEMPLATE = "atelier_frontend/error.html"
#: Only the message, for a part of a page that a script fetched (the review queue's panel): the whole
#: layout does not belong inside another page.
FRAGMENT = "atelier_frontend/_error_message.html"


@requires_csrf_token  # the page's own forms (language, project, sign out) need the token: no view ran to set it
def page_not_found(request, exception=None):
    if is_api_path(request.path):
        return json_not_found(request, exception)
    here = _here(request)
    project = here.project.name if here and here.project else ""
    url_name = request.resolver_match.url_name if request.resolver_match else ""
    if url_name in ("job", "job-cancel"):
        heading = _("Job not found")
        explanation = _("There is no job with this address in the project “%(project)s”: it belongs to another "
                        "project, or it was deleted.") % {"project": project}
    elif url_name == "chat-thread":
        heading = _("Conversation not found")
        explanation = _("There is no conversation with this address in the project “%(project)s”: it belongs to "
                        "another project, or it was deleted.") % {"project": project}
    elif url_name == "create-plugin":
        heading = _("Plugin not available")
        explanation = _("This plugin is not installed, or not switched on for the project “%(project)s”. A project "
                        "owner can switch it on in the settings.") % {"project": project}
    else:
        heading = _("No such page")
        explanation = _("There is nothing at this address. The link may be mistyped or out of date, or what it "
                        "pointed to was deleted.")
    return _error_page(request, here, 404, heading, explanation, switch_to=_projects_holding(request, here, url_name))


@requires_csrf_token
def permission_denied(request, exception=None):
    if is_api_path(request.path):
        return early_error(request, 403, "permission_denied", "You do not have permission to perform this action.")
    here = _here(request)
    if here and here.project:
        explanation = _("Your role in the project “%(project)s” (%(role)s) does not open this page. If your work "
                        "needs it, ask an owner of the project for another role.") % {
            "project": here.project.name, "role": WORDS.get(here.role, here.role)}
    else:
        explanation = _("You are not allowed to open this page.")
    return _error_page(request, here, 403, _("Not allowed"), explanation,
                       switch_to=_projects_allowing(here, getattr(request, "atelier_needed", None)))


def csrf_failure(request, reason=""):
    """A form refused for its CSRF token: mostly a page kept open across a sign-in or sign-out (in another tab
    too), whose form still carries the old session's token; or a browser that refuses the site's cookies."""
    if is_api_path(request.path):
        return early_error(request, 403, "permission_denied", f"CSRF Failed: {reason}")
    logger.warning("form refused (CSRF): %s %s: %s", request.method, request.path, reason)
    return _error_page(request, _here(request), 403, _("This form could not be sent"), _(
        "The page it came from was out of date: you signed in or out since it opened (perhaps in another tab), or it "
        "stayed open a long time. Nothing was saved. Go back, reload the page and send the form again; if this "
        "happens every time, allow this site's cookies in your browser."))


@requires_csrf_token
def server_error(request):
    if is_api_path(request.path):
        return json_server_error(request)
    try:
        return _error_page(request, _here(request), 500, _("Something went wrong on our side"), _(
            "Atelier could not show this page because of an error of its own, which has been logged for the "
            "operators. Try again in a moment; if it keeps happening, tell them what you were doing."))
    except Exception:  # the failure may be the database or a template: Django's plain page needs neither
        logger.exception("the dashboard's error page failed; answering Django's plain one")
        from django.views.defaults import server_error as plain_server_error

        return plain_server_error(request)


def _here(request):
    """The signed-in person's current project (``projects.current``), or None for someone signed out."""
    user = getattr(request, "user", None)
    return current(request) if user is not None and user.is_authenticated else None


def _error_page(request, here, status: int, heading: str, explanation: str, switch_to=()):
    context = {"status": status, "heading": heading, "explanation": explanation, "switch_to": list(switch_to),
               "ways_on": _ways_on(request, here), "here": here,
               "nav": [(name, label) for name, label, capability in NAVIGATION if here and here.can(capability)]}
    fetched = request.headers.get("Sec-Fetch-Dest") == "empty"
    return render(request, FRAGMENT if fetched else TEMPLATE, context, status=status)


def _ways_on(request, here) -> list[tuple[str, str]]:
    """Links to where the person can go from here: their project's jobs, the start page, or the sign-in page."""
    if here is None:
        return [(f"{reverse('login')}?{urlencode({'next': request.get_full_path()})}", _("Sign in"))]
    ways = []
    if here.project and here.can(Capability.JOBS_READ):
        ways.append((reverse("jobs"), _("The jobs of “%(project)s”") % {"project": here.project.name}))
    ways.append((reverse("home"), _("Start page")))
    return ways


#: The pages of one thing of a project, by their URL name: the model, the URL's argument that names it, and the
#: capability the page needs (views.job_detail, views.chat).
_OWNED_PAGES = {"job": ("job", "job_id", Capability.JOBS_READ),
                "chat-thread": ("conversation", "conversation_id", Capability.JOBS_WRITE)}


def _projects_holding(request, here, url_name: str) -> list:
    """The person's other project that holds what a not-found page asked for (a job of another project than the
    current one), where their role opens that page: to switch to, and find it there. Nothing about projects they
    are not a member of; no offer that would end in a 403 (a viewer's project for a conversation)."""
    if here is None or url_name not in _OWNED_PAGES or request.method != "GET":
        return []
    from atelier_platform.conversations.models import Conversation
    from atelier_platform.jobs.models import Job

    kind, argument, capability = _OWNED_PAGES[url_name]
    model = Job if kind == "job" else Conversation
    others = {m.project_id: m.project for m in here.memberships
              if m.project != here.project and capability in ROLE_CAPABILITIES.get(m.role, ())}
    wanted = request.resolver_match.kwargs.get(argument)
    if not others or wanted is None:
        return []
    holding = model.objects.filter(pk=wanted, project_id__in=others).values_list("project_id", flat=True).first()
    return [others[holding]] if holding is not None else []


def _projects_allowing(here, capability: str | None) -> list:
    """The person's other projects where their role opens the page a 403 refused."""
    if here is None or capability is None:
        return []
    return [m.project for m in here.memberships
            if m.project != here.project and capability in ROLE_CAPABILITIES.get(m.role, ())][:5]
