"""A reference set's cases read from an uploaded file: CSV (columns per plugin) or JSON Lines (one case a line).

The file is only turned into cases here; ``services.checked_cases`` checks them against the plugin's schemas, as
it does the API's. Each case remembers the file's line it came from (``Upload.lines``), so that a refusal names
the line and, for a CSV, the column (``column_of``). A refusal of the file itself (not UTF-8, a missing or unknown
column, a line that is not JSON) is an ``UploadRefused`` with a stable code and its values, for a caller to word
in its own language; its English is the API's.

CSV columns:

- ``chatbot``: ``question`` and ``reference`` (one user message; the answer expected), optional
  ``reference_sources`` (the knowledge-base documents expected to ground the answer, by id or title: ``id1|id2``, or a
  JSON list ``["Returns policy", "en/shipping"]`` where a name holds a ``|``); with that column, ``reference`` may be
  left out, or a cell of it empty where the case's sources are given.
- ``recommender_copy``: ``title`` and ``reference`` (one catalogue item and the copy expected for it), optional
  ``description``, ``interests`` (the shopper's), ``tone`` and ``language``. The case asks for one item and one
  variant, so the text scored is that copy (a ranking of one item says nothing: cases with ``reference_items``, the
  relevant items among several candidates, come as JSON Lines).

JSON Lines: ``{"input": {...}, "params": {...}, "reference": "..."}`` a line, for any plugin a run can score, with
``reference_items``, ``reference_sources`` and ``k`` as the API takes them.

Image sets (``image``) come as a ZIP: a ``cases.csv`` (columns ``prompt`` and ``image``, the image's file name in
the archive, optional ``negative_prompt``, ``width``, ``height``, ``steps``, ``guidance``, ``seed``) or a
``cases.jsonl`` (``{"input": {...}, "params": {...}, "reference": "file name"}`` a line) beside the images (file
names relative to the cases file's folder). The archive is read in memory, never extracted, and guarded: at most
``MAX_ZIP_MEMBERS`` members, ``MAX_ZIP_UNCOMPRESSED_BYTES`` once inflated (each member read with a bound, whatever
its header claims), no absolute or ``..`` names.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from atelier_platform.evaluation.services import MAX_CASES, EvaluationError

#: the largest file taken (500 cases of long conversations fit well within it)
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
#: the refusals of single lines listed before the rest are only counted
MAX_LINE_ERRORS = 20
#: an image set's ZIP: its size, its members, and their size once inflated (a zip bomb is refused, not inflated)
MAX_ZIP_BYTES = 32 * 1024 * 1024
MAX_ZIP_MEMBERS = 2 * MAX_CASES + 10
MAX_ZIP_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
CASES_FILES = ("cases.csv", "cases.jsonl")


def _chatbot(row: dict[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": row["question"]}]}


def _recommender(row: dict[str, str]) -> dict[str, Any]:
    item = {"id": "item-1", "title": row["title"]}
    if row.get("description"):
        item["description"] = row["description"]
    made: dict[str, Any] = {"items": [item], "count": 1, "variants": 1}
    if row.get("interests"):
        made["profile"] = {"interests": row["interests"]}
    for name in ("tone", "language"):
        if row.get(name):
            made[name] = row[name]
    return made


def _number(text: str) -> Any:
    """A cell as a number when it is one; else as written, for the plugin's schema to name what is wrong."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _image(row: dict[str, str]) -> dict[str, Any]:
    made: dict[str, Any] = {"prompt": row["prompt"]}
    if row.get("negative_prompt"):
        made["negative_prompt"] = row["negative_prompt"]
    for name in ("width", "height", "steps", "guidance", "seed"):
        if row.get(name):
            made[name] = _number(row[name])
    return made


@dataclass(frozen=True)
class CsvLayout:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    make_input: Any
    #: where in a case each column goes, to name the column of a refused field (the longest prefix wins)
    columns: dict[str, str]
    #: the column that holds the reference (for images, the image's file name in the archive)
    reference_column: str = "reference"
    #: optional columns holding a list (``a|b`` or a JSON list), each a case's field of that name; with one of them
    #: the reference column is optional (the case checker wants one reference or another)
    list_columns: tuple[str, ...] = ()


