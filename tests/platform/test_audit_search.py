"""The audit log's search: an object named in any spelling of its id, and indexes for what it narrows by."""

from __future__ import annotations

import pytest
from django.db import connection

from atelier_platform.moderation import audit
from atelier_platform.moderation.models import AuditEvent
from tests.api.helpers import build_job


@pytest.mark.django_db
def test_a_job_named_in_upper_case_finds_its_own_events(project):
    """Ids are stored as str(pk), lower case: a job id pasted in upper case found its outputs' events, not its own."""
    job = build_job(project)
    audit.record(project, "user:1", "job_cancelled", job)
    for spelling in (str(job.pk), str(job.pk).upper(), job.pk.hex):
        assert [event.action for event in audit.search(project, object_id=spelling)] == ["job_cancelled"], spelling


@pytest.mark.django_db
@pytest.mark.parametrize("narrowed_by,index", [
    ({"action": "member_added"}, "audit_project_action"),
    ({"actor": "user:12"}, "audit_project_actor"),
    ({"object_id": "12"}, "audit_project_object"),
])
def test_each_search_filter_has_an_index(project, narrowed_by, index):
    """Without them each search, and each of the page's "who" and "what" lists, read all of a project's log."""
    events = audit.search(project, **narrowed_by)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a test's few rows would be read whole anyway
    plan = events.explain()
    assert index in plan, plan
    assert AuditEvent.objects.count() == 0
