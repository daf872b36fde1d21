"""The ``personal_data`` check: e-mail addresses, phone numbers, payment cards, Chinese resident IDs, IBANs.

Numbers are only reported when they validate (Luhn for cards, the ISO 7064 checksum, a real birth
date and region for Chinese IDs, mod-97 for IBANs, numbering plans for phones), because long
digit strings are everywhere in business text (order numbers, tracking codes) and a check that
flags every 16-digit number trains reviewers to ignore it.

Evidence ``detail`` is the kind of data ("email", "phone", "card", "cn_id", "iban"), which is
what ``mask`` turns into placeholders. The excerpt is itself masked (only the last characters
kept): safety reports are stored for audit, and should not become a second copy of the data.

Matching runs on the NFKC form of the text, because a Chinese input method in full-width mode
types "１３８１２３４５６７８" and "＠"; spans are mapped back to the text as given, for evidence and masking.

The contact values a project publishes itself (``ScreenContext.published_contacts``: its support address and
phone line) are not reported: an e-mail address is compared lower-cased, a phone number in E.164 whatever way
it is written ("1-800-555-0142", "(800) 555-0142", "+1 800 555 0142"), and anything found inside an occurrence
of a published web address is left alone ("https://wa.me/18005550142").
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.cn import ric

from atelier_sdk.safety import (
    Category,
    Evidence,
    Finding,
    PublishedContact,
    SafetyCheckBase,
    SafetyCheckManifest,
    ScreenContext,
    Target,
)
from atelier_plugins.safety.normalise import nfkc_view

KINDS = ("email", "phone", "card", "cn_id", "iban")

_EMAIL = re.compile(
    r"(?<![0-9A-Za-z_.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![0-9A-Za-z_-])"
)
# Chinese mobile numbers: 1[3-9]x xxxx xxxx, with an optional +86 / 0086 and spaces or hyphens.
_CN_MOBILE = re.compile(r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![0-9A-Za-z_])")
# Cards: 13-19 digits, optionally grouped by spaces or hyphens; issuer digits 2-6 (Visa 4,
# Mastercard 2/5, Amex 3, Discover/UnionPay 6): other leading digits are not payment cards.
_CARD = re.compile(r"(?<![0-9A-Za-z_-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![0-9A-Za-z_-])")
_CN_ID = re.compile(r"(?<![0-9A-Za-z_])\d{17}[\dXx](?![0-9A-Za-z_])")
_IBAN = re.compile(r"(?<![0-9A-Za-z_])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![0-9A-Za-z_])")

#: Words that say a nearby number is a reference, not a phone ("order 13812345678").
_REFERENCE_WORDS = re.compile(
    r"(?:order|invoice|tracking|reference|ref|ticket|sku|serial|parcel|shipment|booking|case|"
    r"订单|单号|编号|运单|快递单|发票|流水号|工单)\s*(?:no\.?|number|num|id|#|号|:|：)?\s*[:：#]?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PersonalDataMatch:
    kind: str
    start: int
    end: int
    #: what a published contact is compared with: an e-mail address lower-cased, a phone number in E.164
    #: ("" for the other kinds, which are never published contacts)
    key: str = ""


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _valid_card(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _valid_cn_id(candidate: str) -> bool:
    if not ric.is_valid(candidate):  # checksum, birth date, and a county code that existed then
        return False
    birth = ric.get_birth_date(candidate)
    return datetime.date(1900, 1, 1) <= birth <= datetime.date.today()


def _valid_iban(candidate: str) -> bool:
    return stdnum_iban.is_valid(candidate.upper())


def _follows_reference_word(text: str, start: int) -> bool:
    return bool(_REFERENCE_WORDS.search(text[max(0, start - 24) : start]))


def find_personal_data(text: str, *, phone_region: str | None = "US") -> list[PersonalDataMatch]:
    """All validated personal data in ``text`` (offsets into ``text`` as given); overlapping candidates
    resolve to the most specific kind."""
    view = nfkc_view(text)
    normalised = view.text
    candidates: list[PersonalDataMatch] = []

    def add(kind: str, start: int, end: int, key: str = "") -> None:
        candidates.append(PersonalDataMatch(kind, *view.span(start, end), key))

    for match in _EMAIL.finditer(normalised):
        add("email", match.start(), match.end(), match.group().lower())
    for match in _CN_ID.finditer(normalised):
        if _valid_cn_id(match.group()):
            add("cn_id", match.start(), match.end())
    for match in _IBAN.finditer(normalised):
        # The pattern may run into a following code-like word; try shorter readings too.
        value = match.group()
        for end in range(len(value), 14, -1):
            if value[end - 1] != " " and _valid_iban(value[:end]):
                add("iban", match.start(), match.start() + end)
                break
    for match in _CARD.finditer(normalised):
        if _valid_card(match.group()):
            add("card", match.start(), match.end())
    for match in _CN_MOBILE.finditer(normalised):
        if not _follows_reference_word(normalised, match.start()):
            add("phone", match.start(), match.end(), _cn_mobile_key(match.group()))
    try:
        # VALID leniency: the number must belong to an allocated range of its numbering plan.
        for match in phonenumbers.PhoneNumberMatcher(normalised, phone_region, leniency=phonenumbers.Leniency.VALID):
            if not _follows_reference_word(normalised, match.start):
                add("phone", match.start, match.end, _e164(match.number))
    except Exception:  # phonenumbers raises on odd regions; the CN pattern still ran
        pass
    return _resolve_overlaps(candidates)


def _e164(number: "phonenumbers.PhoneNumber") -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _cn_mobile_key(value: str) -> str:
    try:
        return _e164(phonenumbers.parse(value, "CN"))
    except phonenumbers.NumberParseException:
        return "+86" + _digits(value)[-11:]


def published_contact_key(kind: str, value: str, *, phone_region: str | None = "US") -> str | None:
    """``value`` (a contact a project publishes) in the form this check compares what it finds with: an e-mail
    address lower-cased, a phone number in E.164, a web address with its scheme and host lower-cased and no
    trailing slash; None when ``value`` is not such a contact, as this check would find it in a text."""
    text = unicodedata.normalize("NFKC", value).strip()
    if kind == "email":
        return text.lower() if _EMAIL.fullmatch(text) else None
    if kind == "phone":
        if _CN_MOBILE.fullmatch(text):
            return _cn_mobile_key(text)
        try:
            number = phonenumbers.parse(text, phone_region)
        except phonenumbers.NumberParseException:
            return None
        # the numbers the check reports are VALID ones (see find_personal_data); another could never match
        return _e164(number) if phonenumbers.is_valid_number(number) else None
    if kind == "url":
        return _url_key(text)
    return None


def _url_key(text: str) -> str | None:
    if not text or any(char.isspace() for char in text):
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    rest = text[len(parts.scheme) + 3 + len(parts.netloc):]
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{rest}".rstrip("/")


def _published_url_spans(text: str, urls: Sequence[str]) -> list[tuple[int, int]]:
    """Where the published web addresses stand in ``text`` (any case), as offsets into ``text`` as given."""
    if not urls:
        return []
    view = nfkc_view(text)
    return [view.span(m.start(), m.end()) for m in _url_pattern(tuple(urls)).finditer(view.text)]


@lru_cache(maxsize=64)
def _url_pattern(urls: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(re.escape(url) for url in sorted(urls, key=len, reverse=True)), re.IGNORECASE)


def _not_published(matches: list[PersonalDataMatch], text: str, published: Sequence[PublishedContact]) -> list[PersonalDataMatch]:
    """``matches`` less the project's own published contacts: the same value, or a match inside a published URL."""
    values = {(contact.kind, contact.value) for contact in published if contact.kind in ("email", "phone")}
    url_spans = _published_url_spans(text, [contact.value for contact in published if contact.kind == "url"])
    return [
        m for m in matches
        if not (m.key and (m.kind, m.key) in values)
        and not any(start <= m.start and m.end <= end for start, end in url_spans)
    ]


