"""Which parts of an output a reviewer may change ("edit, then approve" in the review queue).

An output holds two kinds of fields: the content a person would edit (a chat reply, the copy of an ad)
and what the plugin recorded about the run (token counts, ids, ranks and scores, seeds, hashes, sources,
labels). A reviewer may change the first and never the second: token counts are what the usage report
bills, ids link to other records (a conversation, a catalogue item), and hashes, seeds and labels describe
the files and how they were made.

A plugin marks each field a reviewer may change, in its ``Output`` model::

    from atelier_sdk import editable

    class Output(BaseModel):
        reply: str = editable(description="the answer")  # a reviewer may rewrite it
        usage: Usage                                      # recorded: never changed by a review

Only marked fields are editable. A plugin that marks nothing has outputs a reviewer approves, rejects or
sends back for regeneration, but does not edit: the platform cannot know which of an unknown plugin's fields
are bookkeeping, and a field left editable by mistake would be falsified silently, while a field protected
by mistake is refused loudly (the refusal names it) and marked in the next release.

- ``editable(...)`` is pydantic's ``Field(...)`` with ``{"editable": true}`` in its JSON Schema, which
  ``GET /api/v1/plugins/`` publishes; ``Field(json_schema_extra={"editable": True})`` is the same.
- A marked field may change as a whole, whatever it holds (a list may grow or shrink).
- Inside a field that is not marked, a nested model (optional or not) and a list of models are looked into,
  so that a marked field of theirs can change (each variant's ``text``, not its ``source``); such a list
  keeps its items, in their order. Anything else (numbers, strings, dicts, lists of plain values, unions of
  models) must stay as it is.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: The JSON Schema keyword (and ``json_schema_extra`` key) that marks an output field editable by a reviewer.
EDITABLE = "editable"

_MISSING = object()


def editable(default: Any = PydanticUndefined, **field: Any) -> Any:
    """``pydantic.Field(default, **field)`` for an output field a reviewer may change in the review queue."""
    extra = field.pop("json_schema_extra", None) or {}
    if not isinstance(extra, dict):
        raise TypeError("editable() takes json_schema_extra as a dict, to add its own key to it")
    return Field(default, json_schema_extra={**extra, EDITABLE: True}, **field)


def is_editable(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get(EDITABLE) is True


def editable_paths(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` a reviewer may change, as paths of its JSON (``reply``,
    ``recommendations[].copy[].text``); ``[]`` stands for every item of a list. Empty: nothing is editable."""
    paths: list[str] = []

    def walk(current: type[BaseModel], prefix: str, seen: frozenset) -> None:
        for name, field in current.model_fields.items():
            path = prefix + _json_key(current, name, field)
            if is_editable(field):
                paths.append(path)
                continue
            inner, many = _nested_model(field.annotation)
            # A model that holds itself is listed once; its marks hold at every depth (protected_changes).
            if inner is not None and inner not in seen:
                walk(inner, path + ("[]." if many else "."), seen | {inner})

    walk(model, "", frozenset({model}))
    return paths


def protected_changes(model: type[BaseModel], original: Any, edited: Any) -> list[str]:
    """Where ``edited`` differs from ``original`` outside the fields a reviewer may change, as dotted paths
    with list indices (``usage.prompt_tokens``, ``recommendations.0.copy.1.source``), in the order of the
    model's fields. Both are outputs as ``model.model_dump(mode="json")`` writes them; [] when every change
    is in editable fields; ``""`` (the whole output) when one of them is not an object at all."""
    changes: list[str] = []
    _compare(model, original, edited, "", changes)
    return changes


def _compare(model: type[BaseModel], original: Any, edited: Any, prefix: str, changes: list[str]) -> None:
    if not isinstance(original, dict) or not isinstance(edited, dict):
        if original != edited:
            changes.append(prefix.rstrip("."))
        return
    known = set()
    for name, field in model.model_fields.items():
        key = _json_key(model, name, field)
        known.add(key)
        if is_editable(field):
            continue
        path = prefix + key
        before, after = original.get(key, _MISSING), edited.get(key, _MISSING)
        inner, many = _nested_model(field.annotation)
        if inner is not None and many and isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
            for index, (item_before, item_after) in enumerate(zip(before, after)):
                _compare(inner, item_before, item_after, f"{path}.{index}.", changes)
        elif inner is not None and not many and isinstance(before, dict) and isinstance(after, dict):
            _compare(inner, before, after, f"{path}.", changes)
        elif before != after:  # a plain value, or a list that gained, lost or swapped items, or a model set or unset
            changes.append(path)
    # Keys the model does not name (a model with extra="allow" keeps them): recorded as they came, never edited.
    for key in sorted(set(original) | set(edited), key=str):
        if key not in known and original.get(key, _MISSING) != edited.get(key, _MISSING):
            changes.append(f"{prefix}{key}")


def _json_key(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The key of a field in ``model_dump(mode="json")``: its alias where the model serialises by alias."""
    if model.model_config.get("serialize_by_alias") and field.serialization_alias:
        return field.serialization_alias
    return name


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """``(Model, many)`` for an annotation that holds a pydantic model: ``Model``, ``Model | None``
    (many false), ``list[Model]``, ``Sequence[Model]``, ``tuple[Model, ...]`` (many true); else ``(None, False)``."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) or (origin is not None and getattr(origin, "__name__", "") in ("Sequence", "MutableSequence")):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return None, False
        item = _unwrap(args[0]) if args else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None, False


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` as ``X``; ``X | None`` as ``X`` (a union of more than one type stays as it is)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation
