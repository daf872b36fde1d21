"""Which media type an API answer takes: the ``Accept`` header, ``?format=`` or a ``.json`` suffix."""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.utils.mediatypes import media_type_matches


def _not_acceptable(message: str, renderers) -> NotAcceptable:
    error = NotAcceptable(message)
    # errors.py puts ``details`` in the envelope
    error.details = {"formats": sorted({renderer.format for renderer in renderers}),
                     "media_types": list(dict.fromkeys(renderer.media_type for renderer in renderers))}
    return error


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with every refusal a 406 ``not_acceptable`` that names what the endpoint offers.

    DRF answers a format it has no renderer for (``?format=xml``, ``/jobs.xml``) with a bare 404 "Not found.",
    as if the list were missing; the caller asked for a representation the endpoint does not have, which is
    what 406 says, as it already does for an ``Accept`` header no renderer satisfies.
    """

    def filter_renderers(self, renderers, format):
        found = [renderer for renderer in renderers if renderer.format == format]
        if not found:
            offered = ", ".join(sorted({renderer.format for renderer in renderers}))
            raise _not_acceptable(f"No {format!r} format here: this endpoint answers in {offered} "
                                  "(leave out ?format= or ask for one of these).", renderers)
        return found

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable as error:
            if getattr(error, "details", None) is not None:
                raise
            offered = ", ".join(renderer.media_type for renderer in renderers)
            raise _not_acceptable(f"The Accept header asks for no media type this endpoint answers in: {offered}.",
                                  renderers) from None


class ExportNegotiation:
    """For a view whose ``?export=csv|jsonl`` streams a file (the audit log, the outputs): an ``Accept`` header naming
    the file's media type (``text/csv``, ``application/x-ndjson``, ``text/*``), the one a download sends, gets the
    file, where the negotiation refused it with a 406 for not naming JSON, the media type of the view's pages. An
    answer that is no file (a 400 about the request) is JSON, as every error of the API."""

    def perform_content_negotiation(self, request, force=False):
        from atelier_platform.exports import EXPORT_MEDIA_TYPES

        export = request.query_params.get("export")
        if export in EXPORT_MEDIA_TYPES:
            file_type = EXPORT_MEDIA_TYPES[export].split(";")[0]
            accepted = self.get_content_negotiator().get_accept_list(request)
            force = force or any(media_type_matches(file_type, media_type) for media_type in accepted)
        return super().perform_content_negotiation(request, force=force)
