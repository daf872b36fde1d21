"""A project's allow list as the checks use it: words the classifiers must not count against a text, and the
contact values the project publishes itself, which the personal-data check must not report.

Allowed words are masked, never trusted: the characters of each occurrence are replaced by spaces and the rest
of the text is scored as usual, so with "wool" allowed "wool <insult>" scores as "<insult>" alone. Occurrences
are found as the blocklist finds its literal terms, on the ``base`` view (case folded, full-width and look-alike
letters read as Latin, whitespace runs as one space) and as whole words: "wool" is not masked inside "woolly"
or "lambswool", and a phrase ("merino wool") only where the whole phrase stands.

The blocklist check never reads the allow list: an allowed term does not un-block a blocklist hit.

An entry is one of four kinds, each stored in the form screening compares (``allow_entry_key``): a ``term``
normalised as a blocklist term is; an ``email`` lower-cased; a ``phone`` in E.164; a ``url`` with its scheme
and host lower-cased and no trailing slash.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

import ahocorasick

from atelier_sdk.safety import RefusedValue

from atelier_plugins.safety.compiled_lists import compiled_lists, estimate_bytes
from atelier_plugins.safety.normalise import is_word_char, normalise, normalise_term
from atelier_plugins.safety.personal_data import published_contact_key

ALLOW_KINDS = ("term", "email", "phone", "url")


class InvalidAllowEntry(RefusedValue):
    """An allow-list value that cannot be used; the message names it and says what to give instead, its code and
    values why (``allowlist.not_an_email``, ``{"value": ...}``)."""


def allow_entry_key(kind: str, value: str, *, phone_region: str | None = "US") -> str:
    """``value`` in the form screening compares it in; raises ``InvalidAllowEntry`` saying why it cannot be used."""
    if kind == "term":
        key = normalise_term(value)
        if sum(char.isalnum() for char in key) < 2:
            # a lone letter is no word the classifiers read ("u", "s" as a size), and the raw reading of a
            # spelled-out insult ("f u c k") is made of them
            raise InvalidAllowEntry(f"term {value!r} has fewer than two letters or digits once normalised; "
                                    f"enter a word or a phrase", code="allowlist.term_too_short", value=value)
        return key
    if kind in ("email", "phone", "url"):
        key = published_contact_key(kind, value, phone_region=phone_region)
        if key is None:
            code, message = _NOT_A[kind]
            raise InvalidAllowEntry(message.format(value=value), code=code, value=value)
        return key
    raise InvalidAllowEntry(f"kind {kind!r} is not one of {', '.join(ALLOW_KINDS)}", code="allowlist.unknown_kind",
                            kind=kind, kinds=", ".join(ALLOW_KINDS))


#: why a value is no contact of its kind: (code, message)
_NOT_A = {
    "email": ("allowlist.not_an_email", "{value!r} is not an e-mail address; give one like support@shop.example"),
    "phone": ("allowlist.not_a_phone_number",
              "{value!r} is not a valid phone number; give it with its country code, like +1 800 555 0142"),
    "url": ("allowlist.not_a_web_address",
            "{value!r} is not a web address; give it with its scheme, like https://shop.example/contact"),
}


def detect_kind(value: str) -> str:
    """The kind of an entry given without one: an e-mail address, a web address or a phone number when it
    reads as one, otherwise a term."""
    text = unicodedata.normalize("NFKC", value).strip()
    if re.match(r"(?i)https?://", text):
        return "url"
    for kind in ("email", "phone"):
        # a phone needs digits and nothing but the characters a number is written with: "3M" stays a term
        if kind == "phone" and not re.fullmatch(r"[+(]?[\d\s().\-/]{6,}", text):
            continue
        if published_contact_key(kind, text) is not None:
            return kind
    return "term"


class AllowedTerms:
    """One allow list's words and phrases, compiled into one automaton: a text is scanned once whatever their number."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._automaton = ahocorasick.Automaton()
        keys = {key for key in (normalise_term(term) for term in terms) if key}
        for key in keys:
            # whole-word checks only at ends where the term itself has a word character (as the blocklist does)
            self._automaton.add_word(key, (len(key), is_word_char(key[0]), is_word_char(key[-1])))
        self.count = len(keys)
        self._chars = sum(map(len, keys))
        if keys:
            self._automaton.make_automaton()

    #: Python objects one term holds beyond its characters: its strings (as given, in the cache's key, and
    #: normalised) and the automaton's value tuple (tracemalloc: 142-147 bytes a term on 1,000 and 50,000 terms).
    BYTES_PER_TERM = 160

    def estimated_bytes(self) -> int:
        """About what this compiled list and the terms it keeps hold in memory (what the cache counts)."""
        automaton_bytes = self._automaton.get_stats()["total_size"] if self.count else 0
        return estimate_bytes(automaton_bytes=automaton_bytes, terms=self.count, term_chars=self._chars,
                              bytes_per_term=self.BYTES_PER_TERM)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where allowed terms stand in ``text``, as (start, end) offsets into ``text`` as given, in order and
        without overlaps: the leftmost, longest occurrences (``iter_long``). Every overlapping occurrence
        would cost time with the square of a crafted list ("a a", "a a a", ... on "a a a a ..."); the price
        is that where the longest term at a place is not a whole word there, a shorter one is not tried
        either, and the text is scored with it: more screening, never less."""
        if not self.count:
            return []
        view = normalise(text)
        normalised, length = view.text, len(view.text)
        found = []
        for last, (size, check_start, check_end) in self._automaton.iter_long(normalised):
            start = last - size + 1
            if check_start and start > 0 and is_word_char(normalised[start - 1]):
                continue
            if check_end and last + 1 < length and is_word_char(normalised[last + 1]):
                continue
            found.append(view.span(start, last + 1))
        return found

    def mask(self, text: str) -> str:
        """``text`` with every allowed occurrence blanked out, character for character (offsets stay valid)."""
        spans = self.spans(text)
        if not spans:
            return text
        chars = list(text)
        for start, end in spans:
            chars[start:end] = " " * (end - start)
        return "".join(chars)


def compile_allowed_terms(terms: Sequence[str]) -> AllowedTerms:
    """The compiled form of ``terms``, from this process's cache of compiled lists (``compiled_lists``: a budget
    in bytes, shared with the blocklists) when this list was compiled before."""
    key = tuple(terms)
    return compiled_lists.get_or_compile(("allowlist", key), lambda: AllowedTerms(key), AllowedTerms.estimated_bytes)


__all__ = [
    "ALLOW_KINDS",
    "AllowedTerms",
    "InvalidAllowEntry",
    "allow_entry_key",
    "compile_allowed_terms",
    "detect_kind",
]
