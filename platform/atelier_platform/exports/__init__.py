"""Exports as files: rows streamed as CSV or JSON Lines, never built whole in memory.

One writer serves every export (the audit log's, the content library's on the dashboard and on
``GET /api/v1/outputs/``), streamed in the request or written to a file by an export job in the background
(``exports.services``, ``POST /api/v1/exports/``): the rows come from a generator that reads the database in
bounded chunks (``QuerySet.iterator(chunk_size=...)``), and each row is written and sent as it comes.

A CSV file is opened in a spreadsheet as often as it is imported: a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is read there as a formula (``=HYPERLINK(...)`` in a generated
text, or in a prompt anyone could type, runs on the reader's machine). Such a cell is written with a
leading apostrophe, which spreadsheets show as text and which OWASP's advice on CSV injection names.
JSON Lines keeps every value exactly: it is for programs, which do not evaluate cells.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence

from django.http import StreamingHttpResponse

#: The formats an export is asked for by (``?export=``) and their media types.
EXPORT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
EXPORT_FORMATS = tuple(EXPORT_MEDIA_TYPES)

#: How many rows an export reads from the database at a time: what it holds in memory, whatever its length.
EXPORT_CHUNK_SIZE = 500

#: The first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value, *, as_json: bool = False) -> str:
    """``value`` as one CSV cell: a list or an object (and every value of an ``as_json`` column) as its JSON, a
    boolean as ``true`` / ``false`` (as in the JSON Lines), nothing as an empty cell; then guarded against formulas."""
    if as_json or isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = ""
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(rows: Iterable[dict], fields: Sequence[str], *, json_fields: Iterable[str] = ()) -> Iterator[str]:
    """The header, then one CSV line per row (``csv_cell`` each), as each row comes."""
    json_fields = frozenset(json_fields)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield line(fields)
    for row in rows:
        yield line([csv_cell(row[field], as_json=field in json_fields) for field in fields])


def jsonl_lines(rows: Iterable[dict]) -> Iterator[str]:
    """One JSON object per line, as each row comes; text as it is (UTF-8, not escaped)."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, default=str) + "\n"


def export_lines(rows: Iterable[dict], export: str, *, fields: Sequence[str], json_fields: Iterable[str] = ()
                 ) -> Iterator[str]:
    """``rows`` as the lines of a file in ``export`` (one of ``EXPORT_FORMATS``), as each row comes."""
    return jsonl_lines(rows) if export == "jsonl" else csv_lines(rows, fields, json_fields=json_fields)


def streamed_export(rows: Iterable[dict], export: str, *, fields: Sequence[str], filename: str,
                    json_fields: Iterable[str] = ()) -> StreamingHttpResponse:
    """``rows`` as a download in ``export`` (one of ``EXPORT_FORMATS``) named ``filename`` (without its extension)."""
    body = export_lines(rows, export, fields=fields, json_fields=json_fields)
    response = StreamingHttpResponse(body, content_type=EXPORT_MEDIA_TYPES[export])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{export}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
