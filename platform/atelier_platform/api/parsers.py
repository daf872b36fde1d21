"""The API's JSON parser: DRF's, with a cap on nesting.

A 1 MB body can nest arrays a hundred thousand deep; Python's JSON decoder then raises
RecursionError (not a ValueError, so DRF would answer 500), and even a body just under the
decoder's limit overflows the stack later, when it is encoded again to be stored. No request of
this API needs more than a few levels, so deeper bodies are refused with 400 ``malformed_json``.
"""

from __future__ import annotations

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


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.") from None
        if depth_of(data) > MAX_DEPTH:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.")
        return data
