"""Rate limits per key, quotas per project, and the operator's caps on what one job may ask for."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from atelier_platform.config import AtelierConfig, ConfigurationError, get_config
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.usage import limits, quotas, ratelimit, window_counts
from atelier_platform.usage.errors import LimitExceeded
from atelier_platform.usage.models import ProjectQuota
from tests.api.helpers import assert_envelope

JOBS = "/api/v1/jobs/"
GOOD = {"plugin": "reverse_text", "input": {"text": "hello"}}


def submit(client, text="hello", **extra):
    return client.post(JOBS, {"plugin": "reverse_text", "input": {"text": text}}, format="json", **extra)


# --- rate limits ------------------------------------------------------------------------------------------

@pytest.mark.django_db
class TestRateLimit:
    def test_over_the_limit_answers_429_with_retry_after(self, api, atelier_config):
        atelier_config(rate_limit_per_minute=3)
        answers = [api.get(JOBS) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert answers[0]["X-RateLimit-Limit"] == "3" and answers[0]["X-RateLimit-Remaining"] == "2"
        assert answers[2]["X-RateLimit-Remaining"] == "0"
        refused = api.get(JOBS)
        error = assert_envelope(refused, 429, "rate_limited")
        assert 1 <= int(refused["Retry-After"]) <= 120
        assert error["details"]["limit"] == 3 and error["details"]["window_s"] == 60
        assert "3 requests per minute" in error["message"]
        # the wait said once (DRF appended "Expected available in N seconds." to it)
        assert f"retry after {refused['Retry-After']} s" in error["message"] and "Expected available" not in error["message"]
        # writes count the same way, and nothing is created when refused
        assert_envelope(submit(api), 429, "rate_limited")
        assert Job.objects.count() == 0

    def test_each_key_has_its_own_budget(self, api, project, make_key, client_for, atelier_config):
        atelier_config(rate_limit_per_minute=2)
        for _ in range(2):
            api.get(JOBS)
        assert api.get(JOBS).status_code == 429
        assert client_for(make_key(project).raw).get(JOBS).status_code == 200

    def test_a_keys_own_limit(self, project, client_for, atelier_config):
        from atelier_platform.accounts.services import issue_api_key

        atelier_config(rate_limit_per_minute=100)
        slow = client_for(issue_api_key(project, scopes=["jobs:read"], rate_limit_per_minute=1).raw)
        assert slow.get(JOBS).status_code == 200
        assert slow.get(JOBS).status_code == 429

    def test_a_keys_own_limit_never_exceeds_the_servers(self, project, client_for, atelier_config):
        """A key given 5 a minute while the server allowed 100 is held to the server's 2 once the operator lowers it."""
        from atelier_platform.accounts.services import issue_api_key

        atelier_config(rate_limit_per_minute=100)
        client = client_for(issue_api_key(project, scopes=["jobs:read"], rate_limit_per_minute=5).raw)
        atelier_config(rate_limit_per_minute=2)
        assert [client.get(JOBS).status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/api/v1/usage/quota/").status_code == 429

    def test_the_quota_view_reports_the_limit_that_applies(self, project, client_for, atelier_config):
        from atelier_platform.accounts.services import issue_api_key

        atelier_config(rate_limit_per_minute=100)
        client = client_for(issue_api_key(project, scopes=["jobs:read"], rate_limit_per_minute=50).raw)
        atelier_config(rate_limit_per_minute=20)
        answer = client.get("/api/v1/usage/quota/")
        assert answer.json()["rate_limit_per_minute"] == 20 and answer["X-RateLimit-Limit"] == "20"

    def test_signed_in_people_are_limited_too(self, project, member, atelier_config):
        from rest_framework.test import APIClient

        from atelier_platform.accounts.roles import Role

        atelier_config(rate_limit_per_minute=1)
        client = APIClient()
        client.force_login(member(project, Role.VIEWER))
        assert client.get(JOBS).status_code == 200
        assert_envelope(client.get(JOBS), 429, "rate_limited")

    def test_zero_turns_it_off(self, api, atelier_config):
        atelier_config(rate_limit_per_minute=0)
        assert all(api.get(JOBS).status_code == 200 for _ in range(5))

    def test_unauthenticated_requests_are_not_counted_against_anyone(self, client_for, api, atelier_config):
        atelier_config(rate_limit_per_minute=1)
        for _ in range(3):
            assert client_for("atl_nothere_secret").get(JOBS).status_code == 401
        assert api.get(JOBS).status_code == 200

    def test_a_broken_cache_lets_requests_through(self, api, atelier_config, monkeypatch):
        atelier_config(rate_limit_per_minute=1)

        def broken(*args, **kwargs):
            raise ConnectionError("cache down")

        class BrokenCounts:
            add = staticmethod(broken)

        monkeypatch.setattr(ratelimit, "window_counts", BrokenCounts)
        assert all(api.get(JOBS).status_code == 200 for _ in range(3))

    def test_openai_compatible_endpoints_share_the_budget(self, api, atelier_config):
        atelier_config(rate_limit_per_minute=1)
        assert api.get(JOBS).status_code == 200
        response = api.get("/v1/models")
        assert response.status_code == 429 and response["Retry-After"]


@pytest.mark.django_db
class TestNoCountsFromAnEarlierTestOrRun:
    """A run on the Redis database of a run before it (a new test database) numbers its people as that run did (user 1
    is user0 again), and a counter lives two minutes: a person the run before had limited was limited from their first
    request (test_signed_in_people_are_limited_too failed so, run twice in a row). Nor may one test's counts be the
    next one's: each test starts with none (tests/conftest.py). The first leaves a full counter, the second finds it
    gone."""

    IDENTITY = "user:1:user0"  # the signed-in person of a fresh test database's first test

    def test_an_earlier_test_fills_a_counter(self):
        assert ratelimit.hit(self.IDENTITY, 1).allowed
        assert not ratelimit.hit(self.IDENTITY, 1).allowed

    def test_the_next_test_starts_with_none(self):
        decision = ratelimit.peek(self.IDENTITY, 1)
        assert decision is not None and decision.allowed and decision.remaining == 0


def _redis_counts():
    from atelier_platform.redis_client import shared_redis

    client = shared_redis(get_config().redis_url)
    if client is None:
        pytest.skip("REDIS_URL is not set (CI sets it)")
    return window_counts.RedisWindowCounts(client)


@pytest.fixture(params=["files", "redis"])
def counts_store(request, tmp_path, monkeypatch):
    """Each store the counts can live in: the embedded files, and the real Redis when REDIS_URL names one."""
    store = window_counts.FileWindowCounts(tmp_path / "ratelimit") if request.param == "files" else _redis_counts()
    monkeypatch.setattr(ratelimit, "window_counts", lambda: store)
    return store


@pytest.mark.usefixtures("counts_store")
class TestSlidingWindow:
    """The counter's arithmetic, on each real store, at chosen instants."""

    def test_refused_requests_do_not_count_and_the_window_slides(self):
        identity, start = f"test:{timezone.now().timestamp()}", 6_000_000.0  # a window boundary (divisible by 60)
        assert [ratelimit.hit(identity, 2, now=start + 1).allowed for _ in range(3)] == [True, True, False]
        refused = ratelimit.hit(identity, 2, now=start + 30)
        assert not refused.allowed and refused.retry_after_s >= 30  # this window alone is full
        # 15 s into the next window, 3/4 of the previous one's 2 still weigh: 1.5 + 1 > 2
        assert not ratelimit.hit(identity, 2, now=start + 75).allowed
        # 35 s in: 2 * 25/60 + 1 <= 2
        assert ratelimit.hit(identity, 2, now=start + 95).allowed

    def test_retry_after_is_when_a_request_would_pass(self):
        identity, start = f"test2:{timezone.now().timestamp()}", 6_000_000.0
        for _ in range(10):
            ratelimit.hit(identity, 10, now=start + 50)
        refused = ratelimit.hit(identity, 10, now=start + 65)  # previous 10, 5 s in: estimate 9.17 + 1
        assert not refused.allowed
        assert ratelimit.hit(identity, 10, now=start + 65 + refused.retry_after_s).allowed


def _hammer(directory: str, rounds: int) -> None:
    from atelier_platform.usage.filecache import LockingFileBasedCache

    cache = LockingFileBasedCache(directory, {})
    for _ in range(rounds):
        cache.add("counter", 0, timeout=60)
        cache.incr("counter")


def _in_four_processes(target, *args) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=args) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0


