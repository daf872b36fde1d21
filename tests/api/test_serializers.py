"""The job serializers build their fields from the model once per class (``FieldsBuiltOnce``): each
class still answers with its own fields, and no two answers share a field object."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from atelier_platform.api.serializers import JobSerializer, JobSummarySerializer, OutputSerializer
from atelier_platform.jobs.models import Job, outputs_with_files
from tests.api.helpers import build_job, build_output


def fresh_classes():
    """Classes of their own, so that no earlier test has built their fields yet."""

    class Summary(JobSummarySerializer):
        class Meta(JobSummarySerializer.Meta):
            pass

    class Full(Summary):
        outputs = OutputSerializer(many=True, read_only=True)

        class Meta(Summary.Meta):
            fields = [*Summary.Meta.fields, "outputs"]

    return Summary, Full


@pytest.fixture
def job(project):
    job = build_job(project)
    build_output(job, image=True)
    return Job.objects.select_related("project").prefetch_related(outputs_with_files()).get(pk=job.pk)


@pytest.mark.django_db
def test_fields_are_built_once_per_class(job, monkeypatch):
    builds: list[str] = []
    model_serializer_fields = serializers.ModelSerializer.get_fields

    def counted(self):
        builds.append(type(self).__name__)
        return model_serializer_fields(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", counted)
    Summary, Full = fresh_classes()
    answers = [Full(job).data for _ in range(3)]
    assert builds.count("Full") == 1
    assert answers[0] == answers[2]


@pytest.mark.django_db
def test_a_subclass_answers_with_its_own_fields_whichever_class_was_built_first(job):
    Summary, Full = fresh_classes()
    assert "outputs" not in Summary(job).data  # the parent first...
    assert Full(job).data["outputs"][0]["files"][0]["role"] == "primary"  # ...does not hide the subclass's field
    Summary, Full = fresh_classes()
    assert "outputs" in Full(job).data  # the subclass first...
    assert "outputs" not in Summary(job).data  # ...does not lend it to its parent


@pytest.mark.django_db
def test_each_serializer_gets_fields_of_its_own(job):
    first, second = JobSerializer(job), JobSerializer(job)
    assert first.fields["status"] is not second.fields["status"]
    assert first.fields["status"].parent is first and second.fields["status"].parent is second
    assert first.data == second.data
