"""The Simplified Chinese catalogue against what the dashboard shows: every string its templates and
views mark for translation has a translation (else a Chinese page shows it in English), and every
translation names the same placeholders as its English (else rendering it raises, a 500 in Chinese only).

Strings are found as ``makemessages`` finds them: Django's ``templatize`` turns a template into code
whose gettext calls Babel's Python extractor reads, plurals included."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_python
from babel.messages.pofile import read_po
from django.utils.translation.template import templatize

import atelier_frontend

FRONTEND = Path(atelier_frontend.__file__).resolve().parent
CATALOGUE = FRONTEND / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
KEYWORDS = {"gettext": None, "gettext_lazy": None, "_": None, "ngettext": (1, 2), "ngettext_lazy": (1, 2),
            "pgettext": ((1, "c"), 2), "pgettext_lazy": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3)}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def marked_strings_in_context() -> list[tuple[str, str | tuple, str | None]]:
    """(where, message, context) of every string the dashboard marks for translation; a plural is a tuple."""
    found = []
    for path in sorted((FRONTEND / "templates").rglob("*.html")):
        code = templatize(path.read_text(encoding="utf-8"), origin=str(path))
        found += [(f"{path.name}:{line}", *_with_context(function, message))
                  for line, function, message, _ in extract_python(io.BytesIO(code.encode()), KEYWORDS, [], {}) if message]
    for path in sorted(FRONTEND.glob("*.py")):
        with path.open("rb") as source:
            found += [(f"{path.name}:{line}", *_with_context(function, message))
                      for line, function, message, _ in extract_python(source, KEYWORDS, [], {}) if message]
    return found


def _with_context(function: str, message):
    """pgettext's arguments start with the context (``{% translate "Key" context "an API key" %}``)."""
    if function in ("pgettext", "pgettext_lazy", "npgettext"):
        rest = tuple(message[1:])
        return (rest if len(rest) > 1 else rest[0]), message[0]
    return message, None


def marked_strings() -> list[tuple[str, str | tuple]]:
    """(where, message) of every string the dashboard marks for translation; a plural is a tuple."""
    return [(where, message) for where, message, _ in marked_strings_in_context()]


@pytest.fixture(scope="module")
def catalogue():
    with CATALOGUE.open("rb") as source:
        return read_po(source)


def test_the_extraction_finds_the_dashboards_strings():
    """A guard for the guard: an extraction that found nothing would pass the test below."""
    messages = [message for _, message in marked_strings()]
    assert "Project settings" in messages and "Workers" in messages
    assert ("%(n)s source", "%(n)s sources", None) in messages or ("%(n)s source", "%(n)s sources") in messages


def test_every_string_the_dashboard_marks_has_its_chinese(catalogue):
    untranslated = []
    for where, message, context in marked_strings_in_context():
        singular = message[0] if isinstance(message, tuple) else message
        entry = catalogue.get(singular, context=context)
        strings = entry.string if entry is not None else ""
        if not (all(strings) if isinstance(strings, (tuple, list)) else strings):
            untranslated.append(f"{where}: {singular!r}")
    assert untranslated == []


def test_every_translation_names_the_placeholders_of_its_english(catalogue):
    mismatched = []
    for entry in catalogue:
        if not entry.id:
            continue  # the header
        english = entry.id if isinstance(entry.id, (tuple, list)) else (entry.id,)
        chinese = entry.string if isinstance(entry.string, (tuple, list)) else (entry.string,)
        wanted = set(PLACEHOLDER.findall(english[-1]))
        for text in chinese:
            if text and set(PLACEHOLDER.findall(text)) != wanted:
                mismatched.append(f"{english[0]!r} -> {text!r}")
    assert mismatched == []


def test_a_chinese_page_shows_the_dashboards_own_translations(catalogue):
    """Another app's catalogue (the admin's, Django REST framework's) that translates the same English wins
    over ours, by the order of the installed apps: "Key" was shown as 键 (a dictionary key) over the API
    keys, "Tokens" as 令牌 (a password token) over the usage chart. Such words carry a context of ours."""
    from django.utils import translation

    shown_otherwise = []
    with translation.override("zh-hans"):
        for entry in catalogue:
            if not entry.id or isinstance(entry.id, (tuple, list)) or not entry.string:
                continue  # the header; plurals are ngettext's, looked up alike
            shown = translation.pgettext(entry.context, entry.id) if entry.context else translation.gettext(entry.id)
            if shown != entry.string:
                shown_otherwise.append(f"{entry.id!r}: {shown!r}, not {entry.string!r}")
    assert shown_otherwise == []