def _count_requests(folder: str, rounds: int) -> None:
    counts = window_counts.FileWindowCounts(Path(folder))
    for _ in range(rounds):
        counts.add("key:hammered", 100)


def test_file_counts_are_exact_across_processes(tmp_path):
    """The embedded counts under several processes at once: no request lost, and the next window
    sees this one's count as its previous."""
    _in_four_processes(_count_requests, str(tmp_path), 150)
    counts = window_counts.FileWindowCounts(tmp_path)
    assert counts.add("key:hammered", 100, 0) == (600, 0)
    assert counts.add("key:hammered", 101) == (1, 600)
    assert counts.add("key:hammered", 103) == (1, 0)  # two windows later, nothing of the old one weighs
    assert counts.add("key:hammered", 102) == (2, 0)  # a clock behind counts in the newer window


def test_a_damaged_counts_file_counts_from_zero(tmp_path):
    counts = window_counts.FileWindowCounts(tmp_path)
    counts.add("user:1:ann", 5)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"\x00garbage")
    assert counts.add("user:1:ann", 5) == (1, 0)


def test_file_cache_counts_exactly_across_processes(tmp_path):
    """The embedded default's cache under several processes at once: no increment lost."""
    from atelier_platform.usage.filecache import LockingFileBasedCache

    _in_four_processes(_hammer, str(tmp_path), 150)
    assert LockingFileBasedCache(str(tmp_path), {}).get("counter") == 600