CSV_LAYOUTS: dict[str, CsvLayout] = {
    "chatbot": CsvLayout(("question", "reference"), ("reference_sources",), _chatbot,
                         {"input.messages": "question", "reference": "reference",
                          "reference_sources": "reference_sources"}, list_columns=("reference_sources",)),
    "recommender_copy": CsvLayout(
        ("title", "reference"), ("description", "interests", "tone", "language"), _recommender,
        {"input.items.0.title": "title", "input.items.0.description": "description", "input.profile": "interests",
         "input.tone": "tone", "input.language": "language", "reference": "reference"}),
    "image": CsvLayout(
        ("prompt", "image"), ("negative_prompt", "width", "height", "steps", "guidance", "seed"), _image,
        {"input.prompt": "prompt", "input.negative_prompt": "negative_prompt", "input.width": "width",
         "input.height": "height", "input.steps": "steps", "input.guidance": "guidance", "input.seed": "seed",
         "reference": "image"}, reference_column="image"),
}


class UploadRefused(EvaluationError):
    """The file cannot be read as cases: ``reason`` is a stable code, ``params`` its values (``line``, ``column``)."""

    code = "invalid_upload"

    def __init__(self, message: str, *, reason: str, params: dict[str, Any] | None = None,
                 problems: list["UploadRefused"] | None = None) -> None:
        super().__init__(message, details={"file": [message]})
        self.reason = reason
        self.params = dict(params or {})
        #: a file refused line by line: each line's refusal (at most MAX_LINE_ERRORS), the count in params["lines"]
        self.problems = list(problems or [])


@dataclass
class Upload:
    cases: list[dict[str, Any]]
    #: the file's line each case came from, by the case's index
    lines: list[int] = field(default_factory=list)
    kind: str = "csv"
    plugin_id: str = ""


