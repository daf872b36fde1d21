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


# --- the hot path's prepared reads give what the ORM gives, read afresh on every call -----------------------

def _prefetched_by_the_orm(job_id):
    from django.db.models import prefetch_related_objects

    from atelier_platform.jobs.models import outputs_with_files

    job = Job.objects.select_related("project").get(pk=job_id)
    prefetch_related_objects([job], outputs_with_files())
    return job


def _outputs_and_files(job) -> list:
    return [(field_values(output), [field_values(file) for file in output.files.all()]) for output in job.outputs.all()]


def test_outputs_with_their_files_are_read_as_the_orm_prefetches_them(project, django_assert_num_queries):
    from atelier_platform.api.serializers import JobSerializer
    from atelier_platform.jobs.models import prefetch_outputs_with_files

    job = build_job(project)
    build_output(job, index=1, image=True)  # stored out of order: read in index order
    build_output(job, index=0)
    build_output(build_job(project), image=True)  # another job's output and files are not its
    expected = _prefetched_by_the_orm(job.pk)
    for _ in range(2):  # prepared by the first call, reused by the second
        found = Job.objects.select_related("project").get(pk=job.pk)

        with django_assert_num_queries(2):  # the outputs, then their files, as the ORM's prefetch reads them
            prefetch_outputs_with_files(found)
        with django_assert_num_queries(0):  # everything the answer needs is in hand
            assert _outputs_and_files(found) == _outputs_and_files(expected)
            assert [f.role for f in found.outputs.all()[1].files.all()] == ["primary", "thumbnail"]
            assert all(output.job is found for output in found.outputs.all())
            assert all(file.output is output for output in found.outputs.all() for file in output.files.all())
            assert JobSerializer(found).data == JobSerializer(expected).data
        # the managers' querysets are still those of this job and output, as the ORM leaves them
        assert [o.index for o in found.outputs.filter(index=1)] == [o.index for o in expected.outputs.filter(index=1)] == [1]
        assert list(found.outputs.all()[1].files.filter(role="thumbnail")) == list(
            expected.outputs.all()[1].files.filter(role="thumbnail"))


def test_a_job_without_outputs_reads_no_files(project, django_assert_num_queries):
    job = build_job(project, status="failed")
    found = Job.objects.get(pk=job.pk)
    from atelier_platform.jobs.models import prefetch_outputs_with_files

    with django_assert_num_queries(1):
        prefetch_outputs_with_files(found)
    assert list(found.outputs.all()) == list(_prefetched_by_the_orm(job.pk).outputs.all()) == []


def test_outputs_and_files_are_read_afresh_on_every_call(project):
    from atelier_platform.jobs.models import read_again

    job = build_job(project)
    build_output(job)
    held = Job.objects.select_related("project").get(pk=job.pk)
    assert [(o.index, len(o.files.all())) for o in read_again(held).outputs.all()] == [(0, 0)]
    build_output(job, index=1, image=True)
    Job.objects.filter(pk=job.pk).update(status="failed")
    again = read_again(held)
    assert again.status == "failed"
    assert [(o.index, len(o.files.all())) for o in again.outputs.all()] == [(0, 0), (1, 2)]
    assert _outputs_and_files(again) == _outputs_and_files(_prefetched_by_the_orm(job.pk))


def test_a_waiters_status_read_is_the_orms_and_never_stale(project):
    from atelier_platform.jobs.waiting import _status

    job = build_job(project, status="queued")
    for status in ("queued", "running", "succeeded"):
        Job.objects.filter(pk=job.pk).update(status=status)
        assert _status(job.pk) == _status(str(job.pk)) == status
        assert _status(job.pk) == Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
    Job.objects.filter(pk=job.pk).delete()
    assert _status(job.pk) is None


