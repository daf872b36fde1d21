"""The ``blocklist`` check: a project's own terms (literals and regular expressions), each with a category.

Literals of one blocklist are compiled into ONE Aho-Corasick automaton, so a text is scanned once
per view whatever the number of terms (50,000 terms cost about what 50 do). Compiled blocklists
are cached by a hash of their terms, so a project's list compiles once per process, not per text, within
the process's budget for compiled lists (``compiled_lists.py``).

Matching is done on normalised views of the text (see ``normalise.py``) and every hit is mapped
back to the characters of the text as given. Latin-script terms match whole words only ("class"
does not contain "ass", "Scunthorpe" is a town); terms with CJK characters match anywhere, since
Chinese is written without spaces.

A regular expression runs twice: as written on the text as given (so it always matches what it
literally says, "賭博\\s*網站" on "賭博網站"), and with its literal characters normalised on the
``base`` view (so it also matches the variants a literal term would: "赌博网站", "ｃａｆé" for "café").
"""

from __future__ import annotations

import hashlib
import logging
import re._parser as sre_parse  # the stdlib's own parser: inspect a pattern's structure before running it
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import ahocorasick
import regex

from atelier_sdk.safety import (
    BlocklistTerm,
    Category,
    Evidence,
    Finding,
    RefusedValue,
    SafetyCheckBase,
    SafetyCheckManifest,
    ScreenContext,
    Target,
)
from atelier_plugins.safety.compiled_lists import compiled_lists, estimate_bytes
from atelier_plugins.safety.normalise import (
    View,
    is_word_char,
    matching_views,
    normalise,
    normalise_regex,
    normalise_term,
)

logger = logging.getLogger("atelier.safety.blocklist")

#: Seconds one regular expression may spend on one text before it is abandoned (and logged).
DEFAULT_REGEX_TIMEOUT_S = 0.05


class InvalidBlocklistTerm(RefusedValue):
    """A term that cannot be used; the message names the term and says what to change, its code and values why
    (``blocklist.regex_does_not_compile``, ``{"pattern": ..., "read_as": ..., "error": ...}``)."""


@dataclass(frozen=True)
class BlocklistMatch:
    term_index: int
    term: BlocklistTerm
    start: int  # offsets into the original text
    end: int
    view: str  # where it matched: "original" (regexes on the text as given), or a normalised view: "base", "joined", ...


_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)} - {None}


def _has_variable_repeat(parsed) -> bool:
    for op, argument in parsed:
        if op in _REPEATS:
            low, high, body = argument
            if high != low or _has_variable_repeat(body):
                return True
        elif _subpatterns_have(argument, _has_variable_repeat):
            return True
    return False


def _subpatterns_have(argument, predicate) -> bool:
    """Apply ``predicate`` to the sub-patterns nested in a parsed node's argument."""
    if isinstance(argument, sre_parse.SubPattern):
        return predicate(argument)
    if isinstance(argument, (tuple, list)):
        return any(_subpatterns_have(item, predicate) for item in argument)
    return False


def _nested_quantifier(parsed) -> bool:
    for op, argument in parsed:
        if op in _REPEATS:
            low, high, body = argument
            if high != low and _has_variable_repeat(body):
                return True
            if _nested_quantifier(body):
                return True
        elif _subpatterns_have(argument, _nested_quantifier):
            return True
    return False


def compile_regex_term(pattern: str) -> tuple[regex.Pattern, regex.Pattern]:
    """A blocklist regular expression compiled as written (for the text as given) and with its literal
    characters normalised (``normalise_regex``, for the ``base`` view); the same object twice when
    normalising changes nothing. Raises ``InvalidBlocklistTerm`` if either form is unsafe or broken."""
    as_written = _compile_checked(pattern, pattern)
    normalised = normalise_regex(pattern)
    if normalised == pattern:
        return as_written, as_written
    return as_written, _compile_checked(pattern, normalised)


