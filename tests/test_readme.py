"""README.md is what operators and integrators go by: its settings table, its API tables, the routes it names and its
management commands must say what the code does. Each test fails, naming the difference, when one side changes
without the other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand

from atelier_platform.config import AtelierConfig

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SOURCE_FOLDERS = ("platform", "plugins", "workers", "frontend")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def section(title: str) -> str:
    """The text under the heading ``title`` (any level), up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", README, re.M)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(README, match.end())
    return README[match.end(): end.start() if end else len(README)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the Markdown tables in ``text`` (header rows included, separators left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| :]+\|", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def literals(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- settings -----------------------------------------------------------------------------------------------------

def settings_in_code() -> set[str]:
    """The environment variables the code reads: every field of the typed helper (by the name an operator sets: the
    first of its aliases) and the few read directly with ``os.environ``."""
    names = set()
    for name, field in AtelierConfig.model_fields.items():
        alias = field.validation_alias
        names.add(alias.choices[0] if alias is not None else f"ATELIER_{name.upper()}")
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            names.update(re.findall(r"""environ(?:\.get\(|\[)\s*["'](ATELIER_[A-Z0-9_]+)["']""", path.read_text()))
    return names


def settings_table() -> list[tuple[list[str], str]]:
    rows = table_rows(section("Configuration"))
    assert rows[0][:2] == ["variable", "default"]
    return [([name for name in literals(row[0]) if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)], row[1]) for row in rows[1:]]


def test_every_setting_the_code_reads_is_in_the_configuration_table_and_every_one_there_is_read():
    documented = {name for names, _ in settings_table() for name in names}
    in_code = settings_in_code()
    assert not in_code - documented, f"read by the code, missing from the README's Configuration table: {sorted(in_code - documented)}"
    assert not documented - in_code, f"in the README's Configuration table, read by no code: {sorted(documented - in_code)}"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_configuration_table_gives_the_code_s_defaults():
    fields = {(field.validation_alias.choices[0] if field.validation_alias else f"ATELIER_{name.upper()}"): field
              for name, field in AtelierConfig.model_fields.items()}
    wrong = []
    for names, default in settings_table():
        names = [name for name in names if name in fields]
        if default.startswith(("unset", "empty")):  # nothing set: no value of its own
            wrong += [f"{name}: README says {default!r}, code {fields[name].default!r}"
                      for name in names if fields[name].default not in (None, "")]
            continue
        values = literals(default)
        if len(values) != len(names):  # described in words ("80% of the GPU", "as ATELIER_PRODUCTION")
            continue
        for name, value in zip(names, values):
            code = fields[name].default
            if code is None or isinstance(code, Path):  # resolved at run time (from the data folder, the models root)
                continue
            if _shown(code) != value:
                wrong.append(f"{name}: README says {value!r}, code {_shown(code)!r}")
    assert not wrong, wrong


# --- the API --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema_operations() -> set[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path) for path, operations in schema["paths"].items()
            for method in operations if method.upper() in METHODS}


def _matrix() -> dict[tuple[str, str], tuple[str, ...]]:
    """Who may call what, as ``tests/api/test_permissions_matrix.py`` checks it by calling every endpoint."""
    from tests.api.test_permissions_matrix import MATRIX

    # "a b" (both) and "a|b" (either) alike: the README's cell names them with "and" / "or"
    return {(method, path.replace("{pk}", "{id}")): tuple(sorted(re.split(r"[\s|]+", scope))) if scope else ()
            for (method, path), (scope, _) in MATRIX.items()}


def _pattern(path: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)))


def _operations_named(cell: str) -> list[tuple[str, str]]:
    """``GET /api/v1/api-keys/[{id}/]`` and ``GET /api/v1/usage/?from=...`` -> the operations they name."""
    found = []
    for method, path in re.findall(rf"`({'|'.join(METHODS)}) (/[^`\s]*)`", cell):
        path = path.split("?")[0]
        optional = re.fullmatch(r"(.*)\[(.*)\]", path)
        found += [(method, optional.group(1)), (method, optional.group(1) + optional.group(2))] if optional else [(method, path)]
    return found


def _scopes(cell: str) -> tuple[str, ...]:
    return () if cell == "none" else tuple(sorted(literals(cell)))


