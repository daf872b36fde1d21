"""The content library (``/library/``): the project's final content to browse, copy and export.

What is final, what an output's final text is and what an export holds are the platform's
(``atelier_platform.jobs.library``), shared with ``GET /api/v1/outputs/?final=true`` and its ``?export=``.
The page reads the database a fixed number of times, whatever it shows (``tests/frontend/test_pages.py``).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from atelier_frontend.export_views import background_exports, library_export_filters
from atelier_frontend.projects import needs
from atelier_frontend.rendering import render_value
from atelier_frontend.views import _labels_of, _summary, page
from atelier_platform.accounts.roles import Capability
from atelier_platform.catalog.registry import get_registry
from atelier_platform.exports import EXPORT_FORMATS, trail
from atelier_platform.exports.models import ExportKind, ExportOrigin
from atelier_platform.jobs import library
from atelier_platform.moderation.screening import IMAGE_TYPES

#: Outputs a page (a grid of cards: four rows of a wide screen's columns)
LIBRARY_PER_PAGE = 24
# Pages past this show the empty end of the library: an unbounded page number overflows the database's OFFSET.
MAX_LIBRARY_PAGE = 1_000_000
#: The filters the page takes (query parameters), which its pager and export links carry.
FILTER_NAMES = ("q", "plugin", "from", "to")


def _day(text: str):
    try:
        return parse_date(text)
    except ValueError:  # well formed, but no such day (February 30th)
        return None


def library_filters(params) -> tuple[dict[str, str], library.LibraryFilters, dict[str, list[str]]]:
    """The filters as typed (for the form and the links), as the library's service takes them, and what is wrong
    with them, by field (``from``, ``to``): a day that is no date, or a range that ends before it starts."""
    typed = {name: params.get(name, "").replace("\x00", "").strip() for name in FILTER_NAMES}
    typed["q"] = typed["q"][:library.MAX_SEARCH_CHARACTERS]
    typed["plugin"] = typed["plugin"][:63]
    errors: dict[str, list[str]] = {}
    days = {}
    for name in ("from", "to"):
        if typed[name]:
            day = _day(typed[name])
            if day is None or (name == "to" and day == day.max):  # "to" 9999-12-31 would end after the last day
                errors[name] = [_("Dates as 2026-12-01.")]
            else:
                days[name] = day
    if "from" in days and "to" in days and days["from"] > days["to"]:
        errors["to"] = [_("The end date is before the start date.")]
    zone = timezone.get_current_timezone()
    start = lambda day: datetime.combine(day, time.min, tzinfo=zone)  # noqa: E731
    filters = library.LibraryFilters(
        plugin=typed["plugin"], q=typed["q"],
        created_after=start(days["from"]) if "from" in days else None,
        # "to" a day includes it: until the next one starts
        created_before=start(days["to"] + timedelta(days=1)) if "to" in days else None,
    )
    return typed, filters, errors


def _approver(decision) -> str:
    """Who approved, as the job page says it: a member's username (read with the decision), an API key by its prefix
    (its name would cost a query more on pages with such approvals), a member since deleted by the id recorded."""
    if decision.decided_by_user_id and decision.decided_by_user:
        return decision.decided_by_user.username
    kind, _sep, ident = decision.decided_by.partition(":")
    return _("API key %(key)s") % {"key": f"atl_{ident}_…"} if kind == "key" and ident else decision.decided_by


def _entry(output, slug: str) -> dict:
    """What a card shows of one final output."""
    job = output.job
    files, thumbnails = library.usable_files(output)
    approved_at, approvals = library.approval_of(output)
    items = library.ranked_items(output.content)
    text = library.text_of(job.plugin_id, output.content)
    images = [{"file": f, "url": f"/api/v1/outputs/{output.pk}/files/{f.pk}/?project={slug}",
               "thumbnail": f"/api/v1/outputs/{output.pk}/files/{thumbnails[f.pk].pk}/?project={slug}"
               if f.pk in thumbnails else f"/api/v1/outputs/{output.pk}/files/{f.pk}/?project={slug}"}
              for f in files if f.media_type in IMAGE_TYPES]
    kind = "items" if items is not None else "image" if images else "text" if text else "other"
    return {
        "output": output, "job": job, "kind": kind, "text": text, "items": items or [], "images": images,
        "other_files": [{"file": f, "url": f"/api/v1/outputs/{output.pk}/files/{f.pk}/?project={slug}"}
                        for f in files if f.media_type not in IMAGE_TYPES],
        # an output whose plugin marks no text to use and holds no image: shown as the job page shows it
        "html": render_value(output.content, "content", {}, *_labels_of(job.plugin_id)["content"]) if kind == "other" else "",
        "approved_at": approved_at,
        "approved_by": [_approver(decision) for decision in approvals],
        "prompt": _summary(job.input, 160, job.plugin_id),
    }


@needs(Capability.JOBS_READ)
def library_page(request, here):
    """Every member browses and exports: an export holds what the page shows them (and what ``GET /api/v1/outputs/``
    gives any key with ``jobs:read``), final content only, no withheld output and no reviewer's edit."""
    typed, filters, errors = library_filters(request.GET)
    export = request.GET.get("export", "")
    if export and export not in EXPORT_FORMATS:
        errors["export"] = [_("Export as CSV or JSON Lines.")]
    slug = here.project.slug
    if export and not errors:
        trail.streamed(here.project, f"user:{request.user.pk}", kind=ExportKind.LIBRARY, format=export,
                       filters=library_export_filters(filters), origin=ExportOrigin.DASHBOARD)
        return library.streamed_export(library.final_outputs(here.project, filters), export,
                                       site=request.build_absolute_uri("/").rstrip("/"), filename=f"library-{slug}",
                                       file_query=f"?project={slug}")
    try:
        page_number = min(max(1, int(request.GET.get("page", "1"))), MAX_LIBRARY_PAGE)
    except ValueError:
        page_number = 1
    start = (page_number - 1) * LIBRARY_PER_PAGE
    # a filter that could not be read shows nothing rather than a library it did not narrow
    rows = [] if errors else list(library.final_outputs(here.project, filters)[start:start + LIBRARY_PER_PAGE + 1])
    has_next = len(rows) > LIBRARY_PER_PAGE
    rows = rows[:LIBRARY_PER_PAGE]
    kept = {name: value for name, value in typed.items() if value}
    return page(request, "atelier_frontend/library.html", {
        "entries": [_entry(output, slug) for output in rows], "filters": typed, "filtered": bool(kept),
        # what the pager's and the export's links carry: the filters as typed (an export holds what the page found)
        "query": urlencode(kept), "errors": errors,
        "plugins": sorted({p.manifest.id for p in get_registry().available()} | ({typed["plugin"]} - {""})),
        "page_number": page_number, "has_next": has_next,
        **background_exports(request, here.project, ExportKind.LIBRARY),
    }, status=400 if errors else 200)
