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


def render_value(value: Any, path: str, spans: Spans, labels: dict[str, str] | None = None) -> SafeString:
    """A JSON value as nested HTML; strings at a flagged path get their spans marked. ``labels``: what to call
    the keys of a top-level object (a plugin's field titles, ``labels.field_labels``), each keeping its key
    as its tooltip; nested keys show as they are."""
    if isinstance(value, str):
        return format_html('<span class="v-text" data-path="{}">{}</span>', path, highlight(value, spans.get(path, [])))
    if isinstance(value, bool) or value is None:
        return format_html('<span class="v-const">{}</span>', "null" if value is None else str(value).lower())
    if isinstance(value, (int, float)):
        return format_html('<span class="v-num">{}</span>', value)
    if isinstance(value, list):
        if not value:
            return mark_safe('<span class="v-const">[]</span>')
        items = "".join(format_html("<li>{}</li>", render_value(v, f"{path}.{i}", spans)) for i, v in enumerate(value))
        return mark_safe(f'<ol class="v-list" start="0">{items}</ol>')
    if isinstance(value, dict) and _is_ranking(value.get("recommendations")):
        rest = {k: v for k, v in value.items() if k != "recommendations"}
        ranked = render_ranking(value["recommendations"], f"{path}.recommendations", spans)
        return mark_safe(ranked + (render_value(rest, path, spans, labels) if rest else ""))
    if isinstance(value, dict):
        rows = "".join(
            format_html('<div><dt title="{}">{}</dt><dd>{}</dd></div>', key, labels[key],
                        render_value(v, f"{path}.{key}", spans))
            if labels and labels.get(key) else
            format_html("<div><dt>{}</dt><dd>{}</dd></div>", key, render_value(v, f"{path}.{key}", spans))
            for key, v in value.items()
        )
        return mark_safe(f'<dl class="v-obj">{rows}</dl>')
    return escape(str(value))


def _is_ranking(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "rank" in v and "title" in v for v in value)


def render_ranking(items: list[dict], path: str, spans: Spans) -> SafeString:
    """Ranked items (recommender output) as a numbered list, each with its copy variants."""
    rows = []
    for i, item in enumerate(items):
        variants = item.get("copy") or []
        copy = "".join(
            format_html('<li>{}{}</li>', render_value(v.get("text", ""), f"{path}.{i}.copy.{j}.text", spans),
                        format_html(' <span class="chip">{}</span>', v["source"]) if v.get("source") not in (None, "model") else "")
            for j, v in enumerate(variants) if isinstance(v, dict))
        rows.append(format_html(
            '<li class="ranked-item"><span class="rank">{}</span><div><strong>{}</strong> <span class="muted small mono">{}</span>'
            ' <span class="v-num">{}</span><ul class="variants">{}</ul></div></li>',
            item.get("rank", i + 1), item.get("title", ""), item.get("item_id", ""),
            f"{item['score']:.3f}" if isinstance(item.get("score"), (int, float)) else "", mark_safe(copy)))
    return mark_safe(f'<ol class="ranked">{"".join(rows)}</ol>')


def flagged_categories(report: dict | None) -> list[str]:
    return list((report or {}).get("flagged", []))