def _compile_checked(written: str, pattern: str) -> regex.Pattern:
    """``pattern`` compiled: the term as ``written``, or its normalised reading (which a refusal names too)."""
    shown = repr(written) if pattern == written else f"{written!r} (read as {pattern!r} on normalised text)"
    # which form was refused, as values a refusal's code goes with
    values = {"pattern": written, "read_as": "" if pattern == written else pattern}
    try:
        parsed = sre_parse.parse(pattern)
    except Exception as exc:  # re.error, plus recursion errors on absurd nesting
        raise InvalidBlocklistTerm(f"regular expression {shown} does not compile: {exc}",
                                   code="blocklist.regex_does_not_compile", error=str(exc), **values) from None
    if _nested_quantifier(parsed):
        raise InvalidBlocklistTerm(
            f"regular expression {shown} has a nested quantifier (a repeated group that itself "
            "contains a variable repetition, like (a+)+ or (\\w+\\s?)*), which can take exponential time; "
            "rewrite it without repeating the group, or use literal terms", code="blocklist.regex_nests_quantifiers",
            **values)
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error as exc:
        raise InvalidBlocklistTerm(f"regular expression {shown} does not compile: {exc}",
                                   code="blocklist.regex_does_not_compile", error=str(exc), **values) from None


def validate_term(term: BlocklistTerm) -> None:
    """Raise ``InvalidBlocklistTerm`` if ``term`` could never be matched safely (call it when a term is saved)."""
    if term.is_regex:
        compile_regex_term(term.pattern)
    elif not normalise_term(term.pattern):
        raise InvalidBlocklistTerm(
            f"term {term.pattern!r} is empty once invisible characters and spacing are removed; enter visible text",
            code="blocklist.term_empty_when_normalised", pattern=term.pattern)


