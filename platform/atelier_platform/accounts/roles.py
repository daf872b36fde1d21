"""Roles of project members and the capabilities (API key scopes) each one grants.

One vocabulary serves people and machines: a member's role grants a set of capabilities, an
API key carries a set of scopes, and every API view names the capability it needs.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"


class Capability(models.TextChoices):
    JOBS_READ = "jobs:read", "Read jobs, outputs and plugins"
    JOBS_WRITE = "jobs:write", "Submit and cancel jobs"
    REVIEWS_READ = "reviews:read", "See the review queue"
    REVIEWS_WRITE = "reviews:write", "Claim and decide reviews"
    ADMIN = "admin", "Manage the project: members, keys, policies"
    WEBHOOKS_MANAGE = "webhooks:manage", "Manage webhook endpoints and see their deliveries"
    CONTENT_ERASE = "content:erase", "Erase jobs' and conversations' content for good"


ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Capability.values),
    # Editors submit and browse results; the review queue (which shows outputs the jobs API withholds, rejected
    # and blocked ones) is the reviewers'. Whoever does not decide reviews does not read the queue either.
    Role.EDITOR: frozenset({Capability.JOBS_READ, Capability.JOBS_WRITE}),
    Role.REVIEWER: frozenset({Capability.JOBS_READ, Capability.REVIEWS_READ, Capability.REVIEWS_WRITE}),
    Role.VIEWER: frozenset({Capability.JOBS_READ}),
}

DEFAULT_API_KEY_SCOPES = (Capability.JOBS_READ.value, Capability.JOBS_WRITE.value)
