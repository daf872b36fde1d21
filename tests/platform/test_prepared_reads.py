"""``PreparedRead``: the SQL of a hot read is built once per connection, and what it returns is what
the ORM returns (fields, converted values, related rows), on SQLite here and PostgreSQL in CI."""

from __future__ import annotations

import uuid

import pytest
from django.db.models.sql.compiler import SQLCompiler

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import SafetyPolicy
from atelier_platform.prepared_reads import PreparedRead
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


def job_with_project_and_policy():
    return PreparedRead(lambda pk: Job.objects.select_related("project", "project__safety_policy").filter(pk=pk),
                        pk=Job._meta.pk)


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


@pytest.fixture
def sql_builds(monkeypatch) -> list[str]:
    """The SQL statements Django builds (``SQLCompiler.as_sql``) from here on."""
    built: list[str] = []
    as_sql = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        sql, params = as_sql(self, *args, **kwargs)
        built.append(sql)
        return sql, params

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    return built


def test_a_read_returns_what_the_orm_returns_with_its_related_rows(project, django_assert_num_queries):
    job = build_job(project, progress=0.25, run_seconds=2.0)
    Job.objects.filter(pk=job.pk).update(params={"temperature": 0.5, "stop": ["\n"]})
    build_output(job)
    SafetyPolicy.objects.get_or_create(project=project)
    read = job_with_project_and_policy()
    expected = Job.objects.select_related("project", "project__safety_policy").get(pk=job.pk)
    for _ in range(2):  # the first call prepares the statement, the second reuses it
        with django_assert_num_queries(1):
            found = read.first(pk=str(job.pk))  # a worker passes the id as text, from the broker message
            policy = found.project.safety_policy  # read with the job: no query of its own
        assert field_values(found) == field_values(expected)
        assert isinstance(found.pk, uuid.UUID) and found.params == {"temperature": 0.5, "stop": ["\n"]}
        assert found.started_at == expected.started_at and found.started_at.tzinfo is not None
        assert field_values(found.project) == field_values(expected.project)
        assert field_values(policy) == field_values(expected.project.safety_policy)
        assert found._state.adding is False and found._state.db == "default"


def test_a_missing_related_row_reads_as_none_as_with_the_orm(project):
    SafetyPolicy.objects.filter(project=project).delete()  # a project without a safety policy row
    job = build_job(project)
    found = job_with_project_and_policy().first(pk=job.pk)
    with pytest.raises(Project.safety_policy.RelatedObjectDoesNotExist):
        found.project.safety_policy  # noqa: B018 (the access is the test)


def test_the_sql_is_built_once_and_each_call_gets_its_own_rows(project, other_project, sql_builds):
    jobs = [build_job(project), build_job(other_project), build_job(project)]
    read = job_with_project_and_policy()
    sql_builds.clear()
    found = [read.first(pk=job.pk) for job in jobs * 2]
    assert [job.pk for job in found] == [job.pk for job in jobs * 2]
    assert [job.project_id for job in found[:3]] == [project.pk, other_project.pk, project.pk]
    assert len(sql_builds) == 2  # one build with markers, one more to check where the values go; then none
    assert read.first(pk=uuid.uuid4()) is None
    assert len(sql_builds) == 2


def test_values_of_several_fields_each_land_in_their_place(project, other_project, make_key):
    mine, theirs = make_key(project).api_key, make_key(other_project).api_key
    read = PreparedRead(lambda project_id, prefix: ApiKey.objects.filter(project_id=project_id, prefix=prefix),
                        project_id=ApiKey._meta.get_field("project"), prefix=ApiKey._meta.get_field("prefix"))
    assert [key.pk for key in read(project_id=project.pk, prefix=mine.prefix)] == [mine.pk]
    assert read(project_id=project.pk, prefix=theirs.prefix) == []  # another project's key: not found
    assert [key.pk for key in read(project_id=other_project.pk, prefix=theirs.prefix)] == [theirs.pk]


def test_a_value_used_twice_in_the_query_is_set_everywhere(project):
    from django.db.models import Q

    job = build_job(project, plugin="reverse_text")
    read = PreparedRead(lambda name: Job.objects.filter(Q(plugin_id=name) | Q(plugin_version=name)).order_by("pk"),
                        name=Job._meta.get_field("plugin_id"))
    assert [found.pk for found in read(name="reverse_text")] == [job.pk]
    assert [found.pk for found in read(name="1.0.0")] == [job.pk]
    assert read(name="nothing") == []