# --- quotas -----------------------------------------------------------------------------------------------

@pytest.mark.django_db
class TestQuotas:
    def test_jobs_per_day(self, api, project, make_job):
        ProjectQuota.objects.create(project=project, jobs_per_day=2)
        make_job(project, status=JobStatus.SUCCEEDED, created_at=timezone.now() - timedelta(days=1, hours=1))  # yesterday
        make_job(project, status=JobStatus.BLOCKED)  # blocked inputs do not count
        assert submit(api, "a").status_code == 201
        assert submit(api, "b").status_code == 201
        refused = submit(api, "c")
        error = assert_envelope(refused, 429, "quota_exceeded")
        details = error["details"]
        assert details["quota"] == "jobs_per_day" and details["limit"] == 2 and details["used"] == 2
        resets_at = quotas.day_start(timezone.now()) + timedelta(days=1)
        assert details["resets_at"] == resets_at.isoformat()
        assert 0 < int(refused["Retry-After"]) <= 86_401
        assert "jobs per day" in error["message"]
        assert Job.objects.filter(input__text="c").count() == 0

    def test_a_batch_must_fit_whole(self, api, project):
        ProjectQuota.objects.create(project=project, jobs_per_day=2)
        submit(api, "a")
        error = assert_envelope(api.post(f"{JOBS}batch/", {"jobs": [GOOD, GOOD]}, format="json"), 429, "quota_exceeded")
        assert error["details"]["requested"] == 2 and "1 remain" in error["message"]
        assert Job.objects.count() == 1
        assert api.post(f"{JOBS}batch/", {"jobs": [GOOD]}, format="json").status_code == 201

    def test_defaults_come_from_the_configuration_and_zero_is_unlimited(self, api, project, atelier_config):
        atelier_config(quota_jobs_per_day=1)
        assert submit(api, "a").status_code == 201
        assert submit(api, "b").status_code == 429
        ProjectQuota.objects.create(project=project, jobs_per_day=0)  # this project: unlimited
        assert submit(api, "b").status_code == 201

    def test_compute_seconds_per_month(self, api, project, make_job, atelier_config):
        now = timezone.now()
        make_job(project, run_seconds=60, created_at=now - timedelta(minutes=5))
        make_job(project, run_seconds=40, created_at=now - timedelta(minutes=3))
        make_job(project, status=JobStatus.RUNNING, created_at=now - timedelta(minutes=1))  # not finished: not counted yet
        make_job(project, run_seconds=5000, created_at=quotas.month_start(now) - timedelta(days=3))  # finished last month
        atelier_config(quota_compute_seconds_per_month=101)
        assert submit(api, "a").status_code == 201
        atelier_config(quota_compute_seconds_per_month=100)
        refused = submit(api, "b")
        error = assert_envelope(refused, 429, "quota_exceeded")
        assert error["details"]["quota"] == "compute_seconds_per_month"
        assert error["details"]["used"] == 100.0 and error["details"]["limit"] == 100
        assert error["details"]["resets_at"] == quotas.next_month_start(now).isoformat()
        assert int(refused["Retry-After"]) > 0

    def test_quota_status(self, api, project, make_job):
        ProjectQuota.objects.create(project=project, jobs_per_day=10)
        make_job(project, run_seconds=12.5)
        body = api.get("/api/v1/usage/quota/").json()
        assert body["jobs_per_day"]["limit"] == 10 and body["jobs_per_day"]["used"] == 1 and body["jobs_per_day"]["remaining"] == 9
        # whole numbers, as the 429's details give them (they read 10.0, 1.0, 9.0)
        assert all(type(body["jobs_per_day"][name]) is int for name in ("limit", "used", "remaining"))
        assert body["compute_seconds_per_month"] == {**body["compute_seconds_per_month"], "limit": None, "used": 12.5, "remaining": None}
        assert body["rate_limit_per_minute"] == get_config().rate_limit_per_minute

    def test_quota_status_is_per_project(self, api, other_project, make_job):
        make_job(other_project)
        assert api.get("/api/v1/usage/quota/").json()["jobs_per_day"]["used"] == 0


