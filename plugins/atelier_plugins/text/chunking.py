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
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<h([1-6])[^>]*>(.*?)</h\1>", lambda m: "\n\n" + "#" * int(m.group(1)) + " " + m.group(2) + "\n\n", markup)
    markup = re.sub(r"(?i)</?(p|div|li|ul|ol|br|tr|table|section|article)[^>]*>", "\n\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return re.sub(r"[ \t]+", " ", text)


def chunk_markdown(text: str, *, max_chars: int = 600) -> list[Chunk]:
    """Paragraphs grouped under their headings, at most ``max_chars`` each (long paragraphs split on sentences)."""
    headings: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            joined = " ".join(line.strip() for line in paragraph).strip()
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


SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def _pieces(paragraphs: list[str], max_chars: int):
    for paragraph in paragraphs:
        if len(paragraph) <= max_chars:
            yield paragraph
            continue
        buffer = ""
        for sentence in filter(None, SENTENCE_END.split(paragraph)):
            if buffer and len(buffer) + len(sentence) + 1 > max_chars:
                yield buffer
                buffer = sentence
            else:
                buffer = f"{buffer} {sentence}".strip() if buffer else sentence
        if buffer:
            yield buffer[:max_chars] if len(buffer) > max_chars else buffer
