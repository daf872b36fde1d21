"""Exports in the background: asked for (``request_export``), written by a task on the exports queue
(``run_export``), downloaded while kept (``file_to_download``), cancelled, swept, cleaned up and, after an erasure,
withdrawn.

The streaming exports (``GET /api/v1/outputs/?export=``, ``/api/v1/audit/?export=``, the dashboard's links) hold a
request and a database connection for as long as the rows take, about a millisecond each: fine for thousands, past
any proxy's timeout for a million. An export job writes the same rows with the same writer (``exports.export_lines``,
the CSV's formula guard and all) into a temporary file, reporting its progress every ``PROGRESS_EVERY_ROWS`` rows,
then stores the file in media storage, as generated files are, for ``ATELIER_EXPORTS_KEPT_HOURS``.

The row is the truth. A run claims it (queued, or running but silent past ``EXPORT_STALE_AFTER``: its worker died)
and counts its ``attempt`` up; it writes progress, and finally its file, only while the row is running under its
attempt, so a second delivery of the message does nothing, a cancel stops it at its next progress, and a run whose
worker died is started again from scratch by the sweeper or by the broker's redelivery.

An erasure never starts a run again (the retention erases all day on a busy project: a large export would never
end): it notes on the row that it could touch the run's rows (``withdraw_for_erasure``), and the run, once it has
written every row and before it stores its file, takes out or rewrites the rows of the jobs erased since, as its
streaming export gives them now (``_without_erased``). Its end checks, under the lock the erasure takes on the row,
that no erasure came in between; one that did sends it back to take those out too.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta

from django.core.files import File
from django.db import transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from atelier_platform import exports
from atelier_platform.config import get_config
from atelier_platform.exports import kinds, trail
from atelier_platform.exports.models import (FINISHED_EXPORT_STATUSES, Export, ExportFormat, ExportKind, ExportOrigin,
                                            ExportStatus)
from atelier_platform.exports.signals import export_finished
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.stored_files import remove_after_commit

logger = logging.getLogger("atelier.exports")

#: How often a run writes its progress (and proves itself alive): every this many rows, a chunk of the database's.
PROGRESS_EVERY_ROWS = exports.EXPORT_CHUNK_SIZE
#: A running export silent this long lost its worker. Generous: before its first row a run waits for the database
#: to count and to start its query, which writes no progress (a search of millions of outputs may take minutes).
EXPORT_STALE_AFTER = timedelta(minutes=15)
#: Runs an export may lose to dying workers before it fails instead of starting again (one that kills its worker,
#: such as one too large for its memory, would otherwise start for ever).
MAX_LOST_RUNS = 2
#: Unfinished exports one requester (a member, an API key) may have at once. Counted per requester, not per project:
#: exports are personal (each sees and cancels only their own), so a project-wide count let one member, a viewer even,
#: keep every slot full with nobody else able to export or to free one.
EXPORTS_AT_ONCE = 3
#: Unfinished exports a project may have at once, all requesters together: the exports queue's worker takes one at a
#: time, and one project's dozens would keep every other project's waiting. An owner may cancel any (``cancel_export``).
PROJECT_EXPORTS_AT_ONCE = 10
#: How long the row of a finished export stays (listed, its file long gone) before the cleanup deletes it.
FINISHED_EXPORTS_KEPT = timedelta(days=30)
#: Rows the cleanup deletes or empties per run at most (the next run takes the rest).
CLEANUP_BATCH = 500
#: Ends a run tries without the lock erasures take on its row (each: take out what was erased, store, check that no
#: erasure came in between). While a retention's batches keep coming, the next end holds the lock from the check to
#: the store, and the erasures wait for it: one rewrite and one store, then the run is over.
UNLOCKED_ENDS = 2


class ExportError(JobServiceError):
    code = "export_error"


class ExportsBusy(ExportError):
    status_code = 409
    code = "exports_busy"


class ExportNotReady(ExportError):
    status_code = 409
    code = "export_not_ready"


class ExportFinished(ExportError):
    status_code = 409
    code = "export_finished"


class ExportExpired(ExportError):
    status_code = 410
    code = "export_expired"


class ExportWithdrawn(ExportError):
    status_code = 410
    code = "export_withdrawn"


class ExportNotYours(ExportError):
    """An owner sees and cancels every export of the project, but downloads only their own: another's file holds what
    its requester could read (reviewers' names with reviews:read), which need not be what the owner's key may."""

    status_code = 403
    code = "export_not_yours"


class ExportFileMissing(ExportError):
    status_code = 404
    code = "not_found"


class ExportStopped(Exception):
    """The run no longer holds its export: cancelled, or taken over."""


def _storage():
    return Export._meta.get_field("file").storage


def stored_name(export: Export, *, attempt: int) -> str:
    """Where run ``attempt`` of ``export`` stores its file: one name per run, so that a run taken over never removes
    the file of the run that took it over."""
    return f"exports/{export.project_id}/{export.pk}/{attempt}.{export.format}"


def _remove_quietly(name: str, what: str) -> None:
    try:
        _storage().delete(name)
    except Exception:
        logger.warning("could not remove %s, %s", name, what, exc_info=True)


def requester_of(*, user=None, api_key=None) -> str:
    """Who asked, as the audit log names actors: ``key:ab12cd34ef56`` or ``user:12``."""
    return f"key:{api_key.prefix}" if api_key is not None else f"user:{user.pk}" if user is not None else ""


def _asked_by(*, user=None, api_key=None) -> Q:
    """The exports this requester asked for: an API key its own, a member theirs (not their keys')."""
    return Q(requested_by_key=api_key) if api_key is not None else Q(requested_by_key=None, requested_by_user=user)


def visible_to(project, *, user=None, api_key=None) -> QuerySet:
    """The exports of ``project`` its caller sees: those they asked for (an API key its own, a member theirs)."""
    if api_key is None and user is None:
        return Export.objects.none()
    return Export.objects.filter(_asked_by(user=user, api_key=api_key), project=project)


def oversees_all(capabilities) -> bool:
    """Whether a caller sees and cancels every export of its project, not only its own: an owner (the role, or a key
    with ``admin``), who can free the project's places (``PROJECT_EXPORTS_AT_ONCE``) a member keeps full."""
    from atelier_platform.accounts.roles import Capability

    return Capability.ADMIN in capabilities


def of_project(project) -> QuerySet:
    """Every export of ``project``, whoever asked: what an owner lists with ``?all=true``."""
    return Export.objects.filter(project=project)


def is_requester(export: Export, *, user=None, api_key=None) -> bool:
    """Whether this caller asked for ``export`` (and so may download its file)."""
    if api_key is not None:
        return export.requested_by_key_id == api_key.pk
    return user is not None and export.requested_by_key_id is None and export.requested_by_user_id == user.pk


def _publish(export_id) -> bool:
    from atelier_platform.celery_app import QUEUE_EXPORTS, RUN_EXPORT_TASK, app, publish_or_leave_to_sweeper

    return publish_or_leave_to_sweeper(app, RUN_EXPORT_TASK, [str(export_id)], queue=QUEUE_EXPORTS,
                                       what=f"export {export_id}")


def _announce_on_commit(export_id) -> None:
    transaction.on_commit(functools.partial(export_finished.send, sender=Export, export_id=export_id), robust=True)


def request_export(project, *, kind: str, format: str, filters=None, user=None, api_key=None, site: str = "",
                   requested_from: str = ExportOrigin.API, with_approvers: bool = False) -> Export:
    """Ask for an export of ``kind`` in ``format`` with ``filters`` (checked as its streaming export checks them:
    ``kinds.checked_filters``), queued for the exports queue once this commits. 409 ``exports_busy`` while the
    requester has ``EXPORTS_AT_ONCE`` unfinished (``details.counted``: ``requester``), or the project, all requesters
    together, ``PROJECT_EXPORTS_AT_ONCE`` (``project``)."""
    from atelier_platform.accounts.models import Project

    wrong = {}
    if kind not in ExportKind.values:
        wrong["kind"] = [f"One of {', '.join(ExportKind.values)}."]
    if format not in ExportFormat.values:
        wrong["format"] = [f"One of {', '.join(ExportFormat.values)}."]
    if wrong:
        raise kinds.ExportFiltersInvalid("The request has invalid or missing fields.", details=wrong)
    checked = kinds.checked_filters(kind, project, filters)
    with transaction.atomic():
        # the project's row, as job submissions lock it for their quota: two requests at once count each other
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
        unfinished = Export.objects.filter(project=project).exclude(status__in=FINISHED_EXPORT_STATUSES)
        mine = unfinished.filter(_asked_by(user=user, api_key=api_key)).count()
        if mine >= EXPORTS_AT_ONCE:
            raise ExportsBusy(f"You have {mine} exports going at once, the most one member or API key may (each holds "
                              f"a worker while it runs); ask again once one has finished, or cancel one "
                              f"(POST /api/v1/exports/{{id}}/cancel/).",
                              details={"limit": EXPORTS_AT_ONCE, "counted": "requester"})
        going = unfinished.count()
        if going >= PROJECT_EXPORTS_AT_ONCE:
            raise ExportsBusy(f"The project has {going} exports going at once, all its members and keys together, the "
                              f"most it may (the exports queue's workers serve every project); ask again once one has "
                              f"finished. An owner may cancel any (GET /api/v1/exports/?all=true lists them).",
                              details={"limit": PROJECT_EXPORTS_AT_ONCE, "counted": "project"})
        export = Export.objects.create(
            project=project, kind=kind, format=format, filters=checked, with_approvers=with_approvers, site=site[:300],
            requested_from=requested_from, requested_by_user=user if api_key is None else None, requested_by_key=api_key,
            requested_by=requester_of(user=user, api_key=api_key), enqueued_at=timezone.now())
        trail.requested(export)  # who took data out: the audit log, with the export
        transaction.on_commit(functools.partial(_publish, export.pk), robust=True)
    return export


# --- the run ------------------------------------------------------------------------------------------------------

def _claim(export_id) -> tuple[Export | None, str]:
    """The export for this run, counted one attempt up, or None and why: it is no longer queued (finished,
    cancelled, or running in a live run: a message delivered twice), or it lost too many runs."""
    now = timezone.now()
    with transaction.atomic():
        export = Export.objects.select_for_update().filter(pk=export_id).first()
        if export is None:
            return None, "skipped"
        crashed = export.status == ExportStatus.RUNNING and (
            export.heartbeat_at is None or export.heartbeat_at <= now - EXPORT_STALE_AFTER)
        if export.status != ExportStatus.QUEUED and not crashed:
            return None, "skipped"
        previous = export.attempt
        if crashed:
            export.lost_runs += 1
            logger.warning("export %s: run %d went silent (its worker died); %s", export.pk, previous,
                           "failing it" if export.lost_runs > MAX_LOST_RUNS else "starting it again")
            transaction.on_commit(functools.partial(_remove_quietly, stored_name(export, attempt=previous),
                                                    "the file of a run whose worker died"), robust=True)
            if export.lost_runs > MAX_LOST_RUNS:
                export.status, export.finished_at = ExportStatus.FAILED, now
                export.error_code = "export_lost"
                export.error_message = (f"The export's worker stopped without finishing {export.lost_runs} times "
                                        f"(out of memory, or restarted); ask for a smaller export (narrower filters).")
                export.save(update_fields=["lost_runs", "status", "finished_at", "error_code", "error_message"])
                _announce_on_commit(export.pk)
                return None, "failed"
        export.attempt += 1
        export.status = ExportStatus.RUNNING
        export.started_at = export.heartbeat_at = now
        export.rows_done, export.rows_total = 0, None
        export.erasures_seen, export.erased_since = 0, None  # this run reads after those erasures committed
        export.save(update_fields=["attempt", "lost_runs", "status", "started_at", "heartbeat_at", "rows_done",
                                   "rows_total", "erasures_seen", "erased_since"])
    return export, ""


def record_progress(export: Export, rows_done: int, *, rows_total: int | None = None) -> None:
    """Write the run's progress (and its sign of life); ``ExportStopped`` when the run no longer holds the export."""
    fields = {"rows_done": rows_done, "heartbeat_at": timezone.now()}
    if rows_total is not None:
        fields["rows_total"] = rows_total
    if not Export.objects.filter(pk=export.pk, status=ExportStatus.RUNNING, attempt=export.attempt).update(**fields):
        raise ExportStopped


def _fail(export: Export, code: str, message: str) -> None:
    with transaction.atomic():
        if Export.objects.filter(pk=export.pk, status=ExportStatus.RUNNING, attempt=export.attempt).update(
                status=ExportStatus.FAILED, error_code=code, error_message=message, finished_at=timezone.now()):
            _announce_on_commit(export.pk)


def _records(spool, export_format: str, source: kinds.Source) -> Iterator[tuple[str | None, bytes]]:
    """Each row of a written file as (its id, its bytes as written); a CSV's header as (None, its bytes). A CSV row
    spans lines where a text holds line breaks: the csv module's reader says where each ends (it reads no line past
    the row it gives), and the lines it read are the row's bytes."""
    spool.seek(0)
    if export_format == ExportFormat.JSONL:
        for line in spool:
            yield str(json.loads(line)[source.id_field]), line
        return
    column = source.fields.index(source.id_field)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    taken: list[str] = []

    def lines():
        for line in text:
            taken.append(line)
            yield line

    limit = csv.field_size_limit(sys.maxsize)  # a generated text may be longer than the reader's default 128 KiB
    try:
        for number, cells in enumerate(csv.reader(lines())):
            raw = "".join(taken).encode("utf-8")
            taken.clear()
            yield (cells[column] if number else None), raw
    finally:
        csv.field_size_limit(limit)
        text.detach()  # the file stays open: its owner closes it


def _without_erased(export: Export, source: kinds.Source, spool, rows: int, since):
    """The written file without what the erasures of jobs erased at or after ``since`` took away: each row they
    changed is written again as the streaming export writes it now, with the same writer, or left out where it is no
    longer among the export's rows (``kinds.erased_rows``). (The new file, its rows.)"""
    changed, now = kinds.erased_rows(export, since)
    if not changed:
        return spool, rows

    def line_of(row) -> bytes:
        *_, line = exports.export_lines([row], export.format, fields=source.fields, json_fields=source.json_fields)
        return line.encode("utf-8")

    written_now = {str(row[source.id_field]): line_of(row) for row in now}  # rows of erased content: short ones
    rewritten = tempfile.TemporaryFile()
    kept = scanned = 0
    try:
        for object_id, raw in _records(spool, export.format, source):
            if object_id is not None:
                scanned += 1
                if scanned % PROGRESS_EVERY_ROWS == 0:
                    record_progress(export, rows)  # a sign of life: a million rows take a while to read again
                if object_id in changed:
                    raw = written_now.get(object_id)
                    if raw is None:
                        continue
                kept += 1
            rewritten.write(raw)
    except BaseException:
        rewritten.close()
        raise
    spool.close()
    return rewritten, kept


def _store(export: Export, spool) -> tuple[str, int]:
    """The file in media storage, under the run's name: (its name there, its size)."""
    size = spool.tell()
    spool.seek(0)
    name = stored_name(export, attempt=export.attempt)
    try:
        return _storage().save(name, File(spool)), size
    except BaseException:
        # a store that failed half way (a full disk) leaves what it wrote, which no row names: nothing else
        # would ever delete it, nor an erasure find it
        _remove_quietly(name, f"the part of export {export.pk}'s file stored before its store failed")
        raise


def _succeed(export: Export, saved: str, size: int, rows: int, erasures_seen: int) -> bool:
    """Mark the export succeeded with its stored file, under the lock an erasure takes on its row; False where an
    erasure that could touch its rows committed since the run took out the last ones (``erasures_seen`` is behind):
    the file is removed, to be written again without them. ``ExportStopped`` where the run no longer holds it."""
    try:
        kept = timedelta(hours=get_config().exports_kept_hours)
        now = timezone.now()
        with transaction.atomic():
            held = Export.objects.select_for_update().filter(pk=export.pk, status=ExportStatus.RUNNING,
                                                             attempt=export.attempt).first()
            if held is not None and held.erasures_seen == erasures_seen:
                Export.objects.filter(pk=export.pk).update(
                    status=ExportStatus.SUCCEEDED, file=saved, size=size, rows_done=rows, rows_total=rows,
                    finished_at=now, heartbeat_at=now, expires_at=now + kept, error_code="", error_message="")
                _announce_on_commit(export.pk)
                return True
    except BaseException:
        _remove_quietly(saved, f"the file of export {export.pk}, whose end could not be stored")
        raise
    if held is None:
        _remove_quietly(saved, f"the file of export {export.pk}, cancelled or taken over meanwhile")
        raise ExportStopped
    _remove_quietly(saved, f"the file of export {export.pk}, written before an erasure of some of its rows")
    return False


def _write(export: Export) -> str:
    source = kinds.source(export)
    record_progress(export, 0, rows_total=source.count())
    rows = 0
    header = export.format == ExportFormat.CSV  # a CSV's first line names the columns
    spool = tempfile.TemporaryFile()
    try:
        for line in exports.export_lines(source.rows(), export.format, fields=source.fields,
                                         json_fields=source.json_fields):
            spool.write(line.encode("utf-8"))
            if header:
                header = False
                continue
            rows += 1
            if rows % PROGRESS_EVERY_ROWS == 0:
                record_progress(export, rows)
        # The rows were read while erasures went on: those that could touch them counted themselves on the row
        # (withdraw_for_erasure). Each end takes out what the erasures counted so far took away, stores the file,
        # outside any transaction (a large file takes a while to reach its store), and succeeds only where no
        # erasure was counted meanwhile; the last end holds the row's lock throughout, so none can be.
        taken_out = 0
        for end in range(UNLOCKED_ENDS + 1):
            last = end == UNLOCKED_ENDS
            with transaction.atomic() if last else nullcontext():
                noted = (Export.objects.select_for_update() if last else Export.objects).filter(
                    pk=export.pk, status=ExportStatus.RUNNING, attempt=export.attempt).values_list(
                    "erasures_seen", "erased_since").first()
                if noted is None:
                    raise ExportStopped
                if noted[0] != taken_out:
                    spool, rows = _without_erased(export, source, spool, rows, noted[1])
                    taken_out = noted[0]
                saved, size = _store(export, spool)
                if _succeed(export, saved, size, rows, taken_out):
                    return "succeeded"
        raise AssertionError("the last end holds the lock erasures wait for")  # pragma: no cover
    finally:
        spool.close()


def run_export(export_id) -> str:
    """The task's work: claim the export, write its file, store it. What happened: ``succeeded``, ``failed``,
    ``stopped`` (cancelled or taken over meanwhile) or ``skipped`` (nothing to do: a message delivered twice, an
    export finished or cancelled). Idempotent: the row says what is left to do."""
    export, outcome = _claim(export_id)
    if export is None:
        return outcome
    try:
        return _write(export)
    except ExportStopped:
        logger.info("export %s: run %d stopped (cancelled, or taken over)", export.pk,
                    export.attempt)
        return "stopped"
    except kinds.ExportFiltersInvalid as refused:  # filters its list no longer takes (checked when it was asked for)
        _fail(export, "invalid_filters", f"{refused.message} {refused.details}")
        return "failed"
    except Exception:
        logger.exception("export %s: run %d failed", export.pk, export.attempt)
        _fail(export, "export_failed", "The export stopped on an error (the worker's log, atelier.exports, says "
                                       "which); ask for it again.")
        return "failed"


# --- what callers do with one --------------------------------------------------------------------------------------

def cancel_export(export: Export, *, actor: str = "") -> Export:
    """Cancel a queued or running export: a running one stops at its next progress and stores nothing. A finished
    one answers 409 ``export_finished``. An ``actor`` who is not its requester (an owner) is recorded in the audit
    log: someone stopped another's export."""
    with transaction.atomic():
        export = Export.objects.select_for_update().get(pk=export.pk)
        if export.is_finished:
            raise ExportFinished(f"Export {export.pk} already finished ({export.status}); nothing to cancel.",
                                 details={"status": export.status})
        export.status, export.finished_at = ExportStatus.CANCELLED, timezone.now()
        export.error_code, export.error_message = "cancelled", "Cancelled before it finished."
        export.save(update_fields=["status", "finished_at", "error_code", "error_message"])
        if actor and actor != export.requested_by:
            trail.cancelled(export, actor)
        _announce_on_commit(export.pk)
    return export


def is_downloadable(export: Export, now=None) -> bool:
    now = now or timezone.now()
    return (export.status == ExportStatus.SUCCEEDED and export.withdrawn_at is None and bool(export.file.name)
            and (export.expires_at is None or export.expires_at > now))


def file_to_download(export: Export, *, actor: str):
    """The export's file, opened, for ``actor``'s download (recorded in the audit log: ``trail.downloaded``): 409
    ``export_not_ready`` before it succeeded (``details.status``), 410 ``export_withdrawn`` after an erasure took it
    back, 410 ``export_expired`` past ``expires_at``."""
    if export.withdrawn_at is not None:
        raise ExportWithdrawn(f"This export held content erased on {export.withdrawn_at.isoformat()}, and its file "
                              f"was deleted with it; ask for a new export.", details={"withdrawn_at": export.withdrawn_at})
    if export.status != ExportStatus.SUCCEEDED:
        going = export.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)
        raise ExportNotReady(f"Export {export.pk} is {export.status}: " + (
            "download it once it has succeeded (GET /api/v1/exports/{id}/ says how far it is)." if going
            else "it has no file; ask for a new export."), details={"status": export.status})
    if not is_downloadable(export):
        raise ExportExpired(f"This export's file was kept until {export.expires_at.isoformat()} and is deleted; ask "
                            f"for a new export.", details={"expired_at": export.expires_at})
    try:
        handle = export.file.open("rb")
    except FileNotFoundError:
        raise ExportFileMissing("The export's file is missing from storage; ask for a new export.") from None
    trail.downloaded(export, actor)
    return handle


def download_name(export: Export) -> str:
    """The file's name, as its streaming export names it (``outputs-shop.csv``)."""
    return f"{kinds.base_filename(export)}.{export.format}"


# --- housekeeping ----------------------------------------------------------------------------------------------------

def sweep(now=None) -> int:
    """Send again the message of an export queued for longer than ``ATELIER_JOB_REQUEUE_AFTER_S`` (its message was
    lost) and of one running but silent past ``EXPORT_STALE_AFTER`` (its worker died: the run's claim starts it
    again from scratch). Each is sent once until it is overdue again. How many were sent."""
    now = now or timezone.now()
    overdue = now - timedelta(seconds=get_config().job_requeue_after_s)
    stale = now - EXPORT_STALE_AFTER
    due = (Q(status=ExportStatus.QUEUED, enqueued_at__lt=overdue)
           | Q(status=ExportStatus.RUNNING, heartbeat_at__lt=stale, enqueued_at__lt=stale))
    ids = list(Export.objects.filter(due).order_by("enqueued_at").values_list("pk", flat=True)[:CLEANUP_BATCH])
    if ids:
        Export.objects.filter(pk__in=ids).update(enqueued_at=now)
    for export_id in ids:
        _publish(export_id)
    return len(ids)


def delete_expired(now=None) -> int:
    """The periodic cleanup: the files of exports past ``expires_at`` leave storage (their rows stay, so that
    ``GET`` says they expired and the download answers 410), and the rows of exports finished more than
    ``FINISHED_EXPORTS_KEPT`` ago go. How many files it deleted."""
    now = now or timezone.now()
    expired = list(Export.objects.filter(expires_at__lte=now).exclude(file="").values_list("pk", "file")
                   [:CLEANUP_BATCH])
    if expired:
        Export.objects.filter(pk__in=[pk for pk, _ in expired]).update(file="")
    for pk, name in expired:
        _remove_quietly(name, f"the file of export {pk}, expired")
    old = Export.objects.filter(finished_at__lt=now - FINISHED_EXPORTS_KEPT).values_list("pk", flat=True)[:CLEANUP_BATCH]
    Export.objects.filter(pk__in=list(old)).delete()  # a file left goes with its row (receivers)
    return len(expired)


def withdraw_for_erasure(project, *, job_ids: list, output_ids: list, erased_at) -> tuple[int, int]:
    """Called by an erasure (``jobs.erasure.erase_jobs``) in its transaction, before it changes anything, with the
    time it erases the jobs at (their ``erased_at``): each export of ``project`` whose rows could hold these jobs'
    content (``kinds.might_hold``) either has its file taken back (succeeded: deleted once the erasure commits; its
    download answers 410 ``export_withdrawn``) or, while it runs, counts the erasure (``erasures_seen``, and the
    first one's ``erased_since``): the run keeps going, and takes the rows of the jobs erased since out of its file
    before it stores it (``_write``). The export's row stays locked until the erasure commits, so a run's end, which
    takes the same lock, sees the count. Queued exports are locked until the erasure commits: none starts reading
    content the erasure is about to remove. (running exports noted, withdrawn)."""
    from atelier_platform.moderation.models import ReviewItem

    live = list(Export.objects.select_for_update().filter(
        project=project, withdrawn_at__isnull=True,
        status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING, ExportStatus.SUCCEEDED]).order_by("pk"))
    candidates = [export for export in live if export.status == ExportStatus.RUNNING
                  or (export.status == ExportStatus.SUCCEEDED and export.file.name)]
    if not candidates:
        return 0, 0
    items = list(ReviewItem.objects.filter(output_id__in=output_ids).values_list("pk", flat=True)) \
        if any(export.kind == ExportKind.AUDIT for export in candidates) else []
    held = []
    for export in candidates:
        export.project = project
        if kinds.might_hold(export, job_ids=job_ids, output_ids=output_ids, review_item_ids=items):
            held.append(export)
    now = timezone.now()
    running = [export.pk for export in held if export.status == ExportStatus.RUNNING]
    finished = [export for export in held if export.status == ExportStatus.SUCCEEDED]
    if running:  # the earliest erasure counted: the run takes out every job erased at or after it
        Export.objects.filter(pk__in=running).update(
            erasures_seen=F("erasures_seen") + 1,
            erased_since=Least(Coalesce(F("erased_since"), Value(erased_at)), Value(erased_at)))
    if finished:
        Export.objects.filter(pk__in=[export.pk for export in finished]).update(withdrawn_at=now, file="")
        for export in finished:
            remove_after_commit(export.file, f"export {export.pk}, which held content erased since")
    if held:
        logger.info("erasure in project %s: %d running exports take it out of their file, %d withdrawn",
                    project.slug, len(running), len(finished))
    return len(running), len(finished)
