"""POST /api/v1/jobs/batch/: every job created, or none, with errors named by index."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation.checks import replace_safety_checks
from tests.api.helpers import assert_envelope
from tests.support.safety import WordCheck

BATCH = "/api/v1/jobs/batch/"


def job(text="hello", **extra):
    return {"plugin": "reverse_text", "input": {"text": text}, **extra}


def post(client, body, **extra):
    return client.post(BATCH, body, format="json", **extra)


@pytest.mark.django_db
class TestBatch:
    def test_all_created_in_order_and_published_after_commit(self, api, django_capture_on_commit_callbacks, sent_messages):
        body = {"jobs": [job("a", priority=9), job("b"), {"plugin": "gpu_reverse", "input": {"text": "c"}, "params": {"uppercase": True}}]}
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, body)
        assert response.status_code == 201, response.content
        jobs = response.json()["jobs"]
        assert [j["input"]["text"] for j in jobs] == ["a", "b", "c"]
        assert [j["status"] for j in jobs] == ["queued"] * 3 and jobs[0]["priority"] == 9
        assert jobs[2]["params"] == {"uppercase": True} and jobs[2]["outputs"] == []
        assert Job.objects.count() == 3
        assert sorted(m["args"][0] for m in sent_messages if m["task"] == "atelier.run_job") == sorted(j["id"] for j in jobs)

    def test_one_bad_job_refuses_all_and_names_every_problem_by_index(self, api):
        body = {"jobs": [job("ok"), job(""), {"plugin": "nope", "input": {}}, job("x", parmas={}),
                         {"plugin": "reverse_text", "input": {"text": "y", "copies": 99}}]}
        error = assert_envelope(post(api, body), 400, "validation_error")
        assert set(error["details"]) == {"jobs.3.parmas"}  # the request's shape is checked first
        body["jobs"][3] = job("x")
        error = assert_envelope(post(api, body), 400, "validation_error")
        assert set(error["details"]) == {"jobs.1.input.text", "jobs.2.plugin", "jobs.4.input.copies"}
        assert "none was created" in error["message"]
        assert Job.objects.count() == 0

    def test_plugin_not_enabled_is_named_by_index(self, api, project):
        set_plugin_enabled(project, "gpu_reverse", False)
        error = assert_envelope(post(api, {"jobs": [job(), {"plugin": "gpu_reverse", "input": {"text": "g"}}]}), 400, "validation_error")
        assert list(error["details"]) == ["jobs.1.plugin"] and "not enabled" in error["details"]["jobs.1.plugin"][0]
        assert Job.objects.count() == 0

    @pytest.mark.parametrize("body,field", [
        ({}, "jobs"), ({"jobs": []}, "jobs"), ({"jobs": "many"}, "jobs"), ({"jobs": [1, 2]}, "jobs.0"),
        ({"jobs": [job()], "extra": True}, "extra"), ([job()], "body"), ({"jobs": [{"input": {"text": "a"}}]}, "jobs.0.plugin"),
        ({"jobs": [job(priority=10)]}, "jobs.0.priority"),
    ])
    def test_malformed_bodies(self, api, body, field):
        error = assert_envelope(post(api, body), 400, "validation_error")
        assert field in error["details"], error
        assert Job.objects.count() == 0

    def test_at_most_the_configured_number_of_jobs(self, api, atelier_config):
        atelier_config(max_jobs_per_request=3)
        error = assert_envelope(post(api, {"jobs": [job(str(i)) for i in range(4)]}), 400, "validation_error")
        assert "At most 3" in error["details"]["jobs"][0]
        assert post(api, {"jobs": [job(str(i)) for i in range(3)]}).status_code == 201

    def test_a_blocked_input_refuses_the_batch_and_is_kept_for_the_audit(self, api):
        replace_safety_checks([WordCheck()])
        error = assert_envelope(post(api, {"jobs": [job("fine"), job("a violent one")]}), 422, "input_blocked")
        assert list(error["details"]) == ["jobs.1"] and error["details"]["jobs.1"]["categories"]
        assert list(Job.objects.values_list("status", flat=True)) == [JobStatus.BLOCKED]

    def test_needs_write_scope(self, project, make_key, client_for):
        reader = client_for(make_key(project, ["jobs:read"]).raw)
        assert_envelope(post(reader, {"jobs": [job()]}), 403, "permission_denied")

    def test_idempotency_key_covers_the_whole_request(self, api):
        body = {"jobs": [job("a"), job("b")]}
        first = post(api, body, HTTP_IDEMPOTENCY_KEY="batch-1")
        again = post(api, body, HTTP_IDEMPOTENCY_KEY="batch-1")
        assert first.status_code == 201 and again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
        assert Job.objects.count() == 2
        assert_envelope(post(api, {"jobs": [job("a")]}, HTTP_IDEMPOTENCY_KEY="batch-1"), 422, "idempotency_key_reused")
        # a failed batch does not use up its key: fix it and send it again
        assert post(api, {"jobs": [job("")]}, HTTP_IDEMPOTENCY_KEY="batch-2").status_code == 400
        assert post(api, {"jobs": [job("c")]}, HTTP_IDEMPOTENCY_KEY="batch-2").status_code == 201

    def test_query_count_does_not_grow_with_the_batch(self, api, django_assert_max_num_queries):
        post(api, {"jobs": [job("warm")]})  # plugin registry and first-time look-ups
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as one:
            assert post(api, {"jobs": [job("1")]}).status_code == 201
        with CaptureQueriesContext(connection) as twenty:
            assert post(api, {"jobs": [job(str(i)) for i in range(20)]}).status_code == 201
        # Per job: its INSERT, and input screening's blocklist check (moderation's screen() reads the
        # list's signature on each call). Plugins, params defaults, quotas and the policy are read once.
        assert len(twenty) - len(one) <= 19 * 2, [q["sql"][:80] for q in twenty.captured_queries]