def column_of(plugin_id: str, kind: str, path: str) -> str:
    """The CSV column of a field of a case (``input.messages.0.content`` → ``question``); in JSON Lines the path."""
    kind = kind.removeprefix("zip-")
    if kind != "csv" or plugin_id not in CSV_LAYOUTS:
        return path
    best = ""
    for prefix in CSV_LAYOUTS[plugin_id].columns:
        if (path == prefix or path.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return CSV_LAYOUTS[plugin_id].columns[best] if best else path


def _text_of(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UploadRefused(f"The file is not UTF-8 text (line {line}): save it as UTF-8 (in a spreadsheet, as "
                            "“CSV UTF-8”).", reason="not_utf8", params={"line": line}) from None


def _too_many(count: int) -> UploadRefused:
    return UploadRefused(f"At most {MAX_CASES} cases per reference set; this file has {count}.", reason="too_many_cases",
                         params={"limit": MAX_CASES, "count": count})


def _refused_lines(problems: list[UploadRefused]) -> UploadRefused:
    first = problems[0]
    return UploadRefused(f"{len(problems)} lines cannot be read; line {first.params.get('line')}: {first.message}",
                         reason="bad_lines", params={"lines": len(problems)}, problems=problems[:MAX_LINE_ERRORS])


def _list_cell(cell: str, column: str) -> Any:
    """A cell holding a list: a JSON list when it starts with ``[`` (for names holding a ``|``), else ``a|b``. The
    list's entries are the case checker's to check."""
    if cell.startswith("["):
        try:
            return json.loads(cell)
        except (ValueError, RecursionError):
            raise UploadRefused(f"{column}: a cell that starts with [ is a JSON list, such as [\"a\", \"b\"]; else separate the "
                                "names with |.", reason="list_cell", params={"column": column}) from None
    return [part.strip() for part in cell.split("|") if part.strip()]


def read_csv(plugin_id: str, text: str) -> Upload:
    layout = CSV_LAYOUTS.get(plugin_id)
    if layout is None:
        raise UploadRefused(f"A CSV file is read for {', '.join(sorted(CSV_LAYOUTS))}; for {plugin_id}, upload JSON "
                            "Lines.", reason="csv_not_for_plugin", params={"plugin": plugin_id})
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise UploadRefused("The file is empty.", reason="empty")
        names = [name.strip().lower() for name in header]
        missing = [name for name in layout.required if name not in names
                   and not (name == layout.reference_column and any(column in names for column in layout.list_columns))]
        unknown = [name for name in names if name not in (*layout.required, *layout.optional)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if missing or unknown or repeated:
            raise UploadRefused(
                f"The first line names the columns: {', '.join(layout.required)} (required)"
                f"{', ' + ', '.join(layout.optional) + ' (optional)' if layout.optional else ''}. Missing: "
                f"{', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}; repeated: "
                f"{', '.join(repeated) or 'none'}.", reason="columns",
                params={"required": ", ".join(layout.required), "optional": ", ".join(layout.optional),
                        "missing": ", ".join(missing), "unknown": ", ".join(unknown), "repeated": ", ".join(repeated)})
        upload, problems = Upload(cases=[], kind="csv", plugin_id=plugin_id), []
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num  # a quoted cell may span lines: a row is named by its first
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(names):
                problems.append(UploadRefused(f"{len(cells)} cells where the first line names {len(names)} columns.",
                                              reason="cell_count", params={"line": start, "cells": len(cells),
                                                                           "columns": len(names)}))
                continue
            row = {name: cell.strip() for name, cell in zip(names, cells)}
            case = {"input": layout.make_input(row), "params": {}, "reference": row.get(layout.reference_column)}
            try:
                case.update({name: _list_cell(row[name], name) for name in layout.list_columns if row.get(name)})
            except UploadRefused as refused:
                refused.params["line"] = start
                problems.append(refused)
                continue
            upload.cases.append(case)
            upload.lines.append(start)
            if len(upload.cases) > MAX_CASES:
                raise _too_many(len(upload.cases) + sum(1 for rest in reader if any(c.strip() for c in rest)))
    except csv.Error as exc:
        raise UploadRefused(f"Line {reader.line_num} is not CSV: {exc}.", reason="not_csv",
                            params={"line": reader.line_num}) from None
    if problems:
        raise _refused_lines(problems)
    return upload


def read_json_lines(plugin_id: str, text: str) -> Upload:
    upload, problems = Upload(cases=[], kind="jsonl", plugin_id=plugin_id), []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except (ValueError, RecursionError) as exc:  # nested past what the parser follows: not a case either
            problems.append(UploadRefused(f"Not JSON: {exc}.", reason="not_json", params={"line": number}))
            continue
        upload.cases.append(case)
        upload.lines.append(number)
    if len(upload.cases) > MAX_CASES:
        raise _too_many(len(upload.cases))
    if problems:
        raise _refused_lines(problems)
    return upload


def _zip_member_name(name: str) -> str:
    """A member's name, refused if it could point outside the archive's folder when extracted (absolute, ``..``)."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":") or ".." in normal.split("/"):
        raise UploadRefused(f"The archive holds an unsafe file name: {name!r}.", reason="zip_unsafe_name",
                            params={"name": name[:200]})
    return normal


def read_zip(plugin_id: str, data: bytes) -> Upload:
    """An image set's ZIP: its cases file read as a CSV or JSON Lines upload, each case's reference (an image's file
    name) replaced by that image, as base64 (what the API takes; ``services.checked_cases`` checks it). A missing
    image is named by its line."""
    if len(data) > MAX_ZIP_BYTES:
        raise UploadRefused(f"The file has {len(data)} bytes; at most {MAX_ZIP_BYTES} are taken.", reason="too_large",
                            params={"limit_mib": MAX_ZIP_BYTES // (1024 * 1024)})
    from atelier_platform.evaluation.images import MAX_IMAGE_BYTES

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise UploadRefused("The file is not a ZIP archive that can be read.", reason="not_zip") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise UploadRefused(f"The archive holds {len(members)} files; at most {MAX_ZIP_MEMBERS}.", reason="zip_members",
                            params={"count": len(members), "limit": MAX_ZIP_MEMBERS})
    by_name = {_zip_member_name(info.filename): info for info in members}
    found = [name for name in by_name if posixpath.basename(name).lower() in CASES_FILES]
    if len(found) != 1:
        raise UploadRefused("The archive needs one cases.csv or cases.jsonl beside its images.", reason="zip_cases_file")
    left = MAX_ZIP_UNCOMPRESSED_BYTES
    images: dict[str, str] = {}  # by member: an image named by many cases is inflated (and counted) once

    def read(name: str, limit: int) -> bytes:
        nonlocal left
        try:
            with archive.open(by_name[name]) as member:  # bounded: the header's size is the sender's word
                content = member.read(min(limit, left) + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
            raise UploadRefused(f"{name} cannot be read from the archive.", reason="zip_member_unreadable",
                                params={"name": name[:200]}) from None
        if len(content) > left:
            raise UploadRefused(f"The archive inflates to more than {MAX_ZIP_UNCOMPRESSED_BYTES // 2**20} MiB.",
                                reason="zip_too_large", params={"limit_mib": MAX_ZIP_UNCOMPRESSED_BYTES // 2**20})
        if len(content) > limit:
            raise UploadRefused(f"{name} is larger than {limit // 2**20} MiB.", reason="zip_member_too_large",
                                params={"name": name[:200], "limit_mib": limit // 2**20})
        left -= len(content)
        return content

    cases_name = found[0]
    upload = read_upload(plugin_id, posixpath.basename(cases_name).lower(), read(cases_name, MAX_UPLOAD_BYTES),
                         from_zip=True)
    folder, problems = posixpath.dirname(cases_name), []
    for index, (case, line) in enumerate(zip(upload.cases, upload.lines)):
        image_name = case.get("reference") if isinstance(case, dict) else None
        if not isinstance(image_name, str) or not image_name.strip():
            continue  # the service names the missing reference, with its line
        path = posixpath.normpath(posixpath.join(folder, image_name.strip().replace("\\", "/")))
        if path not in by_name:
            problems.append(UploadRefused(f"No file {image_name!r} in the archive.", reason="zip_missing_image",
                                          params={"line": line, "name": image_name[:200]}))
            continue
        if path not in images:
            images[path] = base64.b64encode(read(path, MAX_IMAGE_BYTES)).decode("ascii")
        case["reference"] = images[path]
    if problems:
        raise _refused_lines(problems)
    upload.kind = "zip-" + upload.kind
    return upload


def read_upload(plugin_id: str, filename: str, data: bytes, *, from_zip: bool = False) -> Upload:
    """The cases of an uploaded file, by its name's ending: ``.csv``, or ``.jsonl`` (``.ndjson``); for an image set,
    a ``.zip`` of its cases file and images (``read_zip``)."""
    ending = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    from atelier_platform.evaluation.services import IMAGE_PLUGINS

    if plugin_id in IMAGE_PLUGINS and not from_zip:
        if ending != "zip":
            raise UploadRefused("For an image set, upload a .zip holding cases.csv or cases.jsonl and the images.",
                                reason="zip_for_images")
        return read_zip(plugin_id, data)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRefused(f"The file has {len(data)} bytes; at most {MAX_UPLOAD_BYTES} are taken.",
                            reason="too_large", params={"limit_mib": MAX_UPLOAD_BYTES // (1024 * 1024)})
    if ending not in ("csv", "jsonl", "ndjson"):
        raise UploadRefused("Upload a .csv or a .jsonl (JSON Lines) file.", reason="file_type")
    text = _text_of(data)
    if not text.strip():
        raise UploadRefused("The file is empty.", reason="empty")
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise UploadRefused(f"Line {line} holds a NUL character.", reason="nul", params={"line": line})
    upload = read_csv(plugin_id, text) if ending == "csv" else read_json_lines(plugin_id, text)
    if not upload.cases:
        raise UploadRefused("The file has no cases (only its header, or blank lines).", reason="no_cases")
    return upload


def create_reference_set_from_upload(project, *, plugin_id: str, name: str, filename: str, data: bytes, actor: str,
                                     user=None, description: str = ""):
    """A reference set of the uploaded file's cases, through ``services.create_reference_set`` (the API's checks,
    its audit entry; nothing saved on any refusal). A refusal of the cases carries ``upload`` (the cases' lines)."""
    from atelier_platform.evaluation import services
    from atelier_platform.jobs.errors import JobServiceError

    services.evaluable_plugin(plugin_id)  # an unknown plugin is said before the file is read for it
    upload = read_upload(plugin_id, filename, data)
    try:
        return services.create_reference_set(project, plugin_id=plugin_id, name=name, cases=upload.cases,
                                             description=description, actor=actor, user=user)
    except JobServiceError as exc:
        exc.upload = upload
        raise


def case_lines(upload: Upload, details: dict) -> list[tuple[int, str, str]]:
    """Each refused field of the file's cases (``details`` as the checker names them, ``cases.3.reference``) as (the
    file's line, its CSV column or, in JSON Lines, its path in the case, "" for the whole case; the message), in the
    file's order. The dashboard words the messages in its language first; the API keeps them."""
    found = []
    for key, messages in details.items():
        parts = key.split(".")
        if len(parts) < 2 or parts[0] != "cases" or not parts[1].isdigit():
            continue
        index, path = int(parts[1]), ".".join(parts[2:])
        line = upload.lines[index] if index < len(upload.lines) else index + 1
        where = column_of(upload.plugin_id, upload.kind, path)
        found.extend((line, where, str(message)) for message in (messages if isinstance(messages, list) else [messages]))
    return sorted(found, key=lambda each: each[0])


def _counted(said: list[str], total: int, noun: str) -> list[str]:
    rest = total - len(said)
    return [*said, f"… and {rest} more {noun}{'s' if rest != 1 else ''}."] if rest > 0 else said


def refusal_lines(error, upload: Upload | None = None) -> list[str] | None:
    """A refused file's problems line by line, in English (``Line 4, reference: ...``), at most ``MAX_LINE_ERRORS`` and
    a count of the rest; None for a refusal that is not about its lines (a taken name, the file as a whole)."""
    if isinstance(error, UploadRefused):
        if error.reason != "bad_lines":
            return None
        said = [f"Line {problem.params.get('line')}: {problem.message}" for problem in error.problems]
        return _counted(said, error.params.get("lines", len(said)), "line")
    if upload is None or getattr(error, "code", "") == "limit_exceeded" or not isinstance(error.details, dict):
        return None
    found = case_lines(upload, error.details)
    if not found:
        return None
    said = [f"Line {line}, {where}: {message}" if where else f"Line {line}: {message}"
            for line, where, message in found[:MAX_LINE_ERRORS]]
    return _counted(said, len(found), "problem")


def upload_reference_set(project, *, plugin_id: str, name: str, filename: str, data: bytes, actor: str, user=None,
                         description: str = ""):
    """``create_reference_set_from_upload`` for the API: a refusal of the file's lines or of its cases names each by
    the file's line and column (``details.file``), as the dashboard does, in English."""
    from atelier_platform.jobs.errors import JobServiceError

    try:
        return create_reference_set_from_upload(project, plugin_id=plugin_id, name=name, filename=filename, data=data,
                                                actor=actor, user=user, description=description)
    except JobServiceError as exc:
        upload = getattr(exc, "upload", None)
        lines = refusal_lines(exc, upload)
        if lines is None:
            raise
        if upload is not None and not isinstance(exc, UploadRefused):
            bad = len({line for line, _, _ in case_lines(upload, exc.details)})
            exc.message = (f"{bad} of the file's {len(upload.cases)} cases do not match the plugin's schema; "
                           "details.file names each problem by its line.")
        exc.details = {"file": lines}  # by the file's lines: its cases' indexes (cases.3) are no line of it
        raise
