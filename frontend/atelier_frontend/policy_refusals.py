"""The settings page's refusals of a safety policy, a blocklist term or an allow-list entry, in the page's language.

The moderation services refuse in English, which the API and the admin keep: ``SafetyPolicy.clean`` (an audit sample
above 100, a threshold out of order) and ``moderation.policies`` (an empty term, a regular expression that could hang
screening or does not compile, an allow-list entry that is empty or too long, too many entries). Each of those is
raised with a code and its values, which this module says in the page's words: a threshold's category by its name
(``labels.category_label``), as the thresholds table shows it. Anything else keeps its words: the dashboard's own
(``settings_views``) and Django's field messages are translated already, and a safety check's reason for refusing a
term is its own English.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from atelier_frontend.labels import category_label

#: By the code the platform raises each with; the values are the platform's (``ValidationError.params``).
MESSAGES = {
    "audit_sample_above_100": _("At most 100."),
    "thresholds_out_of_order": _("%(category)s: need 0 <= review <= block <= 1 (review %(review)s, block %(block)s)."),
    "empty_term": _("Empty term."),
    "regex_nests_quantifiers": _("The regular expression “%(pattern)s” nests quantifiers (like (a+)+) and could hang "
                                 "screening."),
    "regex_does_not_compile": _("The regular expression “%(pattern)s” does not compile: %(error)s."),
    "empty_value": _("Empty value."),
    "too_many_entries": _("At most %(limit)s entries at a time."),
    "allowlist_full": _("A project's allow list holds at most %(limit)s entries; this would make it %(total)s."),
    "entry_too_long": _("“%(start)s…” is longer than 500 characters."),
}


def in_page_words(error: ValidationError) -> str:
    """One refusal (a ``ValidationError`` of one message) as the page shows it."""
    words = MESSAGES.get(error.code or "")
    params = dict(error.params or {})
    if words is None:
        return next(iter(error))  # its message, with its values
    if "category" in params:
        params["category"] = category_label(str(params["category"]))
    return str(words) % params


def category_of(error: ValidationError) -> str | None:
    """The category a threshold's refusal is about, whose inputs it marks."""
    return (error.params or {}).get("category") if error.code == "thresholds_out_of_order" else None
