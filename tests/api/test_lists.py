"""Every list endpoint: cursor pages that walk the whole list once, and a query count that does not grow with the page."""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.accounts.services import issue_api_key
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.knowledge.models import KnowledgeChunk, KnowledgeDocument
from atelier_platform.moderation import audit
from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.api.helpers import assert_envelope, build_job, build_output

_n = itertools.count()


def add_job(project, context):
    build_output(build_job(project), image=False)


def add_output(project, context):
    build_output(build_job(project), image=True)


def add_key(project, context):
    issue_api_key(project, scopes=["jobs:read"], name=f"k{next(_n)}")


def add_document(project, context):
    document = KnowledgeDocument.objects.create(project=project, source_id=f"doc/{next(_n):04d}", title="T", content="c",
                                                content_sha256="0" * 64)
    KnowledgeChunk.objects.create(document=document, index=0, text="c", embedding=b"")


def add_review(project, context):
    item = ReviewItem.objects.create(output=build_output(build_job(project), image=True), project=project)
    ReviewDecision.objects.create(item=item, action="approve", decided_by="user:1")


def add_audit_event(project, context):
    audit.record(project, "user:1", "test_event", project, after={"n": next(_n)})


def add_webhook(project, context):
    WebhookEndpoint.objects.create(project=project, url=f"https://example.com/{next(_n)}", secret="whsec_x")


def add_delivery(project, context):
    endpoint = context.setdefault("endpoint", WebhookEndpoint.objects.create(project=project, url="https://example.com/", secret="whsec_x"))
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=uuid.uuid4().hex,
                                              payload={}, max_attempts=3)
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), duration_ms=5, status_code=500)


def add_message(project, context):
    conversation = context.setdefault("conversation", Conversation.objects.create(project=project, plugin_id="chatbot"))
    ConversationMessage.objects.create(conversation=conversation, index=conversation.messages.count(), role="user",
                                       content=f"turn {next(_n)}")


def add_export(project, context):
    from atelier_platform.accounts.models import ApiKey
    from atelier_platform.accounts.services import issue_api_key
    from atelier_platform.exports.models import Export

    # the caller's own (the owner key's, the only key of the project): a caller lists the exports it asked for
    if "key" not in context:
        context["key"] = ApiKey.objects.filter(project=project).first() or issue_api_key(project).api_key
    Export.objects.create(project=project, kind="library", format="csv", requested_by_key=context["key"])


LISTS = {
    "jobs": ("/api/v1/jobs/", add_job),
    "outputs": ("/api/v1/outputs/", add_output),
    "api-keys": ("/api/v1/api-keys/", add_key),
    "knowledge": ("/api/v1/knowledge/documents/", add_document),
    "reviews": ("/api/v1/reviews/?state=all", add_review),
    "audit": ("/api/v1/audit/", add_audit_event),
    "webhooks": ("/api/v1/webhooks/", add_webhook),
    "deliveries": ("/api/v1/webhooks/{endpoint}/deliveries/", add_delivery),
    "messages": ("/api/v1/conversations/{conversation}/messages/", add_message),
    "exports": ("/api/v1/exports/", add_export),
}


def url_of(name: str, context: dict) -> str:
    url = LISTS[name][0]
    if "{endpoint}" in url:
        return url.format(endpoint=context["endpoint"].pk)
    return url.format(conversation=context["conversation"].pk) if "{conversation}" in url else url


def results(api, url) -> list[dict]:
    response = api.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"next", "previous", "results"}, body
    return body["results"]


def walk(api, url, page_size) -> list:
    separator = "&" if "?" in url else "?"
    page = api.get(f"{url}{separator}page_size={page_size}").json()
    seen = [row["id"] for row in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]
    return seen


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LISTS))
def test_query_count_does_not_grow_with_the_page(name, owner_api, project):
    build, context = LISTS[name][1], {}
    build(project, context)
    url = url_of(name, context)
    before = len(results(owner_api, url))  # the key's first use stamps last_used_at; measure from the second
    with CaptureQueriesContext(connection) as one:
        assert len(results(owner_api, url)) == before
    for _ in range(30):
        build(project, context)
    with CaptureQueriesContext(connection) as many:
        assert len(results(owner_api, url)) == before + 30
    assert len(many) <= len(one), [q["sql"][:120] for q in many.captured_queries]


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LISTS))
def test_cursor_pages_walk_everything_once(name, owner_api, project):
    build, context = LISTS[name][1], {}
    for _ in range(7):
        build(project, context)
    url = url_of(name, context)
    everything = [row["id"] for row in results(owner_api, url)]
    assert walk(owner_api, url, 3) == everything


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LISTS))
def test_another_projects_rows_are_not_listed(name, owner_api, project, other_project):
    build, context = LISTS[name][1], {}
    theirs: dict = {}
    build(other_project, theirs)
    if name in ("deliveries", "messages"):
        build(project, context)  # our own endpoint or thread, to have a URL; theirs must not show in it
        assert len(results(owner_api, url_of(name, context))) == 1
        assert_envelope(owner_api.get(url_of(name, theirs)), 404, "not_found")
    else:
        assert results(owner_api, url_of(name, context)) == [] or name == "api-keys"
    if name == "api-keys":  # our own key is listed, theirs is not
        assert len(results(owner_api, url_of(name, context))) == 1


