"""The content library: a project's final content, to browse and to take away.

One definition serves the dashboard's ``/library/`` page, its export and ``GET /api/v1/outputs/?export=``:

- which outputs are final: ``models.final_content``, the rule of the API's ``final=true``;
- an output's final text: the fields its plugin lets a reviewer edit (``atelier_sdk.editable``: a chat reply,
  each copy variant), so an edited and approved output gives the edited text, as the API delivers it; a ranked
  list (``recommendations``) gives its items, each with its copy variants;
- who approved it and when, from its review item's decisions;
- the export's rows, read in chunks of ``exports.EXPORT_CHUNK_SIZE`` (their files and decisions prefetched a
  chunk at a time), never all at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.db import connections
from django.db.models import Prefetch, Q, QuerySet

from atelier_platform import exports
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.schema_texts import written_texts
from atelier_platform.jobs.models import (WITHHELD_REVIEW_STATES, Job, Output, OutputFile, ReviewState,
                                         final_content, is_final)
from atelier_platform.jobs.search_indexes import existing_search_indexes
from atelier_platform.moderation.screening import IMAGE_TYPES, collect_texts

#: Newest first, as ``GET /api/v1/outputs/`` lists them (its cursor's ordering).
LIBRARY_ORDERING = ("-created_at", "-id")
#: The longest search the library runs (more is cut): a search is a few words, not a document.
MAX_SEARCH_CHARACTERS = 200
#: A search whose text is in more outputs and prompts than this tests the newest outputs one by one until a page is
#: full; one in fewer reads its matches through the trigram indexes (``search``). About where the two cost the same on
#: ``bench/search.py``'s 200,000 jobs (a word in 1% of them).
FEW_MATCHES = 2000
#: The file role of an image's small copy (``atelier_plugins.image``); every other file is one to use.
THUMBNAIL_ROLE = "thumbnail"

#: The columns of an export, in order; the JSON Lines give the same keys, lists as lists.
EXPORT_FIELDS = ["output_id", "job_id", "plugin", "index", "review_state", "final", "created_at", "approved_at",
                 "approved_by", "text", "items", "file_urls", "thumbnail_urls", "prompt", "job_url"]
#: The columns a CSV holds as JSON (a list, or a list of objects).
EXPORT_JSON_FIELDS = ("approved_by", "items", "file_urls", "thumbnail_urls")


@dataclass(frozen=True)
class LibraryFilters:
    """What the library is narrowed to: a plugin, a time range (``created_at`` from, before), a search."""

    plugin: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str = ""


def final_outputs(project, filters: LibraryFilters = LibraryFilters()) -> QuerySet:
    """The project's final outputs that match ``filters``, newest first, with what a page or an export shows of them."""
    # final_content() leaves out an erased job's outputs: they keep their review state (the tombstone), not their content
    outputs = Output.objects.filter(final_content(), job__project=project)
    if filters.plugin:
        outputs = outputs.filter(job__plugin_id=filters.plugin)
    if filters.created_after is not None:
        outputs = outputs.filter(created_at__gte=filters.created_after)
    if filters.created_before is not None:
        outputs = outputs.filter(created_at__lt=filters.created_before)
    return with_library_relations(search(outputs, filters.q)).order_by(*LIBRARY_ORDERING)


def search(outputs: QuerySet, q: str) -> QuerySet:
    """``outputs`` whose final text (``Output.search_text``) or whose job's prompt (``Job.search_text``) holds ``q``,
    case-insensitively. The text of an output the API withholds (blocked, rejected) is never searched: a hit would
    tell what it says."""
    q = q.replace("\x00", "").strip()[:MAX_SEARCH_CHARACTERS].casefold()
    if not q:
        return outputs
    in_content = Q(search_text__contains=q) & ~Q(review_state__in=sorted(WITHHELD_REVIEW_STATES))
    if not _found_in_few(q, outputs.db):
        # Each output tested as it is read, newest first (index output_newest): a page of a common word is full
        # within its first few hundred outputs, where collecting all its matches would read a good part of both tables.
        return outputs.filter(in_content | Q(job__search_text__contains=q))
    # The few outputs found by their text and those found by their job's prompt, as one set of ids: each half is a
    # lookup of one table's trigram index (jobs.search_indexes). Tested on each output as above, a rare word read all
    # of a project's outputs (no index can serve a condition on an output OR its job).
    by_content = Output.objects.filter(in_content).order_by().values("pk")
    by_prompt = Output.objects.filter(job__search_text__contains=q).order_by().values("pk")
    return outputs.filter(pk__in=by_content.union(by_prompt))


