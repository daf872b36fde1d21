"""A reviewer's "regenerate" decision rejects an output and queues a new job: an application that reads jobs
(``jobs:read``, no review scope) follows it from the first job to the new one, and back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from atelier_platform.jobs.models import Job, ReviewState
from atelier_platform.moderation.models import ReviewItem
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


@pytest.fixture
def regenerate(project, owner_api):
    """Open a review item for ``output``, claim it and send it back for regeneration; the new job's id."""

    def send_back(output, note: str = "warmer, please") -> str:
        item = ReviewItem.objects.create(output=output, project=project, priority=5)
        assert owner_api.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
        response = owner_api.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "regenerate", "comment": note},
                                  format="json")
        assert response.status_code == 200, response.content
        return response.json()["decisions"][-1]["regenerated_job"]

    return send_back


def test_the_first_job_names_its_new_try_and_the_new_one_names_the_first(project, api, regenerate):
    first = build_job(project)
    new = regenerate(build_output(first))
    shown = api.get(f"{JOBS}{first.pk}/").json()  # a key with jobs:read only, as an application waits on its job
    assert shown["outputs"][0]["review_state"] == "rejected"
    assert (shown["regenerated_from"], shown["regenerated_as"]) == (None, [new])
    again = api.get(f"{JOBS}{new}/").json()
    assert (again["regenerated_from"], again["regenerated_as"]) == (str(first.pk), [])
    assert again["status"] == "queued" and again["input"]["text"] == first.input["text"]


def test_the_new_try_carries_the_callers_metadata(project, api, regenerate):
    """The caller's key/value pairs (an OpenAI response's metadata) belong to the request, which the new job answers
    again: an app that files jobs by them finds the new try under the same ones."""
    first = build_job(project, metadata={"order": "A-17", "channel": "web"})
    new = regenerate(build_output(first))
    assert Job.objects.get(pk=new).metadata == {"order": "A-17", "channel": "web"}
    assert api.get(f"{JOBS}{new}/").json()["metadata"] == {"order": "A-17", "channel": "web"}
    plain = regenerate(build_output(build_job(project)))
    assert api.get(f"{JOBS}{plain}/").json()["metadata"] == {}


def test_each_output_sent_back_adds_a_job_newest_last_and_a_chain_is_followed_job_by_job(project, api, regenerate):
    first = build_job(project)
    one, two = build_output(first, index=0), build_output(first, index=1)
    new_for_two = regenerate(two)
    new_for_one = regenerate(one)
    assert api.get(f"{JOBS}{first.pk}/").json()["regenerated_as"] == [new_for_two, new_for_one]
    # the new job runs, its output is sent back too: a third try, named by the second
    second = Job.objects.get(pk=new_for_one)
    Job.objects.filter(pk=second.pk).update(status="succeeded")
    third = regenerate(build_output(second))
    assert api.get(f"{JOBS}{new_for_one}/").json()["regenerated_as"] == [third]
    assert api.get(f"{JOBS}{third}/").json()["regenerated_from"] == new_for_one
    assert api.get(f"{JOBS}{first.pk}/").json()["regenerated_as"] == [new_for_two, new_for_one]  # its own only


def test_the_job_list_shows_the_links_in_the_same_number_of_queries_however_many(project, api, regenerate):
    def listed():
        with CaptureQueriesContext(connection) as queries:
            results = api.get(JOBS, {"page_size": 100}).json()["results"]
        return {job["id"]: (job["regenerated_from"], job["regenerated_as"]) for job in results}, len(queries)

    first = build_job(project)
    new = regenerate(build_output(first))
    build_job(project)  # never reviewed
    listed()  # the key's first use of the minute, the plugin registry: read once, whatever the page
    links, few = listed()
    assert links[str(first.pk)] == (None, [new]) and links[new] == (str(first.pk), [])
    for _ in range(6):
        regenerate(build_output(build_job(project)))
    links, many = listed()
    assert len(links) == 15 and sum(1 for origin, _ in links.values() if origin) == 7
    assert many == few


def test_a_job_without_rejected_outputs_is_shown_without_looking_for_regenerations(project, api, make_output):
    """Only a rejected output can have been regenerated (the decision rejects it): the usual job, polled while
    an application waits, costs no query for the links."""
    job = build_job(project)
    make_output(job, review_state=ReviewState.APPROVED)
    with CaptureQueriesContext(connection) as queries:
        shown = api.get(f"{JOBS}{job.pk}/").json()
    assert (shown["regenerated_from"], shown["regenerated_as"]) == (None, [])
    assert not [q for q in queries.captured_queries if "regenerated_from" in q["sql"].split(" FROM ", 1)[-1]]


def test_the_schema_documents_the_links(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    for name in ("Job", "JobSummary"):
        properties = schema["components"]["schemas"][name]["properties"]
        assert properties["regenerated_from"]["format"] == "uuid" and properties["regenerated_from"]["nullable"] is True
        assert properties["regenerated_as"]["items"]["format"] == "uuid"
        assert properties["regenerated_as"]["description"] and properties["regenerated_from"]["description"]