def test_a_query_it_cannot_prepare_runs_through_the_orm_with_the_same_results(project, sql_builds):
    job = build_job(project)
    output = build_output(job)
    read = PreparedRead(lambda pk: Job.objects.filter(pk=pk).prefetch_related("outputs"), pk=Job._meta.pk)
    for _ in range(2):
        found = read.first(pk=job.pk)
        assert [o.pk for o in found.outputs.all()] == [output.pk]
    assert len(sql_builds) >= 4  # built on every call: the ORM's own path


def test_a_constant_that_differs_between_builds_refuses_to_prepare(project, sql_builds):
    """A query whose other parameters change from build to build (here the time of the call) must not
    be replayed with the first build's values: it runs through the ORM."""
    from django.utils import timezone

    job = build_job(project, status="queued")
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    read = PreparedRead(lambda pk: Job.objects.filter(pk=pk, enqueued_at__lte=timezone.now()), pk=Job._meta.pk)
    assert [found.pk for found in read(pk=job.pk)] == [job.pk]
    sql_builds.clear()
    read(pk=job.pk)
    assert sql_builds  # not prepared: the ORM built it again


def test_a_value_of_a_field_type_without_a_marker_runs_through_the_orm(project, sql_builds):
    from datetime import timedelta

    from django.utils import timezone

    job = build_job(project)
    read = PreparedRead(lambda before: Job.objects.filter(created_at__lt=before), before=Job._meta.get_field("created_at"))
    sql_builds.clear()
    assert [found.pk for found in read(before=timezone.now() + timedelta(seconds=1))] == [job.pk]
    assert read(before=timezone.now() - timedelta(days=1)) == []
    assert len(sql_builds) == 2  # built by the ORM on each call


def test_a_none_value_finds_the_rows_the_orm_finds(project, other_project):
    """The ORM reads ``field=None`` as ``IS NULL``; put into ``= %s`` it matched nothing."""
    from atelier_platform.catalog.models import ProjectPlugin

    read = PreparedRead(lambda version: ProjectPlugin.objects.filter(model_version=version).order_by("pk"),
                        version=ProjectPlugin._meta.get_field("model_version"))
    expected = [setting.pk for setting in ProjectPlugin.objects.filter(model_version=None).order_by("pk")]
    assert expected  # the fixtures' settings pin no model
    for _ in range(2):  # prepared by the first call, reused by the second
        assert [setting.pk for setting in read(version=None)] == expected


def test_a_fractional_number_is_compared_as_the_orm_compares_it(project):
    """The ORM rounds a float up for ``>=`` on an integer column (``priority >= 2.5`` is ``>= 3``);
    prepared, ``int()`` cut it down to 2 and found a job of priority 2."""
    low, high = build_job(project, priority=2), build_job(project, priority=3)
    read = PreparedRead(lambda at_least: Job.objects.filter(priority__gte=at_least, project=project).order_by("priority"),
                        at_least=Job._meta.get_field("priority"))
    assert [job.pk for job in read(at_least=1)] == [low.pk, high.pk]  # prepared with whole numbers
    assert [job.pk for job in read(at_least=2.5)] == [job.pk for job in Job.objects.filter(
        priority__gte=2.5, project=project)] == [high.pk]


def test_a_lookup_that_escapes_its_value_is_not_replayed_with_a_raw_value(project, other_project, make_key):
    """``iexact`` on SQLite is ``LIKE %s ESCAPE '\\'`` with ``%`` and ``_`` of the value escaped: the marker
    has neither, so the escaping went unseen, and a caller's ``%`` matched every key."""
    mine = make_key(project).api_key
    make_key(other_project)
    read = PreparedRead(lambda prefix: ApiKey.objects.filter(prefix__iexact=prefix).order_by("pk"),
                        prefix=ApiKey._meta.get_field("prefix"))
    assert [key.pk for key in read(prefix=mine.prefix.upper())] == [mine.pk]
    assert read(prefix="%") == list(ApiKey.objects.filter(prefix__iexact="%")) == []
    assert read(prefix="_" * len(mine.prefix)) == []


def test_a_small_integer_column_reads_as_with_the_orm(project):
    """On PostgreSQL a marker beyond a smallint's range made the ORM compile the comparison to "no rows"
    (``EmptyResultSet``): the read raised where the ORM answers."""
    urgent = build_job(project, priority=9)
    build_job(project, priority=1)
    read = PreparedRead(lambda at_least: Job.objects.filter(priority__gte=at_least, project=project),
                        at_least=Job._meta.get_field("priority"))
    for _ in range(2):
        assert [job.pk for job in read(at_least=5)] == [urgent.pk]
