"""A job's field errors in the page's language.

The platform refuses a job's input with pydantic's English messages (``{"input.text": ["String should have
at least 1 character"]}``), which the API keeps. The dashboard shows the common ones in the page's language:
pydantic made each message from an error type and its context (``string_too_short``, ``{"min_length": 1}``),
and the platform's refusal (``InvalidJobInput.field_errors``) carries those errors beside the details it made
of them. Each message of the details is
matched to the error that made it (its field and its English); a matched error of a type known here is shown
in the page's words, with its limits. A built-in plugin's own refusal is known the same way: it raises
``atelier_sdk.input_error``, whose type is a stable code of its own (``image.prompt_blank``) and whose ctx holds
the values of its message. Anything else (a plugin's plain ``ValueError``, pydantic's ``value_error``, a type not
known here, a message the platform wrote itself, a language without the translation) keeps the platform's English.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from django.utils.translation import get_language, gettext as _, ngettext, override, to_locale


def _number(value: Any) -> str:
    """A limit as pydantic writes it: 2.0 as 2."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


#: How collections are named in pydantic's length errors (``ctx["field_type"]``).
def _collection(name: str) -> str | None:
    return {"List": _("List"), "Tuple": _("Tuple"), "Set": _("Set"), "Dictionary": _("Dictionary")}.get(name)


_CHOICE = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,]+""")


def _choices(expected: str) -> str | None:
    """pydantic's ``'a', 'b' or 'c'`` (``ctx["expected"]`` of a literal or enum error) as a list in the page's
    language ("'a'、'b'或'c'"); None where it cannot be read back exactly."""
    from babel.lists import format_list

    values = [token for token in _CHOICE.findall(expected) if token != "or"]
    english = values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}" if values else ""
    if english != expected:
        return None
    try:
        return format_list(values, style="or", locale=to_locale(get_language() or "en"))
    except (ValueError, LookupError):
        return None


def _length(ctx: dict, limit: str) -> tuple[str, dict] | None:
    collection = _collection(str(ctx.get("field_type")))
    if collection is None or not isinstance(ctx.get(limit), int):
        return None
    values = {"field_type": collection, limit: ctx[limit], "actual_length": ctx.get("actual_length")}
    if limit == "min_length":
        if ctx.get("actual_length") is None:
            return None
        text = ngettext("%(field_type)s should have at least %(min_length)s item after validation, not %(actual_length)s",
                        "%(field_type)s should have at least %(min_length)s items after validation, not %(actual_length)s",
                        ctx[limit])
    elif ctx.get("actual_length") is None:  # a dictionary stops counting once past the limit
        values.pop("actual_length")
        text = ngettext("%(field_type)s should have at most %(max_length)s item after validation",
                        "%(field_type)s should have at most %(max_length)s items after validation", ctx[limit])
    else:
        text = ngettext("%(field_type)s should have at most %(max_length)s item after validation, not %(actual_length)s",
                        "%(field_type)s should have at most %(max_length)s items after validation, not %(actual_length)s",
                        ctx[limit])
    return text, values


def _limit(key: str, text: Callable[[], str]) -> Callable[[dict], tuple[str, dict] | None]:
    return lambda ctx: (text(), {key: _number(ctx[key])}) if key in ctx else None


def _plain(text: Callable[[], str]) -> Callable[[dict], tuple[str, dict]]:
    return lambda ctx: (text(), {})


def _characters(key: str, at_least: bool) -> Callable[[dict], tuple[str, dict] | None]:
    def message(ctx: dict):
        if not isinstance(ctx.get(key), int):
            return None
        if at_least:
            text = ngettext("String should have at least %(min_length)s character",
                            "String should have at least %(min_length)s characters", ctx[key])
        else:
            text = ngettext("String should have at most %(max_length)s character",
                            "String should have at most %(max_length)s characters", ctx[key])
        return text, {key: ctx[key]}
    return message


def _expected(ctx: dict) -> tuple[str, dict] | None:
    choices = _choices(str(ctx.get("expected", "")))
    return (_("Input should be %(expected)s"), {"expected": choices}) if choices else None


#: pydantic's error types, each as (the message in the active language, its values) from the error's ctx;
#: None where the ctx is not as expected. Every type the built-in plugins' schemas raise is here (their own
#: refusals below) but ``value_error``, a plain ``ValueError`` whose text a plugin writes itself.
MESSAGES: dict[str, Callable[[dict], tuple[str, dict] | None]] = {
    "missing": _plain(lambda: _("Field required")),
    "extra_forbidden": _plain(lambda: _("Extra inputs are not permitted")),
    "string_type": _plain(lambda: _("Input should be a valid string")),
    "string_too_short": _characters("min_length", at_least=True),
    "string_too_long": _characters("max_length", at_least=False),
    "string_pattern_mismatch": lambda ctx: (_("String should match pattern '%(pattern)s'"), {"pattern": ctx["pattern"]})
    if "pattern" in ctx else None,
    "too_short": lambda ctx: _length(ctx, "min_length"),
    "too_long": lambda ctx: _length(ctx, "max_length"),
    "greater_than": _limit("gt", lambda: _("Input should be greater than %(gt)s")),
    "greater_than_equal": _limit("ge", lambda: _("Input should be greater than or equal to %(ge)s")),
    "less_than": _limit("lt", lambda: _("Input should be less than %(lt)s")),
    "less_than_equal": _limit("le", lambda: _("Input should be less than or equal to %(le)s")),
    "multiple_of": _limit("multiple_of", lambda: _("Input should be a multiple of %(multiple_of)s")),
    "int_type": _plain(lambda: _("Input should be a valid integer")),
    "int_parsing": _plain(lambda: _("Input should be a valid integer, unable to parse string as an integer")),
    "int_from_float": _plain(lambda: _("Input should be a valid integer, got a number with a fractional part")),
    "float_type": _plain(lambda: _("Input should be a valid number")),
    "float_parsing": _plain(lambda: _("Input should be a valid number, unable to parse string as a number")),
    "finite_number": _plain(lambda: _("Input should be a finite number")),
    "bool_type": _plain(lambda: _("Input should be a valid boolean")),
    "bool_parsing": _plain(lambda: _("Input should be a valid boolean, unable to interpret input")),
    "list_type": _plain(lambda: _("Input should be a valid list")),
    "dict_type": _plain(lambda: _("Input should be a valid dictionary")),
    "model_type": _plain(lambda: _("Input should be a valid dictionary")),
    "model_attributes_type": _plain(lambda: _("Input should be a valid dictionary")),
    "none_required": _plain(lambda: _("Input should be None")),
    "literal_error": _expected,
    "enum": _expected,
}


def _values(text: Callable[[], str], **kinds: type) -> Callable[[dict], tuple[str, dict] | None]:
    """A message with the values ``kinds`` names (each of its type) from the error's ctx."""
    def message(ctx: dict):
        if not all(type(ctx.get(key)) is kind for key, kind in kinds.items()):
            return None
        return text(), {key: ctx[key] for key in kinds}
    return message


