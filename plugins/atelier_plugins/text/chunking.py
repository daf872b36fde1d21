"""Splitting documents into passages for retrieval: by Markdown headings, then paragraphs.

Each chunk carries the heading path it sits under, so that a passage read alone still says
what it is about ("Returns > Refunds: Refunds reach your card within 5 days").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    text: str


def html_to_text(markup: str) -> str:
    """Plain text of an HTML document: headings become Markdown headings, blocks become paragraphs."""
    # Each pattern stops at the next "<" (a tag's end) or at the next heading, and a script or style left
    # open runs to the end as in a browser: a pattern that searched to the end of the text from every
    # unclosed "<" took quadratic time, minutes of a worker for one 500 KB document.
    markup = re.sub(r"(?is)<(script|style)\b.*?(?:</\1>|\Z)", " ", markup)
    markup = re.sub(r"(?i)<h([1-6])[^<>]*>((?:(?!<h[1-6]).)*?)</h\1>",
                    lambda m: "\n\n" + "#" * int(m.group(1)) + " " + m.group(2) + "\n\n", markup)
    markup = re.sub(r"(?i)</?(p|div|li|ul|ol|br|tr|table|section|article)[^<>]*>", "\n\n", markup)
    text = html.unescape(re.sub(r"<[^<>]+>", " ", markup))
    return re.sub(r"[ \t]+", " ", text)


def chunk_markdown(text: str, *, max_chars: int = 600) -> list[Chunk]:
    """Paragraphs grouped under their headings, at most ``max_chars`` each (long paragraphs split, see ``_pieces``)."""
    headings: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            # Line breaks are kept until the paragraph is cut into pieces: a list or a table written
            # without blank lines has no sentence ends, and its lines are where it can be cut.
            joined = "\n".join(line.strip() for line in paragraph).strip()
            if joined:
                if not sections or sections[-1][0] != " > ".join(headings):
                    sections.append((" > ".join(headings), []))
                sections[-1][1].append(joined)
            paragraph.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        match = HEADING.match(line)
        if match:
            close_paragraph()
            level = len(match.group(1))
            del headings[level - 1 :]
            headings.extend([""] * (level - 1 - len(headings)))
            headings.append(match.group(2).strip())
            headings[:] = [h for h in headings if h]
        elif not line.strip():
            close_paragraph()
        else:
            paragraph.append(line)
    close_paragraph()

    chunks: list[Chunk] = []
    for heading, paragraphs in sections:
        buffer = ""
        for piece in _pieces(paragraphs, max_chars):
            if buffer and len(buffer) + 1 + len(piece) > max_chars:
                chunks.append(Chunk(len(chunks), heading, buffer))
                buffer = piece
            else:
                buffer = f"{buffer}\n{piece}" if buffer else piece
        if buffer:
            chunks.append(Chunk(len(chunks), heading, buffer))
    return chunks


#: Where a paragraph too long for one chunk is cut, best first: each piece still too long is cut at
#: the next. Each pattern matches a separator and the spaces after it, which stay with the text before.
CUT_POINTS = (
    re.compile(r"[.!?]+[\"')\]”’]*\s+|[。！？]+[”’」』）]*\s*"),  # sentence ends ("3.5" is not one)
    re.compile(r"\n"),  # line breaks: list items, table rows
    re.compile(r"[，；、]\s*|[,;]\s+"),  # clauses: Chinese written with commas runs for pages without a full stop
    re.compile(r"\s+"),  # words
)


def _pieces(paragraphs: list[str], max_chars: int):
    """Each paragraph whole, or cut into pieces of at most ``max_chars``: nothing is left out."""
    for paragraph in paragraphs:
        pieces = [paragraph] if len(paragraph) <= max_chars else _cut(paragraph, max_chars, 0)
        for piece in pieces:
            yield piece.replace("\n", " ")  # a line break inside a piece reads as a space, as it renders


def _cut(text: str, max_chars: int, level: int) -> list[str]:
    """``text`` (longer than ``max_chars``) cut at ``CUT_POINTS[level]``, adjacent parts packed up to
    ``max_chars``; a part still too long is cut at the next level, and at the last by length."""
    if level == len(CUT_POINTS):
        text = text.strip()
        return [text[start : start + max_chars] for start in range(0, len(text), max_chars)]
    ends = [match.end() for match in CUT_POINTS[level].finditer(text)]
    parts = [text[start:end] for start, end in zip([0, *ends], [*ends, len(text)])]
    pieces: list[str] = []
    buffer = ""
    for part in parts:
        # Parts are adjacent slices: joining them gives back the text exactly, separators included.
        if len((buffer + part).strip()) <= max_chars:
            buffer += part
            continue
        if buffer.strip():
            pieces.append(buffer.strip())
        buffer = part
        if len(part.strip()) > max_chars:
            pieces.extend(_cut(part, max_chars, level + 1))
            buffer = ""
    if buffer.strip():
        pieces.append(buffer.strip())
    return pieces