# --- caps on one job --------------------------------------------------------------------------------------

@pytest.mark.django_db
class TestRequestCaps:
    def test_plugin_limits_refuse_with_field_details(self, api, atelier_config):
        atelier_config(plugin_limits='{"reverse_text": {"input.text": 5, "input.copies": 2}}')
        error = assert_envelope(api.post(JOBS, {"plugin": "reverse_text", "input": {"text": "too long", "copies": 3}}, format="json"),
                                400, "limit_exceeded")
        assert set(error["details"]) == {"input.text", "input.copies"}
        assert "At most 5 characters" in error["details"]["input.text"][0] and "ATELIER_PLUGIN_LIMITS" in error["details"]["input.text"][0]
        assert submit(api, "short").status_code == 201

    def test_caps_apply_per_index_in_a_batch(self, api, atelier_config):
        atelier_config(plugin_limits='{"reverse_text": {"input.text": 5}}')
        body = {"jobs": [GOOD, {"plugin": "reverse_text", "input": {"text": "too long"}}]}
        error = assert_envelope(api.post(f"{JOBS}batch/", body, format="json"), 400, "validation_error")
        assert list(error["details"]) == ["jobs.1.input.text"]

    def test_caps_apply_after_the_projects_defaults(self, api, project, atelier_config):
        from atelier_platform.catalog.models import ProjectPlugin

        ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(config={"params": {"uppercase": True}})
        atelier_config(plugin_limits='{"reverse_text": {"params.uppercase": 0}}')  # a boolean is not measured
        assert submit(api).status_code == 201

    @pytest.fixture
    def builtin_schemas(self, empty_plugin_registry, project):
        """The built-in chatbot and image plugins (their schemas: no model is loaded), on for ``project``."""
        from atelier_platform.catalog.services import set_plugin_enabled
        from atelier_plugins.chatbot.plugin import ChatbotPlugin
        from atelier_plugins.image.plugin import ImagePlugin

        for plugin in (ChatbotPlugin, ImagePlugin):
            empty_plugin_registry.register(plugin)
            set_plugin_enabled(project, plugin.manifest.id, True)

    CHAT = {"plugin": "chatbot", "input": {"messages": [{"role": "user", "content": "hi"}]}}

    def test_a_plugins_default_over_a_cap_is_lowered_to_it_not_refused(self, api, builtin_schemas, atelier_config):
        """ATELIER_MAX_NEW_TOKENS=64 under the chatbot's default of 128: a job that does not name it runs
        with 64; one that asks for 100 is refused, one that asks for 32 keeps 32."""
        atelier_config(max_new_tokens=64, max_image_steps=20)
        created = api.post(JOBS, self.CHAT, format="json")
        assert created.status_code == 201, created.json()
        assert Job.objects.get(pk=created.json()["id"]).params["max_new_tokens"] == 64
        image = api.post(JOBS, {"plugin": "image", "input": {"prompt": "a digit"}}, format="json")
        assert image.status_code == 201, image.json()
        assert Job.objects.get(pk=image.json()["id"]).input["steps"] == 20
        error = assert_envelope(api.post(JOBS, {**self.CHAT, "params": {"max_new_tokens": 100}}, format="json"),
                                400, "limit_exceeded")
        assert list(error["details"]) == ["params.max_new_tokens"]
        asked = api.post(JOBS, {**self.CHAT, "params": {"max_new_tokens": 32}}, format="json")
        assert Job.objects.get(pk=asked.json()["id"]).params["max_new_tokens"] == 32

    def test_a_projects_default_over_a_cap_is_still_refused(self, api, project, builtin_schemas, atelier_config):
        """The project's defaults are asked for on the caller's behalf: an owner's 100 is not silently cut."""
        from atelier_platform.catalog.models import ProjectPlugin

        ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(config={"params": {"max_new_tokens": 100}})
        atelier_config(max_new_tokens=64)
        assert_envelope(api.post(JOBS, self.CHAT, format="json"), 400, "limit_exceeded")

    def test_a_refusal_over_a_projects_default_says_so_and_how_to_fix_it(self, api, project, builtin_schemas,
                                                                          atelier_config):
        """A cap lowered after the default was saved: the caller never asked for 100 tokens, so the refusal says the
        value is the project's default and how an owner lowers it (same code and status); a caller who names the
        field is refused in the usual words, and one who sends a value within the cap runs."""
        from atelier_platform.catalog.models import ProjectPlugin

        ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(config={"params": {"max_new_tokens": 100}})
        atelier_config(max_new_tokens=64)
        error = assert_envelope(api.post(JOBS, self.CHAT, format="json"), 400, "limit_exceeded")
        assert "params.max_new_tokens comes from the project's default params for 'chatbot'" in error["message"]
        assert "PATCH /api/v1/plugins/chatbot/settings/" in error["message"]
        said = error["details"]["params.max_new_tokens"]
        assert said[0] == "At most 64 on this server (ATELIER_MAX_NEW_TOKENS); got 100."
        assert "the project's default for chatbot, not the request's" in said[1] and "settings page" in said[1]
        asked = assert_envelope(api.post(JOBS, {**self.CHAT, "params": {"max_new_tokens": 100}}, format="json"),
                                400, "limit_exceeded")
        assert asked["message"] == "The job asks for more than this server allows."
        assert asked["details"] == {"params.max_new_tokens": ["At most 64 on this server (ATELIER_MAX_NEW_TOKENS); got 100."]}
        assert api.post(JOBS, {**self.CHAT, "params": {"max_new_tokens": 32}}, format="json").status_code == 201
        # the OpenAI-compatible endpoint words its error from the details: the explanation is there too
        answer = api.post("/v1/chat/completions", {"model": "chatbot", "messages": [{"role": "user", "content": "hi"}]},
                          format="json")
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "limit_exceeded"
        assert "the project's default for chatbot" in answer.json()["error"]["message"]

    def test_a_cap_below_what_the_plugin_accepts_refuses_clearly(self, api, builtin_schemas, atelier_config):
        atelier_config(plugin_limits='{"image": {"input.steps": 0.5}}')  # the image plugin takes at least 1 step
        error = assert_envelope(api.post(JOBS, {"plugin": "image", "input": {"prompt": "a digit"}}, format="json"),
                                400, "limit_exceeded")
        assert "input.steps" in error["details"] and "raise them" in error["message"]
        assert Job.objects.count() == 0

    def test_openai_names_the_callers_field_in_one_sentence(self, api, builtin_schemas, atelier_config):
        atelier_config(max_new_tokens=64)
        answer = api.post("/v1/chat/completions", {"model": "chatbot", "max_tokens": 100,
                                                   "messages": [{"role": "user", "content": "hi"}]}, format="json")
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["code"] == "limit_exceeded" and error["param"] == "max_tokens"
        assert error["message"].endswith("got 100.")  # it ended "got 100.."

    def test_openai_chat_without_max_tokens_runs_under_the_cap(self, api, builtin_schemas, atelier_config):
        atelier_config(max_new_tokens=64, openai_wait_s=0.1)
        answer = api.post("/v1/chat/completions", {"model": "chatbot", "messages": [{"role": "user", "content": "hi"}]},
                          format="json")
        assert answer.status_code != 400, answer.json()
        assert Job.objects.get().params["max_new_tokens"] == 64

    def test_bad_plugin_limits_stop_start_up(self, monkeypatch):
        monkeypatch.setenv("ATELIER_PLUGIN_LIMITS", '{"image": {"steps": 30}}')
        get_config.cache_clear()
        try:
            with pytest.raises(ConfigurationError, match="ATELIER_PLUGIN_LIMITS"):
                get_config()
        finally:
            monkeypatch.delenv("ATELIER_PLUGIN_LIMITS")
            get_config.cache_clear()


