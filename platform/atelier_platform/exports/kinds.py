"""What each kind of export holds, with the streaming export's own code: its filters are checked and applied as the
list that streams it checks and applies them (the library's: ``GET /api/v1/outputs/``'s ``OutputFilter``; the audit
log's: ``GET /api/v1/audit/``'s ``audit_events``), and its rows are that export's rows, so a file made in the
background holds the very bytes the streaming export sends for the same filters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.http import QueryDict

from atelier_platform.accounts.roles import Capability
from atelier_platform.exports.models import Export, ExportKind, ExportOrigin
from atelier_platform.jobs.errors import JobServiceError

#: What a caller needs to export each kind: what its streaming export needs.
KIND_CAPABILITIES = {ExportKind.LIBRARY: Capability.JOBS_READ, ExportKind.AUDIT: Capability.ADMIN}


class ExportFiltersInvalid(JobServiceError):
    code = "validation_error"


@dataclass(frozen=True)
class Source:
    """An export's rows and how they are written: ``count`` and ``rows`` read the database when called."""

    count: Callable[[], int]
    rows: Callable[[], Iterator[dict]]
    fields: list[str]
    json_fields: tuple[str, ...]
    filename: str
    #: the field that names a row's object: the first column of the CSV (an output's id, an event's)
    id_field: str


def _library_filter_set():
    from atelier_platform.api.filters import OutputFilter

    return OutputFilter