def _found_in_few(q: str, using: str) -> bool:
    """Whether at most ``FEW_MATCHES`` outputs' texts and jobs' prompts hold ``q`` (the searched text), as their trigram
    indexes tell it: never on SQLite or without the indexes, nor for ``q`` under 3 characters (it holds no trigram,
    so no index can find it). Each count stops at ``FEW_MATCHES + 1``: a common word is no slower to ask about."""
    connection = connections[using]
    if connection.vendor != "postgresql" or len(q) < 3 or \
            not {"job_search_text_trgm", "output_search_text_trgm"} <= set(existing_search_indexes(connection)):
        return False
    found = Output.objects.using(using).filter(search_text__contains=q).order_by()[:FEW_MATCHES + 1].count()
    if found > FEW_MATCHES:
        return False
    return found + Job.objects.using(using).filter(search_text__contains=q).order_by()[:FEW_MATCHES + 1].count() \
        <= FEW_MATCHES


def with_library_relations(outputs: QuerySet) -> QuerySet:
    """``outputs`` with their job, files and approvals read in a fixed number of queries, however many there are."""
    from atelier_platform.moderation.models import ReviewAction, ReviewDecision

    # not what an edit changed (both versions of the content): the library shows the approved content only
    approvals = (ReviewDecision.objects.filter(action__in=[ReviewAction.APPROVE, ReviewAction.EDIT])
                 .select_related("decided_by_user").defer("original_content", "edited_content", "comment")
                 .order_by("decided_at", "id"))
    return outputs.select_related("job", "review").defer("search_text", "provenance", "safety").prefetch_related(
        Prefetch("files", queryset=OutputFile.objects.order_by("role", "id")),
        Prefetch("review__decisions", queryset=approvals, to_attr="approving_decisions"),
    )


# --- what an output holds -------------------------------------------------------------------------------------

def _plugin(plugin_id: str):
    return get_registry().get(plugin_id)


@lru_cache(maxsize=64)
def _editable_paths(plugin) -> tuple[str, ...]:
    from atelier_sdk import editable_paths

    return tuple(editable_paths(plugin.Output))


def _values_at(value, parts: list[str]) -> Iterator:
    """What ``parts`` of an editable path (``recommendations[]``, ``copy[]``, ``text``) name inside ``value``."""
    if not parts:
        yield value
        return
    name, many = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    inner = value.get(name) if isinstance(value, dict) else None
    if many:
        for item in inner if isinstance(inner, list) else []:
            yield from _values_at(item, parts[1:])
    elif inner is not None:
        yield from _values_at(inner, parts[1:])


def final_texts(plugin_id: str, content) -> list[str]:
    """The texts of ``content`` a person uses: those of the fields its plugin lets a reviewer edit, in order. A plugin
    that marks none (an image's record of how it was made) has none; one no longer installed gives every text."""
    plugin = _plugin(plugin_id)
    if plugin is None:
        return [text for _, text in collect_texts(content, "content")]
    texts = []
    for path in _editable_paths(plugin):
        for value in _values_at(content, path.split(".")):
            texts += [text for _, text in collect_texts(value, "content")]
    return texts


def ranked_items(content) -> list[dict] | None:
    """A ranked list's items (``recommendations``: rank, item id, title, copy variants), each with its copy's texts;
    None for an output that is no ranked list."""
    recommendations = content.get("recommendations") if isinstance(content, dict) else None
    if not isinstance(recommendations, list):
        return None
    items = []
    for entry in recommendations:
        if not isinstance(entry, dict):
            continue
        variants = entry.get("copy") if isinstance(entry.get("copy"), list) else []
        items.append({"rank": entry.get("rank"), "item_id": entry.get("item_id"), "title": entry.get("title"),
                      "copy": [v["text"] for v in variants if isinstance(v, dict) and isinstance(v.get("text"), str)]})
    return items


def text_of(plugin_id: str, content) -> str:
    """An output's final text in one piece (its texts a blank line apart); a ranked list's copy is in its items."""
    return "" if ranked_items(content) is not None else "\n\n".join(final_texts(plugin_id, content))


def output_search_text(plugin_id: str, content) -> str:
    """What the library's search matches of an output: its final texts and a ranked list's titles, case-folded."""
    items = ranked_items(content) or []
    texts = [*(item["title"] for item in items if isinstance(item["title"], str)), *final_texts(plugin_id, content)]
    return "\n".join(texts).casefold().replace("\x00", "")


def prompt_of(job) -> str:
    """The texts a person wrote in the job's input, by its plugin's input schema (not its choices nor its ids), one
    a line: an image's prompt, a chat's messages, a shopper's interests and the candidate items."""
    plugin = _plugin(job.plugin_id)
    return "\n".join(written_texts(job.input, _input_schema(plugin) if plugin is not None else {}))


