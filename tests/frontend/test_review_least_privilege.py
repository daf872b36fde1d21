"""Whoever does not decide reviews (no ``reviews:write``) never reads what the jobs API withholds.

The job page withheld a rejected output from an editor, but the review panel (``/review/items/<n>/``, sequential
ids) and ``GET /api/v1/reviews/...`` showed the editor its whole reply, sources and prompt: editors held
``reviews:read``. The review queue is the reviewers' (and owners'); editors submit and browse results.
"""

from __future__ import annotations

import pytest
from django.test import Client

from atelier_platform.accounts.roles import ROLE_CAPABILITIES, Role
from atelier_platform.jobs.models import Output, ReviewState
from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.moderation.screening import policy_for
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return response.content.decode()


def decide(item, user, action, **fields):
    reviewer = review.Reviewer(actor=f"user:{user.pk}", user_id=user.pk)
    return review.decide(review.claim(item, reviewer), reviewer, action=action, **fields)


@pytest.fixture
def rejected(project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
    """An editor's job whose reply a reviewer rejected: (editor client, reviewer client, item)."""
    editor, reviewer = signed_in(project, "editor"), signed_in(project, "reviewer")
    job = submit(project, text="secret recipe", user=editor.user)
    run_job(job)
    assert Output.objects.get(job=job).content["text"] == "epicer terces"
    item = ReviewItem.objects.get(output__job=job)
    with django_capture_on_commit_callbacks(execute=True):
        decide(item, reviewer.user, "reject", reason=policy_for(project).reasons[0])
    assert Output.objects.get(job=job).review_state == ReviewState.REJECTED
    return editor, reviewer, item


def test_editors_do_not_hold_the_review_capabilities():
    assert not ROLE_CAPABILITIES[Role.EDITOR] & {"reviews:read", "reviews:write"}
    for role in Role:  # no role reads the queue without deciding it
        assert ("reviews:read" in ROLE_CAPABILITIES[role]) == ("reviews:write" in ROLE_CAPABILITIES[role])


def test_an_editor_cannot_open_a_rejected_items_review_panel(project, rejected):
    editor, reviewer, item = rejected
    assert "Withheld: rejected by a reviewer." in text_of(editor.get(f"/jobs/{item.output.job_id}/"))
    response = editor.get(f"/review/items/{item.pk}/")
    assert response.status_code == 403
    page = text_of(response)
    assert "epicer terces" not in page and "secret recipe" not in page
    assert "You submitted this job" not in page
    shown = reviewer.get(f"/review/items/{item.pk}/")  # the reviewer still reads it where they decide
    assert shown.status_code == 200 and "epicer terces" in text_of(shown) and "secret recipe" in text_of(shown)


@pytest.mark.parametrize("url", ["/api/v1/reviews/{pk}/", "/api/v1/reviews/?state=all", "/api/v1/reviews/metrics/"])
def test_an_editor_cannot_read_the_review_api(project, rejected, url):
    editor, reviewer, item = rejected
    url = url.format(pk=item.pk)
    refused = editor.get(url, HTTP_X_ATELIER_PROJECT=project.slug)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert "epicer terces" not in text_of(refused)
    allowed = reviewer.get(url, HTTP_X_ATELIER_PROJECT=project.slug)
    assert allowed.status_code == 200
    if "metrics" not in url:
        assert "epicer terces" in text_of(allowed)


def test_a_key_granted_reviews_read_still_reads_the_queue(project, rejected, make_key, client_for):
    """Scopes mean what they say: an owner who grants a key reviews:read grants it the queue."""
    _editor, _reviewer, item = rejected
    key = client_for(make_key(project, ["reviews:read"]).raw)
    response = key.get(f"/api/v1/reviews/{item.pk}/")
    assert response.status_code == 200 and response.json()["output"]["content"]["text"] == "epicer terces"


def test_the_self_approval_notice_is_shown_only_while_the_item_is_open(
        project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
    owner, reviewer = signed_in(project, "owner"), signed_in(project, "reviewer")
    job = submit(project, text="my own words", user=owner.user)
    run_job(job)
    item = ReviewItem.objects.get(output__job=job)
    assert "You submitted this job: another reviewer must approve it." in text_of(owner.get(f"/review/items/{item.pk}/"))
    with django_capture_on_commit_callbacks(execute=True):
        decide(item, reviewer.user, "reject", reason=policy_for(project).reasons[0])
    page = text_of(owner.get(f"/review/items/{item.pk}/"))
    assert "drow nwo ym" in page  # the owner reviews: the decided item is shown
    assert "You submitted this job" not in page


def test_the_second_reviewer_note_names_approvers_by_username(project, signed_in, member):
    policy = policy_for(project)
    policy.second_review_for_flagged = True
    policy.save()
    first = member(project, "reviewer")
    item = ReviewItem.objects.create(output=build_output(build_job(project)), project=project, flagged=True)
    decide(item, first, "approve")
    item.refresh_from_db()
    assert item.approvals == [f"user:{first.pk}"]
    page = text_of(signed_in(project, "reviewer").get(f"/review/items/{item.pk}/"))
    assert "Second-reviewer rule: 1 of 2 approvals so far." in page
    assert f"({first.username})" in page.replace(f'<span title="user:{first.pk}">', "").replace("</span>", "")
    assert f"(user:{first.pk})" not in page


def test_signed_out_callers_of_the_panel_are_sent_to_sign_in(project, rejected):
    _editor, _reviewer, item = rejected
    response = Client().get(f"/review/items/{item.pk}/")
    assert response.status_code == 302 and "epicer terces" not in text_of(response)
