"""A job's own ``webhook`` (``POST /api/v1/jobs/`` with ``"webhook": url``, DESIGN.md's contract): the job's events
go to that URL, signed with the secret of the project's endpoint it lies under; a URL under no endpoint of the
project is refused before anything is written."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from atelier_platform.accounts.services import issue_api_key
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job
from atelier_platform.webhooks import services
from atelier_platform.webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(receiver) -> str:
    """The receiver's address with the path the project's endpoint is registered at."""
    return f"http://{receiver.host}:{receiver.port}/hooks"


@pytest.fixture
def hooks_endpoint(project, base, endpoint_for):
    """The project's endpoint at /hooks, subscribed to job failures only: a job's own webhook gets every event of
    that job whatever the endpoint subscribes to."""
    return endpoint_for(project, base, event_types=["job.failed"])


def submit(api, webhook, **headers):
    return api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hello"}, "webhook": webhook},
                    format="json", **headers)


def finish(job_id, capture, flagged=("harassment",)):
    """Complete the job as a worker does (its output flagged by screening, so output.flagged fires too)."""
    claim = lifecycle.claim_job(job_id, "test-worker")
    report = {"decision": "review" if flagged else "pass", "flagged": list(flagged)}
    produced = [lifecycle.ProducedOutput(content={"text": "olleh", "characters": 5}, safety=report)]
    with capture(execute=True):
        assert lifecycle.complete_job(job_id, claim.token, produced, {"model": "test"}) == "succeeded"


def test_a_jobs_events_go_to_its_own_webhook_signed_with_the_covering_endpoints_secret(
        api, client_for, hooks_endpoint, base, receiver, deliver_all, django_capture_on_commit_callbacks):
    webhook = f"{base}/orders/123?token=abc"
    response = submit(api, webhook)
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    assert response.json()["webhook"] == webhook
    assert api.get(f"/api/v1/jobs/{job_id}/").json()["webhook"] == webhook

    finish(job_id, django_capture_on_commit_callbacks)

    assert sorted(deliver_all()) == ["succeeded", "succeeded"]
    assert sorted(r.json()["type"] for r in receiver.requests) == ["job.succeeded", "output.flagged"]
    for request in receiver.requests:
        assert request.path == "/hooks/orders/123?token=abc"
        Webhook(hooks_endpoint.secret).verify(request.body, request.headers)
        assert request.json()["data"].get("job", {}).get("id", job_id) == job_id
    # the endpoint's delivery log shows them, with the URL they went to
    manager = client_for(issue_api_key(hooks_endpoint.project, scopes=["webhooks:manage"]).raw)
    log = manager.get(f"/api/v1/webhooks/{hooks_endpoint.pk}/deliveries/")
    assert [d["job_webhook"] for d in log.json()["results"]] == [webhook, webhook]


def test_a_job_without_a_webhook_sends_nothing_to_an_endpoint_that_does_not_subscribe(
        api, hooks_endpoint, django_capture_on_commit_callbacks):
    response = api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hello"}}, format="json")
    assert response.json()["webhook"] is None
    finish(response.json()["id"], django_capture_on_commit_callbacks)
    assert not WebhookDelivery.objects.exists()


def test_a_webhook_at_the_endpoints_own_url_gets_each_event_once(
        api, project, receiver, endpoint_for, deliver_all, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(project, receiver.url)  # subscribed to everything
    job_id = submit(api, receiver.url).json()["id"]
    finish(job_id, django_capture_on_commit_callbacks, flagged=())
    assert deliver_all() == ["succeeded"]
    [request] = receiver.requests
    Webhook(endpoint.secret).verify(request.body, request.headers)


def test_the_most_specific_endpoint_signs(api, project, base, receiver, endpoint_for, deliver_all,
                                          django_capture_on_commit_callbacks):
    endpoint_for(project, f"http://{receiver.host}:{receiver.port}/", event_types=["job.failed"])
    orders = endpoint_for(project, f"{base}/orders", event_types=["job.failed"])
    job_id = submit(api, f"{base}/orders/7").json()["id"]
    finish(job_id, django_capture_on_commit_callbacks, flagged=())
    deliver_all()
    [request] = receiver.requests
    Webhook(orders.secret).verify(request.body, request.headers)


@pytest.mark.parametrize("webhook, says", [
    ("http://127.0.0.1:{port}/elsewhere", "No webhook endpoint of this project covers this URL"),
    ("http://127.0.0.1:{port}/hooks-old/1", "No webhook endpoint of this project covers this URL"),
    ("http://127.0.0.1:{port}/hooks/../admin", "No webhook endpoint of this project covers this URL"),
    ("http://127.0.0.1:{port}/hooks/%2e%2e/admin", "No webhook endpoint of this project covers this URL"),
    ("http://127.0.0.1.evil.example:{port}/hooks/1", "No webhook endpoint of this project covers this URL"),
    ("https://127.0.0.1:{port}/hooks/1", "No webhook endpoint of this project covers this URL"),
    ("http://127.0.0.1:1/hooks/1", "No webhook endpoint of this project covers this URL"),
    ("http://me:secret@127.0.0.1:{port}/hooks/1", "user name or password"),
    ("http://127.0.0.1:{port}/hooks/1#part", "fragment"),
    ("http://127.0.0.1:{port}/hooks/a b", "spaces"),
    ("ftp://127.0.0.1:{port}/hooks/1", "http:// or https://"),
    ("not a url", "spaces"),
    ("hooks/1", "http:// or https://"),
    ("http://127.0.0.1:port/hooks", "http:// or https://"),
])
def test_a_webhook_under_no_endpoint_of_the_project_is_refused_and_nothing_is_written(api, hooks_endpoint, receiver,
                                                                                       webhook, says):
    response = submit(api, webhook.format(port=receiver.port))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert says in error["details"]["webhook"][0], error
    assert not Job.objects.exists()


def test_the_refusal_says_what_to_register(api, project, receiver):
    response = submit(api, f"http://127.0.0.1:{receiver.port}/hooks/1")
    message = response.json()["error"]["details"]["webhook"][0]
    assert f"http://127.0.0.1:{receiver.port}/" in message and "POST /api/v1/webhooks/" in message


def test_another_projects_endpoint_covers_nothing(api, other_project, base, endpoint_for):
    endpoint_for(other_project, base)
    assert submit(api, f"{base}/1").status_code == 400


def test_a_disabled_endpoint_is_named_with_how_to_enable_it(api, hooks_endpoint, base, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.update_endpoint(hooks_endpoint, "user:test", {"enabled": False})
    message = submit(api, f"{base}/1").json()["error"]["details"]["webhook"][0]
    assert "disabled" in message and f"PATCH /api/v1/webhooks/{hooks_endpoint.pk}/" in message


@pytest.mark.parametrize("webhook", ["", None, 7, "x" * 2001])
def test_a_webhook_of_the_wrong_shape_is_a_field_error(api, hooks_endpoint, webhook):
    response = submit(api, webhook)
    assert response.status_code == 400
    assert "webhook" in response.json()["error"]["details"]


def test_a_batch_names_the_job_whose_webhook_is_refused_and_creates_none(api, hooks_endpoint, base):
    jobs = [{"plugin": "reverse_text", "input": {"text": "a"}, "webhook": f"{base}/1"},
            {"plugin": "reverse_text", "input": {"text": "b"}, "webhook": "http://example.com/1"}]
    response = api.post("/api/v1/jobs/batch/", {"jobs": jobs}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["details"]) == ["jobs.1.webhook"]
    assert not Job.objects.exists()
    jobs[1]["webhook"] = f"{base}/2"
    created = api.post("/api/v1/jobs/batch/", {"jobs": jobs}, format="json").json()["jobs"]
    assert [job["webhook"] for job in created] == [f"{base}/1", f"{base}/2"]


def test_an_idempotency_key_reused_with_another_webhook_is_a_conflict(api, hooks_endpoint, base):
    first = submit(api, f"{base}/1", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == 201
    again = submit(api, f"{base}/1", HTTP_IDEMPOTENCY_KEY="order-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = submit(api, f"{base}/2", HTTP_IDEMPOTENCY_KEY="order-1")
    assert other.status_code == 422, other.content


def test_a_delivery_is_refused_once_the_endpoint_no_longer_covers_the_jobs_url(
        api, hooks_endpoint, base, receiver, deliver_all, django_capture_on_commit_callbacks):
    job_id = submit(api, f"{base}/1").json()["id"]
    finish(job_id, django_capture_on_commit_callbacks, flagged=())
    with django_capture_on_commit_callbacks(execute=True):
        services.update_endpoint(hooks_endpoint, "user:test", {"url": f"http://{receiver.host}:{receiver.port}/moved"})
    deliver_all()
    assert not receiver.requests
    delivery = WebhookDelivery.objects.get()
    assert "no longer covers" in delivery.last_error


def test_a_regenerated_job_reports_to_the_webhook_its_original_named(api, project, member, hooks_endpoint, base,
                                                                      django_capture_on_commit_callbacks):
    from tests.support.reviewing import decide_the_review_item

    job_id = submit(api, f"{base}/1").json()["id"]
    finish(job_id, django_capture_on_commit_callbacks)
    decided = decide_the_review_item(project, member, django_capture_on_commit_callbacks, "regenerate")
    assert decided.status_code == 200, decided.content
    regenerated = Job.objects.exclude(pk=job_id).get()
    assert regenerated.webhook == f"{base}/1"