def test_the_look_for_waiting_company_answers_as_exists_does(project, other_project):
    from datetime import timedelta

    from django.db.models.functions import Now
    from django.utils import timezone

    from atelier_platform.jobs.lifecycle import WORKER_LOST, _any_waiting_company

    def orm_says(plugin_id, plugin_version, batch_key) -> bool:
        return Job.objects.filter(status="queued", plugin_id=plugin_id, plugin_version=plugin_version, batch_key=batch_key,
                                  enqueued_at__lte=Now(), cancel_requested_at__isnull=True).exclude(error_code=WORKER_LOST).exists()

    def both_say(batch_key="k", plugin_id="reverse_text", plugin_version="1.0.0") -> bool:
        values = dict(plugin_id=plugin_id, plugin_version=plugin_version, batch_key=batch_key)
        prepared = bool(_any_waiting_company(**values))
        assert prepared == orm_says(**values)
        return prepared

    past = timezone.now() - timedelta(seconds=5)
    assert not both_say()
    job = build_job(other_project, status="queued", batch_key="k", enqueued_at=past)
    assert both_say()  # any project's job: whether its model matches is decided later
    assert not both_say(batch_key="other") and not both_say(plugin_version="2.0.0") and not both_say(plugin_id="gpu_reverse")
    for change, waits in (({"enqueued_at": timezone.now() + timedelta(seconds=60)}, False),  # a retry not due yet
                          ({"cancel_requested_at": past}, False), ({"error_code": WORKER_LOST}, False),
                          ({"status": "running"}, False), ({"error_code": "transient"}, True)):
        Job.objects.filter(pk=job.pk).update(**change)
        assert both_say() is waits, change
        Job.objects.filter(pk=job.pk).update(status="queued", enqueued_at=past, cancel_requested_at=None, error_code="")
    assert both_say(batch_key="") is False
    Job.objects.filter(pk=job.pk).update(batch_key="")
    assert both_say(batch_key="") is True


def test_a_projects_enabled_webhook_endpoints_are_read_as_the_orm_reads_them_every_time(project, other_project):
    from atelier_platform.webhooks.models import WebhookEndpoint
    from atelier_platform.webhooks.services import _enabled_endpoints_read

    def both_read(of) -> list:
        prepared = [field_values(endpoint) for endpoint in _enabled_endpoints_read(project_id=of.pk)]
        assert prepared == [field_values(e) for e in WebhookEndpoint.objects.filter(project=of, enabled=True)]
        return prepared

    def endpoint(of, **fields):
        return WebhookEndpoint.objects.create(project=of, url="https://example.com/hook", secret="s", **fields)

    assert both_read(project) == []
    first = endpoint(project, event_types=["job.succeeded"])
    endpoint(other_project)
    endpoint(project, enabled=False)
    assert [e["id"] for e in both_read(project)] == [first.pk]
    second = endpoint(project)  # newest first, as the model orders them
    assert [e["id"] for e in both_read(project)] == [second.pk, first.pk]
    WebhookEndpoint.objects.filter(pk=first.pk).update(enabled=False, event_types=[])
    assert [e["id"] for e in both_read(project)] == [second.pk]


def test_the_hot_paths_reads_build_no_sql_after_their_first_call(project, sql_builds):
    """Each is prepared, not left to the ORM (which would be correct, but build its SQL on every call)."""
    from atelier_platform.jobs.lifecycle import _any_waiting_company
    from atelier_platform.jobs.models import prefetch_outputs_with_files
    from atelier_platform.jobs.waiting import _status
    from atelier_platform.webhooks.services import _enabled_endpoints_read

    job = build_job(project)
    build_output(job, image=True)
    held = Job.objects.get(pk=job.pk)

    def read_all():
        prefetch_outputs_with_files(held)
        _status(job.pk)
        _any_waiting_company(plugin_id=job.plugin_id, plugin_version=job.plugin_version, batch_key=job.batch_key)
        _enabled_endpoints_read(project_id=project.pk)

    read_all()
    sql_builds.clear()
    read_all()
    assert sql_builds == []


def test_a_new_job_shows_no_outputs_as_the_orms_empty_prefetch_shows_them(project, django_assert_num_queries):
    from django.db.models import Prefetch, prefetch_related_objects

    from atelier_platform.jobs.models import Output, prefetch_no_outputs

    job = build_job(project, status="queued")
    build_output(job)  # there is one, but a 201 shows the job as created, without outputs
    by_orm, ours = Job.objects.get(pk=job.pk), Job.objects.get(pk=job.pk)
    prefetch_related_objects([by_orm], Prefetch("outputs", queryset=Output.objects.none()))
    with django_assert_num_queries(0):
        prefetch_no_outputs(ours)
        assert list(ours.outputs.all()) == list(by_orm.outputs.all()) == []
        assert list(ours.outputs.filter(index=0)) == list(by_orm.outputs.filter(index=0)) == []
