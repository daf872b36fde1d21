"""/api/v1/evaluation/: reference sets and runs over the API, as an owner's key and members see them."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.conftest import chat_case
from tests.evaluation.test_runs import run_all
from tests.support.databases import needs_postgresql

SETS, RUNS = "/api/v1/evaluation/reference-sets/", "/api/v1/evaluation/runs/"
QUESTIONS = [("Where is my parcel?", "It is on its way."), ("How long do returns take?", "Fourteen days.")]


@pytest.fixture
def admin_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin", "jobs:read", "jobs:write"]).raw)


@pytest.fixture
def chat_enabled(project, chatbot):
    set_plugin_enabled(project, "chatbot", True)
    return project


def a_set(client, name="support", cases=None, plugin="chatbot"):
    cases = cases if cases is not None else [chat_case(q, r) for q, r in QUESTIONS]
    return client.post(SETS, {"plugin": plugin, "name": name, "cases": cases}, format="json")


def error_of(response) -> dict:
    return response.json()["error"]


@pytest.mark.django_db
class TestReferenceSets:
    def test_an_owner_key_creates_one_and_members_read_it(self, chat_enabled, admin_api, api):
        created = a_set(admin_api)
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["plugin"] == "chatbot" and body["case_count"] == 2 and body["cases"][1]["reference"] == "Fourteen days."
        assert AuditEvent.objects.filter(action="reference_set_created").count() == 1
        listed = api.get(SETS).json()["results"]
        assert [s["name"] for s in listed] == ["support"] and "cases" not in listed[0]
        assert api.get(f"{SETS}{body['id']}/").json()["cases"] == body["cases"]
        assert a_set(api).status_code == 403  # a jobs:write key is no administrator

    def test_an_unknown_plugin_is_refused(self, chat_enabled, admin_api):
        response = a_set(admin_api, plugin="nope")
        assert response.status_code == 400 and error_of(response)["code"] == "unknown_plugin"

    def test_an_image_set_shows_where_its_images_are_and_serves_them_to_its_project_only(
            self, image_project, admin_api, api, make_key, client_for):
        from tests.evaluation.conftest import image_case, png_bytes
        from tests.factories import ProjectFactory

        picture = png_bytes(5)
        created = a_set(admin_api, plugin="image", cases=[image_case("a cat", picture), image_case("a dog", png_bytes(6))])
        assert created.status_code == 201, created.content
        reference = created.json()["cases"][0]["reference"]
        assert set(reference) == {"image", "media_type", "width", "height", "url"} and len(reference["image"]) == 64
        assert reference["url"] == f"{SETS}{created.json()['id']}/images/{reference['image']}/"
        downloaded = api.get(reference["url"])  # any member of the project
        assert downloaded.status_code == 200 and downloaded["Content-Type"] == "image/png"
        assert b"".join(downloaded.streaming_content) == picture
        assert "sandbox" in downloaded["Content-Security-Policy"]
        outsider = client_for(make_key(ProjectFactory(), scopes=["jobs:read", "admin"]).raw)
        assert outsider.get(reference["url"]).status_code == 404
        assert client_for().get(reference["url"]).status_code == 401
        assert api.get(f"{SETS}{created.json()['id']}/images/{'0' * 64}/").status_code == 404

        bad = a_set(admin_api, name="bad", plugin="image",
                    cases=[image_case("fine", picture), {"input": {"prompt": "x"}, "reference": "not an image"}])
        assert bad.status_code == 400 and list(error_of(bad)["details"]) == ["cases.1.reference"]

    @pytest.mark.django_db(transaction=True)  # a job's finish reaches its run once it commits
    def test_an_image_runs_results_link_both_images(self, image_project, admin_api):
        from atelier_workers.evaluation_tasks import score_evaluation
        from tests.evaluation.conftest import image_case, png_bytes

        created = a_set(admin_api, plugin="image", cases=[image_case("a cat", png_bytes(1)), image_case("a dog", png_bytes(2))])
        started = admin_api.post(RUNS, {"reference_set": created.json()["id"]}, format="json")
        assert started.status_code == 201, started.content
        run = run_all(EvaluationRun.objects.get(pk=started.json()["id"]))
        assert admin_api.get(f"{RUNS}{run.pk}/").json()["metrics"]["scoring"] == "pending"
        score_evaluation.apply(args=[str(run.pk)])
        body = admin_api.get(f"{RUNS}{run.pk}/").json()
        assert body["status"] == "succeeded" and body["metrics"]["scoring"] == "done"
        assert {"fid", "kid", "kid_std", "mean_similarity", "feature_extractor"} <= set(body["metrics"])
        for case in body["results"]:
            assert case["similarity"] is not None
            generated = admin_api.get(case["image_url"])
            assert generated.status_code == 200 and generated["Content-Type"] == "image/png"
            assert admin_api.get(case["reference_url"]).status_code == 200

    def test_cases_that_do_not_match_the_plugins_schema_are_named_by_index_and_field(self, chat_enabled, admin_api):
        cases = [chat_case("fine", "r"), {"input": {"messages": [{"role": "robot", "content": "q"}]}, "reference": "r"},
                 {"input": {"messages": [{"role": "user", "content": "q"}]}, "params": {"max_new_tokens": "many"},
                  "reference": "r"}, "not a case"]
        response = a_set(admin_api, cases=cases)
        assert response.status_code == 400
        details = error_of(response)["details"]
        assert {"cases.1.input.messages.0.role", "cases.2.params.max_new_tokens", "cases.3"} <= set(details)
        assert not any(name.startswith("cases.0") for name in details)
        for bad in ([], {"input": {}}, [chat_case("q", "r")] * (services.MAX_CASES + 1)):
            assert a_set(admin_api, cases=bad).status_code == 400
        assert not ReferenceSet.objects.exists()

    def test_the_case_checkers_own_refusals_keep_their_english_in_the_api(self, chat_enabled, admin_api):
        """The dashboard words them by a stable code now; the API's text stays what it said."""
        cases = ["not a case", {**chat_case("q", "r"), "extra": 1}, chat_case("q", " "), chat_case("q", "x" * 10_001),
                 {"input": [], "params": 3, "reference": "r"},
                 {"input": {"messages": [{"role": "user", "content": "q"}], "conversation_id": "c"}, "reference": "r"}]
        details = error_of(a_set(admin_api, cases=cases))["details"]
        assert details["cases.0"] == ["A case is an object with input, reference and optional params."]
        # a chatbot case may give the documents expected to ground its answer as well
        assert details["cases.1"] == ["Unknown fields: extra (a case has input, params and reference, and may have "
                                      "reference_sources and k)."]
        assert details["cases.2.reference"] == ["The expected answer, a non-empty text."]
        assert details["cases.3.reference"] == ["At most 10000 characters."]
        assert details["cases.4.input"] == details["cases.4.params"] == ["An object."]
        assert details["cases.5.input.conversation_id"] == ["A case is self-contained: put its turns in messages."]
        nul = error_of(a_set(admin_api, cases=[chat_case("q", "a\u0000b")]))["details"]
        assert nul == {"cases.0.reference": ["The NUL character (\\u0000) is not allowed."]}

    def test_a_reference_holding_a_nul_character_is_a_400_naming_it(self, chat_enabled, admin_api):
        # PostgreSQL's jsonb cannot store \u0000: it failed the insert (a 500) on create and on change
        created = a_set(admin_api, cases=[chat_case("q", "fine"), chat_case("q", "on its\u0000way")])
        assert created.status_code == 400 and set(error_of(created)["details"]) == {"cases.1.reference"}
        assert not ReferenceSet.objects.exists()
        first = a_set(admin_api).json()
        changed = admin_api.patch(f"{SETS}{first['id']}/", {"cases": [chat_case("q", "\u0000")]}, format="json")
        assert changed.status_code == 400 and set(error_of(changed)["details"]) == {"cases.0.reference"}
        assert ReferenceSet.objects.get().cases[0]["reference"] == QUESTIONS[0][1]

    def test_a_name_is_one_sets_and_a_change_is_checked_as_a_creation(self, chat_enabled, admin_api):
        first = a_set(admin_api).json()
        again = a_set(admin_api)
        assert again.status_code == 400 and "name" in error_of(again)["details"]
        changed = admin_api.patch(f"{SETS}{first['id']}/", {"cases": [{"input": {}, "reference": "r"}]}, format="json")
        assert changed.status_code == 400 and "cases.0.input.messages" in error_of(changed)["details"]
        renamed = admin_api.patch(f"{SETS}{first['id']}/", {"name": "renamed"}, format="json")
        assert renamed.status_code == 200 and renamed.json()["name"] == "renamed" and renamed.json()["case_count"] == 2

    def test_two_owners_giving_two_sets_one_name_at_once_get_a_400_not_a_500(self, chat_enabled, admin_api, monkeypatch):
        """The check passed for both before either saved: the second save meets the unique name (a creation said so;
        a change was a 500)."""
        a_set(admin_api, name="first")
        second = a_set(admin_api, name="second").json()
        checked, real = [], services._name_taken

        def passed_before_the_other_saved(project, name, but=None):
            if not checked:
                checked.append(name)
                return
            real(project, name, but=but)

        monkeypatch.setattr(services, "_name_taken", passed_before_the_other_saved)
        renamed = admin_api.patch(f"{SETS}{second['id']}/", {"name": "first"}, format="json")
        assert renamed.status_code == 400 and "name" in error_of(renamed)["details"] and checked == ["first"]
        assert ReferenceSet.objects.get(pk=second["id"]).name == "second"

    def test_another_projects_sets_and_runs_are_not_found(self, chat_enabled, admin_api, other_project):
        theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs",
                                             cases=[chat_case("q", "r")])
        their_run = EvaluationRun.objects.create(project=other_project, reference_set=theirs, plugin_id="chatbot")
        assert admin_api.get(f"{SETS}{theirs.pk}/").status_code == 404
        assert admin_api.get(f"{RUNS}{their_run.pk}/").status_code == 404
        assert admin_api.delete(f"{SETS}{theirs.pk}/").status_code == 404
        started = admin_api.post(RUNS, {"reference_set": str(theirs.pk)}, format="json")
        assert started.status_code == 404 and error_of(started)["code"] == "not_found"
        assert admin_api.get(SETS).json()["results"] == [] and admin_api.get(RUNS).json()["results"] == []
        assert not Job.objects.exists() and EvaluationRun.objects.count() == 1

    def test_a_model_version_of_another_plugin_is_refused_and_nothing_is_started(self, chat_enabled, admin_api):
        reference_set = a_set(admin_api).json()
        other = ModelVersion.objects.create(plugin_id="image", version="v1", model_dir="image/v1")
        for version in (other.pk, 999_999):
            response = admin_api.post(RUNS, {"reference_set": reference_set["id"], "model_version": version}, format="json")
            assert response.status_code == 400 and error_of(response)["code"] == "unknown_model_version"
        assert not EvaluationRun.objects.exists() and not Job.objects.exists()

    def test_another_projects_private_version_is_refused_and_the_projects_own_offered(self, chat_enabled, admin_api,
                                                                                        other_project):
        reference_set = a_set(admin_api).json()
        theirs = ModelVersion.objects.create(plugin_id="chatbot", version="their-ft", model_dir="chat/theirs",
                                             project=other_project)
        response = admin_api.post(RUNS, {"reference_set": reference_set["id"], "model_version": theirs.pk}, format="json")
        assert response.status_code == 400 and error_of(response)["code"] == "unknown_model_version"
        assert not EvaluationRun.objects.exists() and not Job.objects.exists()
        assert list(services.evaluable_model_versions(chat_enabled, "chatbot")) == []
        own = ModelVersion.objects.create(plugin_id="chatbot", version="our-ft", model_dir="chat/ours", project=chat_enabled)
        shared = ModelVersion.objects.create(plugin_id="chatbot", version="shared", model_dir="chat/shared")
        assert set(services.evaluable_model_versions(chat_enabled, "chatbot")) == {own, shared}

    def test_a_plugin_disabled_for_the_project_refuses_the_run(self, chat_enabled, admin_api):
        reference_set = a_set(admin_api).json()
        set_plugin_enabled(chat_enabled, "chatbot", False)
        response = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json")
        assert response.status_code == 400 and "cases.0.plugin" in error_of(response)["details"]
        assert not EvaluationRun.objects.exists() and not Job.objects.exists()

    def test_runs_going_at_once_are_limited_and_a_set_with_one_going_is_not_deleted(self, chat_enabled, admin_api,
                                                                                    monkeypatch):
        monkeypatch.setattr(services, "MAX_ACTIVE_RUNS", 1)
        reference_set = a_set(admin_api).json()
        assert admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").status_code == 201
        busy = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json")
        assert busy.status_code == 409 and error_of(busy)["code"] == "evaluation_runs_busy"
        refused = admin_api.delete(f"{SETS}{reference_set['id']}/")
        assert refused.status_code == 409 and ReferenceSet.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_over_the_api_reports_progress_then_metrics_and_sends_nothing_to_review(chat_project, admin_api, member,
                                                                                     client_for):
    reference_set = a_set(admin_api).json()
    started = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json")
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["status"] == "queued" and body["progress"] == {"done": 0, "failed": 0, "total": 2}
    assert body["model_version"] is None and body["metrics"] == {}
    assert [(r["status"], r["reference"], r["output"]) for r in body["results"]] == [
        ("pending", reference, None) for _, reference in QUESTIONS]
    run_all(EvaluationRun.objects.get(pk=body["id"]))
    from rest_framework.test import APIClient

    viewer = APIClient()
    viewer.force_login(member(chat_project, "viewer"))
    finished = viewer.get(f"{RUNS}{body['id']}/", HTTP_X_ATELIER_PROJECT=chat_project.slug).json()
    assert finished["status"] == "succeeded" and finished["progress"] == {"done": 2, "failed": 0, "total": 2}
    assert finished["metrics"]["succeeded"] == 2 and finished["metrics"]["chrf"] is not None
    assert [r["reference"] for r in finished["results"]] == [r for _, r in QUESTIONS]
    assert all(r["output"] is not None and r["chrf"] is not None for r in finished["results"])
    listed = viewer.get(RUNS, HTTP_X_ATELIER_PROJECT=chat_project.slug).json()["results"]
    assert [r["id"] for r in listed] == [body["id"]] and "results" not in listed[0]
    owner = APIClient()
    owner.force_login(member(chat_project, "owner"))
    assert owner.get("/api/v1/reviews/?state=pending", HTTP_X_ATELIER_PROJECT=chat_project.slug).json()["results"] == []