@lru_cache(maxsize=64)
def _input_schema(plugin) -> dict:
    return plugin.input_schema()


def usable_files(output: Output) -> tuple[list[OutputFile], dict[int, OutputFile]]:
    """An output's files to use (its images and other files, not their thumbnails) and, for the primary image, its
    thumbnail (by the primary's id) where it has one. A file row whose file was erased (no name) is left out. None
    of a withheld output's."""
    if output.review_state in WITHHELD_REVIEW_STATES:
        return [], {}
    files = [f for f in output.files.all() if f.file.name]
    thumbnails = [f for f in files if f.role == THUMBNAIL_ROLE]
    used = [f for f in files if f.role != THUMBNAIL_ROLE]
    first_image = next((f for f in used if f.media_type in IMAGE_TYPES), None)
    return used, ({first_image.pk: thumbnails[0]} if first_image and thumbnails else {})


def approval_of(output: Output) -> tuple[datetime | None, list]:
    """When an approved output was approved and the decisions that approved it (the second reviewer's too), each
    with ``decided_by`` and ``decided_by_user``; none for one released after screening that nobody reviewed."""
    item = getattr(output, "review", None)
    if item is None or output.review_state != ReviewState.APPROVED:
        return None, []
    if not hasattr(item, "approving_decisions"):  # an output read without with_library_relations: its decisions read now
        item.approving_decisions = list(item.decisions.filter(action__in=["approve", "edit"]).select_related("decided_by_user"))
    return item.decided_at, item.approving_decisions


def approver_name(decision) -> str:
    """A member's username; an API key, or a member since deleted, as the audit log names it (``key:ab12cd34ef56``)."""
    return decision.decided_by_user.username if decision.decided_by_user_id and decision.decided_by_user else decision.decided_by


# --- the export ----------------------------------------------------------------------------------------------

def file_url(file: OutputFile, site: str = "", query: str = "") -> str:
    """Where the file is downloaded (``GET /api/v1/outputs/{id}/files/{file id}/``), with the caller's credentials."""
    return f"{site}/api/v1/outputs/{file.output_id}/files/{file.pk}/{query}"


def export_row(output: Output, *, site: str, file_query: str = "", with_approvers: bool = True) -> dict:
    """One output as an export's row (``EXPORT_FIELDS``). A withheld output (the API's list, filtered to show one)
    keeps its state, never its text, items or files. Without ``with_approvers`` (a caller who may not see the review
    queue) ``approved_by`` is empty: who reviewed what is the review queue's to tell, not the content's."""
    job = output.job
    withheld = output.review_state in WITHHELD_REVIEW_STATES
    files, thumbnails = usable_files(output)
    approved_at, approvals = approval_of(output)
    items = None if withheld else ranked_items(output.content)
    return {
        "output_id": str(output.pk), "job_id": str(job.pk), "plugin": job.plugin_id, "index": output.index,
        "review_state": output.review_state, "final": is_final(output),
        "created_at": output.created_at.isoformat(), "approved_at": approved_at.isoformat() if approved_at else None,
        "approved_by": [approver_name(decision) for decision in approvals] if with_approvers else [],
        "text": "" if withheld else text_of(job.plugin_id, output.content),
        "items": items or [],
        "file_urls": [file_url(f, site, file_query) for f in files],
        "thumbnail_urls": [file_url(thumbnails[f.pk], site, file_query) for f in files if f.pk in thumbnails],
        "prompt": prompt_of(job),
        "job_url": f"{site}/jobs/{job.pk}/",
    }


def export_rows(outputs: QuerySet, *, site: str, file_query: str = "", with_approvers: bool = True) -> Iterator[dict]:
    """``outputs`` as export rows, read ``exports.EXPORT_CHUNK_SIZE`` at a time with their relations (a query each
    per chunk), each row made as it is sent: an export of a million outputs holds one chunk in memory."""
    outputs = with_library_relations(outputs.prefetch_related(None))  # its own prefetches, not the caller's
    for output in outputs.iterator(chunk_size=exports.EXPORT_CHUNK_SIZE):
        yield export_row(output, site=site, file_query=file_query, with_approvers=with_approvers)


def streamed_export(outputs: QuerySet, export: str, *, site: str, filename: str, file_query: str = "",
                    with_approvers: bool = True):
    """``outputs`` as a CSV or JSON Lines download (``exports.streamed_export``)."""
    return exports.streamed_export(export_rows(outputs, site=site, file_query=file_query, with_approvers=with_approvers),
                                   export,
                                   fields=EXPORT_FIELDS, json_fields=EXPORT_JSON_FIELDS, filename=filename)
