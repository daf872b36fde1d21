"""The API's JSON parser: DRF's, with a cap on nesting.

A 1 MB body can nest arrays a hundred thousand deep; Python's JSON decoder then raises
RecursionError (not a ValueError, so DRF would answer 500), and even a body just under the
decoder's limit overflows the stack later, when it is encoded again to be stored. No request of
this API needs more than a few levels, so deeper bodies are refused with 400 ``malformed_json``.

JSON's ``\ud800`` escapes can spell half of a UTF-16 surrogate pair, which is no character at all:
Python decodes it into a string that cannot be encoded as UTF-8, so storing or answering with it
fails later, after the request's work is done (a review edit saved, then a 500 on every read of the
job). Such bodies are refused here, with the path of the first bad string.
"""

from __future__ import annotations

import io
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64


def depth_of(value) -> int:
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


def _is_text(value: str) -> bool:
    """Whether ``value`` is text UTF-8 can carry: no unpaired surrogate."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unpaired_surrogate_at(value, where: str = "") -> str | None:
    """The path (``messages.0.content``) of the first string, or key, with an unpaired surrogate; else None."""
    pending = [(value, where)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return path or "(the body)"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _is_text(key):
                    return child_path
                pending.append((child, child_path))
        elif isinstance(item, list):
            pending.extend((child, f"{path}.{index}" if path else str(index)) for index, child in enumerate(item))
    return None


#: A surrogate can only arrive as a ``\\uD800``-``\\uDFFF`` escape (UTF-8 cannot encode one): a body without
#: any, nearly every body, is not walked for them.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
        if depth_of(data) > MAX_DEPTH:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.")
        bad = unpaired_surrogate_at(data) if SURROGATE_ESCAPE.search(body) else None
        if bad is not None:
            raise ParseError(f"JSON text at {bad} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), "
                             "which is not a character: send UTF-8 text or a complete surrogate pair.")
        return data
