"""Text normalisation for matching, with a map from every normalised character back to the text as given.

Screening must see through the cheap disguises people use to slip words past a filter (full-width
letters, zero-width characters, Cyrillic look-alikes, "b.a.d", "b a d", "b4d", traditional
characters), yet a reviewer must be shown the exact characters of the original text. So every
step here keeps ``origin``: ``origin[i]`` is the index in the original text of normalised
character ``i``. A match ``[s, e)`` in a view maps back to ``[origin[s], origin[e - 1] + 1)``.

Views (each a string plus its origin map) are built from one normalised sequence:

* ``base``: NFKC, case-folded, invisible characters removed, diacritics stripped (Latin and
  other alphabetic scripts only), look-alike letters mapped to Latin, traditional Chinese mapped to
  simplified, whitespace runs collapsed to one space.
* ``joined``: ``base`` with separators inside a word removed ("b.a.d", "b-a-d", "毒*品") and the
  spaces of a spelled-out word removed ("b a d", "f u c k": runs of one-character fragments).
* ``*+leet``: digits and ``@``/``$`` read as letters inside words that contain a letter
  ("b4d" -> "bad"); ``1`` is ambiguous (i or l), so there is one view for each reading.

Terms are normalised with ``base`` only, so a term and a text agree on what a character is; a
regular expression's literal characters are normalised the same way (``normalise_regex``).

``nfkc_view`` is a lighter view for checks that look for structured data (e-mail addresses, phone
numbers): NFKC only, so full-width digits and "＠" typed in a Chinese input method read as ASCII.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: Characters that render as nothing (or as a blank) and are used to split words invisibly.
#: Format characters (Cf: zero-width space/joiners, soft hyphen, bidi controls, BOM) and
#: combining marks are dropped by category; these are letters or symbols that merely look empty.
_INVISIBLE_EXTRA = frozenset("\u3164\u115f\u1160\uffa0\u2800\u034f\u17b4\u17b5")

#: Symbols people put between the letters of a word to break matching ("b.a.d", "b*a*d", "毒-品").
#: Sentence punctuation (, ; : ! ? quotes, brackets) is not here: "hello,world" is two words, and
#: after NFKC the Chinese full-width comma is an ASCII comma too. The apostrophe is not here
#: either, or "he'll" would read as "hell".
JOINERS = frozenset(".-_*·•‧∙|/\\~+=^#`‐‑‒–—―")

#: Leetspeak digits and symbols, read as letters only inside a word that has a letter.
LEET_COMMON = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
LEET_SYMBOLS = frozenset("@$")


def is_cjk(char: str) -> bool:
    """Han ideographs, kana and Hangul: scripts written without spaces between words."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2FA1F
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
        or 0x31F0 <= code <= 0x31FF
        or 0xAC00 <= code <= 0xD7AF
        or 0x1100 <= code <= 0x11FF
    )


def is_word_char(char: str) -> bool:
    """A character that continues a Latin-style word (whole-word matching stops at anything else)."""
    return char.isalnum() and not is_cjk(char)


@lru_cache(maxsize=1)
def _homoglyphs() -> dict[str, str]:
    with resources.files(__package__).joinpath("data/homoglyphs.json").open(encoding="utf-8") as handle:
        return json.load(handle)["map"]


@lru_cache(maxsize=1)
def _traditional_to_simplified() -> dict[str, str]:
    table: dict[str, str] = {}
    with resources.files(__package__).joinpath("data/trad_simp.txt").open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            traditional, simplified = line.rstrip("\n").split("\t")
            table[traditional] = simplified
    return table


_char_cache: dict[str, str] = {}