#: The built-in plugins' own refusals (``atelier_sdk.input_error``: a type of their own and the values of their
#: message as ctx), in the page's language; the API keeps the plugin's English ("Value error, ...").
MESSAGES.update({
    "image.prompt_blank": _plain(lambda: _("the prompt must say what to draw; it is only whitespace")),
    "image.negative_prompt_needs_guidance": _plain(lambda: _(
        "a negative prompt needs guidance above 1 (guidance 1 or less ignores it); "
        "raise guidance or leave negative_prompt empty")),
    "chatbot.last_message_not_user": _values(
        lambda: _("the last message must have role 'user' (the one to answer), not '%(role)s'"), role=str),
    "chatbot.conversation_id_not_uuid": _plain(
        lambda: _("conversation_id must be a UUID such as 3f2b9c1e-8d4a-4c1b-9e2f-6a7b8c9d0e1f")),
    "chatbot.stop_string_length": _values(
        lambda: _("each stop string must be %(min_length)s to %(max_length)s characters long"), min_length=int,
        max_length=int),
    "recommender_copy.blank": _plain(lambda: _("must not be blank")),
    "recommender_copy.duplicate_item_ids": _values(lambda: _("item ids must be unique; repeated: %(ids)s"), ids=str),
})


def in_page_language(error: dict, known: dict[str, Callable[[dict], tuple[str, dict] | None]] = MESSAGES) -> str:
    """One pydantic error (``type``, ``ctx``, ``msg``) in the active language; its own message where this
    language has no words for it. ``known``: the types worded, by default pydantic's and the plugins' own."""
    make = known.get(error.get("type", ""))
    ctx = error.get("ctx") or {}
    try:
        shown = make(ctx) if make else None
        if shown is None:
            return error["msg"]
        with override(None):  # the same message untranslated: is there a translation at all?
            english = make(ctx)
        if english is None or english[0] == shown[0]:
            return error["msg"]
        return shown[0] % shown[1]
    except (KeyError, TypeError, ValueError):
        return error["msg"]


def _validation_errors(exc: BaseException) -> list[dict]:
    """pydantic's errors behind the refusal ``exc``, located from their root (``("input", "text")``); none for others."""
    return list(getattr(exc, "field_errors", None) or [])


def shown_details(exc: BaseException, known: dict[str, Callable[[dict], tuple[str, dict] | None]] = MESSAGES
                  ) -> dict[str, list[str]]:
    """The refusal's field errors (``exc.details``: ``{"input.text": [message, ...]}``) with each message pydantic
    made in the page's language (``known`` its types: a caller adds its service's own, ``evaluation_words``); the
    others as they are."""
    details = getattr(exc, "details", None)
    if not isinstance(details, dict):
        return {}
    errors: dict[tuple[str, str], dict] = {}
    for error in _validation_errors(exc):
        errors.setdefault((".".join(map(str, error.get("loc", ()))), error.get("msg", "")), error)
    shown: dict[str, list[str]] = {}
    for location, messages in details.items():
        messages = messages if isinstance(messages, list) else [messages]
        shown[location] = [in_page_language(errors[(location, str(m))], known) if (location, str(m)) in errors else str(m)
                           for m in messages]
    return shown
