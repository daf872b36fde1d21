"""The one CSV / JSON Lines writer of every export (atelier_platform.exports): what a cell holds, formulas kept
from spreadsheets, rows sent as they come."""

from __future__ import annotations

import csv
import io
import json

import pytest

from atelier_platform.exports import csv_cell, csv_lines, jsonl_lines, streamed_export
from atelier_platform.moderation import audit
from tests.api.helpers import build_job


@pytest.mark.parametrize("value, cell", [
    ("=SUM(A1:A2)", "'=SUM(A1:A2)"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(1)", "'@SUM(1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("plain", "plain"), (" =not first", " =not first"), ("", ""), (None, ""), (3, "3"), (-3, "'-3"),
    (True, "true"), (False, "false"), (["=a", "b"], '["=a", "b"]'), ({"k": "v"}, '{"k": "v"}'), ("退货", "退货"),
])
def test_a_cell(value, cell):
    assert csv_cell(value) == cell


def test_a_json_column_is_json_whatever_it_holds():
    assert csv_cell(None, as_json=True) == "null" and csv_cell("x", as_json=True) == '"x"'


def test_lines_come_as_the_rows_do():
    def rows():
        yield {"a": "=1", "b": ["x"]}
        raise AssertionError("read past the first row before it was asked for")

    lines = csv_lines(rows(), ["a", "b"], json_fields=("b",))
    assert next(lines) == "a,b\r\n" and next(lines) == "'=1,\"[\"\"x\"\"]\"\r\n"
    assert next(jsonl_lines(rows())) == '{"a": "=1", "b": ["x"]}\n'  # JSON keeps every value as it is


def test_a_download_names_its_file():
    response = streamed_export(iter([{"a": "b"}]), "csv", fields=["a"], filename="things-demo")
    assert response.streaming and response["Content-Disposition"] == 'attachment; filename="things-demo.csv"'
    assert response["Content-Type"] == "text/csv; charset=utf-8" and b"".join(response.streaming_content) == b"a\r\nb\r\n"


@pytest.mark.django_db
def test_the_audit_logs_csv_export_is_guarded_too(project, make_key, client_for):
    audit.record(project, "=HYPERLINK(\"https://evil.example\")", "job_cancelled", build_job(project))
    owner = client_for(make_key(project, ["admin"]).raw)
    body = b"".join(owner.get("/api/v1/audit/", {"export": "csv"}).streaming_content).decode()
    row, own = list(csv.DictReader(io.StringIO(body)))  # the export's own event last (exports.trail)
    assert own["action"] == "export_streamed"
    assert row["actor"] == "'=HYPERLINK(\"https://evil.example\")" and row["action"] == "job_cancelled"
    assert json.loads(row["before"]) is None
    lines = b"".join(owner.get("/api/v1/audit/", {"export": "jsonl"}).streaming_content).decode().splitlines()
    assert json.loads(lines[0])["actor"] == "=HYPERLINK(\"https://evil.example\")"
    assert owner.get("/api/v1/audit/", {"export": "xml"}).status_code == 400
