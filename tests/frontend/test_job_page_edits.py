"""The job page shows what a reviewer's edit changed, to those who may read the review queue."""

from __future__ import annotations

import pytest

from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem
from tests.frontend.test_dashboard_fixes import text_of

pytestmark = pytest.mark.django_db


def test_an_edit_shows_its_changes_to_reviewers_and_owners_and_not_what_was_edited_out_to_editors(
        project, signed_in, submit, run_job):
    editor, reviewer, owner = signed_in(project, "editor"), signed_in(project, "reviewer"), signed_in(project, "owner")
    job = submit(project, text="call me on 555 0100", user=editor.user)
    run_job(job)
    item = ReviewItem.objects.get(output__job=job)
    acting = review.Reviewer(actor=f"user:{reviewer.user.pk}", user_id=reviewer.user.pk)
    content = dict(item.output.content, text="call us at the shop")
    review.decide(review.claim(item, acting), acting, action="edit", content=content)

    for who in (reviewer, owner):
        page = text_of(who.get(f"/jobs/{job.pk}/"))
        changes = page.split('<details class="edit-changes">')[1].split("</details>")[0]
        assert "What the reviewer changed" in changes
        assert '<span class="removed">- &quot;text&quot;: &quot;0010 555 no em llac&quot;' in changes
        assert '<span class="added">+ &quot;text&quot;: &quot;call us at the shop&quot;' in changes
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert "edit-changes" not in page and "0010 555" not in page  # the edited-out text is the reviewers' to read
    assert "call us at the shop" in page  # the output as approved