class CompiledBlocklist:
    """One project's blocklist, ready to match: an automaton for the literals, compiled regexes."""

    def __init__(self, terms: Sequence[BlocklistTerm]) -> None:
        self.terms = tuple(terms)
        self._automaton = ahocorasick.Automaton()
        grouped: dict[str, list[int]] = {}
        #: (term index, as written for the text as given, normalised for the base view)
        self._regexes: list[tuple[int, regex.Pattern, regex.Pattern]] = []
        for index, term in enumerate(self.terms):
            try:
                if term.is_regex:
                    self._regexes.append((index, *compile_regex_term(term.pattern)))
                    continue
                validate_term(term)
            except InvalidBlocklistTerm as exc:
                raise InvalidBlocklistTerm(f"blocklist term #{index}: {exc}", code=exc.code, **exc.params) from None
            grouped.setdefault(normalise_term(term.pattern), []).append(index)
        for key, indices in grouped.items():
            # Whole-word checks apply only at ends where the term itself has a word character.
            self._automaton.add_word(
                key, (tuple(indices), len(key), is_word_char(key[0]), is_word_char(key[-1]))
            )
        self.literal_count = len(grouped)
        if grouped:
            self._automaton.make_automaton()

    #: Python objects one term holds beyond its characters: the ``BlocklistTerm`` (a pydantic model), the
    #: automaton's value tuple and the grouping's entry (tracemalloc: 705 bytes a term on 1,000 and 50,000 terms).
    BYTES_PER_TERM = 720

    def estimated_bytes(self) -> int:
        """About what this compiled list and the terms it keeps hold in memory (what the cache counts)."""
        automaton_bytes = self._automaton.get_stats()["total_size"] if self.literal_count else 0
        return estimate_bytes(automaton_bytes=automaton_bytes, terms=len(self.terms),
                              term_chars=sum(len(term.pattern) for term in self.terms),
                              bytes_per_term=self.BYTES_PER_TERM, regexes=len(self._regexes))

    def find(self, text: str, *, regex_timeout_s: float = DEFAULT_REGEX_TIMEOUT_S) -> list[BlocklistMatch]:
        """Every term occurrence in ``text``, in original-text offsets, one per (term, span)."""
        found: dict[tuple[int, int, int], BlocklistMatch] = {}
        views = matching_views(text) if (self.literal_count or self._regexes) else []
        if self.literal_count:
            for view in views:
                self._find_literals(view, found)
        if self._regexes and views:
            self._find_regexes(text, views[0], found, regex_timeout_s)
        return sorted(found.values(), key=lambda m: (m.start, m.end, m.term_index))

    def _find_literals(self, view: View, found: dict) -> None:
        text = view.text
        length = len(text)
        soft = view.soft_boundaries
        for last, (indices, size, check_start, check_end) in self._automaton.iter(text):
            start = last - size + 1
            if check_start and start > 0 and is_word_char(text[start - 1]) and start not in soft:
                continue
            if check_end and last + 1 < length and is_word_char(text[last + 1]) and last + 1 not in soft:
                continue
            original_start, original_end = view.span(start, last + 1)
            for index in indices:
                key = (index, original_start, original_end)
                if key not in found:
                    found[key] = BlocklistMatch(index, self.terms[index], original_start, original_end, view.name)

    def _find_regexes(self, original: str, base: View, found: dict, timeout_s: float) -> None:
        # A pattern normalising leaves alone (plain ASCII, matched ignoring case) finds on the base view
        # whatever it would find on the text as given, and its variants besides: one run. A pattern with
        # letters normalising changes also runs as written on the text as given, where its own spelling is.
        as_given: View | None = None
        for index, as_written, normalised in self._regexes:
            self._run_regex(index, normalised, base, found, timeout_s)
            if normalised is not as_written:
                if as_given is None:
                    as_given = View("original", original, tuple(range(len(original))))
                self._run_regex(index, as_written, as_given, found, timeout_s)

    def _run_regex(self, index: int, pattern: regex.Pattern, view: View, found: dict, timeout_s: float) -> None:
        try:
            for match in pattern.finditer(view.text, timeout=timeout_s):
                if match.end() == match.start():
                    continue  # an empty match points at nothing a reviewer could see
                original_start, original_end = view.span(match.start(), match.end())
                key = (index, original_start, original_end)
                found.setdefault(key, BlocklistMatch(index, self.terms[index], original_start, original_end, view.name))
        except TimeoutError:
            logger.warning(
                "blocklist regex %r gave up after %.3fs on a %d-character text", pattern.pattern, timeout_s, len(view.text)
            )


#: Which tuple of terms was last compiled under which key, by the tuple's identity (bounded: ids are ints).
_key_by_identity: "OrderedDict[int, str]" = OrderedDict()
_IDENTITY_ENTRIES = 1024
_identity_lock = threading.Lock()
compile_count = 0  # how many blocklists were compiled in this process (tests and metrics read it)


def blocklist_key(terms: Sequence[BlocklistTerm]) -> str:
    """A content hash of a term list: equal lists share one compiled automaton.

    Built from whole columns rather than term by term (about 10 ms for 50,000 terms instead of
    40): it runs on every screening call when the caller builds a fresh list. The pattern lengths
    go in too, so no pattern containing the separator can make two lists hash alike.
    """
    patterns = [term.pattern for term in terms]
    digest = hashlib.blake2b(digest_size=20)
    digest.update("\x1e".join(patterns).encode("utf-8", "surrogatepass"))
    digest.update(b"\x00" + ",".join(map(str, map(len, patterns))).encode())
    digest.update(b"\x00" + "\x1e".join([term.category for term in terms]).encode())
    digest.update(b"\x00" + bytes([term.is_regex for term in terms]))
    return digest.hexdigest()


