"""The chat page of a long thread shows its latest turns and links to the earlier ones, a window at a time."""

from __future__ import annotations

import re

import pytest

from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.models import ReviewState
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


def bubbles(page: str) -> list[str]:
    return re.findall(r'<div class="bubble">(.*?)</div>', page)


def test_a_long_thread_shows_its_latest_turns_and_pages_back_to_its_start(chat_project, signed_in):
    editor = signed_in(chat_project, "editor")
    conversation = Conversation.objects.create(project=chat_project, plugin_id="turn_counter")
    ConversationMessage.objects.bulk_create(
        ConversationMessage(conversation=conversation, index=i, role="user" if i % 2 == 0 else "assistant", content=f"turn {i}")
        for i in range(1120)
    )

    page = editor.get(f"/chat/{conversation.pk}/").content.decode()
    assert bubbles(page) == [f"turn {i}" for i in range(1070, 1120)]
    assert 'id="later-turns"' not in page

    seen = bubbles(page)
    while 'id="earlier-turns"' in page:
        link = re.search(r'<p class="muted small" id="earlier-turns"><a href="([^"]+)"', page).group(1)
        page = editor.get(link.replace("&amp;", "&")).content.decode()
        assert 'id="later-turns"' in page  # back to the latest
        seen = bubbles(page) + seen
    assert seen == [f"turn {i}" for i in range(1120)]


def test_a_reply_outside_the_window_is_not_shown_as_a_draft_inside_it(chat_project, signed_in):
    """A job's last turn can close one window while its reply opens the next: the reply is in the thread."""
    editor = signed_in(chat_project, "editor")
    conversation = Conversation.objects.create(project=chat_project, plugin_id="turn_counter")
    job = build_job(chat_project, plugin="turn_counter")
    build_output(job, content={"reply": "The reviewed reply.", "sources": []}, review_state=ReviewState.APPROVED)
    turns = [ConversationMessage(conversation=conversation, index=i, role="user", content=f"turn {i}") for i in range(69)]
    turns.append(ConversationMessage(conversation=conversation, index=69, role="user", content="Where is my parcel?", job=job))
    turns.append(ConversationMessage(conversation=conversation, index=70, role="assistant", content="The reviewed reply.", job=job))
    turns += [ConversationMessage(conversation=conversation, index=i, role="user", content=f"turn {i}") for i in range(71, 120)]
    ConversationMessage.objects.bulk_create(turns)

    latest = editor.get(f"/chat/{conversation.pk}/").content.decode()
    assert bubbles(latest)[0] == "The reviewed reply."
    before = ConversationMessage.objects.get(conversation=conversation, index=70).pk
    earlier = editor.get(f"/chat/{conversation.pk}/?before={before}").content.decode()
    assert bubbles(earlier)[-1] == "Where is my parcel?" and "The reviewed reply." not in earlier


@pytest.mark.parametrize("before", ["abc", "²", "9" * 40, "-1", "99999999"])
def test_a_window_named_by_nothing_shows_the_latest_turns(chat_project, signed_in, before):
    editor = signed_in(chat_project, "editor")
    conversation = Conversation.objects.create(project=chat_project, plugin_id="turn_counter")
    ConversationMessage.objects.create(conversation=conversation, index=0, role="user", content="Hello")
    response = editor.get(f"/chat/{conversation.pk}/", {"before": before})
    assert response.status_code == 200 and bubbles(response.content.decode()) == ["Hello"]
