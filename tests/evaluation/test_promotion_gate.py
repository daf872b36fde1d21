"""A promotion that requires an evaluation: ``PATCH /api/v1/plugins/{id}/settings/`` with ``model_version`` and
``require_evaluation`` pins the version only if its newest succeeded run of the set fell no further than allowed
against the version pinned now; else 409 with the numbers, and nothing changes. Real runs of the chatbot on tiny LMs."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.configuration import configure_plugin, pins
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import services
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.test_runs import cancelled_part_way, make_set, run_all

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = "/api/v1/plugins/chatbot/settings/"


@pytest.fixture
def owner_api(chat_project, make_key, client_for):
    return client_for(make_key(chat_project, scopes=["admin"]).raw)


@pytest.fixture
def own_answers(chat_project):
    """References that are the default model's own answers: it scores 100 on each, v2 less."""
    probe = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="probe"), actor="t"))
    return make_set(chat_project, [case["output"] for case in probe.results], name="own answers")


@pytest.fixture
def v2():
    return ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")


def promote(client, version, **requirement):
    body = {"model_version": version.pk if version else None,
            "require_evaluation": {"reference_set": "own answers", "max_drop": {"chrf": 1.5}, **requirement}}
    return client.patch(SETTINGS, body, format="json")


def configured_events():
    return AuditEvent.objects.filter(action="plugin_configured")


def test_a_version_without_a_run_of_the_set_is_not_pinned(chat_project, owner_api, own_answers, v2):
    run_all(services.start_run(chat_project, own_answers, actor="test"))  # the version pinned now (none: default)
    response = promote(owner_api, v2)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "evaluation_required" and "on the version promoted (v2)" in error["message"]
    assert error["details"]["run"] is None and error["details"]["reference_set"] == str(own_answers.pk)
    assert pins(chat_project) == {} and not configured_events().exists()


def test_nor_without_a_run_of_the_version_pinned_now(chat_project, owner_api, own_answers, v2):
    run_all(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))
    response = promote(owner_api, v2)
    assert response.status_code == 409 and response.json()["error"]["code"] == "evaluation_required"
    assert "the version pinned now (the plugin's default model (not pinned))" in response.json()["error"]["message"]


def test_a_run_cancelled_part_way_is_no_evidence_for_a_promotion(chat_project, owner_api, own_answers, v2):
    """v2's only run of the set was cancelled with 1 of 3 cases answered: its figures are of that one case, so it is
    not the run a promotion is measured by, whatever the limits allow."""
    run_all(services.start_run(chat_project, own_answers, actor="test"))  # the version pinned now (none: default)
    cancelled = cancelled_part_way(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))
    assert cancelled.metrics["succeeded"] == 1 and cancelled.metrics["chrf"] is not None
    response = promote(owner_api, v2, max_drop={"chrf": 100.0, "failed": 3})
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "evaluation_required" and "on the version promoted (v2)" in error["message"]
    assert pins(chat_project) == {} and not configured_events().exists()


def test_a_version_that_fell_too_far_is_refused_with_the_numbers_and_one_within_the_limits_is_pinned(
        chat_project, owner_api, own_answers, v2):
    current = run_all(services.start_run(chat_project, own_answers, actor="test"))
    candidate = run_all(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))
    assert current.metrics["chrf"] == 100.0 > candidate.metrics["chrf"]

    response = promote(owner_api, v2)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "evaluation_gate_failed" and "chrf dropped by" in error["message"]
    assert error["details"]["run"] == str(candidate.pk) and error["details"]["to"] == str(current.pk)
    chrf = next(gate for gate in error["details"]["gates"] if gate["metric"] == "chrf")
    assert chrf["metric"] == "chrf" and chrf["passed"] is False and chrf["max_drop"] == 1.5
    assert chrf["drop"] == pytest.approx(100.0 - candidate.metrics["chrf"]) and chrf["to"] == 100.0
    assert pins(chat_project) == {} and not configured_events().exists()

    response = promote(owner_api, v2, max_drop={"chrf": 100, "bleu": 100})
    assert response.status_code == 200, response.content
    assert response.json()["model_version"] == v2.pk and pins(chat_project) == {"chatbot": v2.pk}
    [event] = configured_events()
    assert event.after["model_version"] == "v2"
    assert event.after["evaluation"]["run"] == str(candidate.pk) and event.after["evaluation"]["to"] == str(current.pk)
    assert {gate["metric"]: gate["passed"] for gate in event.after["evaluation"]["gates"]} == {
        "chrf": True, "bleu": True, "failed": True}  # and no more failed cases than the version pinned now

    # Rolling back to the default model under the same rule: measured against v2's run, it improves.
    response = promote(owner_api, None)
    assert response.status_code == 200, response.content
    assert pins(chat_project) == {}
    assert configured_events().count() == 2


def test_an_unchanged_pin_needs_no_evaluation(chat_project, owner_api, own_answers, v2):
    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)
    assert promote(owner_api, v2).status_code == 200  # nothing changes, so nothing is gated


@pytest.mark.parametrize("body, field", [
    ({"require_evaluation": {"reference_set": "own answers", "max_drop": {"chrf": 1}}}, "require_evaluation"),
    ({"model_version": None, "require_evaluation": {"reference_set": "nope", "max_drop": {"chrf": 1}}},
     "require_evaluation.reference_set"),
    ({"model_version": None, "require_evaluation": {"reference_set": "probe image", "max_drop": {"chrf": 1}}},
     "require_evaluation.reference_set"),
    ({"model_version": None, "require_evaluation": {"reference_set": "own answers", "max_drop": {"fid": 1}}},
     "require_evaluation.max_drop.fid"),
    ({"model_version": None, "require_evaluation": {"reference_set": "own answers", "max_drop": {"chrf": -1}}},
     "require_evaluation"),
    ({"model_version": None, "require_evaluation": {"reference_set": "own answers", "max_drop": {}}},
     "require_evaluation"),
    ({"model_version": None, "require_evaluation": {"reference_set": "own answers", "max_drop": {"chrf": 1},
                                                    "sneaky": True}}, "require_evaluation"),
])
def test_a_requirement_that_is_not_understood_is_a_400_naming_its_field(chat_project, owner_api, own_answers, v2,
                                                                        body, field):
    from atelier_platform.evaluation.models import ReferenceSet

    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)
    ReferenceSet.objects.create(project=chat_project, plugin_id="image", name="probe image", cases=[])
    response = owner_api.patch(SETTINGS, body, format="json")
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert any(name == field or name.startswith(field + ".") for name in details), details
    assert pins(chat_project) == {"chatbot": v2.pk}


def test_a_candidate_run_of_the_set_as_changed_since_the_baseline_is_not_pinned(chat_project, owner_api, own_answers,
                                                                               v2):
    """The set was made easier after the version pinned now ran it: the candidate's figures measure other questions,
    and no limit can be shown to hold (they were compared silently, and any drop limit passed)."""
    current = run_all(services.start_run(chat_project, own_answers, actor="test"))
    cases = [dict(case) for case in own_answers.cases]
    cases[0]["reference"] = "An easier answer."
    services.update_reference_set(own_answers, actor="test", cases=cases)
    candidate = run_all(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))
    response = promote(owner_api, v2, max_drop={"chrf": 100})
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "evaluation_gate_failed" and "reference set was changed between the runs" in error["message"]
    assert error["details"]["run"] == str(candidate.pk) and error["details"]["to"] == str(current.pk)
    assert error["details"]["gates"][0]["set_changed"] is True
    assert pins(chat_project) == {} and not configured_events().exists()
