"""POST /v1/images/generations: image jobs answered in OpenAI's images shape, only deliverable images in data."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from atelier_platform.jobs.models import Job, ReviewState
from tests.openai_compat.test_chat_completions import assert_openai_error

pytestmark = pytest.mark.django_db
#: tests where a worker runs the job: its thread needs the request's rows committed
with_worker = pytest.mark.django_db(transaction=True)

IMAGES = "/v1/images/generations"


def generate(api, **fields):
    body = {"model": "image", "prompt": "a red cat on a mat", "size": "32x32", "steps": 2, "seed": 3, **fields}
    return api.post(IMAGES, json.dumps(body), content_type="application/json")


@with_worker
def test_images_pending_review_are_not_in_the_answer(api, image_project, worker):
    response = generate(api, n=2, response_format="b64_json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["data"] == []
    info = body["atelier"]
    job = Job.objects.get(pk=info["job_id"])
    assert job.outputs.count() == 2 and info["withheld"] == 2
    assert [o["review_state"] for o in info["outputs"]] == ["pending", "pending"]
    assert not any(o["final"] for o in info["outputs"])
    assert "2 waiting for human review" in info["notice"] and f"/api/v1/jobs/{job.pk}/" in info["notice"]
    assert "b64_json\": \"" not in response.content.decode()


@with_worker
def test_released_images_come_back_as_base64_pngs_of_the_asked_size(api, image_project, worker, release_after_screening):
    release_after_screening(image_project)
    response = generate(api, n=2)  # b64_json is the default
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body["data"]) == 2 and body["atelier"]["withheld"] == 0 and body["atelier"]["notice"] is None
    job = Job.objects.get(pk=body["atelier"]["job_id"])
    assert job.input["count"] == 2 and (job.input["width"], job.input["height"]) == (32, 32)
    for item, output in zip(body["data"], job.outputs.order_by("index")):
        assert output.review_state == ReviewState.RELEASED and item["output_id"] == str(output.pk)
        assert item["url"] is None and item["seed"] == output.content["seed"]
        png = base64.b64decode(item["b64_json"])
        primary = output.files.get(role="primary")
        with primary.file.open("rb") as handle:
            assert png == handle.read()
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (32, 32) and image.text.get("ai_generated") == "true"


@with_worker
def test_released_images_come_back_as_authenticated_download_urls(api, image_project, worker, release_after_screening, client_for):
    release_after_screening(image_project)
    response = generate(api, response_format="url", size="auto")
    assert response.status_code == 200, response.content
    [item] = response.json()["data"]
    assert item["b64_json"] is None
    assert item["url"].startswith("http://testserver/api/v1/outputs/") and item["url"].endswith("/")
    download = api.get(item["url"].removeprefix("http://testserver"))
    assert download.status_code == 200 and download["Content-Type"] == "image/png"
    assert client_for(None).get(item["url"].removeprefix("http://testserver")).status_code == 401


@pytest.mark.parametrize(("fields", "param"), [
    ({"size": "100x100"}, "size"),
    ({"size": "2048x2048"}, "size"),
    ({"size": "big"}, "size"),
    ({"n": 9}, "n"),
    ({"n": "2"}, "n"),
    ({"prompt": ""}, "prompt"),
    ({"response_format": "svg"}, "response_format"),
    ({"output_format": "webp"}, "output_format"),
    ({"steps": 1000}, "steps"),
])
def test_bad_image_requests_get_400_naming_the_field(api, image_project, fields, param):
    error = assert_openai_error(generate(api, **fields), 400, param=param)
    assert error["type"] == "invalid_request_error"
    assert not Job.objects.exists()


def test_an_unsupported_size_says_what_sizes_work(api, image_project):
    error = assert_openai_error(generate(api, size="100x100"), 400, "invalid_value", "size")
    assert "multiple of 8 from 32 to 1024" in error["message"]


def test_the_model_defaults_to_image_and_chat_models_are_refused(api, image_project, empty_plugin_registry, wait_s):
    wait_s(0.01)
    body = {"prompt": "a red cat", "size": "32x32", "steps": 1}
    assert_openai_error(api.post(IMAGES, body, format="json"), 504, "job_still_running")
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    assert_openai_error(generate(api, model="chatbot"), 400, "model_not_supported", "model")
    assert_openai_error(generate(api, model="dall-e-3"), 404, "model_not_found", "model")


def test_images_need_the_jobs_write_scope(image_project, make_key, client_for):
    reader = client_for(make_key(image_project, scopes=["jobs:read"]).raw)
    assert_openai_error(generate(reader), 403, "permission_denied")


def test_a_replay_of_an_erased_jobs_key_is_the_same_410_whatever_the_body(api, image_project, wait_s, make_key,
                                                                         client_for):
    """Kept, the hash of the erased request told the right guess at its prompt (410) from a wrong one (422)."""
    wait_s(0.01)
    key = {"HTTP_IDEMPOTENCY_KEY": "draw-erased"}

    def draw(prompt):
        body = {"model": "image", "prompt": prompt, "size": "32x32", "steps": 2, "seed": 3}
        return api.post(IMAGES, json.dumps(body), content_type="application/json", **key)

    job_id = assert_openai_error(draw("Jane Roe at 12 Elm Street"), 504, "job_still_running")["details"]["job_id"]
    assert_openai_error(draw("Jane Roe at 14 Elm Street"), 422, "idempotency_key_reused")
    eraser = client_for(make_key(image_project, ["jobs:read", "content:erase"]).raw)
    assert eraser.delete(f"/api/v1/jobs/{job_id}/").status_code == 204

    right, wrong = draw("Jane Roe at 12 Elm Street"), draw("Jane Roe at 14 Elm Street")
    assert assert_openai_error(right, 410, "job_erased") == assert_openai_error(wrong, 410, "job_erased")
    assert Job.objects.count() == 1 and Job.objects.get(pk=job_id).request_fingerprint == ""
