"""GET /api/v1/usage/: per plugin per day, aggregated by the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.jobs.models import JobStatus
from tests.api.helpers import assert_envelope

USAGE = "/api/v1/usage/"


def chat_content(prompt: int, completion: int) -> dict:
    return {"reply": "hi", "sources": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}, "finish_reason": "stop"}


@pytest.fixture
def day():
    """Noon UTC yesterday: the rows of a test land on one known day, whatever the hour now."""
    now = timezone.now().astimezone(dt_timezone.utc)
    return datetime(now.year, now.month, now.day, 12, tzinfo=dt_timezone.utc) - timedelta(days=1)


@pytest.mark.django_db
class TestUsage:
    def test_per_plugin_per_day(self, api, project, make_job, make_output, day):
        chat = make_job(project, plugin="chatbot", created_at=day, run_seconds=2.5)
        make_output(chat, content=chat_content(100, 20))
        make_output(make_job(project, plugin="chatbot", created_at=day + timedelta(hours=1), run_seconds=1.5),
                    content=chat_content(50, 5))
        make_job(project, plugin="chatbot", status=JobStatus.FAILED, created_at=day, run_seconds=1)
        make_job(project, plugin="chatbot", status=JobStatus.QUEUED, created_at=day - timedelta(days=1))
        image_job = make_job(project, plugin="image", created_at=day, run_seconds=10)
        make_output(image_job, index=0, content={"index": 0}, image=True)
        make_output(image_job, index=1, content={"index": 1}, image=True)

        body = api.get(USAGE, {"from": (day - timedelta(days=1)).date().isoformat(), "to": day.date().isoformat()}).json()
        rows = {(r["date"], r["plugin"]): r for r in body["results"]}
        chat_day = rows[(day.date().isoformat(), "chatbot")]
        assert chat_day["jobs"] == {"total": 3, "queued": 0, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0, "blocked": 0}
        assert chat_day["tokens"] == {"prompt": 150, "completion": 25, "total": 175}
        assert chat_day["compute_seconds"] == 5.0 and chat_day["images"] == 0
        image_day = rows[(day.date().isoformat(), "image")]
        assert image_day["images"] == 2 and image_day["tokens"]["total"] == 0 and image_day["compute_seconds"] == 10.0
        earlier = rows[((day - timedelta(days=1)).date().isoformat(), "chatbot")]
        assert earlier["jobs"]["queued"] == 1 and earlier["compute_seconds"] == 0.0
        assert [r["date"] for r in body["results"]] == sorted(r["date"] for r in body["results"])
        assert body["totals"]["jobs"]["total"] == 5 and body["totals"]["images"] == 2 and body["totals"]["compute_seconds"] == 15.0
        assert body["from"] == (day - timedelta(days=1)).date().isoformat() and body["to"] == day.date().isoformat()

    def test_plugin_filter_and_default_range(self, api, project, make_job, day):
        make_job(project, plugin="chatbot", created_at=day)
        make_job(project, plugin="image", created_at=day)
        make_job(project, plugin="image", created_at=day - timedelta(days=40))  # outside the default 30 days
        body = api.get(USAGE, {"plugin": "image"}).json()
        assert [r["plugin"] for r in body["results"]] == ["image"] and body["plugin"] == "image"
        assert body["totals"]["jobs"]["total"] == 1
        assert body["to"] == timezone.now().date().isoformat()

    def test_other_projects_are_not_counted(self, api, other_project, make_job, day):
        make_job(other_project, created_at=day)
        assert api.get(USAGE).json()["results"] == []

    def test_odd_token_values_are_ignored_not_fatal(self, api, project, make_job, make_output, day):
        job = make_job(project, plugin="custom", created_at=day)
        make_output(job, index=0, content={"usage": {"prompt_tokens": "many", "completion_tokens": None}})
        make_output(job, index=1, content={"usage": {"prompt_tokens": [1], "completion_tokens": True}})
        make_output(job, index=2, content={"usage": "none"})
        make_output(job, index=3, content=["not", "an", "object"])
        make_output(job, index=4, content={"usage": {"prompt_tokens": 7, "completion_tokens": 2.0}})
        row = api.get(USAGE).json()["results"][0]
        assert row["tokens"] == {"prompt": 7, "completion": 2, "total": 9}

    @pytest.mark.parametrize("params,field", [
        ({"from": "yesterday"}, "from"), ({"to": "2026-13-01"}, "to"), ({"from": "2026-05-02", "to": "2026-05-01"}, "from"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "from"), ({"plugin": "x" * 64}, "plugin"),
    ])
    def test_bad_parameters(self, api, params, field):
        error = assert_envelope(api.get(USAGE, params), 400, "validation_error")
        assert field in error["details"]

    def test_any_reader_may_see_usage_but_not_without_a_key(self, project, make_key, client_for):
        assert client_for(make_key(project, ["jobs:read"]).raw).get(USAGE).status_code == 200
        assert_envelope(client_for(make_key(project, ["reviews:read"]).raw).get(USAGE), 403, "permission_denied")
        assert_envelope(client_for(None).get(USAGE), 401, "not_authenticated")

    def test_query_count_does_not_grow_with_the_data(self, api, project, make_job, make_output, day):
        def count_queries() -> int:
            with CaptureQueriesContext(connection) as queries:
                assert api.get(USAGE).status_code == 200
            return len(queries)

        make_output(make_job(project, plugin="chatbot", created_at=day, run_seconds=1), content=chat_content(1, 1))
        count_queries()  # the key's first use stamps last_used_at
        few = count_queries()
        for offset in range(30):
            job = make_job(project, plugin=("chatbot", "image")[offset % 2], created_at=day - timedelta(days=offset % 7), run_seconds=1)
            make_output(job, content=chat_content(3, 4), image=offset % 2 == 1)
        assert count_queries() == few
        assert len(api.get(USAGE).json()["results"]) == 14
