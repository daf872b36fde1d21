"""Every API view names the capability each of its actions needs; this enforces it."""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission

from atelier_platform.api.access import resolve_access

#: Methods that describe a route rather than act on it: OPTIONS is answered by DRF's ``options`` (the
#: metadata class), HEAD by the GET handler.
_NOT_ACTIONS = ("options", "head")


def handler_name(view, method: str) -> str | None:
    """The name ``required_capabilities`` knows the handler of ``method`` by on this route: a viewset's action
    (``list``, ``claim_next``) or a plain view's method (``get``); HEAD goes by GET's name. None when the route
    has no handler for the method, which DRF then answers with 405 Method Not Allowed."""
    method = method.lower()
    action_map = getattr(view, "action_map", None)
    if action_map is not None:  # a viewset: this route's handlers are the actions the router mapped to it
        return action_map.get(method)
    # ``hasattr`` alone would take a method named like one of the view's attributes (``DISPATCH``) for a handler
    if method not in view.http_method_names or not hasattr(view, method):
        return None
    return "get" if method == "head" else method


def route_handlers(view) -> list[str]:
    """The names of every handler of this route (GET's first), OPTIONS and HEAD aside."""
    action_map = getattr(view, "action_map", None)
    if action_map is not None:
        methods = [m for m in view.http_method_names if m in action_map and m not in _NOT_ACTIONS]
    else:
        methods = [m for m in view.http_method_names if m not in _NOT_ACTIONS and hasattr(view, m)]
    return list(dict.fromkeys(handler_name(view, m) for m in methods))


class HasProjectCapability(BasePermission):
    """Views declare ``required_capabilities = {action_or_method: capability}``: a viewset by its actions
    (``list``, ``create``, ``claim_next``), a plain view by its methods (``get``, ``patch``).

    An action missing from the map is refused: forgetting to declare a capability must close a door, not open
    it. A method the route has no handler for is let through to DRF, which answers 405 (with the ``Allow``
    header): refusing it here said 403 "not open to you" about a method that is open to nobody. Credentials
    still come first, so a caller without them gets 401 whatever the method.

    OPTIONS describes the route (``api.metadata``): it is answered to a caller who may call at least one of the
    route's methods, and refused like them otherwise; HEAD needs what GET needs.

    An action that needs several capabilities at once names them in a tuple (an evaluation run submits a job per
    case: ``(ADMIN, JOBS_WRITE)``); one open to either of several names them in a list (an export in the background
    of the library needs ``jobs:read``, of the audit log ``admin``: ``[JOBS_READ, ADMIN]``, the view then checks
    the one its object needs).
    """

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise NotAuthenticated("Send 'Authorization: Bearer <api key>', or sign in.")
        required_map = getattr(view, "required_capabilities", None)
        if required_map is None:
            raise PermissionDenied("This endpoint declares no capability and is closed.")
        if request.method == "OPTIONS":
            needed = [required_map.get(name) for name in route_handlers(view)]
        else:
            name = handler_name(view, request.method)
            if name is None:
                return True  # no handler for this method: DRF answers 405 Method Not Allowed
            needed = [required_map.get(name)]
        needed = [alternative for capability in needed for alternative in _alternatives(capability)]
        needed = list(dict.fromkeys(capability for capability in needed if capability is not None))
        if not needed:
            raise PermissionDenied("This action is not open to API callers.")
        access = resolve_access(request)
        request.access = access
        if not any(_holds(access.capabilities, capability) for capability in needed):
            wanted = " or ".join(" and ".join(f"'{c}'" for c in _each(capability)) for capability in needed)
            if access.api_key is not None:
                raise PermissionDenied(f"This API key lacks the scope {wanted}.")
            raise PermissionDenied(f"Your role in project {access.project.slug!r} does not allow {wanted}.")
        return True


def _alternatives(required) -> list:
    """The requirements an action is open to: a list names several, any of which will do."""
    return list(required) if isinstance(required, list) else [required]


def _each(required) -> tuple:
    """The capabilities one requirement names: one, or several that are all needed."""
    return tuple(required) if isinstance(required, tuple) else (required,)


def _holds(capabilities, required) -> bool:
    return all(capability in capabilities for capability in _each(required))