@pytest.mark.django_db
def test_the_jobs_list_says_which_jobs_are_an_evaluations_and_leaves_them_out_on_asking(chat_enabled, admin_api, api):
    """The README says evaluation jobs are listed with the project's jobs as ``purpose: evaluation``: the list said
    nothing of it, so a caller processing its finished jobs took a run's 500 answers (never final) for its own."""
    reference_set = a_set(admin_api).json()
    run = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()
    own = api.post("/api/v1/jobs/", {"plugin": "chatbot", "input": {"messages": [{"role": "user", "content": "hi"}]}},
                   format="json")
    assert own.status_code == 201, own.content
    listed = {job["id"]: job["purpose"] for job in api.get("/api/v1/jobs/").json()["results"]}
    assert listed == {own.json()["id"]: "request", **{case["job_id"]: "evaluation" for case in run["results"]}}
    assert [job["id"] for job in api.get("/api/v1/jobs/?purpose=request").json()["results"]] == [own.json()["id"]]
    assert len(api.get("/api/v1/jobs/?purpose=evaluation").json()["results"]) == len(QUESTIONS)
    assert api.get(f"/api/v1/jobs/{run['results'][0]['job_id']}/").json()["purpose"] == "evaluation"
    assert api.get("/api/v1/jobs/?purpose=other").status_code == 400


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_set_deleted_while_a_run_of_it_was_being_started_waits_for_it_and_is_refused(chat_enabled, admin_api):
    """The deletion looked for runs going without the lock a start takes: a start that had not committed yet was not
    seen, the set went, and the run's row then named a set no longer there (a 500, or jobs nobody counted)."""
    import threading

    from django.db import connection, transaction

    from atelier_platform.accounts.models import Project
    from atelier_platform.evaluation.models import RunStatus

    reference_set = ReferenceSet.objects.get(pk=a_set(admin_api).json()["id"])
    started, outcome = threading.Event(), {}

    def a_start_in_flight():
        """What start_run does, held open until the deletion waits on a lock."""
        try:
            with transaction.atomic():
                list(Project.objects.select_for_update().filter(pk=reference_set.project_id))
                EvaluationRun.objects.create(project_id=reference_set.project_id, reference_set=reference_set,
                                             plugin_id="chatbot", status=RunStatus.QUEUED, cases_total=2)
                started.set()
                with connection.cursor() as cursor:  # until another session waits on a lock (the deletion)
                    for _ in range(600):
                        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND pid <> pg_backend_pid()")
                        if cursor.fetchone()[0]:
                            break
                        cursor.execute("SELECT pg_sleep(0.05)")
        finally:
            connection.close()

    def delete():
        try:
            outcome["deleted"] = admin_api.delete(f"{SETS}{reference_set.pk}/").status_code
        except Exception as error:  # noqa: BLE001 - what the old code raised
            outcome["deleted"] = repr(error)
        finally:
            connection.close()

    starting = threading.Thread(target=a_start_in_flight)
    starting.start()
    assert started.wait(30)
    deleting = threading.Thread(target=delete)
    deleting.start()
    starting.join()
    deleting.join()
    assert outcome["deleted"] == 409 and ReferenceSet.objects.filter(pk=reference_set.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_started_on_a_set_deleted_meanwhile_is_a_404_and_starts_nothing(chat_enabled):
    reference_set = services.create_reference_set(chat_enabled, plugin_id="chatbot", name="s", actor="test",
                                                  cases=[chat_case(q, r) for q, r in QUESTIONS])
    ReferenceSet.objects.filter(pk=reference_set.pk).delete()  # after the start had read it, before it took the lock
    with pytest.raises(services.EvaluationError) as refused:
        services.start_run(chat_enabled, reference_set, actor="test")
    assert refused.value.status_code == 404 and not EvaluationRun.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_lists_count_a_sets_cases_without_reading_them(chat_enabled, admin_api, api):
    """A set holds up to a megabyte of cases: the lists of sets and of runs, and the settings page, read every set's
    cases (once per run, for the runs) to show a count and a name."""
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = a_set(admin_api, name="two").json()
    a_set(admin_api, name="three", cases=[chat_case(q, "r") for q in ("a", "b", "c")])
    admin_api.post(RUNS, {"reference_set": first["id"]}, format="json")
    reads_cases = re.compile(r'"evaluation_referenceset"\."cases"\s*(,|FROM)')
    with CaptureQueriesContext(connection) as listed_sets:
        sets = api.get(SETS).json()["results"]
    assert {s["name"]: s["case_count"] for s in sets} == {"two": 2, "three": 3}
    with CaptureQueriesContext(connection) as listed_runs:
        runs = api.get(RUNS).json()["results"]
    assert [r["reference_set_name"] for r in runs] == ["two"]
    assert not [q["sql"] for q in [*listed_sets.captured_queries, *listed_runs.captured_queries]
                if reads_cases.search(q["sql"])]
    assert api.get(f"{SETS}{first['id']}/").json()["case_count"] == 2  # one set: read whole, as it is shown whole


@pytest.mark.django_db(transaction=True)
def test_while_a_run_holds_the_projects_lock_the_projects_jobs_are_still_submitted(chat_enabled, api):
    """Starts, deletions and cancels of runs take turns on the project's row; a 500-case start holds it while it
    writes its jobs. Held FOR UPDATE, it stopped every submission of the project meanwhile (an insert checks the key
    of the project it names); FOR NO KEY UPDATE does not."""
    import threading

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (DATABASE_URL=postgres://...)")
    held, release = threading.Event(), threading.Event()

    def a_start_holding_the_lock():
        try:
            with transaction.atomic():
                services._lock_project(chat_enabled.pk)
                held.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=a_start_holding_the_lock)
    holder.start()
    try:
        assert held.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # a submission that waited on the lock fails, not hangs
        submitted = api.post("/api/v1/jobs/", {"plugin": "chatbot", "input": {"messages": [{"role": "user",
                                                                                              "content": "hi"}]}},
                             format="json")
        assert submitted.status_code == 201, submitted.content
    finally:
        release.set()
        holder.join(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")


@pytest.mark.django_db
class TestRunIdempotency:
    """Idempotency-Key on POST /evaluation/runs/, as on POST /jobs/: a retried start is the first run, not another
    run of every case."""

    def test_the_same_key_and_body_give_the_first_run_and_another_body_a_422(self, chat_enabled, admin_api):
        reference_set = a_set(admin_api).json()
        body = {"reference_set": reference_set["id"]}
        first = admin_api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="start-1")
        assert first.status_code == 201 and "Idempotent-Replayed" not in first
        again = admin_api.post(RUNS, {**body, "model_version": None}, format="json", HTTP_IDEMPOTENCY_KEY="start-1")
        assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"] and again["Location"] == first["Location"]
        assert EvaluationRun.objects.count() == 1 and Job.objects.count() == 2
        assert AuditEvent.objects.filter(action="evaluation_started").count() == 1

        version = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
        other = admin_api.post(RUNS, {**body, "model_version": version.pk}, format="json", HTTP_IDEMPOTENCY_KEY="start-1")
        assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
        assert EvaluationRun.objects.count() == 1

        # a new key (or none) is a new run
        assert admin_api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="start-2").status_code == 201
        assert admin_api.post(RUNS, body, format="json").status_code == 201
        assert EvaluationRun.objects.count() == 3

    def test_a_refused_start_keeps_the_key_free_and_a_bad_key_is_a_400(self, chat_enabled, admin_api, monkeypatch):
        reference_set = a_set(admin_api).json()
        body = {"reference_set": reference_set["id"]}
        monkeypatch.setattr(services, "MAX_ACTIVE_RUNS", 0)
        busy = admin_api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert busy.status_code == 409 and error_of(busy)["code"] == "evaluation_runs_busy"
        monkeypatch.setattr(services, "MAX_ACTIVE_RUNS", 3)
        assert admin_api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
        bad = admin_api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="é" * 3)
        assert bad.status_code == 400 and "Idempotency-Key" in error_of(bad)["details"]
        assert EvaluationRun.objects.count() == 1

    def test_keys_are_per_project_and_a_key_of_the_jobs_endpoint_is_another_request(self, chat_enabled, admin_api,
                                                                                      other_project, make_key, client_for):
        reference_set = a_set(admin_api).json()
        assert admin_api.post("/api/v1/jobs/", {"plugin": "chatbot", "input": {"messages": [
            {"role": "user", "content": "q"}]}}, format="json", HTTP_IDEMPOTENCY_KEY="shared").status_code == 201
        started = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
        assert started.status_code == 201
        set_plugin_enabled(other_project, "chatbot", True)
        theirs_api = client_for(make_key(other_project, scopes=["admin", "jobs:read", "jobs:write"]).raw)
        theirs = a_set(theirs_api).json()
        assert theirs_api.post(RUNS, {"reference_set": theirs["id"]}, format="json",
                               HTTP_IDEMPOTENCY_KEY="shared").status_code == 201
        assert EvaluationRun.objects.filter(project=other_project).count() == 1

    def test_a_replayed_key_whose_run_was_deleted_starts_nothing_and_says_so(self, chat_enabled, admin_api):
        reference_set = a_set(admin_api).json()
        run = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json", HTTP_IDEMPOTENCY_KEY="k").json()
        services.cancel_run(EvaluationRun.objects.get(pk=run["id"]), actor="t")
        EvaluationRun.objects.filter(pk=run["id"]).delete()  # as an operator in the admin
        gone = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert gone.status_code == 404 and error_of(gone)["code"] == "not_found"
        assert "use a new key" in error_of(gone)["message"] and not EvaluationRun.objects.exists()


