"""A form generated from a plugin's JSON Schema (its ``input_schema`` and ``params_schema``).

Each top-level property becomes one field: strings a text box (a text area when long), numbers
a number box with the schema's bounds, booleans a checkbox, enums a select (each choice in words where
``labels`` has some, its value sent as it is), anything nested
(lists, objects) a JSON text area, except a list of chat messages (objects with a ``role`` among
its choices and a ``content`` string), which gets a messages editor: a text area for the user's
message, one for an optional system message, and the earlier turns (if any) as JSON. The form only turns what the browser sent into the JSON the
plugin expects; validation stays with the plugin's own models, through ``submit_job``, whose
field errors (``input.text``) come back next to the field they name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from atelier_frontend.labels import choice_label, plugin_words
from atelier_platform.catalog.schema_texts import resolve_ref

LONG_TEXT = 200  # strings allowed to be longer than this get a text area


@dataclass
class Field:
    name: str  # "input.text"
    label: str
    kind: str  # text, textarea, integer, number, boolean, select, json, messages
    required: bool
    description: str = ""
    default: Any = None
    choices: list[Any] = field(default_factory=list)
    minimum: Any = None
    maximum: Any = None
    step: str = "any"
    nullable: bool = False
    value: Any = ""  # what the widget shows
    errors: list[str] = field(default_factory=list)
    example: str = ""  # a JSON field's expected shape, shown under it (``example_of``)

    @property
    def options(self) -> list[tuple[Any, str]]:
        """A select's choices with what it shows of each: ``("friendly", "亲切")``; the value is what it sends."""
        return [(choice, choice_label(self.name.split(".", 1)[1], choice)) for choice in self.choices]

    @property
    def widget_id(self) -> str:
        return "f-" + self.name.replace(".", "-")


_resolve = resolve_ref  # shared with the platform's written_texts (catalog.schema_texts)