_PRIORITY = {"email": 0, "cn_id": 1, "iban": 2, "card": 3, "phone": 4}


def _resolve_overlaps(candidates: Iterable[PersonalDataMatch]) -> list[PersonalDataMatch]:
    chosen: list[PersonalDataMatch] = []
    for candidate in sorted(candidates, key=lambda m: (_PRIORITY[m.kind], -(m.end - m.start), m.start)):
        if all(candidate.end <= other.start or candidate.start >= other.end for other in chosen):
            chosen.append(candidate)
    return sorted(chosen, key=lambda m: m.start)


def _masked_excerpt(value: str) -> str:
    keep = 4 if len(value) > 8 else 0
    return "".join("*" if c.isalnum() else c for c in value[: len(value) - keep]) + value[len(value) - keep :]


def mask(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each personal-data span replaced by a typed placeholder ("[email]", "[card]", ...).

    Uses the evidence of ``personal_data`` findings (of any check whose evidence ``detail`` names a
    kind); overlapping spans are merged into the first one.
    """
    spans = sorted(
        (evidence.start, evidence.end, evidence.detail)
        for finding in findings
        if finding.category == Category.PERSONAL_DATA
        for evidence in finding.evidence
        if evidence.start is not None and evidence.end is not None
    )
    pieces = []
    position = 0
    for start, end, kind in spans:
        if start < position:
            continue
        pieces.append(text[position:start])
        pieces.append(f"[{kind if kind in KINDS else 'personal_data'}]")
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class PersonalDataCheck(SafetyCheckBase):
    """Personal data in a text: score 1.0 with one evidence span per item found."""

    manifest = SafetyCheckManifest(
        id="personal_data",
        version="1.0.0",
        name="Personal data (e-mail, phone, card, Chinese ID, IBAN)",
        targets=frozenset({Target.INPUT, Target.OUTPUT}),
        modalities=frozenset({"text"}),
        categories=frozenset({Category.PERSONAL_DATA}),
    )

    def check_text(self, text: str, context: ScreenContext) -> list[Finding]:
        region = context.options.get("phone_region", "US")
        matches = find_personal_data(text, phone_region=region)
        if matches and context.published_contacts:
            matches = _not_published(matches, text, context.published_contacts)
        if not matches:
            return []
        evidence = tuple(
            Evidence(start=m.start, end=m.end, excerpt=_masked_excerpt(text[m.start : m.end]), detail=m.kind)
            for m in matches
        )
        return [Finding(category=Category.PERSONAL_DATA, score=1.0, check=self.manifest.id, evidence=evidence)]


__all__ = ["KINDS", "PersonalDataCheck", "PersonalDataMatch", "find_personal_data", "mask", "published_contact_key"]
