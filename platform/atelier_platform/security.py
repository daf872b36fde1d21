"""The Content-Security-Policy every answer carries: the second wall behind the templates' escaping.

Prompts, outputs, review notes, usernames and webhook URLs all reach the dashboard's pages. Should one
ever slip past escaping, the browser still runs no script but the files under /static/ (no inline
``<script>``, no ``javascript:`` URL, no ``eval``), sends forms and requests only to this origin, loads no
plugin, and no other site may frame a page (clickjacking; X-Frame-Options says the same to old browsers).

The dashboard has no inline event handlers (app.js does what ``onchange=``/``onsubmit=`` once did: the
switchers, the confirmations). Should a template ever need one, it must be listed in ``INLINE_HANDLERS``:
it is then allowed by its hash alone ('unsafe-hashes'), and an injected handler with other text does not
run. Better: move it into app.js.
A view that sets its own policy keeps it (generated files are served sandboxed: ``api.knowledge_views``).
"""

from __future__ import annotations

import base64
import hashlib

#: The text of every inline event handler (``on...="..."``) the dashboard's templates hold.
INLINE_HANDLERS: tuple[str, ...] = ()


def _source_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    " ".join(["script-src 'self'"] + (["'unsafe-hashes'"] + [_source_hash(t) for t in INLINE_HANDLERS] if INLINE_HANDLERS else [])),
    # style attributes (charts' legend swatches, Swagger UI): they cannot run script
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
