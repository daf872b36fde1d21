"""POST /api/v1/reviews/claim-next/: its filters are query parameters; a body with fields is refused, never ignored."""

from __future__ import annotations

import json

import pytest

from atelier_platform.moderation.models import ReviewItem
from tests.api.helpers import assert_envelope

CLAIM_NEXT = "/api/v1/reviews/claim-next/"


@pytest.fixture
def queue(project, make_job, make_output):
    """One pending item of each of two plugins."""
    return {plugin: ReviewItem.objects.create(output=make_output(make_job(project, plugin=plugin)), project=project)
            for plugin in ("reverse_text", "gpu_reverse")}


@pytest.mark.django_db
class TestClaimNext:
    def test_a_body_with_filters_is_refused_and_nothing_is_leased(self, owner_api, queue):
        """``{"plugin": "nope"}`` claimed and leased an item of any plugin: the filter was silently dropped."""
        response = owner_api.post(CLAIM_NEXT, {"plugin": "nope", "flagged": True, "colour": "red"}, format="json")
        error = assert_envelope(response, 400, "validation_error")
        assert set(error["details"]) == {"plugin", "flagged", "colour"}, error
        assert f"{CLAIM_NEXT}?plugin=nope" in error["details"]["plugin"][0]
        assert f"{CLAIM_NEXT}?flagged=true" in error["details"]["flagged"][0]
        assert "query parameters" in error["details"]["colour"][0]
        assert not ReviewItem.objects.exclude(lease_holder="").exists()

    @pytest.mark.parametrize("body", ['["plugin"]', '"plugin=nope"', "7"])
    def test_a_body_that_is_no_object_is_refused(self, owner_api, queue, body):
        error = assert_envelope(owner_api.post(CLAIM_NEXT, body, content_type="application/json"), 400, "validation_error")
        assert list(error["details"]) == ["body"], error
        assert not ReviewItem.objects.exclude(lease_holder="").exists()

    def test_a_body_that_is_not_json_is_refused(self, owner_api, queue):
        response = owner_api.post(CLAIM_NEXT, "plugin=nope", content_type="application/x-www-form-urlencoded")
        assert_envelope(response, 415, "unsupported_media_type")
        assert not ReviewItem.objects.exclude(lease_holder="").exists()

    @pytest.mark.parametrize("body", [None, "{}", "null", "[]"])
    def test_no_body_or_an_empty_one_claims_with_the_query_filters(self, owner_api, queue, body):
        extra = {} if body is None else {"data": body, "content_type": "application/json"}
        response = owner_api.post(f"{CLAIM_NEXT}?plugin=gpu_reverse", **extra)
        assert response.status_code == 200, response.content
        assert response.json()["id"] == queue["gpu_reverse"].pk
        assert owner_api.post(f"{CLAIM_NEXT}?plugin=nope", **extra).status_code == 204

    def test_the_schema_says_query_parameters_and_no_body(self, client):
        schema = json.loads(client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
        operation = schema["paths"][CLAIM_NEXT]["post"]
        assert "requestBody" not in operation
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"state", "plugin", "category", "flagged"}