@pytest.mark.django_db
def test_runs_are_listed_by_reference_set_and_model_version(project, other_project, api):
    """A set's history and a version's runs, as the other lists filter; another project's set or version names no
    run of this one (an empty list), and a value that is no id is a 400 naming the filter."""
    def run(reference_set, version=None):
        return EvaluationRun.objects.create(project=reference_set.project, reference_set=reference_set,
                                            plugin_id="chatbot", model_version=version, cases_total=1)

    support, returns = (ReferenceSet.objects.create(project=project, plugin_id="chatbot", name=name, cases=[])
                        for name in ("support", "returns"))
    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs", cases=[])
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    private = ModelVersion.objects.create(plugin_id="chatbot", version="their-ft", model_dir="chat/ft",
                                          project=other_project)
    support_current, support_v2, returns_v2 = run(support), run(support, v2), run(returns, v2)
    run(theirs, v2), run(theirs, private), run(theirs)

    def listed(**query) -> list[str]:
        response = api.get(RUNS, query)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert listed(reference_set=support.pk) == [str(support_v2.pk), str(support_current.pk)]
    assert listed(model_version=v2.pk) == [str(returns_v2.pk), str(support_v2.pk)]
    assert listed(model_version="current") == [str(support_current.pk)]
    assert listed(reference_set=support.pk, model_version=v2.pk) == [str(support_v2.pk)]
    assert listed(reference_set=returns.pk, model_version="current") == []
    assert listed(reference_set=theirs.pk) == [] and listed(model_version=private.pk) == []
    assert len(listed()) == 3
    for name, value in (("reference_set", "not-a-uuid"), ("reference_set", "\x00"), ("model_version", "v2"),
                        ("model_version", "0"), ("model_version", "-1"), ("model_version", "1.5"),
                        ("model_version", "9" * 19), ("model_version", "\x00"), ("model_version", "Current")):
        response = api.get(RUNS, {name: value})
        assert response.status_code == 400, (name, value, response.content)
        assert error_of(response)["code"] == "validation_error" and name in error_of(response)["details"], value
