"""Which project a request acts on, and what it may do there.

An API key implies its project and carries scopes. A signed-in person names the project with
the ``X-Atelier-Project`` header or the ``project`` query parameter (or has only one project)
and may do what their role there allows. A project the caller is not a member of is answered
as not found, never as forbidden, so that project slugs do not leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rest_framework.exceptions import NotFound, ValidationError

from atelier_platform.accounts.models import ApiKey, Membership, Project
from atelier_platform.accounts.roles import ROLE_CAPABILITIES

PROJECT_HEADER = "HTTP_X_ATELIER_PROJECT"
_SLUG = re.compile(r"^[a-z0-9-]{1,50}\Z")


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    capabilities: frozenset[str]
    user: object | None = None
    api_key: ApiKey | None = None

    @property
    def actor(self) -> str:
        if self.api_key is not None:
            return f"API key {self.api_key.prefix}"
        return f"user {getattr(self.user, 'username', '?')}"


def resolve_access(request) -> ProjectAccess:
    if isinstance(request.auth, ApiKey):
        return ProjectAccess(project=request.auth.project, capabilities=frozenset(request.auth.scopes), api_key=request.auth)
    user = request.user
    slug = request.META.get(PROJECT_HEADER) or request.query_params.get("project")
    memberships = Membership.objects.select_related("project").filter(user=user)
    if slug:
        # Not a slug at all (too long, a NUL byte): no such project, without asking the database.
        membership = memberships.filter(project__slug=slug).first() if _SLUG.match(slug) else None
        if membership is None:
            raise NotFound(f"No project {slug!r} that you are a member of.")
    else:
        found = list(memberships[:2])
        if len(found) != 1:
            raise ValidationError(
                {"project": ["Name the project with the X-Atelier-Project header or the ?project= parameter."]}
            )
        membership = found[0]
    return ProjectAccess(project=membership.project, capabilities=ROLE_CAPABILITIES[membership.role], user=user)


def parent_in_project(queryset, project, raw_id, not_found: str):
    """The object a nested route's id names (``/conversations/{id}/messages/``), among the caller's project's;
    404 with ``not_found`` for another project's id and for text that is no UUID."""
    import uuid

    try:
        object_id = uuid.UUID(str(raw_id))
    except ValueError:
        raise NotFound(not_found) from None
    found = queryset.filter(project=project, pk=object_id).first()
    if found is None:
        raise NotFound(not_found)
    return found
