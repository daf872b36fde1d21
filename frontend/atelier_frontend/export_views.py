"""Exports in the background on the dashboard: the library's and the audit log's "Export in the background" (the
page's filters, as its streaming export links carry them), and the member's exports with their progress and
download links, which the page refreshes while one goes, and a Cancel button on the unfinished ones. An owner's list
holds the project's exports, whoever asked (named): an owner cancels any, and downloads only their own.

The export is ``POST /api/v1/exports/``'s (``atelier_platform.exports.services``), asked for from the dashboard: its
file is the dashboard's streaming export's (``/library/?export=``: file links with ``?project=``, reviewers' names as
the page shows them to every member; the settings page's audit links: ``GET /api/v1/audit/?export=``), and it is
downloaded from the API with the member's session.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from atelier_frontend.actors import actor_names
from atelier_frontend.projects import current, needs
from atelier_platform.accounts.roles import Capability
from atelier_platform.exports import EXPORT_FORMATS, services
from atelier_platform.exports.kinds import KIND_CAPABILITIES, ExportFiltersInvalid
from atelier_platform.exports.models import ExportKind, ExportOrigin

#: The exports a page lists: the member's latest of its kind (an owner's: the project's).
EXPORTS_LISTED = 5
#: How often a page asks for its exports again while one goes (ms).
EXPORTS_REFRESH_MS = 2000
#: What became of an "Export in the background" (refused: why), shown once on the page the redirect leads to.
EXPORT_NOTICE_SESSION = "atelier_export_notice"


def _kind_of(request, here, kind: str) -> str:
    if kind not in KIND_CAPABILITIES:
        raise PermissionDenied("No such export.")
    if not here.can(KIND_CAPABILITIES[kind]):
        request.atelier_needed = KIND_CAPABILITIES[kind]
        raise PermissionDenied("Your role in this project does not open these exports.")
    return kind


def _listed_to(request, project):
    """The exports a member sees here: an owner every one of the project, anyone else their own."""
    if services.oversees_all(current(request).capabilities):
        return services.of_project(project)
    return services.visible_to(project, user=request.user)


def recent_exports(request, project, kind: str) -> list:
    """The member's latest exports of ``kind`` (an owner's: the project's), each saying whether it is theirs, who
    asked, whether they can download it (their own only) and cancel it (unfinished)."""
    exports = list(_listed_to(request, project).filter(kind=kind)[:EXPORTS_LISTED])
    names = actor_names(project, [export.requested_by for export in exports])
    for export in exports:
        export.mine = services.is_requester(export, user=request.user)
        export.file_ready = services.is_downloadable(export)
        export.downloadable = export.mine and export.file_ready
        export.cancellable = not export.is_finished
        export.requester_name = names.get(export.requested_by, export.requested_by)
    return exports


def background_exports(request, project, kind: str, *, prefix: str = "") -> dict:
    """A page's context for its exports' list (``_exports.html``): the member's exports of ``kind``, whether one goes
    (the list then refreshes itself), where it refreshes from, and the notice of the last "Export in the background"."""
    exports = recent_exports(request, project, kind)
    return {f"{prefix}exports": exports, f"{prefix}exports_going": any(not e.is_finished for e in exports),
            f"{prefix}exports_url": f"/exports/?{urlencode({'kind': kind})}",
            f"{prefix}export_notice": request.session.pop(EXPORT_NOTICE_SESSION, "") if request.method == "GET" else "",
            "exports_refresh_ms": EXPORTS_REFRESH_MS}


@needs(Capability.JOBS_READ)
@require_GET
def exports_part(request, here):
    """The list of the member's exports of ``?kind=``, for the page that shows it to refresh while one goes."""
    kind = _kind_of(request, here, request.GET.get("kind", ""))
    exports = recent_exports(request, here.project, kind)
    return render(request, "atelier_frontend/_exports.html", {
        "exports": exports, "exports_going": any(not e.is_finished for e in exports), "here": here})


