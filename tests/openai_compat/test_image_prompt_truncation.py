"""An image prompt longer than the model's text encoder reads: the job says which words its images ignored."""

from __future__ import annotations

import pytest

from tests.openai_compat.test_images import generate

#: The tiny model's tokenizer reads 12 tokens, its start and end tokens included: the first 10 words.
LONG_PROMPT = "A red cat on a mat by the sea, Seven green apples"


@pytest.mark.django_db(transaction=True)
def test_the_job_of_a_prompt_cut_by_the_model_names_the_ignored_words(api, image_project, worker):
    response = generate(api, prompt=LONG_PROMPT, n=1)
    assert response.status_code == 200, response.content
    job = api.get(f"/api/v1/jobs/{response.json()['atelier']['job_id']}/").json()
    (output,) = job["outputs"]
    assert output["content"]["prompt_truncated"] == {"tokens": 15, "limit": 12, "dropped": "Seven green apples"}
    assert output["content"]["negative_prompt_truncated"] is None

    short = generate(api, prompt="a red cat on a mat", n=1)
    (output,) = api.get(f"/api/v1/jobs/{short.json()['atelier']['job_id']}/").json()["outputs"]
    assert output["content"]["prompt_truncated"] is None


@pytest.mark.django_db(transaction=True)
def test_an_image_of_a_cut_prompt_gives_the_prompt_it_was_made_from_as_revised_prompt(api, image_project, worker,
                                                                                      release_after_screening):
    """OpenAI's revised_prompt is the prompt an image was actually made from: here the words the model read.
    It was always null, so a caller had no sign in the answer that its image ignored the prompt's end."""
    release_after_screening(image_project)
    response = generate(api, prompt=LONG_PROMPT + "  ", n=2)
    assert response.status_code == 200, response.content
    assert [item["revised_prompt"] for item in response.json()["data"]] == ["A red cat on a mat by the sea,"] * 2

    whole = generate(api, prompt="a red cat on a mat", response_format="url")
    assert [item["revised_prompt"] for item in whole.json()["data"]] == [None]  # read whole: no revision, as OpenAI
