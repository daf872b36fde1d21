"""Content as HTML: any JSON value as a readable tree, with screening's findings marked in it.

Screening reports name each finding's field (``content.reply``, ``input.text``) and, for text,
the characters (``start``/``end``). Those spans are wrapped in ``<mark>`` with the category, so
a reviewer sees at once which words were flagged and why.
"""

from __future__ import annotations

from typing import Any

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from atelier_frontend.labels import category_label

Spans = dict[str, list[tuple[int, int, str]]]


def spans_of(*reports: dict | None) -> Spans:
    """``{field: [(start, end, category), ...]}`` from screening reports."""
    spans: Spans = {}
    for report in reports:
        for finding in (report or {}).get("findings", []):
            for evidence in finding.get("evidence", []):
                if isinstance(evidence.get("start"), int) and isinstance(evidence.get("end"), int):
                    spans.setdefault(finding.get("field", ""), []).append(
                        (evidence["start"], evidence["end"], finding.get("category", "")))
    return spans


def highlight(text: str, spans: list[tuple[int, int, str]]) -> SafeString:
    """``text`` escaped, with every span marked (overlapping spans merge into the first)."""
    out, position = [], 0
    for start, end, category in sorted(spans):
        start, end = max(start, position), min(end, len(text))
        if end <= start:
            continue
        out.append(escape(text[position:start]))
        out.append(format_html('<mark class="flag" title="{}" data-category="{}">{}</mark>',
                               category_label(category), category, text[start:end]))
        position = end
    out.append(escape(text[position:]))
    return mark_safe("".join(out))


Choices = dict[str, dict[Any, str]]


def _place(path: str) -> str:
    """Where ``path`` is in its schema, as ``labels.choice_labels`` names places: without its root (``content``,
    ``input``, ``params``) and with list positions as ``*`` ("content.recommendations.0.copy.1.source":
    "recommendations.*.copy.*.source")."""
    return ".".join("*" if part.isdigit() else part for part in path.split(".")[1:])


def _scalar(value: Any, path: str, spans: Spans, choices: Choices | None) -> SafeString:
    """A string or number; a fixed choice (``tone: friendly``) in words where it has some, its value as its tooltip."""
    words = (choices or {}).get(_place(path), {})
    if not isinstance(value, bool) and isinstance(value, (str, int, float)) and value in words:
        return format_html('<span class="v-choice" data-path="{}" data-value="{}" title="{}">{}</span>',
                           path, value, value, words[value])
    if isinstance(value, str):
        return format_html('<span class="v-text" data-path="{}">{}</span>', path, highlight(value, spans.get(path, [])))
    return format_html('<span class="v-num">{}</span>', value)


def render_value(value: Any, path: str, spans: Spans, labels: dict[str, str] | None = None,
                 choices: Choices | None = None) -> SafeString:
    """A JSON value as nested HTML; strings at a flagged path get their spans marked. ``labels``: what to call
    the keys of a top-level object (a plugin's field titles, ``labels.field_labels``), each keeping its key
    as its tooltip; nested keys show as they are. ``choices``: the schema's fixed choices in words, by place
    (``labels.choice_labels``), shown for their values at any depth."""
    if isinstance(value, bool) or value is None:
        return format_html('<span class="v-const">{}</span>', "null" if value is None else str(value).lower())
    if isinstance(value, (str, int, float)):
        return _scalar(value, path, spans, choices)
    if isinstance(value, list):
        if not value:
            return mark_safe('<span class="v-const">[]</span>')
        items = "".join(format_html("<li>{}</li>", render_value(v, f"{path}.{i}", spans, choices=choices))
                        for i, v in enumerate(value))
        return mark_safe(f'<ol class="v-list" start="0">{items}</ol>')
    if isinstance(value, dict) and _is_ranking(value.get("recommendations")):
        rest = {k: v for k, v in value.items() if k != "recommendations"}
        ranked = render_ranking(value["recommendations"], f"{path}.recommendations", spans, choices)
        return mark_safe(ranked + (render_value(rest, path, spans, labels, choices) if rest else ""))
    if isinstance(value, dict):
        rows = "".join(
            format_html('<div><dt title="{}">{}</dt><dd>{}</dd></div>', key, labels[key],
                        render_value(v, f"{path}.{key}", spans, choices=choices))
            if labels and labels.get(key) else
            format_html("<div><dt>{}</dt><dd>{}</dd></div>", key, render_value(v, f"{path}.{key}", spans, choices=choices))
            for key, v in value.items()
        )
        return mark_safe(f'<dl class="v-obj">{rows}</dl>')
    return escape(str(value))


def _is_ranking(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "rank" in v and "title" in v for v in value)


def render_ranking(items: list[dict], path: str, spans: Spans, choices: Choices | None = None) -> SafeString:
    """Ranked items (recommender output) as a numbered list, each with its copy variants; a variant not written
    by the model as such gets a chip saying how it was made (its ``source``, in words where ``choices`` has them)."""
    sources = (choices or {}).get(_place(f"{path}.0.copy.0.source"), {})
    rows = []
    for i, item in enumerate(items):
        variants = item.get("copy") or []
        copy = "".join(
            format_html('<li>{}{}</li>', render_value(v.get("text", ""), f"{path}.{i}.copy.{j}.text", spans),
                        _source_chip(v["source"], sources) if v.get("source") not in (None, "model") else "")
            for j, v in enumerate(variants) if isinstance(v, dict))
        rows.append(format_html(
            '<li class="ranked-item"><span class="rank">{}</span><div><strong>{}</strong> <span class="muted small mono">{}</span>'
            ' <span class="v-num">{}</span><ul class="variants">{}</ul></div></li>',
            item.get("rank", i + 1), item.get("title", ""), item.get("item_id", ""),
            f"{item['score']:.3f}" if isinstance(item.get("score"), (int, float)) else "", mark_safe(copy)))
    return mark_safe(f'<ol class="ranked">{"".join(rows)}</ol>')


def _source_chip(source: Any, words: dict[Any, str]) -> SafeString:
    """How a copy variant was made, in words with its value as the tooltip where ``words`` has them."""
    if isinstance(source, str) and source in words:
        return format_html(' <span class="chip" title="{}">{}</span>', source, words[source])
    return format_html(' <span class="chip">{}</span>', source)


def flagged_categories(report: dict | None) -> list[str]:
    return list((report or {}).get("flagged", []))
