"""The audit trail of exports: who took which of a project's data out, and when, in its audit log beside the other
actions (``GET /api/v1/audit/``, the settings page, the audit log's own exports). One event, one insert, each:

- ``export_requested``: an export in the background asked for (about the export: its kind, format, filters, and
  where it was asked for, ``api`` or ``dashboard``);
- ``export_downloaded``: its file downloaded (about the export: kind, format, rows, size), at each download;
- ``export_cancelled``: an owner cancelled another's export (about the export: kind, format, and whose it was); a
  requester's cancel of their own is not recorded;
- ``export_streamed``: a streaming export served (about the project: kind, format, filters, where), written as the
  download starts. Its rows are not counted: that would cost a count of the whole selection before the first row, or
  an event after the last, which a client that stops reading never gets.

The actor is the API key or the member, as the audit log names them (``key:ab12cd34ef56``, ``user:12``).

Filters: the value of one whose type holds no free text (``FILTERS_KEPT``: dates, states, true/false, ids) is kept;
any other (the library's search ``q`` and ``plugin``, the audit log's ``action``, ``actor`` and ``object_id``) is
recorded as set, with no value (null). A search's words may name a person, and the audit log is append-only and kept
for good: an erasure redacts the content recorded about the jobs it erases (``jobs.erasure``), but could never tell
which searches named the person it erases. So no search text enters the log, and an erasure has nothing here to redact.
"""

from __future__ import annotations

from collections.abc import Mapping

from atelier_platform.moderation import audit

EXPORT_REQUESTED = "export_requested"
EXPORT_DOWNLOADED = "export_downloaded"
EXPORT_STREAMED = "export_streamed"
EXPORT_CANCELLED = "export_cancelled"

#: The filters whose values the audit log keeps: each value is a date, a state, true/false or an id, once the
#: filter took it. Any filter not named here (a new one included) is recorded without its value.
FILTERS_KEPT = frozenset({"job", "review_state", "final", "created_after", "created_before", "after_id"})
#: The longest value kept of a filter (a checked one is shorter; the cap bounds what a mistake could write).
KEPT_VALUE_CHARACTERS = 100


def _kept(value):
    if isinstance(value, list):
        return [str(item)[:KEPT_VALUE_CHARACTERS] for item in value]
    return str(value)[:KEPT_VALUE_CHARACTERS]


def recorded_filters(filters: Mapping) -> dict:
    """``filters`` (name: text, or a list of texts) as the audit log records them: the set ones, each with its value
    where it is one of ``FILTERS_KEPT``, else null."""
    return {name: _kept(value) if name in FILTERS_KEPT else None
            for name, value in filters.items() if value not in (None, "", [])}


def filters_in_query(kind: str, params) -> dict:
    """The filters of ``kind``'s list that a request's query (``QueryDict``) gives, as ``recorded_filters`` takes
    them: a list for a filter that takes several."""
    from atelier_platform.exports.kinds import filter_names

    names, many = filter_names(kind)
    return {name: params.getlist(name) if name in many else params.get(name) for name in names if name in params}


def requested(export) -> None:
    """``export`` was asked for: recorded by its requester (in the transaction that created it)."""
    audit.record(export.project, export.requested_by, EXPORT_REQUESTED, export, after={
        "kind": export.kind, "format": export.format, "from": export.requested_from,
        "filters": recorded_filters(export.filters)})


def downloaded(export, actor: str) -> None:
    """``export``'s file is being downloaded by ``actor``."""
    audit.record(export.project, actor, EXPORT_DOWNLOADED, export, after={
        "kind": export.kind, "format": export.format, "rows": export.rows_done, "size": export.size})


def cancelled(export, actor: str) -> None:
    """``export`` was cancelled by ``actor``, who did not ask for it (an owner)."""
    audit.record(export.project, actor, EXPORT_CANCELLED, export, after={
        "kind": export.kind, "format": export.format, "requested_by": export.requested_by})


def streamed(project, actor: str, *, kind: str, format: str, filters: Mapping, origin: str) -> None:
    """A streaming export of ``project``'s ``kind`` (``library``, ``audit``) in ``format`` is being sent to ``actor``,
    asked for from ``origin`` (``api``, ``dashboard``) with ``filters``."""
    audit.record(project, actor, EXPORT_STREAMED, project, after={
        "kind": kind, "format": format, "from": origin, "filters": recorded_filters(filters)})
