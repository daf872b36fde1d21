"""A reviewer's decision through the API, for tests about what a decision sets off (webhooks, regenerations)."""

from __future__ import annotations

from rest_framework.test import APIClient

from atelier_platform.accounts.roles import Role
from atelier_platform.moderation.models import ReviewItem


def decide_the_review_item(project, member, capture_on_commit_callbacks, action: str = "approve", **decision):
    """A new reviewer of ``project`` claims its one review item and decides it (``action``, with ``decision``'s
    other fields), its commit callbacks run; the decision's answer."""
    item = ReviewItem.objects.get()
    reviewer = APIClient()
    reviewer.force_login(member(project, Role.REVIEWER))
    reviewer.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    with capture_on_commit_callbacks(execute=True):
        return reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": action, **decision}, format="json")
