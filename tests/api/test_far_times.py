"""Times with offsets PostgreSQL refuses (beyond ±15:59) or past the years UTC holds, in every parameter that takes a
time: a 400 where the time names no moment, the right rows where it does; never a 500 (PostgreSQL answered
"time zone displacement out of range" and the request failed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.api.test_hostile_input import assert_clean

#: Python reads each of these; none can be stored as given, and the last two lie beyond the years 1-9999 in UTC.
FAR_OFFSET = "2026-06-01T00:00:00-23:59"
PAST_THE_END = "9999-12-31T23:59:59-01:00"
BEFORE_THE_START = "0001-01-01T00:00:00+14:00"


def in_offset(moment: datetime, hours: int, minutes: int) -> str:
    zone = timezone(-timedelta(hours=hours, minutes=minutes))
    return moment.astimezone(zone).isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/outputs/"])
def test_list_filters_read_any_offset_as_its_moment_and_refuse_times_past_the_calendar(owner_api, project, make_job,
                                                                                      make_output, path):
    job = make_job(project)
    make_output(job)
    created = job.created_at
    found = owner_api.get(path, {"created_after": in_offset(created - timedelta(minutes=5), 23, 59)})
    assert found.status_code == 200 and len(found.json()["results"]) == 1
    later = owner_api.get(path, {"created_after": in_offset(created + timedelta(minutes=5), 23, 59)})
    assert later.status_code == 200 and later.json()["results"] == []
    before = owner_api.get(path, {"created_before": in_offset(created + timedelta(minutes=5), 23, 59)})
    assert len(before.json()["results"]) == 1
    for far in (PAST_THE_END, BEFORE_THE_START):
        for name in ("created_after", "created_before"):
            refused = owner_api.get(path, {name: far})
            assert refused.status_code == 400, (name, far, refused.content[:300])
            assert name in refused.json()["error"]["details"]


@pytest.mark.django_db
def test_far_times_in_every_time_parameter_never_fail_the_server(owner_api):
    for path in ("/api/v1/jobs/", "/api/v1/outputs/", "/api/v1/audit/", "/api/v1/reviews/", "/api/v1/usage/"):
        for name in ("created_after", "created_before", "from", "to", "after"):
            for value in (FAR_OFFSET, PAST_THE_END, BEFORE_THE_START):
                assert_clean(owner_api.get(path, {name: value}))
