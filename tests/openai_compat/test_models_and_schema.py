"""GET /v1/models, unknown /v1/ paths, and the OpenAPI schema of the OpenAI-compatible endpoints."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from atelier_platform.catalog.services import set_plugin_enabled
from tests.openai_compat.test_chat_completions import assert_openai_error


@pytest.fixture
def both_plugins(empty_plugin_registry, project):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ChatbotPlugin)
    empty_plugin_registry.register(ImagePlugin)
    set_plugin_enabled(project, "chatbot", True)
    set_plugin_enabled(project, "image", True)
    return project


@pytest.mark.django_db
class TestModels:
    def test_lists_the_enabled_chat_and_image_plugins_in_openais_list_format(self, api, both_plugins):
        response = api.get("/v1/models")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["object"] == "list"
        assert [m["id"] for m in body["data"]] == ["chatbot", "image"]  # reverse_text is enabled but no OpenAI model
        chatbot = body["data"][0]
        assert chatbot["object"] == "model" and chatbot["owned_by"] == "atelier"
        assert chatbot["created"] == int(both_plugins.created_at.timestamp())
        assert chatbot["atelier"] == {"plugin_version": "1.0.0", "name": "Customer-service chatbot", "modality": "text",
                                      "endpoint": "/v1/chat/completions", "model_version": "default"}
        assert body["data"][1]["atelier"]["endpoint"] == "/v1/images/generations"

    def test_a_disabled_plugin_is_not_listed(self, api, both_plugins):
        set_plugin_enabled(both_plugins, "image", False)
        assert [m["id"] for m in api.get("/v1/models").json()["data"]] == ["chatbot"]
        assert_openai_error(api.get("/v1/models/image"), 404, "model_not_found")

    def test_one_model(self, api, both_plugins):
        response = api.get("/v1/models/image")
        assert response.status_code == 200 and response.json()["id"] == "image"
        assert_openai_error(api.get("/v1/models/reverse_text"), 404, "model_not_found")

    def test_another_project_lists_only_its_own_models(self, both_plugins, other_project, make_key, client_for):
        theirs = client_for(make_key(other_project).raw)
        assert theirs.get("/v1/models").json() == {"object": "list", "data": []}

    def test_models_need_jobs_read(self, both_plugins, make_key, client_for):
        reviewer = client_for(make_key(both_plugins, scopes=["reviews:read"]).raw)
        error = assert_openai_error(reviewer.get("/v1/models"), 403, "permission_denied")
        assert "jobs:read" in error["message"] and error["type"] == "permission_error"
        writer_only = client_for(make_key(both_plugins, scopes=["jobs:read"]).raw)
        assert writer_only.get("/v1/models").status_code == 200

    def test_without_a_key_401(self, both_plugins, client_for):
        response = client_for(None).get("/v1/models")
        assert_openai_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_unknown_paths_and_methods_answer_in_openais_shape(self, api, both_plugins):
        assert_openai_error(api.get("/v1/completions"), 404, "unknown_url")
        assert_openai_error(api.delete("/v1/models"), 405, "method_not_allowed")


    @pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/completions", "/v1/chat/completions/"])
    def test_a_post_to_an_unknown_path_gets_openais_404_not_a_csrf_page(self, api_key, both_plugins, path):
        """What client.embeddings.create() sends, as curl and the official client send it (no CSRF cookie):
        it got Django's HTML "403 CSRF verification failed" page."""
        from rest_framework.test import APIClient

        client = APIClient(enforce_csrf_checks=True)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
        assert_openai_error(client.post(path, {"model": "chatbot"}, format="json"), 404, "unknown_url")

    def test_errors_answered_before_or_around_the_views_are_in_openais_shape_too(self, api, both_plugins, settings,
                                                                                 monkeypatch):
        """A body too large, one sent chunked, a path no route knows, a crash: these answered in the
        /api/ envelope (no type, no param), and a 500 let the official client retry the request."""
        chat = json.dumps({"model": "chatbot", "messages": [{"role": "user", "content": "x" * 500}]})
        assert_openai_error(api.post("/v1/chat/completions", chat, content_type="application/json",
                                     HTTP_TRANSFER_ENCODING="chunked"), 411, "length_required")
        assert_openai_error(api.get("/v1/"), 404, "not_found")
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
        too_large = assert_openai_error(api.post("/v1/chat/completions", chat, content_type="application/json"),
                                        413, "payload_too_large")
        assert too_large["type"] == "invalid_request_error" and too_large["details"] == {"limit_bytes": 100}

        def broken(project):
            raise RuntimeError("a bug")

        monkeypatch.setattr("atelier_platform.openai_compat.services.model_list", broken)
        api.raise_request_exception = False
        crashed = api.get("/v1/models")
        assert assert_openai_error(crashed, 500, "internal_error")["type"] == "server_error"
        assert crashed["x-should-retry"] == "false"
        assert api.get("/api/v1/no-such-thing/").json()["error"]["code"] == "not_found"  # the envelope stays on /api/

@pytest.mark.django_db
def test_the_schema_documents_the_openai_endpoints_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    schema = json.loads(out.getvalue())
    paths = schema["paths"]
    assert {"/v1/models", "/v1/models/{model_id}", "/v1/chat/completions", "/v1/images/generations", "/v1/responses",
            "/v1/responses/{response_id}", "/v1/responses/{response_id}/input_items",
            "/v1/responses/{response_id}/cancel"} <= set(paths)
    created = paths["/v1/responses"]["post"]
    assert set(created["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "previous_response_id" in schema["components"]["schemas"]["CreateResponseRequest"]["properties"]
    assert paths["/v1/responses/{response_id}"]["get"]["responses"]["404"]["description"].startswith("No response")
    cancelled = paths["/v1/responses/{response_id}/cancel"]["post"]
    assert cancelled["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ResponseObject")
    assert {"400", "404", "410"} <= set(cancelled["responses"]) and "requestBody" not in cancelled
    response_object = schema["components"]["schemas"]["ResponseObject"]["properties"]
    assert response_object["background"]["type"] == "boolean" and "metadata" in response_object
    chat = paths["/v1/chat/completions"]["post"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "Idempotency-Key" in {p["name"] for p in chat["parameters"]}
    components = schema["components"]["schemas"]
    assert components["AtelierChatInfo"]["properties"]["final"]["type"] == "boolean"
    assert components["CreateChatCompletionRequest"]["properties"]["stop"]["nullable"] is True
