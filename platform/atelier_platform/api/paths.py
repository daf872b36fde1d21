"""API paths written without their trailing slash (``/api/v1/jobs``) are answered as with it.

Django's ``APPEND_SLASH`` answers them with a 301 to the slashed path, and HTTP clients follow a 301
after a POST with a GET: a ``POST /api/v1/jobs`` then created no job, and its caller got the job
list with 200, no error anywhere.
"""

from __future__ import annotations

from django.urls import Resolver404, resolve

API_PREFIX = "/api/"


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


class ApiTrailingSlashMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        # Every API path ends with a slash: only a path without one pays for the two look-ups.
        if path.startswith(API_PREFIX) and not path.endswith("/") and not _resolves(path) and _resolves(path + "/"):
            request.path_info = path + "/"
            request.path = request.path + "/"
        return self.get_response(request)
