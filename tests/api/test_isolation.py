"""Another project's objects do not exist for you: every endpoint that takes an object id, called by
project A's owner (signed in, and with an all-scopes key) with the ids of project B's objects, answers
404 in the error envelope (never 403, which would confirm the id, and never the data), and changes
nothing in B.

The endpoints come from the URLconf (``tests/api/endpoints.py``): one that takes an id and has no
entry in ``PATH_IDS`` fails ``test_every_endpoint_with_an_id_is_covered``.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from atelier_platform.accounts.models import ApiKey, Invitation, Membership
from atelier_platform.accounts.roles import Capability, Role
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet
from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.api.endpoints import PATH_IDS, api_endpoints, make_objects, url_for
from tests.factories import MembershipFactory, UserFactory

# Bodies valid enough that a view which validated before looking the object up would still get
# as far as the lookup: a 400 here would hide whether the id was found.
BODIES = {
    ("POST", "/api/v1/reviews/{pk}/decision/"): {"action": "approve"},
    ("PATCH", "/api/v1/webhooks/{pk}/"): {"description": "taken over", "enabled": False},
    ("PATCH", "/api/v1/api-keys/{pk}/"): {"name": "taken over"},
    ("PATCH", "/api/v1/evaluation/reference-sets/{pk}/"): {"name": "taken over"},
    ("PATCH", "/api/v1/members/{pk}/"): {"role": "owner"},
}

WITH_IDS = sorted((method, template) for method, template in api_endpoints() if "{" in template)
#: Paths whose id is no project's object: a plugin's id names installed software, the same for every project, and
#: each project's settings of it are its own (``test_plugin_settings.test_one_projects_settings_never_touch_anothers``)
SHARED_IDS = {"/api/v1/plugins/{plugin_id}/settings/"}


def test_every_endpoint_with_an_id_is_covered(db):
    missing = sorted({template for _, template in WITH_IDS} - set(PATH_IDS))
    assert not missing, f"endpoints with an object id and no entry in tests/api/endpoints.PATH_IDS: {missing}"
    assert len(WITH_IDS) >= 25  # the enumeration itself works


@pytest.fixture
def chatbot_registered(empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)


@pytest.fixture
def project_b(other_project, chatbot_registered):
    set_plugin_enabled(other_project, "chatbot", True)  # a model only B may use: /v1/models/chatbot
    return other_project


@pytest.fixture
def owners_of_a(project):
    """Project A's owner, signed in and as an all-scopes API key."""
    session = APIClient()
    session.force_login(MembershipFactory(project=project, user=UserFactory(), role=Role.OWNER).user)
    session.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    key = APIClient()
    key.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project, scopes=list(Capability.values)).raw}")
    return {"owner signed in": session, "owner key": key}


def b_state(objects) -> dict:
    """What a successful call on B's objects would change."""
    review = ReviewItem.objects.get(pk=objects["review"].pk)
    endpoint = WebhookEndpoint.objects.get(pk=objects["endpoint"].pk)
    return {
        "job": type(objects["job"]).objects.get(pk=objects["job"].pk).status,
        "review": (review.state, review.lease_holder),
        "document": list(KnowledgeDocument.objects.filter(pk=objects["document"].pk).values()),
        "endpoint": (endpoint.secret, endpoint.description, endpoint.enabled),
        "delivery": list(WebhookDelivery.objects.filter(pk=objects["delivery"].pk).values()),
        "api_key": ApiKey.objects.filter(pk=objects["api_key"].pk).values_list("revoked_at", "name").first(),
        "reference_set": list(ReferenceSet.objects.filter(pk=objects["reference_set"].pk).values()),
        "run": list(EvaluationRun.objects.filter(pk=objects["run"].pk).values()),
        "member": list(Membership.objects.filter(pk=objects["member"].pk).values()),
        "invitation": list(Invitation.objects.filter(pk=objects["invitation"].pk).values()),
    }


@pytest.mark.django_db
def test_another_projects_objects_are_not_found(project, project_b, owners_of_a):
    objects = make_objects(project_b)
    before = b_state(objects)
    secrets = [str(objects[name].pk) for name in ("job", "chat_job", "output", "document", "conversation", "endpoint")]
    secrets += [objects["endpoint"].url, objects["endpoint"].secret, objects["api_key"].prefix,
                objects["member"].user.username, objects["invitation"].email]
    problems = []
    for method, template in WITH_IDS:
        if template in SHARED_IDS:
            continue
        url = url_for(template, objects)
        body = BODIES.get((method, template))
        for who, client in owners_of_a.items():
            kwargs = {"data": json.dumps(body or {}), "content_type": "application/json"} if method in ("POST", "PATCH") else {}
            response = client.generic(method, url, **kwargs)
            expected_code = ("model_not_found" if template.startswith("/v1/models") else
                             "response_not_found" if template.startswith("/v1/responses") else "not_found")
            if response.status_code != 404:
                problems.append(f"{who} {method} {url}: {response.status_code} {response.content[:200]!r}")
                continue
            error = response.json().get("error") or {}
            if error.get("code") != expected_code:
                problems.append(f"{who} {method} {url}: error code {error.get('code')!r}, expected {expected_code!r}")
            leaked = [value for value in secrets if value in response.content.decode()]
            if leaked:
                problems.append(f"{who} {method} {url}: the answer names B's {leaked}")
    assert not problems, "\n".join(problems)
    assert b_state(objects) == before, "a call from project A changed project B's objects"


@pytest.mark.django_db
def test_the_same_ids_in_ones_own_project_are_found(project, owners_of_a):
    """The control: the ids the test builds are real, so the 404s above come from the project boundary."""
    from atelier_platform.catalog.registry import get_registry
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    get_registry().register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    objects = make_objects(project)
    for method, template in WITH_IDS:
        if method == "GET":
            response = owners_of_a["owner key"].get(url_for(template, objects))
            assert response.status_code == 200, (template, response.content[:200])


@pytest.mark.django_db
def test_filters_naming_another_projects_objects_find_nothing(project, project_b, owners_of_a):
    objects = make_objects(project_b)
    client = owners_of_a["owner key"]
    for url in (f"/api/v1/outputs/?job={objects['job'].pk}", f"/api/v1/evaluation/runs/?reference_set={objects['reference_set'].pk}",
                "/api/v1/evaluation/runs/", "/api/v1/jobs/", "/api/v1/outputs/", "/api/v1/reviews/?state=all",
                "/api/v1/webhooks/", "/api/v1/api-keys/", "/api/v1/knowledge/documents/", "/api/v1/members/",
                "/api/v1/invitations/"):
        response = client.get(url)
        assert response.status_code in (200, 400), (url, response.content)
        if response.status_code == 200:
            body = response.content.decode()
            assert not any(str(objects[name].pk) in body for name in ("job", "output", "document", "endpoint", "run")), url
            assert objects["member"].user.username not in body and objects["invitation"].email not in body, url