def compile_blocklist(terms: Sequence[BlocklistTerm]) -> CompiledBlocklist:
    """The compiled form of ``terms``, from this process's cache of compiled lists (``compiled_lists``: a
    budget in bytes, shared with the allow lists) when this list was compiled before."""
    # A tuple cannot change under us, so the same tuple object skips even the hashing (50,000 terms take
    # milliseconds to hash, which would be paid on every screened text). The compiled list keeps the tuple
    # it answers for, so ``compiled.terms is terms`` also proves the id was not reused by another tuple since.
    if isinstance(terms, tuple):
        with _identity_lock:
            key = _key_by_identity.get(id(terms))
        if key is not None:
            compiled = compiled_lists.get(("blocklist", key))
            if compiled is not None and compiled.terms is terms:
                return compiled
    key = blocklist_key(terms)
    compiled = compiled_lists.get_or_compile(("blocklist", key), lambda: _compile(terms), CompiledBlocklist.estimated_bytes)
    if isinstance(terms, tuple):
        if compiled.terms is not terms:
            # An equal list read afresh (the platform reads a project's list again when it changes, or after
            # dropping it): the compiled list takes this tuple, equal term for term (the key hashes every
            # field), so the next call with it skips the hashing and the old tuple can be freed. Holding both
            # would keep memory the budget does not count.
            compiled.terms = terms
        with _identity_lock:
            _key_by_identity[id(terms)] = key
            _key_by_identity.move_to_end(id(terms))
            while len(_key_by_identity) > _IDENTITY_ENTRIES:
                _key_by_identity.popitem(last=False)
    return compiled


def _compile(terms: Sequence[BlocklistTerm]) -> CompiledBlocklist:
    global compile_count
    compiled = CompiledBlocklist(terms)
    compile_count += 1
    return compiled


def load_terms_file(path, default_category: Category = Category.CUSTOM) -> list[BlocklistTerm]:
    """Read a terms file: one term a line; ``re:`` starts a regular expression; an optional
    tab-separated category follows the term; blank lines and ``#`` comments are skipped."""
    terms = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pattern, _, category = line.partition("\t")
            is_regex = pattern.startswith("re:")
            terms.append(
                BlocklistTerm(
                    pattern=pattern[3:] if is_regex else pattern.strip(),
                    is_regex=is_regex,
                    category=Category(category.strip()) if category.strip() else default_category,
                )
            )
    return terms


class BlocklistCheck(SafetyCheckBase):
    """Flags a project's blocklist terms; score 1.0 for each category with a hit."""

    manifest = SafetyCheckManifest(
        id="blocklist",
        version="1.0.0",
        name="Project blocklist",
        targets=frozenset({Target.INPUT, Target.OUTPUT}),
        modalities=frozenset({"text"}),
        categories=frozenset(Category),
    )

    def validate_blocklist_term(self, term: BlocklistTerm) -> None:
        validate_term(term)

    def check_texts(self, texts: Sequence[str], context: ScreenContext) -> list[list[Finding]]:
        if not context.blocklist:
            return [[] for _ in texts]
        compiled = compile_blocklist(context.blocklist)
        timeout = float(context.options.get("regex_timeout_s", DEFAULT_REGEX_TIMEOUT_S))
        return [self._findings(text, compiled.find(text, regex_timeout_s=timeout)) for text in texts]

    def check_text(self, text: str, context: ScreenContext) -> list[Finding]:
        return self.check_texts([text], context)[0]

    def _findings(self, text: str, matches: list[BlocklistMatch]) -> list[Finding]:
        by_category: dict[Category, list[Evidence]] = {}
        for match in matches:
            kind = "regex" if match.term.is_regex else "term"
            how = "" if match.view in ("base", "original") else f", matched as {match.view}"
            by_category.setdefault(match.term.category, []).append(
                Evidence(
                    start=match.start,
                    end=match.end,
                    excerpt=text[match.start : match.end],
                    detail=f"{kind} {match.term.pattern!r}{how}",
                )
            )
        return [
            Finding(category=category, score=1.0, check=self.manifest.id, evidence=tuple(evidence))
            for category, evidence in by_category.items()
        ]


__all__ = [
    "BlocklistCheck",
    "BlocklistMatch",
    "CompiledBlocklist",
    "InvalidBlocklistTerm",
    "blocklist_key",
    "compile_blocklist",
    "compile_regex_term",
    "load_terms_file",
    "normalise",
    "validate_term",
]
