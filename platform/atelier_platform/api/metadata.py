"""What ``OPTIONS`` answers on an API route (who may ask: ``api.permissions``)."""

from __future__ import annotations

from django.urls import reverse
from rest_framework.metadata import SimpleMetadata


class RouteMetadata(SimpleMetadata):
    """The route's name, description and media types, and where its contract is: the OpenAPI schema.

    DRF's ``actions`` (the fields of the view's serializer, for POST and PUT) are left out: most views here read
    their body with an input serializer of their own (``JobCreateSerializer`` for the ``JobSerializer`` they
    answer with, ``ApiKeyCreateSerializer``...), so ``actions`` would describe the wrong fields; the schema
    describes every operation's body, parameters and answers as they are.
    """

    def determine_metadata(self, request, view):
        return {
            "name": view.get_view_name(),
            "description": view.get_view_description(),
            "renders": [renderer.media_type for renderer in view.renderer_classes],
            "parses": [parser.media_type for parser in view.parser_classes],
            "schema": reverse("schema"),
        }