def library_export_filters(filters) -> dict[str, str]:
    """The library page's filters (``library_views.library_filters``) as ``GET /api/v1/outputs/`` takes them: final
    content only, the days as the moments they start and end in the page's time zone."""
    wanted = {"final": "true", "plugin": filters.plugin, "q": filters.q}
    if filters.created_after is not None:
        wanted["created_after"] = filters.created_after.isoformat()
    if filters.created_before is not None:
        wanted["created_before"] = filters.created_before.isoformat()
    return {name: value for name, value in wanted.items() if value}


@needs(Capability.JOBS_READ)
@require_POST
def export_start(request, here):
    """"Export in the background": an export of the page's kind with its filters, then back to the page's list."""
    from atelier_frontend.library_views import FILTER_NAMES, library_filters
    from atelier_frontend.settings_views import audit_filters

    kind = request.POST.get("kind", "")
    if kind not in KIND_CAPABILITIES:
        return HttpResponseBadRequest(_("Export the library or the audit log."))
    _kind_of(request, here, kind)
    if kind == ExportKind.LIBRARY:
        typed, filters, errors = library_filters(request.POST)
        kept = {name: typed[name] for name in FILTER_NAMES if typed[name]}
        page = f"/library/{'?' + urlencode(kept) if kept else ''}"
        if errors:  # the page says what is wrong with them, next to its form
            return redirect(page)
        wanted, back = library_export_filters(filters), f"{page}#exports"
    else:
        typed, _moments, errors, wanted = audit_filters(request.POST)
        kept = {name: value for name, value in typed.items() if value}
        back = f"/settings/{'?' + urlencode(kept) if kept else ''}#audit-exports"
        if errors:
            request.session[EXPORT_NOTICE_SESSION] = " ".join(errors)
            return redirect(back)
    export_format = request.POST.get("format", "")
    if export_format not in EXPORT_FORMATS:
        request.session[EXPORT_NOTICE_SESSION] = _("Export as CSV or JSON Lines.")
        return redirect(back)
    try:
        services.request_export(here.project, kind=kind, format=export_format, filters=wanted, user=request.user,
                                site=request.build_absolute_uri("/").rstrip("/"), requested_from=ExportOrigin.DASHBOARD,
                                # the library page names approvers to every member, and so does its export
                                with_approvers=True)
    except services.ExportsBusy as busy:
        if (busy.details or {}).get("counted") == "project":
            request.session[EXPORT_NOTICE_SESSION] = _(
                "The project has %(count)s exports going at once, all its members together, the most it may: ask "
                "again once one has finished (an owner may cancel any).") % {"count": services.PROJECT_EXPORTS_AT_ONCE}
        else:
            request.session[EXPORT_NOTICE_SESSION] = _(
                "You have %(count)s exports going at once, the most one member may: ask again once one has finished, "
                "or cancel one.") % {"count": services.EXPORTS_AT_ONCE}
    except ExportFiltersInvalid as refused:
        request.session[EXPORT_NOTICE_SESSION] = _("The filters could not be used for an export: %(problems)s") % {
            "problems": "; ".join(f"{name}: {' '.join(messages)}" for name, messages in (refused.details or {}).items())}
    return redirect(back)


@needs(Capability.JOBS_READ)
@require_POST
def export_cancel(request, here, export_id):
    """Cancel an unfinished export: the member's own, or, for an owner, anyone's (recorded in the audit log). Another's
    export a member may not see does not exist (404); back to the page that lists it."""
    export = _listed_to(request, here.project).filter(pk=export_id).first()
    if export is None:
        raise Http404("No such export.")
    _kind_of(request, here, export.kind)
    back = "/library/#exports" if export.kind == ExportKind.LIBRARY else "/settings/#audit-exports"
    try:
        services.cancel_export(export, actor=services.requester_of(user=request.user))
    except services.ExportFinished:
        request.session[EXPORT_NOTICE_SESSION] = _("This export already finished; nothing to cancel.")
    return redirect(back)