def assert_bad_cursor(response) -> None:
    """A cursor the list did not give is a bad query parameter: 400 naming ``cursor`` (it was 404 "Invalid
    cursor", which reads as if the list itself were missing)."""
    error = assert_envelope(response, 400, "validation_error")
    assert list(error["details"]) == ["cursor"] and "cursor" in error["details"]["cursor"][0], error


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LISTS))
def test_a_bad_cursor_is_a_400_naming_it(name, owner_api, project):
    import base64

    context: dict = {}
    LISTS[name][1](project, context)
    url = url_of(name, context)
    separator = "&" if "?" in url else "?"
    forged = base64.b64encode(b"p=%5B%22x%22%5D").decode()  # decodes, but holds no position of this list
    for cursor in ("garbage", "bm9wZQ", "%00", "%C3%A9", forged):
        assert_bad_cursor(owner_api.get(f"{url}{separator}cursor={cursor}"))


@pytest.mark.django_db
class TestAuditCompatibility:
    def test_after_id_still_filters_and_next_after_id_is_given(self, owner_api, project):
        for _ in range(5):
            add_audit_event(project, {})
        first = owner_api.get("/api/v1/audit/", {"page_size": 2}).json()
        assert len(first["results"]) == 2 and first["next_after_id"] == first["results"][-1]["id"]
        rest = owner_api.get("/api/v1/audit/", {"after_id": first["next_after_id"]}).json()
        assert [e["id"] for e in rest["results"]] == [e["id"] for e in owner_api.get("/api/v1/audit/").json()["results"]][2:]
        assert rest["next_after_id"] is None
        assert_envelope(owner_api.get("/api/v1/audit/", {"after_id": "x"}), 400, "validation_error")
        assert_envelope(owner_api.get("/api/v1/audit/", {"after_id": "9" * 30}), 400, "validation_error")
        assert [e["action"] for e in owner_api.get("/api/v1/audit/", {"action": "test_event"}).json()["results"]] == ["test_event"] * 5


def walk_back(api, url, page_size) -> list:
    """To the end by ``next``, then back to the start by ``previous``: the ids, in list order."""
    separator = "&" if "?" in url else "?"
    page = api.get(f"{url}{separator}page_size={page_size}").json()
    while page["next"]:
        page = api.get(page["next"]).json()
    seen = [row["id"] for row in page["results"]]
    while page["previous"]:
        page = api.get(page["previous"]).json()
        seen = [row["id"] for row in page["results"]] + seen
    return seen


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LISTS))
def test_previous_pages_lead_back_over_everything_once(name, owner_api, project):
    build, context = LISTS[name][1], {}
    for _ in range(7):
        build(project, context)
    url = url_of(name, context)
    assert walk_back(owner_api, url, 3) == [row["id"] for row in results(owner_api, url)]


@pytest.mark.django_db
def test_deciding_the_review_queue_page_by_page_reaches_every_item(owner_api, project):
    """Items leave the pending queue as they are decided. With a cursor that kept only the first ordering
    field (priority, the same for all) and an offset among equals, each next page skipped as many items
    as the reviewer had decided."""
    for _ in range(12):
        ReviewItem.objects.create(output=build_output(build_job(project)), project=project)
    seen, url = [], "/api/v1/reviews/?state=pending&page_size=5"
    while url:
        page = owner_api.get(url).json()
        for item in page["results"]:
            seen.append(item["id"])
            assert owner_api.post(f"/api/v1/reviews/{item['id']}/claim/").status_code == 200
            decided = owner_api.post(f"/api/v1/reviews/{item['id']}/decision/", {"action": "approve"}, format="json")
            assert decided.status_code == 200, decided.content
        url = page["next"]
    assert len(seen) == len(set(seen)) == 12 and not ReviewItem.objects.filter(state="open").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("position", ['[1]', '["x","y"]', '[null,1]', '[{"a":1},1]', '"abc"', '["not a time",1]', "{"])
def test_a_forged_position_is_a_clean_400(owner_api, project, position):
    import base64
    from urllib.parse import urlencode

    add_job(project, {})
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    assert_bad_cursor(owner_api.get(f"/api/v1/jobs/?cursor={cursor}"))
