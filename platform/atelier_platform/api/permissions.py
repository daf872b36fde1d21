"""Every API view names the capability each of its actions needs; this enforces it."""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission

from atelier_platform.api.access import resolve_access


class HasProjectCapability(BasePermission):
    """Views declare ``required_capabilities = {action_or_method: capability}``.

    An action missing from the map is refused: forgetting to declare a capability must close
    a door, not open it.
    """

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise NotAuthenticated("Send 'Authorization: Bearer <api key>', or sign in.")
        required_map = getattr(view, "required_capabilities", None)
        if required_map is None:
            raise PermissionDenied("This endpoint declares no capability and is closed.")
        if hasattr(view, "action") and view.action is None:
            return True  # no handler for this method: DRF answers 405 Method Not Allowed
        # HEAD is GET without the body (Django answers it with the GET handler): it needs what GET needs.
        method = "get" if request.method == "HEAD" else request.method.lower()
        key = getattr(view, "action", None) or method
        required = required_map.get(key) or required_map.get(method)
        if required is None:
            raise PermissionDenied("This action is not open to API callers.")
        access = resolve_access(request)
        request.access = access
        if required not in access.capabilities:
            if access.api_key is not None:
                raise PermissionDenied(f"This API key lacks the scope '{required}'.")
            raise PermissionDenied(f"Your role in project {access.project.slug!r} does not allow '{required}'.")
        return True
