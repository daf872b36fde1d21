"""The official ``openai`` Python client against a live stack's /v1/ endpoints.

Two projects: ``held`` keeps the default policy (review before release), so answers carry a
pending-review notice and no generated content; ``live`` releases after screening (thresholds
raised so that the tiny models' noise is never flagged), so answers carry the content. Tiny
models stand at the plugins' default model directories, on the stack test_builtin_plugins uses too
(``models_stack``, tests/e2e/conftest.py).
"""

from __future__ import annotations

import base64
import io

import openai
import pytest
import requests
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.usefixtures("models_stack"),
              pytest.mark.xdist_group("models_stack")]  # one test process starts the shared stack once

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my parcel?"}]
FAST_CHAT = {"use_knowledge": False}  # extra_body: no embedding model to load for an empty knowledge base


@pytest.fixture(scope="module")
def stack(models_stack):
    return models_stack.get()


@pytest.fixture(scope="module")
def keys(stack) -> dict[str, str]:
    """Projects held (the default policy) and live (release after screening, nothing flagged), a key each."""
    out = stack.python(
        "from atelier_platform.accounts.services import create_project, issue_api_key\n"
        "from atelier_platform.moderation.policies import update_policy\n"
        "from atelier_platform.moderation.screening import policy_for\n"
        "scopes = ['jobs:read', 'jobs:write']\n"
        "held, live = create_project('held'), create_project('live')\n"
        "update_policy(live, 'e2e', {'review_mode': 'release_after_screening', 'audit_sample_percent': 0,\n"
        "    'thresholds': {c: {'review': 1.0, 'block': 1.0} for c in policy_for(live).thresholds}})\n"
        "print(issue_api_key(held, scopes=scopes).raw, issue_api_key(live, scopes=scopes).raw)\n"
    ).stdout.split()
    return {"held": out[-2], "live": out[-1]}


@pytest.fixture(scope="module")
def held(stack, keys) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=keys["held"], timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def live(stack, keys) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=keys["live"], timeout=120, max_retries=0)


def job_of(stack, client: openai.OpenAI, job_id: str) -> dict:
    response = requests.get(f"{stack.url}/api/v1/jobs/{job_id}/", headers={"Authorization": f"Bearer {client.api_key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_the_chat_and_image_models(held):
    models = held.models.list()
    assert {m.id for m in models.data} == {"chatbot", "image"}
    assert held.models.retrieve("chatbot").owned_by == "atelier"


def test_a_chat_reply_pending_review_never_reaches_the_client(stack, held):
    completion = held.chat.completions.create(model="chatbot", messages=QUESTION, max_tokens=16, seed=4, extra_body=FAST_CHAT)
    message = completion.choices[0].message
    atelier = completion.model_extra["atelier"]
    assert atelier["review_state"] == "pending" and atelier["final"] is False
    assert "pending human review" in message.content and atelier["job_url"] in message.content
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens > 0
    [output] = job_of(stack, held, atelier["job_id"])["outputs"]
    assert output["review_state"] == "pending" and output["content"]["reply"]
    assert output["content"]["reply"] not in message.content

    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in held.chat.completions.create(
        model="chatbot", messages=QUESTION, max_tokens=16, seed=4, stream=True, extra_body=FAST_CHAT) if chunk.choices)
    assert "pending human review" in streamed and output["content"]["reply"] not in streamed


def test_a_released_chat_reply_is_the_answer_plain_and_streamed(stack, live):
    completion = live.chat.completions.create(model="chatbot", messages=QUESTION, max_completion_tokens=24, seed=9,
                                              temperature=0.8, stop=["\u2603"], extra_body=FAST_CHAT)
    atelier = completion.model_extra["atelier"]
    [output] = job_of(stack, live, atelier["job_id"])["outputs"]
    assert output["review_state"] == "released" and atelier["final"] is True
    assert completion.choices[0].message.content == output["content"]["reply"] != ""
    assert completion.usage.total_tokens == sum(output["content"]["usage"].values())

    stream = live.chat.completions.create(model="chatbot", messages=QUESTION, max_completion_tokens=24, seed=9,
                                          temperature=0.8, stop=["\u2603"], extra_body=FAST_CHAT,
                                          stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content  # same seed, same reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens


def test_images_b64_and_url_when_released_and_none_when_pending(stack, live, held):
    result = live.images.generate(model="image", prompt="a red cat on a mat", size="32x32", n=2,
                                  response_format="b64_json", extra_body={"steps": 2, "seed": 5})
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.size == (32, 32) and image.text.get("ai_generated") == "true"

    by_url = live.images.generate(model="image", prompt="a red cat on a mat", size="32x32", response_format="url",
                                  extra_body={"steps": 2})
    [item] = by_url.data
    assert item.url.startswith(f"{stack.url}/api/v1/outputs/")
    download = requests.get(item.url, headers={"Authorization": f"Bearer {live.api_key}"}, timeout=10)
    assert download.status_code == 200 and download.headers["Content-Type"] == "image/png"

    pending = held.images.generate(prompt="a red cat on a mat", size="32x32", extra_body={"steps": 2})
    assert pending.data == [] and pending.model_extra["atelier"]["withheld"] == 1
    assert "waiting for human review" in pending.model_extra["atelier"]["notice"]


def test_errors_reach_the_client_as_its_exceptions(stack, held):
    with pytest.raises(openai.BadRequestError) as refused:
        held.chat.completions.create(model="chatbot", messages=QUESTION, n=2)
    assert refused.value.code == "unsupported_value" and refused.value.param == "n"
    assert "n=2" in refused.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        held.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_size:
        held.images.generate(prompt="a cat", size="100x100")
    assert bad_size.value.param == "size"
    stranger = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="atl_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
