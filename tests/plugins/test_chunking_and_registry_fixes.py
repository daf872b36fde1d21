"""Long paragraphs without sentence ends reach the index whole; duplicate entry points never hide a plugin."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from atelier_sdk import PluginRegistry

from atelier_plugins.text.chunking import chunk_markdown
from tests.support.plugins import ReverseText


def chunk_texts(document: str, max_chars: int = 600) -> list[str]:
    texts = [chunk.text for chunk in chunk_markdown(document, max_chars=max_chars)]
    assert all(len(text) <= max_chars for text in texts), [len(text) for text in texts]
    return texts


def without_spaces(text: str) -> str:
    return "".join(text.split())


def test_a_long_list_without_blank_lines_reaches_the_chunks_row_by_row():
    rows = [f"- Zone {n}: delivery to region {n} costs {n + 4} dollars and takes {n + 2} working days" for n in range(1, 13)]
    texts = chunk_texts("# Shipping rates\n\n" + "\n".join(rows))
    # Cut at line breaks: every row is in exactly one chunk, none lost or split between two.
    assert [sum(row in text for text in texts) for row in rows] == [1] * len(rows)


def test_chinese_written_with_commas_is_cut_at_commas_and_kept_whole():
    clauses = [f"第{n}区的标准配送需要{n + 2}个工作日" for n in range(1, 60)]
    paragraph = "，".join(clauses) + "。"
    texts = chunk_texts("# 配送\n\n" + paragraph)
    assert "".join(without_spaces(text) for text in texts) == paragraph
    assert all(text.endswith(("，", "。")) for text in texts)


def test_a_paragraph_with_no_break_at_all_is_cut_by_length_and_nothing_is_lost():
    token = "".join(chr(0x4E00 + n % 500) for n in range(1000))  # no spaces, no punctuation
    texts = chunk_texts(f"intro\n\n{token} tail", max_chars=300)
    assert without_spaces("".join(texts)) == without_spaces(f"intro{token}tail")


GROUP = "atelier.plugins"
WORKING = EntryPoint(name="reverse_text", value="tests.support.plugins:ReverseText", group=GROUP)
BROKEN = EntryPoint(name="reverse_text", value="tests.support.no_such_module:ReverseText", group=GROUP)
BROKEN_AGAIN = EntryPoint(name="reverse_text", value="tests.support.no_such_module_either:ReverseText", group=GROUP)


@pytest.mark.parametrize("order", [[WORKING, BROKEN], [BROKEN, WORKING]], ids=["working_first", "broken_first"])
def test_a_broken_duplicate_entry_point_keeps_the_working_plugin_and_is_still_reported(order):
    registry = PluginRegistry.discover(entry_point_list=order)
    assert registry.get("reverse_text") is ReverseText
    assert [p.manifest.id for p in registry.available()] == ["reverse_text"]
    assert {(r.state, r.source) for r in registry.records()} == {
        ("ok", "entry point tests.support.plugins:ReverseText"),
        ("broken", "entry point tests.support.no_such_module:ReverseText"),
    }


def test_two_broken_entry_points_of_one_name_are_both_reported():
    registry = PluginRegistry.discover(entry_point_list=[BROKEN, BROKEN_AGAIN])
    assert registry.get("reverse_text") is None
    broken = [r for r in registry.records() if r.state == "broken"]
    assert [r.source for r in broken] == [
        "entry point tests.support.no_such_module:ReverseText",
        "entry point tests.support.no_such_module_either:ReverseText",
    ]
    assert all("No module named" in r.error for r in broken)


@pytest.mark.timeout(60, method="signal")  # the check: the old patterns ran for minutes on these, now milliseconds
@pytest.mark.parametrize("hostile", ["<script" * 70_000, "<h1>" * 120_000, "<p" * 240_000, "<" * 480_000],
                         ids=["unclosed-scripts", "unclosed-headings", "unclosed-blocks", "bare-angles"])
def test_html_that_never_closes_its_tags_is_read_in_one_pass(hostile):
    """A knowledge document may be 500,000 characters of HTML: patterns that searched to the end of the text
    from every unclosed "<" took quadratic time, minutes of a CPU worker for one such upload."""
    from atelier_plugins.text.chunking import html_to_text

    assert isinstance(html_to_text(hostile), str)


def test_unclosed_tags_keep_what_follows_them_but_an_unclosed_script_runs_to_the_end():
    from atelier_plugins.text.chunking import html_to_text

    assert "after" in html_to_text("<h1>title<p>body<p after") and "body" in html_to_text("<h1>title<p>body<p after")
    assert html_to_text("<p>before</p><script>steal()</p>after").strip() == "before"  # as a browser reads it