def _field_of(section: str, name: str, prop: dict, root: dict, required: bool) -> Field:
    prop = _resolve(prop, root)
    nullable = False
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        kinds = [_resolve(o, root) for o in options]
        non_null = [o for o in kinds if o.get("type") != "null"]
        nullable = len(non_null) < len(kinds)
        merged = dict(non_null[0]) if len(non_null) == 1 else {"type": "object"}
        merged.update({k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")})
        prop = merged
    kind_of = prop.get("type")
    if "enum" in prop or "const" in prop:
        kind = "select"
    elif kind_of == "string":
        # long text gets a text area; so does unbounded text, unless it is optional (an id, a name)
        kind = "textarea" if prop.get("maxLength", 0 if nullable else 10_000) > LONG_TEXT else "text"
    elif kind_of == "integer":
        kind = "integer"
    elif kind_of == "number":
        kind = "number"
    elif kind_of == "boolean":
        kind = "boolean"
    elif kind_of == "array" and _message_roles(prop, root):
        kind = "messages"
    else:
        kind = "json"
    result = Field(
        name=f"{section}.{name}",
        # the plugin's English, in the page's language where the dashboard translates it (the built-in plugins')
        label=plugin_words(prop.get("title") or name.replace("_", " ").capitalize()),
        kind=kind,
        required=required,
        description=plugin_words(prop.get("description", "")),
        default=prop.get("default"),
        choices=_message_roles(prop, root) if kind == "messages" else list(prop.get("enum") or ([prop["const"]] if "const" in prop else [])),
        minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
        maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
        step="1" if kind == "integer" else "any",
        nullable=nullable,
    )
    result.value = _shown(result, result.default)
    if kind == "json":
        result.example = json.dumps(example_of(prop, root), ensure_ascii=False)
    return result


#: How many properties an example of an object with no required ones shows: enough to see its shape.
EXAMPLE_PROPERTIES = 2


def example_of(schema: dict, root: dict, depth: int = 0) -> Any:
    """A small value of the shape ``schema`` asks for, to show under a JSON field (the form gives no other hint):
    its own ``examples`` where it has some, else one item of a list and the required keys of an object (its
    first few when none is required), with "…" for a text to write and the lowest number allowed."""
    schema = _resolve(schema if isinstance(schema, dict) else {}, root)
    if schema.get("examples"):
        return schema["examples"][0]
    options = [_resolve(o, root) for o in schema.get("anyOf") or schema.get("oneOf") or []]
    if options:
        schema = next((o for o in options if o.get("type") != "null"), options[0])
    if "enum" in schema or "const" in schema:
        return (schema.get("enum") or [schema.get("const")])[0]
    kind = schema.get("type")
    if depth > 3:  # a schema that refers to itself: stop somewhere readable
        return {} if kind == "object" else "…"
    if kind == "array":
        return [example_of(schema.get("items") or {}, root, depth + 1)]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        names = [name for name in properties if name in set(schema.get("required", []))] or list(properties)[:EXAMPLE_PROPERTIES]
        if not names and isinstance(schema.get("additionalProperties"), dict):
            return {"…": example_of(schema["additionalProperties"], root, depth + 1)}
        return {name: example_of(properties[name], root, depth + 1) for name in names}
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return low if isinstance(low, (int, float)) else 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "…"


def _message_roles(prop: dict, root: dict) -> list[str]:
    """The roles a list of chat messages allows (it must allow "user"), or [] if it is not one."""
    items = _resolve(prop.get("items") or {}, root)
    properties = items.get("properties") or {}
    role, content = _resolve(properties.get("role") or {}, root), _resolve(properties.get("content") or {}, root)
    roles = role.get("enum") or ([role["const"]] if "const" in role else [])
    if items.get("type") == "object" and content.get("type") == "string" and "user" in roles \
            and set(properties) <= {"role", "content"}:
        return list(roles)
    return []


def _split_messages(value: Any) -> dict[str, str]:
    """Messages as the editor shows them: a leading system message, the last user message, and
    what lies between (earlier turns) as JSON."""
    messages = list(value) if isinstance(value, list) else []
    shown = {"system": "", "user": "", "history": ""}
    if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
        shown["system"] = str(messages.pop(0).get("content", ""))
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "user":
        shown["user"] = str(messages.pop().get("content", ""))
    if messages:
        shown["history"] = json.dumps(messages, ensure_ascii=False, indent=2)
    return shown


def _shown(f: Field, value: Any) -> Any:
    if f.kind == "messages":
        return _split_messages(value)
    if value is None:
        return "" if f.kind != "boolean" else False
    if f.kind == "json":
        return json.dumps(value, ensure_ascii=False, indent=2)
    if f.kind == "boolean":
        return bool(value)
    return value


def fields_for(plugin_info: dict) -> list[Field]:
    """The form's fields: the plugin's input, then its params."""
    result = []
    for section, schema in (("input", plugin_info["input_schema"]), ("params", plugin_info["params_schema"])):
        required = set(schema.get("required", []))
        for name, prop in (schema.get("properties") or {}).items():
            result.append(_field_of(section, name, prop, schema, name in required))
    return result


def prefill(fields: list[Field], input_data: dict, params: dict) -> None:
    """Show an earlier job's values (``Reuse``)."""
    for f in fields:
        section, name = f.name.split(".", 1)
        source = input_data if section == "input" else params
        if name in source:
            f.value = _shown(f, source[name])


def parse(fields: list[Field], posted) -> tuple[dict, dict, bool]:
    """The posted form as ``(input, params, ok)``; a value that cannot be read gets a field error."""
    data: dict[str, dict] = {"input": {}, "params": {}}
    ok = True
    for f in fields:
        section, name = f.name.split(".", 1)
        raw = posted.get(f.name, "")
        if f.kind == "messages":
            f.value = {part: posted.get(f"{f.name}.{part}", "") for part in ("system", "user", "history")}
            try:
                messages = _joined_messages(f.value)
            except ValueError as exc:
                ok = False
                f.errors.append(_("Earlier turns: not valid JSON: %(error)s.") % {"error": exc})
                continue
            if not f.value["user"].strip():
                ok = False
                f.errors.append(_("Write the user's message."))
                continue
            data[section][name] = messages
            continue
        if f.kind == "boolean":
            f.value = posted.get(f.name) == "on"
            data[section][name] = f.value
            continue
        f.value = raw
        if raw.strip() == "" and f.kind not in ("text", "textarea"):
            continue  # left empty: the plugin's default applies (or its "field required" error)
        if raw == "" and not f.required:
            continue
        try:
            if f.kind == "integer":
                data[section][name] = int(raw)
            elif f.kind == "number":
                data[section][name] = float(raw)
            elif f.kind == "json":
                data[section][name] = _loads(raw)
            elif f.kind == "select":
                data[section][name] = _choice(f, raw)
            else:
                data[section][name] = raw
        except (ValueError, TypeError) as exc:
            ok = False
            f.errors.append(_read_error(f, exc))
    return data["input"], data["params"], ok


def whole_number(value) -> int | None:
    """A posted number of ASCII digits (an id, a priority), else None: ``str.isdigit`` also takes "²",
    which ``int`` refuses, and "١٢", which it reads as 12."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def _loads(raw: str) -> Any:
    """``json.loads``, with JSON nested deeper than the API takes (``MAX_DEPTH``, see ``api.parsers``) refused
    like any other unreadable text."""
    from atelier_platform.api.parsers import MAX_DEPTH, depth_of

    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(_("nested too deeply")) from None
    if depth_of(value) > MAX_DEPTH:
        raise ValueError(_("nested too deeply"))
    return value


def _joined_messages(shown: dict[str, str]) -> list[dict]:
    history = _loads(shown["history"]) if shown["history"].strip() else []
    if not isinstance(history, list):
        raise ValueError(_("give a list of {role, content} objects"))
    system = [{"role": "system", "content": shown["system"]}] if shown["system"].strip() else []
    return [*system, *history, {"role": "user", "content": shown["user"]}]


def _choice(f: Field, raw: str) -> Any:
    for choice in f.choices:
        if str(choice) == raw:
            return choice
    raise ValueError(raw)


def _read_error(f: Field, exc: Exception) -> str:
    if f.kind == "integer":
        return _("Enter a whole number.")
    if f.kind == "number":
        return _("Enter a number.")
    if f.kind == "json":
        return _("Not valid JSON: %(error)s.") % {"error": exc}
    return _("Choose one of the options.")


def attach_errors(fields: list[Field], details: dict[str, list[str]]) -> list[str]:
    """Put the service's errors on the fields they name; return those that name no field."""
    rest = []
    by_name = {f.name: f for f in fields}
    for location, messages in details.items():
        parts = location.split(".")
        target = by_name.get(".".join(parts[:2])) if len(parts) >= 2 else None
        if target is None:
            rest.extend(f"{location}: {m}" for m in messages)
            continue
        inner = ".".join(parts[2:])
        target.errors.extend(f"{inner}: {m}" if inner else m for m in messages)
    return rest
