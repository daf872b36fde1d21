"""The three built-in plugins end to end: API -> queue -> worker -> plugin -> stored outputs.

Tiny models built in fixtures stand at the plugins' default model directories under the stack's
models root (the demo models of `make demo` would take minutes to train); the built-in plugins
and safety checks come from the installed entry points, as on a user's machine. The stack is the one
test_openai_client uses too (``models_stack``, tests/e2e/conftest.py); this module's data live in its
own project, ``shop``.
"""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.usefixtures("models_stack"),
              pytest.mark.xdist_group("models_stack")]  # one test process starts the shared stack once

RETURNS = """# Returns policy

## Window
Returns are accepted within 45 days of delivery.

## Refunds
Refunds reach your card within 5 working days.
"""


@pytest.fixture(scope="module")
def stack(models_stack):
    return models_stack.get()


@pytest.fixture(scope="module")
def session(stack) -> requests.Session:
    key = stack.manage("create_api_key", "--project", "shop", "--create-project",
                       "--scopes", "jobs:read", "jobs:write", "admin").stdout.strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def wait(stack, session, path: str, done, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = session.get(f"{stack.url}{path}", timeout=10).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{stack.log_of(n)[-3000:]}" for n in stack.processes)
            raise AssertionError(f"{path} not done after {timeout}s: {body}\n{logs}")
        time.sleep(0.2)


def evaluated_twice(stack, session, plugin: str, name: str, cases: list) -> list[dict]:
    """A reference set of ``cases``, then two runs of it, each waited for until it ended."""
    created = session.post(f"{stack.url}/api/v1/evaluation/reference-sets/",
                           json={"plugin": plugin, "name": name, "cases": cases}, timeout=10)
    assert created.status_code == 201, created.text
    runs = []
    for _ in range(2):
        started = session.post(f"{stack.url}/api/v1/evaluation/runs/", json={"reference_set": created.json()["id"]},
                               timeout=30)
        assert started.status_code == 201, started.text
        runs.append(wait(stack, session, f"/api/v1/evaluation/runs/{started.json()['id']}/",
                         lambda run: run["status"] in ("succeeded", "failed")))
    return runs


def run_job(stack, session, plugin: str, input_data: dict, params: dict | None = None) -> dict:
    response = session.post(f"{stack.url}/api/v1/jobs/", json={"plugin": plugin, "input": input_data, "params": params or {}}, timeout=10)
    assert response.status_code == 201, response.text
    job = wait(stack, session, f"/api/v1/jobs/{response.json()['id']}/", lambda j: j["status"] in ("succeeded", "failed"))
    assert job["status"] == "succeeded", job["error"]
    return job


def approve(stack, job_id: str) -> None:
    """A reviewer (another key than the submitter's: nobody approves their own job) approves the job's output."""
    key = stack.manage("create_api_key", "--project", "shop", "--scopes", "reviews:read", "reviews:write").stdout.strip()
    reviewer = requests.Session()
    reviewer.headers["Authorization"] = f"Bearer {key}"
    items = reviewer.get(f"{stack.url}/api/v1/reviews/", params={"state": "pending"}, timeout=10).json()["results"]
    [item] = [i for i in items if i["job"] == job_id]
    assert reviewer.post(f"{stack.url}/api/v1/reviews/{item['id']}/claim/", timeout=10).status_code == 200
    decided = reviewer.post(f"{stack.url}/api/v1/reviews/{item['id']}/decision/", json={"action": "approve"}, timeout=10)
    assert decided.status_code == 200, decided.text


def test_plugins_are_listed_with_schemas(stack, session):
    plugins = {p["id"]: p for p in session.get(f"{stack.url}/api/v1/plugins/", timeout=10).json()}
    assert {"chatbot", "recommender_copy", "image"} <= set(plugins)
    assert all(plugins[p]["enabled"] for p in ("chatbot", "recommender_copy", "image"))
    assert plugins["image"]["input_schema"]["properties"]["steps"]["maximum"] == 100


def test_chatbot_answers_from_the_indexed_knowledge_base_and_keeps_the_thread(stack, session):
    document = session.post(f"{stack.url}/api/v1/knowledge/documents/",
                            json={"source_id": "en/returns", "title": "Returns policy", "content": RETURNS}, timeout=10)
    assert document.status_code == 201, document.text
    wait(stack, session, f"/api/v1/knowledge/documents/{document.json()['id']}/", lambda d: d["state"] == "indexed")

    job = run_job(stack, session, "chatbot", {"messages": [{"role": "user", "content": "How many days do I have to return?"}]},
                  {"max_new_tokens": 12, "seed": 3})
    [output] = job["outputs"]
    assert output["content"]["sources"][0]["source_id"] == "en/returns"
    assert output["content"]["usage"]["completion_tokens"] <= 12
    conversation_id = job["input"]["conversation_id"]
    thread = session.get(f"{stack.url}/api/v1/conversations/{conversation_id}/", timeout=10).json()
    assert [m["role"] for m in thread["messages"]] == ["user"]  # the reply is held for review, not in the thread
    approve(stack, job["id"])
    follow_up = run_job(stack, session, "chatbot",
                        {"messages": [{"role": "user", "content": "And the refund?"}], "conversation_id": conversation_id},
                        {"max_new_tokens": 8})
    assert [m["role"] for m in follow_up["input"]["messages"]] == ["user", "assistant", "user"]
    thread = session.get(f"{stack.url}/api/v1/conversations/{conversation_id}/", timeout=10).json()
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant", "user"]  # the second reply awaits review


def test_recommender_ranks_the_matching_item_first(stack, session):
    items = [
        {"id": "tent", "title": "Two-person hiking tent", "description": "Light tent for mountain camping trips.", "tags": ["outdoor"], "price": 199.0},
        {"id": "pan", "title": "Cast iron frying pan", "description": "Heavy pan for the kitchen.", "tags": ["kitchen"], "price": 49.0},
        {"id": "mug", "title": "Ceramic coffee mug", "description": "A mug for morning coffee.", "tags": ["kitchen"], "price": 12.0},
    ]
    job = run_job(stack, session, "recommender_copy",
                  {"profile": {"interests": "loves hiking and camping in the mountains"}, "items": items, "count": 2, "variants": 1},
                  {"banned_words": ["cheap"], "max_chars": 120})
    recommendations = job["outputs"][0]["content"]["recommendations"]
    assert recommendations[0]["item_id"] == "tent"
    for recommendation in recommendations:
        for variant in recommendation["copy"]:
            assert len(variant["text"]) <= 120 and "cheap" not in variant["text"].lower()


def test_image_outputs_are_pngs_of_the_asked_size_served_with_the_key(stack, session):
    job = run_job(stack, session, "image", {"prompt": "a handwritten digit 7", "width": 32, "height": 32, "steps": 2, "count": 2})
    assert len(job["outputs"]) == 2
    output = job["outputs"][0]
    primary = next(f for f in output["files"] if f["role"] == "primary")
    response = session.get(f"{stack.url}{primary['url']}", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (32, 32) and image.text.get("ai_generated") == "true"
    assert requests.get(f"{stack.url}{primary['url']}", timeout=10).status_code == 401  # not without the key
    assert output["content"]["label"] == "AI-generated"
    assert output["safety"]["decision"] in ("pass", "review") and "nudity" in output["safety"]["checked_by"]


def test_loading_models_writes_no_progress_bars_into_the_worker_log(stack, session):
    """Run after the plugins above loaded their models: a progress bar in a service's log is noise, and
    Celery logs a worker's stderr as WARNING lines, which an operator's alerting would count."""
    log = stack.log_of(stack.current_worker)
    assert "succeeded" in log or "atelier.run_job" in log  # the log is the worker's, with jobs in it
    assert "Loading weights" not in log


def test_an_evaluation_run_is_answered_by_the_worker_scored_and_reproducible_and_leaves_the_review_queue_alone(
        stack, session):
    """Through the real queue and worker process: each case a job on the chatbot, the run finished by the worker's
    job signals and scored; seeded, a second run answers the same words; no answer waits for a reviewer."""
    cases = [{"input": {"messages": [{"role": "user", "content": question}], "use_knowledge": False},
              "params": {"max_new_tokens": 8}, "reference": reference}
             for question, reference in (("Where is my parcel?", "It is on its way."),
                                         ("Can I return shoes?", "Yes, within 45 days."))]
    first, second = evaluated_twice(stack, session, "chatbot", "e2e support", cases)
    assert first["status"] == "succeeded", first
    assert first["progress"] == {"done": 2, "failed": 0, "total": 2}
    assert first["metrics"]["cases"] == first["metrics"]["succeeded"] == 2 and first["metrics"]["chrf"] is not None
    assert [r["output"] for r in second["results"]] == [r["output"] for r in first["results"]]
    assert all(r["output"] and r["chrf"] is not None for r in first["results"])
    job_ids = {r["job_id"] for run in (first, second) for r in run["results"]}
    reviewer = requests.Session()
    reviewer.headers["Authorization"] = "Bearer " + stack.manage(
        "create_api_key", "--project", "shop", "--scopes", "reviews:read").stdout.strip()
    pending = reviewer.get(f"{stack.url}/api/v1/reviews/", params={"state": "pending", "page_size": 200}, timeout=10)
    assert pending.status_code == 200 and not job_ids & {item["job"] for item in pending.json()["results"]}


def test_the_evaluate_command_waits_for_a_run_the_worker_answers_and_gates_it_against_the_pinned_version(
        stack, session):
    """``manage.py evaluate`` in its own process, as CI runs it: the run goes through the real queue and worker while
    the command reads it (progress on stderr), then the second run is compared with the first (the version pinned
    now: the default model) and, seeded, drops nothing; stdout holds the JSON alone; a wrong set exits 2."""
    import json
    import re

    cases = [{"input": {"messages": [{"role": "user", "content": question}], "use_knowledge": False},
              "params": {"max_new_tokens": 8}, "reference": reference}
             for question, reference in (("Where is my parcel?", "It is on its way."),
                                         ("Can I return shoes?", "Yes, within 45 days."))]
    created = session.post(f"{stack.url}/api/v1/evaluation/reference-sets/",
                           json={"plugin": "chatbot", "name": "e2e gate", "cases": cases}, timeout=10)
    assert created.status_code == 201, created.text
    first = stack.manage("evaluate", "--project", "shop", "--set", "e2e gate", "--poll", "0.2", "--timeout", "100",
                         check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    first_id = re.search(r"Started evaluation run (\S+) of 'e2e gate' \(chatbot, 2 cases\)", first.stderr).group(1)
    assert "2/2 cases done" in first.stderr and f"Result: Run {first_id} succeeded." in first.stdout

    gated = stack.manage("evaluate", "--project", "shop", "--set", created.json()["id"], "--compare-to", "pinned",
                         "--max-drop", "chrf=0", "--max-drop", "bleu=0", "--json", "--poll", "0.2", "--timeout", "100",
                         check=False)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    report = json.loads(gated.stdout)
    assert report["outcome"] == "passed" and report["compared_to"]["id"] == first_id
    gates = [(g["metric"], g["drop"], g["passed"]) for g in report["gates"]]
    assert gates == [("failed", 0.0, True), ("chrf", 0.0, True), ("bleu", 0.0, True)]  # failed cases: with any limit
    shown = session.get(f"{stack.url}{report['url']}", timeout=10).json()
    assert shown["status"] == "succeeded" and shown["metrics"] == report["run"]["metrics"]

    refused = stack.manage("evaluate", "--project", "shop", "--set", "no such set", check=False)
    assert refused.returncode == 2 and "No reference set 'no such set' in project 'shop'" in refused.stderr


def _png_base64(shade: int) -> str:
    import base64

    picture = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, shade, shade)).save(picture, format="PNG")
    return base64.b64encode(picture.getvalue()).decode()


def test_an_image_evaluation_run_is_answered_on_the_gpu_queue_and_scored_by_a_cpu_worker_with_fid_and_kid(
        stack, session):
    """Through the real queue and worker process: each case an image job, then the run's scoring task
    (``atelier.score_evaluation``, on the cpu queue) loads the feature extractor in the worker and scores FID, KID
    and each case's similarity; seeded, a second run scores the same; both images of a case download."""
    cases = [{"input": {"prompt": f"a handwritten digit {digit}", "width": 32, "height": 32, "steps": 2},
              "reference": _png_base64(40 * digit)} for digit in (1, 2, 3)]
    first, second = evaluated_twice(stack, session, "image", "e2e digits", cases)
    assert first["status"] == "succeeded", first
    metrics = first["metrics"]
    assert metrics["fid"] is not None and metrics["kid"] is not None and metrics["mean_similarity"] is not None, metrics
    assert [case["similarity"] for case in second["results"]] == [case["similarity"] for case in first["results"]]
    for case in first["results"]:
        assert -1.0 <= case["similarity"] <= 1.0
        for url in (case["image_url"], case["reference_url"]):
            download = session.get(f"{stack.url}{url}", timeout=10)
            assert download.status_code == 200 and download.headers["Content-Type"] == "image/png", url