def filter_names(kind: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The filters a kind takes, and those of them that take several values (a list)."""
    if kind == ExportKind.LIBRARY:
        from django_filters import MultipleChoiceFilter

        filters = _library_filter_set().base_filters
        return tuple(filters), frozenset(name for name, f in filters.items() if isinstance(f, MultipleChoiceFilter))
    from atelier_platform.api.review_views import AUDIT_FILTER_NAMES

    return AUDIT_FILTER_NAMES, frozenset()


def _as_text(value, many: bool):
    """A filter's value as a query parameter's text (a JSON boolean as ``true``, a number as its digits), or a list
    of them where the filter takes several; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if many and isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def checked_filters(kind: str, project, filters) -> dict:
    """``filters`` of an export of ``kind`` as text, once the streaming export's own code took them (so a filter it
    refuses is refused here, by the same words); an unknown filter, or a value that is no text, is refused too (a
    typo must not export everything). ``ExportFiltersInvalid`` names each as ``filters.<name>``."""
    if filters is None:
        filters = {}
    if not isinstance(filters, dict):
        raise ExportFiltersInvalid("Give the filters as an object, e.g. {\"final\": \"true\", \"q\": \"coat\"}.",
                                   details={"filters": ["An object of filter names and values."]})
    names, many = filter_names(kind)
    problems: dict[str, list[str]] = {}
    checked = {}
    for name, value in filters.items():
        if name not in names:
            problems[f"filters.{name}"] = [f"Unknown filter; the {kind} export takes {', '.join(names)}."]
            continue
        text = _as_text(value, name in many)
        if text is None:
            problems[f"filters.{name}"] = ["A list of texts." if name in many else "A text (or a number, or true/false)."]
            continue
        checked[name] = text
    if problems:
        raise ExportFiltersInvalid("The export's filters are not ones its list takes.", details=problems)
    _rows_query(kind, project, checked)  # refused as the streaming export refuses them
    return checked


def _rows_query(kind: str, project, filters: dict) -> QuerySet:
    """What an export of ``kind`` holds: the streaming export's own queryset for ``filters``, in its order."""
    from rest_framework.exceptions import ValidationError

    if kind == ExportKind.LIBRARY:
        from atelier_platform.jobs import library
        from atelier_platform.jobs.models import Output

        data = QueryDict(mutable=True)
        for name, value in filters.items():
            data.setlist(name, value if isinstance(value, list) else [value])
        found = _library_filter_set()(data=data, queryset=Output.objects.filter(job__project=project))
        if not found.is_valid():
            raise ExportFiltersInvalid("The export's filters are not ones its list takes.",
                                       details={f"filters.{name}": [str(m) for m in messages]
                                                for name, messages in found.errors.items()})
        return found.qs.order_by(*library.LIBRARY_ORDERING)
    from atelier_platform.api.review_views import audit_events

    try:
        return audit_events(project, filters)
    except ValidationError as refused:
        raise ExportFiltersInvalid("The export's filters are not ones its list takes.",
                                   details={f"filters.{name}": [str(m) for m in messages]
                                            for name, messages in refused.detail.items()}) from None


def base_filename(export: Export) -> str:
    """The file's name without its extension, as the streaming export of its kind, from where it was asked for,
    names it: ``outputs-shop`` (the API's library), ``library-shop`` (the dashboard's), ``audit-shop``."""
    if export.kind == ExportKind.AUDIT:
        return f"audit-{export.project.slug}"
    return f"{'library' if export.requested_from == ExportOrigin.DASHBOARD else 'outputs'}-{export.project.slug}"


def source(export: Export) -> Source:
    """The rows of ``export`` as the streaming export of its kind writes them, and the file's name."""
    project = export.project
    query = _rows_query(export.kind, project, export.filters)
    if export.kind == ExportKind.LIBRARY:
        from atelier_platform.jobs import library

        dashboard = export.requested_from == ExportOrigin.DASHBOARD
        return Source(
            count=query.count,
            rows=lambda: library.export_rows(query, site=export.site, with_approvers=export.with_approvers,
                                             file_query=f"?project={project.slug}" if dashboard else ""),
            fields=library.EXPORT_FIELDS, json_fields=library.EXPORT_JSON_FIELDS, filename=base_filename(export),
            id_field="output_id")
    from atelier_platform.api.review_views import AUDIT_EXPORT_FIELDS, AUDIT_EXPORT_JSON_FIELDS, audit_export_rows

    return Source(count=query.count, rows=lambda: audit_export_rows(query), fields=AUDIT_EXPORT_FIELDS,
                  json_fields=AUDIT_EXPORT_JSON_FIELDS, filename=base_filename(export), id_field="id")


def erased_rows(export: Export, since) -> tuple[set[str], Iterator[dict]]:
    """What the erasures of the project's jobs erased at or after ``since`` (``Job.erased_at``) changed in
    ``export``'s rows: the ids of the rows they changed (a library export's outputs of those jobs; an audit export's
    events about them, their outputs or their review items, whose content keys the erasure redacted), and those of
    them that are still among its rows, as its streaming export writes them now (an erased output is final no more,
    nor found by a search of its words; an event stays, redacted)."""
    from atelier_platform.jobs.models import Job, Output

    project = export.project
    query = _rows_query(export.kind, project, export.filters)
    if export.kind == ExportKind.LIBRARY:
        from atelier_platform.jobs import library

        changed = {str(pk) for pk in Output.objects.filter(job__project=project, job__erased_at__gte=since)
                   .values_list("pk", flat=True)}
        now = query.filter(job__erased_at__gte=since)
        dashboard = export.requested_from == ExportOrigin.DASHBOARD
        return changed, library.export_rows(now, site=export.site, with_approvers=export.with_approvers,
                                            file_query=f"?project={project.slug}" if dashboard else "")
    from atelier_platform.api.review_views import audit_export_rows
    from atelier_platform.moderation.models import ReviewItem

    job_ids = [str(pk) for pk in Job.objects.filter(project=project, erased_at__gte=since).values_list("pk", flat=True)]
    changed: set[str] = set()
    for start in range(0, len(job_ids), _IDS_AT_ONCE):  # bounded statements, whatever the number of jobs
        jobs = job_ids[start:start + _IDS_AT_ONCE]
        outputs = [str(pk) for pk in Output.objects.filter(job_id__in=jobs).values_list("pk", flat=True)]
        items = [str(pk) for pk in ReviewItem.objects.filter(output_id__in=outputs).values_list("pk", flat=True)]
        about = (Q(object_type="job", object_id__in=jobs) | Q(object_type="output", object_id__in=outputs)
                 | Q(object_type="reviewitem", object_id__in=items))
        changed.update(str(pk) for pk in query.filter(about).values_list("pk", flat=True))

    def rows() -> Iterator[dict]:
        ids = sorted(int(pk) for pk in changed)
        for start in range(0, len(ids), _IDS_AT_ONCE):
            yield from audit_export_rows(query.filter(pk__in=ids[start:start + _IDS_AT_ONCE]))

    return changed, rows()


#: Ids one statement of ``erased_rows`` names at most.
_IDS_AT_ONCE = 500


def might_hold(export: Export, *, job_ids: list, output_ids: list, review_item_ids: list) -> bool:
    """Whether ``export``'s rows could hold content of these jobs (read before their erasure changes them): a library
    export lists their outputs, an audit export events about them, their outputs or their review items. A row that
    appeared after the export was written only makes this say yes where no is right: an erasure withdraws too much,
    never too little."""
    try:
        query = _rows_query(export.kind, export.project, export.filters)
    except ExportFiltersInvalid:
        return True
    if export.kind == ExportKind.LIBRARY:
        return query.filter(job_id__in=job_ids).exists()
    about = (Q(object_type="job", object_id__in=[str(pk) for pk in job_ids])
             | Q(object_type="output", object_id__in=[str(pk) for pk in output_ids])
             | Q(object_type="reviewitem", object_id__in=[str(pk) for pk in review_item_ids]))
    return query.filter(about).exists()
