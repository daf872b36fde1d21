"""Splitting documents into passages for retrieval: by Markdown headings, then paragraphs.

Each chunk carries the heading path it sits under, so that a passage read alone still says
what it is about ("Returns > Refunds: Refunds reach your card within 5 days").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

#: One line each (without its line break), as CommonMark reads them: up to three spaces of indent, then the mark.
HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?\Z")
SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*\Z")
THEMATIC_BREAK = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*\Z")
FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)\Z")
#: YAML front matter (Jekyll, Hugo, most docs exports): a block at the very start that opens with "key:".
FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\n(?=[A-Za-z_][\w-]*:[ \t\n]).*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
#: Marks a heading that html_to_text wrote until its lines are laid out (the document's own NULs are removed first).
_HEADING_MARK = "\x00"
_BLOCK_TAGS = ("p|div|li|ul|ol|br|hr|tr|table|section|article|pre|blockquote|dl|dt|dd|header|footer|main|nav|aside"
               "|figure|figcaption|h[1-6]")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    text: str


def html_to_text(markup: str) -> str:
    """What an HTML page shows, as Markdown: headings become Markdown headings (one line each, whatever
    tags and line breaks they held), blocks become paragraphs, and what a browser never shows (comments,
    scripts, styles, the page's <title>, templates) is left out. Every other line is indented, so nothing
    in the page's text reads as Markdown: a "# install" line of a code sample is no heading."""
    # Each pattern stops at the next "<" (a tag's end) or at the next heading, and a comment, script or style
    # left open runs to the end as in a browser: a pattern that searched to the end of the text from every
    # unclosed "<" took quadratic time, minutes of a worker for one 500 KB document.
    markup = markup.replace(_HEADING_MARK, "")
    markup = re.sub(r"(?s)<!--.*?(?:-->|\Z)", " ", markup)
    markup = re.sub(r"(?is)<(script|style|title|template)\b.*?(?:</\1>|\Z)", " ", markup)
    markup = re.sub(r"(?is)<h([1-6])[^<>]*>((?:(?!<h[1-6]).)*?)</h\1>", _marked_heading, markup)
    markup = re.sub(rf"(?i)</?(?:{_BLOCK_TAGS})\b[^<>]*>", "\n\n", markup)
    text = re.sub(r"[ \t]+", " ", html.unescape(re.sub(r"<[^<>]+>", " ", markup)))
    return "\n".join(line[1:] if line.startswith(_HEADING_MARK) else f"    {line}" if line.strip() else ""
                     for line in text.split("\n"))


def _marked_heading(match: re.Match) -> str:
    words = re.sub(r"<[^<>]+>", " ", match.group(2)).split()
    return f"\n\n{_HEADING_MARK}{'#' * int(match.group(1))} {' '.join(words)}\n\n"


def markdown_to_text(text: str) -> str:
    """What a Markdown document shows: without its front matter and its HTML comments (they render as
    nothing; one left open is kept as text, since a code sample may show one)."""
    text = FRONT_MATTER.sub("", text.replace("\r\n", "\n"), count=1)
    kept, at = [], 0
    while (start := text.find("<!--", at)) != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            break
        kept.append(text[at:start])
        at = end + 3
    kept.append(text[at:])
    return "".join(kept)


def chunk_markdown(text: str, *, max_chars: int = 600) -> list[Chunk]:
    """Paragraphs grouped under their headings, at most ``max_chars`` each (long paragraphs split, see ``_pieces``).

    A heading's path holds the headings above it by level: "## Refunds" after "## Window" is "Refunds", not
    "Window > Refunds", whether or not the document has a "#" heading. A fenced code block is one paragraph of
    its own lines ("# install" in it is no heading), and a thematic break ends a paragraph without becoming text.
    """
    levels = [""] * 6
    sections: list[tuple[str, list[str]]] = []
    paragraph: list[str] = []
    fence = ""  # the run that opened the code block the lines are in ("```", "~~~~"), or none

    def close_paragraph() -> None:
        if paragraph:
            # Line breaks are kept until the paragraph is cut into pieces: a list or a table written
            # without blank lines has no sentence ends, and its lines are where it can be cut.
            joined = "\n".join(line.strip() for line in paragraph).strip()
            if joined:
                path = " > ".join(h for h in levels if h)
                if not sections or sections[-1][0] != path:
                    sections.append((path, []))
                sections[-1][1].append(joined)
            paragraph.clear()

    def open_heading(level: int, title: str) -> None:
        close_paragraph()
        levels[level - 1:] = [title] + [""] * (6 - level)

    for line in text.replace("\r\n", "\n").split("\n"):
        if fence:
            closing = line.strip()
            if closing.startswith(fence) and closing == fence[0] * len(closing) and len(line) - len(line.lstrip(" ")) < 4:
                fence = ""
                close_paragraph()
            else:
                paragraph.append(line)
            continue
        opening = FENCE.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):  # ```x``` is inline code
            close_paragraph()
            fence = opening.group(1)
            continue
        heading = HEADING.match(line)
        underline = SETEXT_UNDERLINE.match(line)
        if heading:
            open_heading(len(heading.group(1)), _without_closing_hashes(heading.group(2) or ""))
        elif underline and len(paragraph) == 1:
            # "Returns\n=======": the line above is the heading. Only a one-line paragraph is taken for one: a
            # whole paragraph as a heading path (CommonMark allows it) would put pages of text in every passage.
            title = paragraph.pop().strip()
            open_heading(1 if underline.group(1)[0] == "=" else 2, title)
        elif THEMATIC_BREAK.match(line):
            close_paragraph()
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


def _without_closing_hashes(title: str) -> str:
    """Without a heading's optional closing run of "#": "Refunds ##" is "Refunds", while "C#" stays "C#"
    (a closing run follows a space)."""
    title = title.strip()
    bare = title.rstrip("#")
    return bare.strip() if bare != title and (not bare or bare[-1] in " \t") else title


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
