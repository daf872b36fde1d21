"""The official ``openai`` client against the /v1/ endpoints of a live test server: what an application
using it meets (its exceptions, its retries, its timeouts), with tiny models run by the ``worker`` fixture."""

from __future__ import annotations

import openai
import pytest

from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.jobs.models import Job
from tests.openai_compat.test_image_prompt_truncation import LONG_PROMPT

#: a live server's thread reads the rows the test writes: they must be committed
pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "Where is my parcel?"}]
SMALL_IMAGE = {"model": "image", "size": "32x32", "extra_body": {"steps": 1, "seed": 3}}


@pytest.fixture
def client_with(live_server, api_key):
    """An official client for the test project's key; its retries and timeout as the test says."""
    def make(*, max_retries: int = 0, timeout: float = 60) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=api_key.raw, max_retries=max_retries, timeout=timeout)

    return make


def test_an_image_of_a_cut_prompt_says_what_it_was_made_from_in_revised_prompt(client_with, image_project, worker,
                                                                               release_after_screening):
    release_after_screening(image_project)
    client = client_with()
    [cut] = client.images.generate(prompt=LONG_PROMPT, **SMALL_IMAGE).data
    assert cut.revised_prompt == "A red cat on a mat by the sea,"
    [whole] = client.images.generate(prompt="a red cat on a mat", **SMALL_IMAGE).data
    assert whole.revised_prompt is None and whole.b64_json


def test_an_image_stream_is_refused_not_answered_with_a_stream_of_nothing(client_with, image_project, worker,
                                                                         release_after_screening):
    """stream was ignored: the client read the JSON answer as server-sent events, found none, and the
    application's loop over the stream ended without an image or an error."""
    release_after_screening(image_project)
    with pytest.raises(openai.BadRequestError) as refused:
        list(client_with().images.generate(prompt="a red cat on a mat", stream=True, partial_images=1, **SMALL_IMAGE))
    assert refused.value.code == "unsupported_parameter" and refused.value.param == "stream"
    assert "does not stream" in refused.value.message
    assert not Job.objects.exists()


@pytest.mark.parametrize(("endpoint", "fields", "param", "code"), [
    ("chat", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_parameter"),
    ("chat", {"modalities": ["audio"]}, "modalities", "unsupported_value"),
    ("chat", {"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
    ("chat", {"top_logprobs": 3}, "top_logprobs", "unsupported_parameter"),
    ("images", {"background": "transparent"}, "background", "unsupported_value"),
])
def test_options_that_cannot_be_honoured_are_refused_not_ignored(client_with, chat_project, image_project, wait_s,
                                                                 endpoint, fields, param, code):
    """These were ignored: an application asking for audio got message.audio None, a banned token could be
    written, a transparent background came back opaque, each with a 200 and no word of it."""
    wait_s(0.2)  # before the refusal, the call submitted a job and waited for it
    client = client_with()
    with pytest.raises(openai.BadRequestError) as refused:
        if endpoint == "chat":
            client.chat.completions.create(model="chatbot", messages=QUESTION, **fields)
        else:
            client.images.generate(prompt="a red cat", **SMALL_IMAGE, **fields)
    assert refused.value.code == code and refused.value.param == param
    assert not Job.objects.exists()


def test_a_conflict_no_retry_can_resolve_is_not_retried(client_with, chat_project):
    """The project's saved defaults no longer fit the plugin: 409, which the official client retries
    (twice by default) unless told not to; every try failed the same way."""
    ProjectPlugin.objects.filter(project=chat_project, plugin_id="chatbot").update(config={"params": {"temperature": "hot"}})
    with pytest.raises(openai.ConflictError) as refused:
        client_with(max_retries=2).chat.completions.create(model="chatbot", messages=QUESTION)
    assert refused.value.code == "project_defaults_invalid"
    assert refused.value.response.request.headers["x-stainless-retry-count"] == "0"  # answered at the first try


@pytest.mark.parametrize("endpoint", ["chat", "responses", "images"])
def test_a_client_with_a_short_timeout_gets_the_jobs_504_not_a_timeout_and_duplicates(client_with, chat_project,
                                                                                      image_project, wait_s, endpoint):
    """No worker: the job stays queued. The view waited ATELIER_OPENAI_WAIT_S whatever the client's timeout;
    the client gave up first and retried, each try submitting the job again, and ended in APITimeoutError
    with three jobs submitted and none named. Now the call answers before the client's timeout runs out."""
    wait_s(30)
    client = client_with(max_retries=2, timeout=4)
    with pytest.raises(openai.APIStatusError) as answered:
        if endpoint == "chat":
            client.chat.completions.create(model="chatbot", messages=QUESTION)
        elif endpoint == "responses":
            client.responses.create(model="chatbot", input=QUESTION)
        else:
            client.images.generate(prompt="a red cat", **SMALL_IMAGE)
    assert answered.value.status_code == 504 and answered.value.code == "job_still_running"
    assert answered.value.response.headers["x-should-retry"] == "false"  # no Idempotency-Key: a retry would submit again
    assert "before your client's timeout" in answered.value.message
    assert [str(pk) for pk in Job.objects.values_list("pk", flat=True)] == [answered.value.body["details"]["job_id"]]


def test_a_rate_limit_names_no_request_field(client_with, chat_project, atelier_config):
    """The limit's details (limit, window) were read as field errors: param "limit", as if the request had
    such a field, and the details wrapped in "fields"."""
    atelier_config(rate_limit_per_minute=1)
    client = client_with()
    client.models.list()
    with pytest.raises(openai.RateLimitError) as limited:
        client.models.list()
    assert limited.value.code == "rate_limited" and limited.value.param is None
    assert limited.value.body["details"]["limit"] == 1 and "fields" not in limited.value.body["details"]
    assert int(limited.value.response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_a_stream_keeps_a_client_with_a_short_timeout_until_the_call_ends(client_with, chat_project, wait_s, endpoint):
    """No worker: the job stays queued. Keep-alives came every 5 s, so a client with a 4 s read timeout
    gave up with APITimeoutError (and no job id) while the call still waited; now they come within its
    timeout and the stream ends with the call's own answer, naming the job."""
    wait_s(6)
    client = client_with(timeout=4)
    if endpoint == "chat":
        stream = client.chat.completions.create(model="chatbot", messages=QUESTION, stream=True)
    else:
        stream = client.responses.create(model="chatbot", input=QUESTION, stream=True)
    with pytest.raises(openai.APIError) as ended:
        list(stream)
    assert not isinstance(ended.value, openai.APITimeoutError)
    assert ended.value.code == "job_still_running"
    assert ended.value.body["details"]["job_id"] == str(Job.objects.get().pk)
