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
@pytest.mark.parametrize("columns", [["project_id", "action", "id"], ["project_id", "actor", "id"],
                                     ["project_id", "object_id"]])
def test_each_search_filter_has_an_index(columns):
    """Without them each search, and each of the page's "who" and "what" lists, read all of a project's log. (Which
    index the planner picks for a test's few rows depends on its statistics: the indexes themselves are checked.)"""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AuditEvent._meta.db_table)
    assert any(found["index"] and found["columns"] == columns for found in constraints.values()), constraints


@pytest.mark.django_db
def test_the_search_narrowed_by_actor_reads_the_index_on_postgresql(project):
    """With a project's log large enough to matter, PostgreSQL reads the actor's events through their index."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan read here is PostgreSQL's")
    AuditEvent.objects.bulk_create(AuditEvent(project=project, actor=f"user:{n % 50}", action=f"action_{n % 40}",
                                              object_type="job", object_id=str(n)) for n in range(5000))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {AuditEvent._meta.db_table}")
    plan = audit.search(project, actor="user:7").explain()
    assert "audit_project_actor" in plan, plan