def _char_form(char: str) -> str:
    """One character's normalised form before case folding (may be empty or several characters)."""
    cached = _char_cache.get(char)
    if cached is not None:
        return cached
    category = unicodedata.category(char)
    if char in _INVISIBLE_EXTRA or category in ("Cf", "Mn", "Me") or (category == "Cc" and not char.isspace()):
        form = ""
    else:
        pieces = []
        for piece in unicodedata.normalize("NFKC", char):
            if is_cjk(piece):
                pieces.append(piece)
            else:
                # Strip diacritics ("fück" -> "fuck"): decompose, drop the combining marks.
                pieces.extend(p for p in unicodedata.normalize("NFKD", piece) if unicodedata.category(p) != "Mn")
        form = "".join(pieces)
    if len(_char_cache) < 200_000:  # bounded: an adversary could send every code point
        _char_cache[char] = form
    return form


@dataclass(frozen=True)
class View:
    name: str
    text: str
    origin: tuple[int, ...]
    #: Positions where ``joined_view`` removed a space: a word may start or end there even though
    #: the neighbouring character is a letter ("a n-e-e-d-l-e" reads "aneedle", "needle" still counts).
    soft_boundaries: frozenset[int] = frozenset()

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original-text span of view characters ``[start, end)``."""
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> View:
    """The ``base`` view of ``text``."""
    if text.isascii():
        return _normalise_ascii(text)
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for piece in _char_form(char):
            chars.append(piece)
            origin.append(index)
    _map_homoglyphs(chars)
    folded: list[str] = []
    folded_origin: list[int] = []
    traditional = _traditional_to_simplified()
    previous_space = True  # also drops leading whitespace
    for char, index in zip(chars, origin):
        if char.isspace():
            if not previous_space:
                folded.append(" ")
                folded_origin.append(index)
            previous_space = True
            continue
        previous_space = False
        for piece in char.casefold():
            folded.append(traditional.get(piece, piece))
            folded_origin.append(index)
    return View("base", "".join(folded), tuple(folded_origin))


def _normalise_ascii(text: str) -> View:
    # Fast path for most traffic: ASCII has no full-width forms, look-alikes or diacritics.
    chars: list[str] = []
    origin: list[int] = []
    previous_space = True
    for index, char in enumerate(text.lower()):
        if char.isspace():
            if not previous_space:
                chars.append(" ")
                origin.append(index)
            previous_space = True
        elif char.isprintable():
            chars.append(char)
            origin.append(index)
            previous_space = False
    return View("base", "".join(chars), tuple(origin))


def _map_homoglyphs(chars: list[str]) -> None:
    """Map look-alike letters to Latin, word by word, in place.

    Only in words that already contain a Latin letter ("bаd" with a Cyrillic "а") or consist
    only of look-alikes ("ѕех"): mapping every Cyrillic or Greek word would make Latin terms hit
    ordinary Russian or Greek text.
    """
    table = _homoglyphs()
    count = len(chars)
    index = 0
    while index < count:
        if not (chars[index].isalpha() and not is_cjk(chars[index])):
            index += 1
            continue
        end = index
        has_latin = False
        all_lookalike = True
        while end < count and chars[end].isalpha() and not is_cjk(chars[end]):
            char = chars[end]
            if "a" <= char.lower() <= "z":
                has_latin = True
            elif char not in table:
                all_lookalike = False
            end += 1
        if has_latin or all_lookalike:
            for position in range(index, end):
                chars[position] = table.get(chars[position], chars[position])
        index = end


#: A fragment: a run of letters, digits and leet symbols (CJK characters included; each side of a
#: gap is checked for CJK separately). Gaps between fragments are what ``joined_view`` may drop.
_FRAGMENT = re.compile(r"(?:[^\W_]|[@$])+")
_DROPPABLE_GAP = re.compile("[ " + re.escape("".join(sorted(JOINERS))) + "]+")
#: An ASCII word with a leet character in it; only those with a letter too are rewritten. A match starts
#: only where a word starts: unanchored, a long word without a leet character was tried from each of its
#: letters against the rest of it, quadratic (6 s for one word of 40,000 letters, screened inside a web
#: request).
_LEET_WORD = re.compile(r"(?<![0-9a-z@$])[0-9a-z@$]*[013457@$][0-9a-z@$]*")


def joined_view(base: View) -> View:
    """Remove separators inside words and the spaces of spelled-out words (see module docstring)."""
    text = base.text
    fragments = [(m.start(), m.end()) for m in _FRAGMENT.finditer(text)]
    drop: list[tuple[int, int]] = []
    for (a_start, a_end), (b_start, b_end) in zip(fragments, fragments[1:]):
        if not _DROPPABLE_GAP.fullmatch(text, a_end, b_start):
            continue  # other punctuation ("hello, world") separates for real
        if " " not in text[a_end:b_start]:
            joinable = True  # "b.a.d", "b-a-d", "毒*品"
        else:
            # "b a d" (one-character fragments), or spaces between CJK characters ("毒 品").
            joinable = (a_end - a_start == 1 and b_end - b_start == 1) or (
                is_cjk(text[a_end - 1]) and is_cjk(text[b_start])
            )
        if joinable:
            drop.append((a_end, b_start))
    if not drop:
        return View("joined", text, base.origin)
    pieces: list[str] = []
    origin: list[int] = []
    soft: list[int] = []
    position = 0
    for gap_start, gap_end in drop:
        pieces.append(text[position:gap_start])
        origin.extend(base.origin[position:gap_start])
        if " " in text[gap_start:gap_end]:
            soft.append(len(origin))
        position = gap_end
    pieces.append(text[position:])
    origin.extend(base.origin[position:])
    return View("joined", "".join(pieces), tuple(origin), frozenset(soft))


_LEET_TABLES = {
    one_as: str.maketrans(dict(LEET_COMMON, **{"1": one_as})) for one_as in ("i", "l")
}


def leet_view(view: View, one_as: str) -> View:
    """Read digits and @/$ as letters inside words that contain a letter ("b4d", "ki11", "$hit").

    One character for one, so the origin map is unchanged.
    """
    table = _LEET_TABLES[one_as]

    def rewrite(match: re.Match) -> str:
        word = match.group()
        if word.isdigit() or not any("a" <= c <= "z" for c in word):
            return word  # "2024", "$50": numbers stay numbers
        return word.translate(table)

    return View(view.name + "+leet", _LEET_WORD.sub(rewrite, view.text), view.origin, view.soft_boundaries)


def matching_views(text: str) -> list[View]:
    """All distinct views of ``text`` a term is looked for in, ``base`` first."""
    base = normalise(text)
    views = [base]
    joined = joined_view(base)
    candidates = [joined]
    has_leet = any(c in LEET_COMMON or c == "1" for c in base.text)
    if has_leet:
        candidates.append(leet_view(base, "i"))
        candidates.append(leet_view(joined, "i"))
        if "1" in base.text:
            candidates.append(leet_view(base, "l"))
            candidates.append(leet_view(joined, "l"))
    seen = {base.text}
    for view in candidates:
        if view.text not in seen:
            seen.add(view.text)
            views.append(view)
    return views


def normalise_term(term: str) -> str:
    """A literal blocklist term in the form texts are matched in."""
    return normalise(term).text.strip()


def normalise_char(char: str) -> str:
    """What ``normalise`` makes of one character on its own (may be empty or several characters).

    Everything but the look-alike mapping, which depends on the rest of the word, and the collapsing
    of whitespace runs, which depends on the neighbours.
    """
    traditional = _traditional_to_simplified()
    pieces = []
    for piece in _char_form(char):
        if piece.isspace():
            pieces.append(" ")
        else:
            pieces.extend(traditional.get(folded, folded) for folded in piece.casefold())
    return "".join(pieces)


def normalise_regex(pattern: str) -> str:
    """A blocklist regular expression rewritten to match the ``base`` view where ``pattern`` matches the text.

    Each literal character outside a character class becomes its normalised form ("café" -> "cafe",
    "賭" -> "赌", "ß" -> "(?:ss)", "Ｖ" -> "v"); a class also accepts the normalised form of each single
    character it lists ("[賭]" -> "[賭赌]"); ranges, escapes, group names and comments are kept as they
    are. ASCII needs nothing: ``base`` only lower-cases it, and blocklist patterns ignore case.
    """
    if pattern.isascii():
        return pattern
    out: list[str] = []
    index = 0
    length = len(pattern)
    while index < length:
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1 : index + 2]
            # "\é" is a literal é; ASCII escapes ("\d", "\x41", "\N{...}") keep their meaning.
            out.append(_regex_literal(escaped) if escaped and not escaped.isascii() else pattern[index : index + 2])
            index += 2
        elif char == "[":
            end = _regex_class_end(pattern, index)
            out.append(_normalise_regex_class(pattern[index:end]))
            index = end
        elif char == "(":
            end = _regex_name_or_comment_end(pattern, index)
            out.append(pattern[index:end])
            index = end
        else:
            out.append(char if char.isascii() else _regex_literal(char))
            index += 1
    return "".join(out)


def _regex_literal(char: str) -> str:
    form = normalise_char(char)
    # Several characters (or none) stand in for one: a group keeps a quantifier after it applying to all.
    return re.escape(form) if len(form) == 1 else f"(?:{re.escape(form)})"


def _regex_class_end(pattern: str, start: int) -> int:
    """Index just past the character class opening at ``start`` (``len(pattern)`` if it never closes)."""
    index = start + 1
    if pattern.startswith("^", index):
        index += 1
    if pattern.startswith("]", index):
        index += 1  # a "]" first in a class is a member
    while index < len(pattern):
        if pattern[index] == "\\":
            index += 2
        elif pattern[index] == "]":
            return index + 1
        else:
            index += 1
    return len(pattern)


def _normalise_regex_class(bracketed: str) -> str:
    if len(bracketed) < 2 or not bracketed.endswith("]"):
        return bracketed  # unclosed: it does not compile anyway
    prefix = "[^" if bracketed.startswith("[^") else "["
    members: list[str] = []
    index = len(prefix)
    while index < len(bracketed) - 1:
        step = 2 if bracketed[index] == "\\" else 1
        members.append(bracketed[index : index + step])
        index += step
    added: list[str] = []
    for position, member in enumerate(members):
        if member.isascii() or len(member) != 1:
            continue
        # A range's ends stay: "[一-龥]" means what it says, and a normalised end could invert it.
        if "-" in (members[position - 1] if position else "", members[position + 1] if position + 1 < len(members) else ""):
            continue
        form = normalise_char(member)
        if len(form) == 1 and form != member and re.escape(form) not in added:
            added.append(re.escape(form))
    return bracketed[:-1] + "".join(added) + "]" if added else bracketed


#: Group openings followed by a name or a comment rather than by text to match, and what closes them.
_REGEX_NAME_OR_COMMENT = (("(?P<", ">"), ("(?P=", ")"), ("(?(", ")"), ("(?#", ")"))


def _regex_name_or_comment_end(pattern: str, start: int) -> int:
    """Index past the name or comment that follows the "(" at ``start``, or just past the "(" if none does."""
    for opener, closer in _REGEX_NAME_OR_COMMENT:
        if pattern.startswith(opener, start):
            break
    else:
        # "(?<name>" in the regex module's spelling; "(?<=" and "(?<!" are lookbehinds.
        if not pattern.startswith("(?<", start) or pattern[start + 3 : start + 4] in ("=", "!"):
            return start + 1
        opener, closer = "(?<", ">"
    end = pattern.find(closer, start + len(opener))
    return len(pattern) if end < 0 else end + 1


def nfkc_view(text: str) -> View:
    """``text`` with each character in its NFKC form ("１３８" -> "138", "＠" -> "@"), nothing else changed."""
    if unicodedata.is_normalized("NFKC", text):
        return View("nfkc", text, tuple(range(len(text))))
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        form = unicodedata.normalize("NFKC", char)
        chars.append(form)
        origin.extend([index] * len(form))
    return View("nfkc", "".join(chars), tuple(origin))
