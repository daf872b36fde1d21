"""Rules every piece of generated copy must pass, as pure functions of text and item facts.

A language model writes fluent text but may use words the brand bans, run past the length
limit, or invent facts ("20% off", "$49", "3-year warranty"). Nothing here trusts the model:
``find_banned_words`` and ``find_unsupported_numbers`` detect violations, ``enforce_length``
shortens at a sentence or word boundary, and ``repair_copy`` edits a draft until it passes
(or says that nothing acceptable remains, so the caller can fall back to a template).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

# --- scripts -------------------------------------------------------------------------------

# Han, kana and Hangul: scripts written without spaces, where "whole word" has no meaning and a
# banned word is matched as a substring.
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_DASHES = "-\u2010\u2011\u2012\u2013\u2014"
_DASH_CLASS = re.escape(_DASHES)  # for use inside a regex character class
_WORD_GAP = rf"[\s{_DASH_CLASS}]+"


def is_cjk(text: str) -> bool:
    return bool(_CJK_CHAR.search(text))


def _is_word_char(char: str) -> bool:
    """A letter or digit of a spaced script: the neighbours that make a match part of a longer word."""
    return (char.isalnum() or char == "_") and not _CJK_CHAR.match(char)


# --- banned words ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BannedMatch:
    word: str  # the banned word as configured
    start: int
    end: int


# A letter, digit or underscore of a spaced script: a banned word next to one is part of a longer
# word. CJK characters are not: in "这款cheap帐篷" the word "cheap" stands on its own.
_SPACED_WORD_CHAR = rf"[^\W{_CJK_RANGES}]"
# Models write typographic apostrophes where a brand's list has the typewriter one, and the other way
# round: "don't" must ban "don’t" too.
_APOSTROPHES = "'\u2018\u2019\u02bc\uff07"
#: Latin words shorter than this are banned as written only: an inflection of a short word is often
#: another word ("new" -> "news", "us" -> "uses").
MIN_INFLECTED_LENGTH = 4


def _inflected(word: str) -> str:
    """A pattern for ``word`` and its regular English inflections: plural, past, -ing, comparative.

    A brand that bans "bargain" does not want "bargains", nor "guaranteed" when it bans
    "guarantee", nor "cheaper" and "cheapest" when it bans "cheap". Forms that are no words at all
    ("cheapd") may match too: they never occur, so they cost nothing. Forms that are other words
    must not, and two spelling rules of English keep them out:

    - a one-syllable word that ends in one vowel letter and one consonant doubles the consonant
      before -ed, -ing, -er and -est (scar: scarred, scarring; slim: slimmer; strip: stripped), so
      the undoubled forms belong to another word (scared, staring, planed, striped, sniper, shining)
      and are not matched; longer words may go either way (visited, admitted) and match both;
    - no adjective ends in a doubled consonant other than l, f or s (small, stiff, crass), so a
      word that does takes no comparative: "butter" and "matter" are not "butt" and "matt" inflected.

    Unavoidable: a plain -er or -est cannot tell an adjective's comparative from another word
    built on a noun or a verb. "corn" bans "corner", "show" "shower", "cart" "carter", "kill"
    "killer" (and "earn" "earnest"), exactly as "cheap" bans "cheaper"; only a dictionary could tell
    them apart; such a removal still shows in ``issues_fixed`` ("banned_word:corn") for the reviewer.
    """
    escaped = re.escape(word)
    lower = word.lower()
    if len(word) < MIN_INFLECTED_LENGTH or not (word.isascii() and word.isalpha()):
        return escaped
    last = lower[-1]
    suffixes = ["s"]
    if lower.endswith(("s", "x", "z", "ch", "sh", "o")):
        suffixes.append("es")  # glass -> glasses
    doubling = _ends_in_one_vowel_and_one_consonant(lower)
    if doubling:
        suffixes.append(f"{last}(?:ed|ing|er|est)")  # slim -> slimmer, shop -> shopping, admit -> admitted
    if not (doubling and _has_one_syllable(lower)):
        suffixes += ["ed", "ing"]
        if not (last == lower[-2] and last not in "aeioulfs"):  # butt, matt, jazz: no comparative
            suffixes += ["er", "est"]
    if last == "e":
        suffixes += ["d", "r", "st"]  # guarantee -> guaranteed, fine -> finer, finest
    forms = [f"{escaped}(?:{'|'.join(suffixes)})?"]
    if last == "e":
        forms.append(f"{re.escape(word[:-1])}ing")  # cure -> curing
    if last == "y" and lower[-2] not in "aeiou":
        forms.append(f"{re.escape(word[:-1])}i(?:es|ed|er|est)")  # hurry -> hurried, tacky -> tackier
    return f"(?:{'|'.join(forms)})"


def _vowel_groups(lower: str) -> list[str]:
    """The runs of vowel letters, one per syllable near enough; the u of "qu" is no vowel (quit)."""
    return re.findall(r"[aeiou]+|(?<!^)y", lower.replace("qu", "q"))


def _ends_in_one_vowel_and_one_consonant(lower: str) -> bool:
    """Ends in a single vowel letter and one consonant that English doubles (not h, w, x or y): slim, admit."""
    stem = lower.replace("qu", "q")
    return (
        len(stem) >= 3 and stem[-1] not in "aeiouhwxy" and stem[-2] in "aeiou" and stem[-3] not in "aeiou"
    )


def _has_one_syllable(lower: str) -> bool:
    return len(_vowel_groups(lower)) == 1


def _any_apostrophe(pattern: str) -> str:
    return re.sub(f"[{_APOSTROPHES}]", lambda _: f"[{_APOSTROPHES}]", pattern)


@lru_cache(maxsize=4096)  # a project's list (up to 500 words) is checked against every draft
def _banned_pattern(word: str) -> re.Pattern[str]:
    """Words of a phrase may be separated by any whitespace or a hyphen: a brand that bans
    "must-have" does not want "must have" either. A word of a spaced script matches as a whole word
    (the last one with its inflections); one with CJK characters matches anywhere."""
    parts = [part for part in re.split(_WORD_GAP, word.strip()) if part]
    if not parts:  # dashes only: a brand that bans the em dash bans that character, nothing around it
        return re.compile(re.escape(word.strip()))
    if is_cjk(word):
        return re.compile(_WORD_GAP.join(re.escape(part) for part in parts), re.IGNORECASE)
    body = _WORD_GAP.join([*(re.escape(part) for part in parts[:-1]), _inflected(parts[-1])])
    # The boundary is asked for only where the banned word itself starts or ends with a word
    # character: "#1" may follow a letter, "50% off" be followed by one.
    before = f"(?<!{_SPACED_WORD_CHAR})" if _is_word_char(parts[0][0]) else ""
    after = f"(?!{_SPACED_WORD_CHAR})" if _is_word_char(parts[-1][-1]) else ""
    return re.compile(before + _any_apostrophe(body) + after, re.IGNORECASE)


def find_banned_words(text: str, banned_words: Iterable[str]) -> list[BannedMatch]:
    """Occurrences of banned words in ``text``, case-insensitive, left to right, not overlapping.

    Words in Latin (and other spaced) scripts match only as whole words, with their inflections
    ("cheap" is found in "cheapest", not in "cheapskate"); words containing CJK characters match
    anywhere. Where two matches overlap, the longer one wins.
    """
    found = [
        BannedMatch(word=word, start=match.start(), end=match.end())
        for word in {w.strip() for w in banned_words if w and w.strip()}
        for match in _banned_pattern(word).finditer(text)
    ]
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[BannedMatch] = []
    for match in found:
        if kept and match.start < kept[-1].end:
            continue
        kept.append(match)
    return kept


# --- numbers and facts -----------------------------------------------------------------------

_CURRENCY_BEFORE = r"US\$|HK\$|A\$|C\$|RMB|CNY|USD|EUR|GBP|JPY|[$\u20ac\u00a3\u00a5\uffe5\u20b9]"
_CURRENCY_AFTER = r"USD|EUR|GBP|CNY|RMB|JPY|dollars?|euros?|pounds?|\u5143|\u5757|\u7f8e\u5143|\u6b27\u5143|\u82f1\u9551"
_PERCENT_AFTER = r"%|\uff05|percent|per\s?cent"
_NUMBER = re.compile(
    rf"(?P<before>(?:{_CURRENCY_BEFORE})\s?)?"
    r"(?P<value>\d+(?:[.,]\d+)*)"
    rf"(?P<after>\s?(?:{_PERCENT_AFTER}|{_CURRENCY_AFTER})(?![A-Za-z]))?"
    rf"(?P<unit>[{_DASH_CLASS}][A-Za-z]+)?",
    re.IGNORECASE,
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")

# Chinese numerals count as a claim only next to a unit of money, time, size or a discount
# (三年, 两倍, 百分之二十, 八折): bare numerals are everyday words (一起, 十分, 万一).
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_CN_NUMERAL = "零〇一二两三四五六七八九十百千万亿"
_CN_MEASURE = r"个月|小时|分钟|厘米|毫米|公斤|毫升|年|月|天|日|周|倍|折|元|块|米|克|升|件|款|色"
_CN_NUMBER = re.compile(
    rf"(?P<percent>百分之)(?P<pvalue>[{_CN_NUMERAL}]+)|(?P<value>[{_CN_NUMERAL}]+)(?P<measure>{_CN_MEASURE})"
)
_CN_MONEY = {"元", "块"}


@dataclass(frozen=True)
class NumberMention:
    text: str  # as written, with its currency, percent sign or unit: "$49", "20%", "3-year"
    value: float
    kind: str  # "price", "percent", "discount" or "number"
    start: int
    end: int
    currency: str | None = None  # the currency the text names, where it names one


_CURRENCY_CODES = {
    "$": "$", "us$": "USD", "hk$": "HKD", "a$": "AUD", "c$": "CAD", "€": "EUR", "£": "GBP", "¥": "¥", "￥": "¥",
    "₹": "INR", "rmb": "CNY", "cny": "CNY", "usd": "USD", "eur": "EUR", "gbp": "GBP", "jpy": "JPY",
    "dollar": "$", "dollars": "$", "euro": "EUR", "euros": "EUR", "pound": "GBP", "pounds": "GBP",
    "元": "CNY", "块": "CNY", "美元": "USD", "欧元": "EUR", "英镑": "GBP",
}
# Symbols shared by several currencies: "$" is right for a price in USD, CAD, AUD...
_AMBIGUOUS_SYMBOLS = {"$": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD", "MXN", "TWD"}, "¥": {"CNY", "JPY"}}


def _currency_of(marker: str | None) -> str | None:
    if not marker:
        return None
    return _CURRENCY_CODES.get(re.sub(r"\s+", "", marker).lower())


def _currency_matches(named: str | None, item_currency: str | None) -> bool:
    if named is None or item_currency is None:
        return True
    if named in _AMBIGUOUS_SYMBOLS:
        return item_currency in _AMBIGUOUS_SYMBOLS[named]
    return named == item_currency


def _parse_arabic(value: str) -> list[float]:
    """'1,299.00' -> [1299.0]; '49,90' -> [49.9]; '3,4,5' -> [3, 4, 5] (a list, not a number)."""
    if _THOUSANDS.match(value):
        return [float(value.replace(",", ""))]
    if "," in value:
        head, _, tail = value.partition(",")
        if "," not in tail and "." not in value and len(tail) <= 2:
            return [float(f"{head}.{tail}")]  # decimal comma
        return [v for part in value.split(",") if part for v in _parse_arabic(part)]
    try:
        return [float(value)]
    except ValueError:  # "1.2.3" (a version, a date): each part is a number of its own
        return [float(part) for part in value.split(".") if part]


def chinese_numeral_value(numeral: str) -> int | None:
    """二十 -> 20, 三百五 -> 350 (colloquial), 一万二千 -> 12000; None when it is not a numeral."""
    total, section, digit = 0, 0, None
    last_unit = 10
    for char in numeral:
        if char in _CN_DIGITS:
            digit = _CN_DIGITS[char] if digit is None else digit * 10 + _CN_DIGITS[char]
        elif char in _CN_UNITS:
            unit = _CN_UNITS[char]
            if unit >= 10_000:
                total += (section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
            last_unit = unit
        else:
            return None
    if digit is not None:
        # "三百五" means 350: a trailing digit after a unit is one place below that unit
        section += digit * (last_unit // 10) if last_unit >= 100 and len(numeral) > 1 and numeral[-2] in _CN_UNITS else digit
    return total + section


def find_numbers(text: str) -> list[NumberMention]:
    """Every number in ``text`` with what kind of claim it makes (price, percent, plain number)."""
    mentions: list[NumberMention] = []
    for match in _NUMBER.finditer(text):
        before, after, unit = match.group("before"), match.group("after"), match.group("unit")
        is_percent = bool(after and re.fullmatch(rf"\s?(?:{_PERCENT_AFTER})", after, re.IGNORECASE))
        currency = _currency_of(before) or (None if is_percent else _currency_of(after))
        kind = "percent" if is_percent else "price" if currency else "number"
        for value in _parse_arabic(match.group("value")):
            mentions.append(
                NumberMention(match.group(0).strip(), value, kind, match.start(), match.end(), currency)
            )
    for match in _CN_NUMBER.finditer(text):
        if match.group("percent"):
            value = chinese_numeral_value(match.group("pvalue"))
            kind, currency = "percent", None
        else:
            value = chinese_numeral_value(match.group("value"))
            measure = match.group("measure")
            currency = "CNY" if measure in _CN_MONEY else None
            # "八折" (20% off) is a discount claim: only the item's own words can back it
            kind = "price" if currency else "discount" if measure == "折" else "number"
            # "一年四季", "一天": the numeral one is an ordinary word before a unit of time
            if value == 1 and not currency and measure != "折":
                continue
        if value is not None:
            mentions.append(NumberMention(match.group(0), float(value), kind, match.start(), match.end(), currency))
    mentions.sort(key=lambda m: m.start)
    return mentions


_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
} | {"dozen": 12, "single": 1, "double": 2, "twin": 2, "pair": 2}


def _key(value: float) -> float:
    return round(value, 6)


@dataclass(frozen=True)
class ItemFacts:
    """The numbers an item's own data supports, by the kind of claim they may back."""

    numbers: frozenset[float] = frozenset()
    percents: frozenset[float] = frozenset()
    prices: frozenset[float] = frozenset()
    currency: str | None = None
    text: str = ""  # all the item's text, for literal matches ("八折" written in the description)

    @classmethod
    def from_item(
        cls,
        *,
        title: str = "",
        description: str = "",
        tags: Sequence[str] = (),
        attributes: Mapping[str, str] | None = None,
        price: float | None = None,
        currency: str | None = None,
    ) -> "ItemFacts":
        attributes = attributes or {}
        text = "\n".join([title, description, *tags, *(f"{k}: {v}" for k, v in attributes.items())])
        mentions = find_numbers(text)
        numbers = {_key(m.value) for m in mentions}
        # "Two-Person Tent" backs "for 2 people"
        numbers.update(float(_NUMBER_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS)
        percents = {_key(m.value) for m in mentions if m.kind == "percent"}
        prices = {_key(m.value) for m in mentions if m.kind == "price"}
        if price is not None and math.isfinite(price):
            numbers.add(_key(price))
            prices.add(_key(price))
        return cls(frozenset(numbers), frozenset(percents), frozenset(prices), currency, text)

    def supports(self, mention: NumberMention) -> bool:
        if is_cjk(mention.text) and mention.text in self.text:
            return True  # a Chinese phrase the item data uses word for word
        value = _key(mention.value)
        if mention.kind == "percent":
            return value in self.percents
        if mention.kind == "price":
            return value in self.prices and _currency_matches(mention.currency, self.currency)
        if mention.kind == "discount":
            return False
        return value in self.numbers


def find_unsupported_numbers(text: str, facts: ItemFacts) -> list[NumberMention]:
    """Numbers, prices and percentages in ``text`` that the item's data does not contain."""
    return [mention for mention in find_numbers(text) if not facts.supports(mention)]


# --- sentences and length ----------------------------------------------------------------------

_LATIN_END = ".!?"
_CJK_END = "。！？"
_CLOSERS = "\"'\u201d\u2019)\u300d\u300f\uff09"
_CLAUSE_MARKS = ",;:\uff0c\uff1b\uff1a\u3001"
_ELLIPSIS = "\u2026"


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing spaces, so that ''.join(result) == text.

    A Latin full stop ends a sentence only before a space or the end (so "49.99" stays whole);
    the CJK marks end one wherever they are.
    """
    sentences: list[str] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char in _CJK_END or char in _LATIN_END or char == _ELLIPSIS:
            j = i + 1
            while j < n and (text[j] in _LATIN_END or text[j] in _CJK_END or text[j] == _ELLIPSIS or text[j] in _CLOSERS):
                j += 1
            if char in _CJK_END or j == n or text[j].isspace():
                while j < n and text[j].isspace():
                    j += 1
                sentences.append(text[start:j])
                start = i = j
                continue
            i = j
            continue
        i += 1
    if start < n:
        sentences.append(text[start:])
    return sentences


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _LATIN_END + _CJK_END + _ELLIPSIS


def enforce_length(text: str, max_chars: int) -> str:
    """``text`` shortened to at most ``max_chars`` characters, cut where a reader would cut it.

    Prefers the end of a sentence (when that keeps at least half the allowance), then a word
    boundary or a CJK clause mark followed by an ellipsis, and only as a last resort a hard cut.
    """
    text = text.strip()
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return text[:max_chars]
    sentence_cut = 0
    consumed = 0
    for sentence in split_sentences(text):
        kept = sentence.rstrip()
        if consumed + len(kept) > max_chars:
            break
        if _ends_sentence(kept):
            sentence_cut = consumed + len(kept)
        consumed += len(sentence)
    if sentence_cut >= max_chars / 2:
        return text[:sentence_cut].rstrip()

    budget = max_chars - 1  # room for the ellipsis that marks the cut
    window = text[: budget + 1]
    # Cut just before a space, or before a clause mark (the ellipsis takes the mark's place);
    # text without spaces (CJK) can only be cut at its clause marks. The hyphen of a compound
    # ("extra-comfortable") is a word boundary too: cutting there keeps whole words where the only
    # space is too early to cut at.
    word_cut = max(
        (i for i, c in enumerate(window) if c.isspace() or (c in _DASHES and i and window[i - 1].isalnum())),
        default=0,
    )
    clause_cut = max((i for i, c in enumerate(window) if c in _CLAUSE_MARKS), default=0)
    cut = max(word_cut, clause_cut) if is_cjk(window) or not word_cut else word_cut
    if cut >= max_chars / 4:
        shortened = text[:cut].rstrip().rstrip(_CLAUSE_MARKS + _DASHES + " (\"'\u201c\u2018")
        if shortened:
            return shortened + _ELLIPSIS
    if sentence_cut:
        return text[:sentence_cut].rstrip()
    return text[:budget].rstrip() + _ELLIPSIS


# --- repair ----------------------------------------------------------------------------------------


def tidy_text(text: str) -> str:
    """Whitespace and punctuation left tidy after words or clauses were cut out of a text."""
    text = re.sub(r"[ \t]+", " ", text).strip()
    text = re.sub(r"\s*\n\s*", "\n", text)
    # no spaces next to CJK punctuation or between CJK characters
    text = re.sub(r"(?<=[\u3000-\u303f\uff00-\uffef\u3400-\u9fff]) +| +(?=[\u3000-\u303f\uff00-\uffef])", "", text)
    text = re.sub(r"\(\s*\)|\[\s*\]|\uff08\s*\uff09", "", text)  # brackets emptied by a removal
    text = re.sub(r"\s+([,.;:!?%\u3001\uff0c\u3002\uff1b\uff1a\uff01\uff1f])", r"\1", text)
    text = re.sub(r"([,;:\uff0c\uff1b\uff1a\u3001])(?:\s*[,;:\uff0c\uff1b\uff1a\u3001])+", r"\1", text)
    text = re.sub(r"[,;:\uff0c\uff1b\uff1a\u3001]+(\s*[.!?\u3002\uff01\uff1f])", r"\1", text)
    text = re.sub(r"(^|[.!?\u3002\uff01\uff1f]\s*)[,;:\uff0c\uff1b\uff1a\u3001" + _DASH_CLASS + r"]+\s*", r"\1", text)
    text = re.sub(r"([.!?])\s*\.(?!\.)", r"\1", text)
    text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    text = re.sub(r"\s+[" + _DASH_CLASS + r"]\s*$", "", text)
    return text.strip().strip(_CLAUSE_MARKS + " ")


# Words that mean nothing once the word they qualified is gone: "the [best ever]!" -> "the!".
_DANGLING = re.compile(
    r"\s+\b(?:the|a|an|and|or|so|very|really|truly|most|such|of|with|for|our|your)\s*(?=[,.;:!?]|$)",
    re.IGNORECASE,
)


_LEADING_CONJUNCTION = re.compile(r"^\s*(?:and|or|but)\b\s*", re.IGNORECASE)
# The Chinese words that qualify the word after them (very, most, more, too, also, not): with that
# word taken out of a clause's end they say nothing, or the opposite ("也不[便宜]" -> "也不").
_DANGLING_CJK = re.compile(r"(?:非常|相当|比较|特别|超级|十分|很|最|更|太|超|真|挺|好|不|也|都|还|又)+$")
_CJK_CLAUSE_ENDS = "\uff0c\u3002\uff01\uff1f\uff1b\uff1a\u3001,.!?;:"


def _drop_dangling_words(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _DANGLING.sub("", text)
    return text


def remove_banned_words(text: str, banned_words: Iterable[str]) -> tuple[str, list[str]]:
    """``text`` without its banned words (tidied), and the banned words that were removed."""
    banned_words = list(banned_words)
    removed: list[str] = []
    # A removal can join two halves into a new banned phrase ("best cheap ever" -> "best ever"),
    # so look again until nothing is found; each pass removes at least one character.
    for _ in range(len(text) + 1):
        matches = find_banned_words(text, banned_words)
        if not matches:
            break
        removed.extend(m.word for m in matches if m.word not in removed)
        for match in reversed(matches):
            # keep Latin words apart; CJK needs no space where a word was taken out
            before = text[match.start - 1] if match.start else ""
            after = text[match.end] if match.end < len(text) else ""
            gap = " " if before and after and not (is_cjk(before) or is_cjk(after)) else ""
            head, rest = text[: match.start], text[match.end :]
            if not head.strip() or re.search(r"[.!?]\s*$", head):
                # the word opened a sentence: a conjunction after it now would ("[Cheap] and cosy")
                rest = _LEADING_CONJUNCTION.sub("", rest)
            if is_cjk(text[match.start : match.end]) and re.match(rf"\s*(?:[{_CJK_CLAUSE_ENDS}]|$)", rest):
                head = _DANGLING_CJK.sub("", head)  # "很[便宜]，" -> "，", not "很，"
            text = head + gap + rest
        text = tidy_text(_drop_dangling_words(text))
    return text, removed


def _split_clauses(sentence: str) -> list[str]:
    """Clauses with their leading mark: "A, b; c." -> ["A", ", b", "; c."]."""
    parts = re.split(rf"(?=[{_CLAUSE_MARKS}])", sentence)
    return [p for p in parts if p]


#: Share of a sentence that must survive the removal of a clause for the rest to be kept.
_MIN_KEPT_SHARE = 0.4
# Words that cannot end a clause: "It is yours for [$49]" -> "It is yours", not "It is yours for".
_TRAILING_FUNCTION_WORD = re.compile(
    r"\s+\b(?:is|are|was|were|be|at|for|with|to|of|from|by|only|just|now|and|or|the|a|an|your|our)\s*$", re.IGNORECASE
)


def _drop_trailing_function_words(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _TRAILING_FUNCTION_WORD.sub("", text)
    return text


def remove_unsupported_claims(text: str, facts: ItemFacts) -> tuple[str, list[str]]:
    """``text`` without the clauses (or whole sentences) that state numbers the item data lacks."""
    removed: list[str] = []
    kept_sentences: list[str] = []
    for sentence in split_sentences(text):
        bad = find_unsupported_numbers(sentence, facts)
        if not bad:
            kept_sentences.append(sentence)
            continue
        removed.extend(m.text for m in bad if m.text not in removed)
        clauses = _split_clauses(sentence.rstrip())
        clean = [c for c in clauses if not find_unsupported_numbers(c, facts)]
        ending = sentence.rstrip()[-1] if _ends_sentence(sentence) else ""
        rebuilt = _drop_trailing_function_words("".join(clean).rstrip().rstrip(_LATIN_END + _CJK_END + _CLAUSE_MARKS + " "))
        # Keep what is left of the sentence only if it still has its subject (the first clause)
        # and most of its substance; a stub like "This tent is" is worse than no sentence.
        if clauses and clean and clean[0] is clauses[0] and len(rebuilt) >= _MIN_KEPT_SHARE * len(sentence.strip()):
            if ending and not rebuilt.endswith(ending):
                rebuilt += ending
            trailing = sentence[len(sentence.rstrip()) :]
            kept_sentences.append(rebuilt + trailing)
    return tidy_text("".join(kept_sentences)), removed


# Copy shorter than this, or without a single letter, is not worth showing a reviewer.
MIN_USEFUL_CHARS = 12
_MIN_USEFUL_CJK_CHARS = 4


def is_useful(text: str) -> bool:
    """Enough words to be copy at all: a few CJK characters, or a dozen characters of a spaced script."""
    letters = sum(1 for c in text if c.isalpha())
    cjk = len(_CJK_CHAR.findall(text))
    if cjk * 2 >= letters and cjk:
        return cjk >= _MIN_USEFUL_CJK_CHARS
    return len(text.strip()) >= MIN_USEFUL_CHARS and letters >= MIN_USEFUL_CHARS // 2


def violations(text: str, *, banned_words: Iterable[str], facts: ItemFacts, max_chars: int) -> list[str]:
    """What is wrong with ``text`` as final copy, as issue codes ("banned_word:cheap", ...)."""
    issues = [f"banned_word:{m.word}" for m in find_banned_words(text, banned_words)]
    issues += [f"unsupported_number:{m.text}" for m in find_unsupported_numbers(text, facts)]
    if len(text) > max_chars:
        issues.append("too_long")
    if not is_useful(text):
        issues.append("empty")
    return list(dict.fromkeys(issues))


@dataclass
class RepairResult:
    text: str
    issues_fixed: list[str] = field(default_factory=list)
    acceptable: bool = True  # False: nothing usable remained; the caller must use something else

    @property
    def changed(self) -> bool:
        return bool(self.issues_fixed)


def repair_copy(
    text: str, *, banned_words: Iterable[str], facts: ItemFacts, max_chars: int, require_useful: bool = True
) -> RepairResult:
    """Edit ``text`` until it passes every check: banned words out, unsupported claims out, cut to length.

    Never returns text that breaks a rule: when the edits leave nothing useful (or nothing at all,
    with ``require_useful=False``), the result is ``acceptable=False`` with empty text.
    """
    banned_words = list(banned_words)
    issues: list[str] = []
    text = text.strip()
    for _ in range(3):  # each edit can expose what another one must fix (a cut that splits "129")
        text, removed_words = remove_banned_words(text, banned_words)
        issues += [f"banned_word:{w}" for w in removed_words]
        text, removed_numbers = remove_unsupported_claims(text, facts)
        issues += [f"unsupported_number:{n}" for n in removed_numbers]
        if len(text) > max_chars:
            text = enforce_length(text, max_chars)
            issues.append("too_long")
        if not find_banned_words(text, banned_words) and not find_unsupported_numbers(text, facts):
            break
    issues = list(dict.fromkeys(issues))
    remaining = violations(text, banned_words=banned_words, facts=facts, max_chars=max_chars)
    if not require_useful and any(c.isalpha() for c in text):
        remaining = [issue for issue in remaining if issue != "empty"]
    if remaining:
        return RepairResult("", list(dict.fromkeys(issues + remaining)), acceptable=False)
    return RepairResult(text, issues)
