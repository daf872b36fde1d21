"""Times and numbers as the page's language writes them (the template filters ``ago`` and ``number``,
in ``templatetags/atelier_formats.py``)."""

from __future__ import annotations

import datetime

from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import get_language, gettext as _, to_locale


def ago(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """How long ago ``moment`` was: "just now" under a minute (Django's ``timesince`` says "0 minutes", which
    reads as a duration), else "5 minutes ago"."""
    if not moment:
        return ""
    now = now or timezone.now()
    if (now - moment).total_seconds() < 60:  # a moment a little ahead of this clock too
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(moment, now)}


def number(value) -> str:
    """A count with the page's language's digit grouping: 12,345 (Django's own formats leave Chinese
    numbers ungrouped)."""
    from babel.numbers import format_decimal

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    try:
        return format_decimal(value, locale=to_locale(get_language() or "en"))
    except (ValueError, LookupError):
        return format_decimal(value, locale="en")
