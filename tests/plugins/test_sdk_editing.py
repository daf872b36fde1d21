"""``atelier_sdk.editable``: which output fields a reviewer may change, read from the plugin's own model, without
Django or a database."""

from __future__ import annotations

from typing import Annotated, Optional, Sequence

import pytest
from atelier_sdk import EDITABLE, editable, editable_paths, is_editable, protected_changes
from pydantic import BaseModel, ConfigDict, Field


class Note(BaseModel):
    text: str = editable()
    author: str


class Stats(BaseModel):
    tokens: int


class Entry(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    rank: int
    notes_list: list[Note] = Field(alias="notes")


class Output(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str = editable(max_length=50, description="headline")
    tags: list[str] = Field(default_factory=list, json_schema_extra={"editable": True})
    entries: list[Entry] = []
    pinned: Optional[Note] = None
    history: Sequence[Note] = ()
    stats: Stats
    raw: dict = {}
    scored: Annotated[list[Note], Field(description="annotated")] = []


def dump(**changes):
    base = Output(title="A", tags=["x"], entries=[Entry(rank=1, notes=[Note(text="n", author="bot")])],
                  pinned=Note(text="p", author="bot"), stats=Stats(tokens=3), raw={"k": 1},
                  scored=[Note(text="s", author="bot")])
    return {**base.model_dump(mode="json"), **changes}


def test_editable_is_a_field_with_a_mark_in_its_json_schema():
    schema = Output.model_json_schema()
    assert schema["properties"]["title"] == {"title": "Title", "type": "string", "maxLength": 50,
                                             "description": "headline", EDITABLE: True}
    assert is_editable(Output.model_fields["title"]) and is_editable(Output.model_fields["tags"])
    assert not is_editable(Output.model_fields["stats"])
    with pytest.raises(TypeError):
        editable(json_schema_extra=lambda schema: None)


def test_the_paths_a_reviewer_may_change_go_into_models_and_lists_of_them():
    assert editable_paths(Output) == ["title", "tags", "entries[].notes[].text", "pinned.text", "history[].text",
                                      "scored[].text"]
    assert editable_paths(Stats) == []


def test_changes_in_editable_fields_are_no_protected_changes():
    original = dump()
    edited = dump(title="B", tags=["y", "z"], pinned={"text": "q", "author": "bot"},
                  entries=[{"rank": 1, "notes": [{"text": "m", "author": "bot"}]}])
    assert protected_changes(Output, original, edited) == []


@pytest.mark.parametrize("changes, paths", [
    ({"stats": {"tokens": 4}}, ["stats.tokens"]),
    ({"raw": {"k": 2}}, ["raw"]),
    ({"entries": [{"rank": 2, "notes": [{"text": "n", "author": "me"}]}]}, ["entries.0.rank", "entries.0.notes.0.author"]),
    ({"entries": []}, ["entries"]),
    ({"pinned": None}, ["pinned"]),
    ({"pinned": {"text": "p", "author": "me"}}, ["pinned.author"]),
    ({"scored": [{"text": "s", "author": "me"}]}, ["scored.0.author"]),
    ({"surprise": 1}, ["surprise"]),
], ids=["nested-number", "dict", "list-of-models", "list-length", "model-unset", "optional-model", "annotated", "extra-key"])
def test_every_other_change_is_named_by_its_path(changes, paths):
    assert protected_changes(Output, dump(), dump(**changes)) == paths


def test_a_model_that_holds_itself_is_listed_once_and_compared_at_every_depth():
    class Node(BaseModel):
        label: str = editable()
        weight: int = 0
        children: list["Node"] = []

    Node.model_rebuild()
    assert editable_paths(Node) == ["label"]
    original = {"label": "a", "weight": 1, "children": [{"label": "b", "weight": 2, "children": []}]}
    relabelled = {"label": "z", "weight": 1, "children": [{"label": "y", "weight": 2, "children": []}]}
    assert protected_changes(Node, original, relabelled) == []
    heavier = {"label": "a", "weight": 1, "children": [{"label": "b", "weight": 3, "children": []}]}
    assert protected_changes(Node, original, heavier) == ["children.0.weight"]


def test_the_built_in_plugins_let_reviewers_change_their_text_only():
    from atelier_plugins.chatbot.plugin import ChatbotOutput
    from atelier_plugins.image.plugin import ImageOutput
    from atelier_plugins.recommender_copy.schemas import RecommenderOutput

    assert editable_paths(ChatbotOutput) == ["reply"]
    assert editable_paths(RecommenderOutput) == ["recommendations[].copy[].text"]
    assert editable_paths(ImageOutput) == []


def test_an_output_that_is_not_an_object_is_a_change_of_the_whole():
    assert protected_changes(Stats, ["not", "an", "object"], {"tokens": 3}) == [""]