class TestNamedCaps:
    """The named settings map onto the built-in plugins' fields (checked without a database)."""

    def check(self, plugin, input_data, params=None, **settings):
        limits.check(plugin, input_data, params or {}, config=AtelierConfig(**settings))

    def test_image_pixels_steps_count_and_prompt(self):
        settings = dict(max_image_pixels=256 * 256, max_image_steps=30, max_image_count=2, max_prompt_chars=20)
        self.check("image", {"prompt": "a cat", "width": 256, "height": 256, "steps": 30, "count": 2}, **settings)
        self.check("image", {"prompt": "a cat", "width": None, "height": None, "steps": 1, "count": 1}, **settings)  # native size
        with pytest.raises(LimitExceeded) as raised:
            self.check("image", {"prompt": "a cat in a hat, drawn", "width": 512, "height": 256, "steps": 31, "count": 3}, **settings)
        details = raised.value.details
        assert set(details) == {"input.prompt", "input.width", "input.steps", "input.count"}
        assert "input.width * input.height is at most 65536" in details["input.width"][0]
        assert "ATELIER_MAX_IMAGE_STEPS" in details["input.steps"][0]

    def test_chat_messages_and_tokens(self):
        messages = [{"role": "user", "content": "short"}, {"role": "assistant", "content": "x" * 30}]
        with pytest.raises(LimitExceeded) as raised:
            self.check("chatbot", {"messages": messages}, {"max_new_tokens": 512}, max_prompt_chars=20, max_new_tokens=256)
        assert set(raised.value.details) == {"input.messages.1.content", "params.max_new_tokens"}

    def test_plugin_limits_override_named_ones_and_other_plugins_are_untouched(self):
        settings = dict(max_image_steps=10, plugin_limits='{"image": {"input.steps": 50}}')
        self.check("image", {"prompt": "p", "steps": 40}, **settings)
        self.check("chatbot", {"messages": []}, {"max_new_tokens": 10_000}, **settings)