def test_every_endpoint_table_lists_each_operation_with_the_scope_it_needs(schema_operations):
    rows = table_rows(section("Every endpoint"))
    assert rows[0] == ["operation", "scope", "described in"]
    listed = {}
    for row in rows[1:]:
        (operation,) = _operations_named(row[0])
        assert operation not in listed, f"{operation} is listed twice"
        listed[operation] = _scopes(row[1])
    expected = schema_operations | {("GET", "/api/v1/schema/"), ("GET", "/api/v1/docs/")}
    assert not expected - set(listed), f"operations missing from the README's endpoint table: {sorted(expected - set(listed))}"
    assert not set(listed) - expected, f"operations in the README's endpoint table that do not exist: {sorted(set(listed) - expected)}"
    matrix = _matrix()
    wrong = {operation: (scopes, matrix[operation]) for operation, scopes in listed.items() if matrix[operation] != scopes}
    assert not wrong, f"README scope != the permission matrix's: {wrong}"


def test_every_api_table_of_the_readme_gives_the_scope_the_endpoint_needs():
    """The tables that describe endpoints with their scope (the REST API's, the OpenAI-compatible one's) agree with
    the permission matrix, which the permission tests hold to the code."""
    matrix = _matrix()
    checked, wrong = 0, []
    for row in table_rows(README):
        if len(row) < 2 or not row[1] or not all(re.fullmatch(r"[a-z]+(:[a-z]+)?", scope) for scope in literals(row[1])):
            continue
        for method, path in _operations_named(row[0]):
            known = [operation for operation in matrix if operation[0] == method and _pattern(operation[1]).fullmatch(path)]
            assert known, f"{method} {path}: no such endpoint"
            checked += 1
            if matrix[known[0]] != _scopes(row[1]):
                wrong.append(f"{method} {path}: README {_scopes(row[1])}, code {matrix[known[0]]}")
    assert checked > 80 and not wrong, wrong


def test_every_route_the_readme_names_exists(schema_operations):
    routes = schema_operations | {("GET", "/api/v1/schema/"), ("GET", "/api/v1/docs/")}
    patterns = [(method, _pattern(path)) for method, path in routes]
    missing = []
    for method, path in re.findall(rf"(?:({'|'.join(METHODS)})\s+)?`?(/(?:api/)?v1/[^\s`\"')]*)", README):
        path = re.sub(r"\[.*\]$", "", path.split("?")[0].rstrip(".,;:"))
        if method:
            found = any(method == known and pattern.fullmatch(path) for known, pattern in patterns)
        else:  # a route, or the folder of some (``/api/v1/evaluation/``)
            found = any(pattern.fullmatch(path) or pattern.pattern.startswith(re.escape(path)) for _, pattern in patterns)
        if not found:
            missing.append(f"{method or ''} {path}".strip())
    assert not missing, f"routes the README names that do not exist: {sorted(set(missing))}"


# --- management commands ----------------------------------------------------------------------------------------

def test_the_management_commands_table_lists_every_command_and_option():
    rows = table_rows(section("Management commands"))
    assert rows[0] == ["command", "options", "does"]
    documented = {literals(row[0])[0]: {option for option in literals(row[1]) if option.startswith("--")} for row in rows[1:]}
    standard = {option for action in BaseCommand().create_parser("manage.py", "x")._actions for option in action.option_strings}
    ours = {name: app for name, app in get_commands().items() if app.startswith("atelier_")}
    assert set(documented) == set(ours), f"README's commands {sorted(documented)} != Atelier's {sorted(ours)}"
    for name, app in ours.items():
        parser = load_command_class(app, name).create_parser("manage.py", name)
        options = {option for action in parser._actions for option in action.option_strings
                   if option.startswith("--") and option not in standard}
        assert documented[name] == options, f"manage.py {name}: README {sorted(documented[name])}, code {sorted(options)}"


# --- queues -------------------------------------------------------------------------------------------------------

def test_the_exports_section_names_the_queue_exports_run_on():
    """Exports moved to a queue and a worker of their own: an operator told they hold the ``platform`` queue's
    workers gives that queue more workers, which then run no export at all."""
    from atelier_platform.celery_app import RUN_EXPORT_TASK, app

    queue = app.conf.task_routes[RUN_EXPORT_TASK]["queue"]
    named = re.findall(r"(?:on|of) the `([a-z-]+)`\s+queue", section("Exports in the background"))
    assert named and set(named) == {queue}, f"the section says exports run on {named}; they run on {queue!r}"
