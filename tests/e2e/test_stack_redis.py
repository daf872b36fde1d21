"""Each stack's Redis database is its own: stacks at once on one machine (two test runs, a run beside a benchmark,
several stacks of one run) must neither share queues and "job finished" notices nor flush each other's data, nor
take the database a test run or anyone else is using. These stop short of starting a stack's processes: which
database a stack takes, and what it empties, is settled when it is made (and when it stops)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import redis

from tests.e2e.stack import (
    REPO,
    STACK_MARKER,
    Stack,
    claim_redis_database,
    postgres_and_redis_from_env,
    redis_database_number,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(postgres_and_redis_from_env() is None,
                       reason="set DATABASE_URL=postgres://... and REDIS_URL=redis://... (as CI does)"),
]


def redis_at(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def at_database(number: int) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{number}"))


def give_back(url: str, lock: int) -> None:
    """What a stack does when it stops: empty its database, then let it go."""
    try:
        redis_at(url).flushdb()
    finally:
        os.close(lock)


def holder(code: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Another process (another test run, a benchmark) doing ``code``, which prints a line once it has done it."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def test_two_stacks_get_databases_of_their_own_and_neither_flushes_the_others(tmp_path):
    own = redis_database_number(os.environ["REDIS_URL"])
    first = Stack("postgres_redis", tmp_path / "first")
    second = None
    try:
        redis_at(first.env["REDIS_URL"]).set("first:queued", "job")  # the first stack at work
        second = Stack("postgres_redis", tmp_path / "second")  # starting: once, the FLUSHDB of database 9 for both
        redis_at(second.env["REDIS_URL"]).set("second:queued", "job")

        numbers = {redis_database_number(first.env["REDIS_URL"]), redis_database_number(second.env["REDIS_URL"])}
        assert len(numbers) == 2 and own not in numbers and 0 not in numbers
        assert redis_at(first.env["REDIS_URL"]).get("first:queued") == b"job"
        assert redis_at(first.env["REDIS_URL"]).get("second:queued") is None  # not the same queues either

        first.stop()  # empties its own database, and only that
        assert redis_at(second.env["REDIS_URL"]).get("second:queued") == b"job"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_database_stays_taken_while_a_stack_process_lives_and_is_free_again_once_they_are_gone(tmp_path):
    stack = Stack("postgres_redis", tmp_path)
    number = redis_database_number(stack.env["REDIS_URL"])
    redis_at(stack.env["REDIS_URL"]).set("left:behind", "job")
    # One of the stack's processes (as a worker is), and then the test process that made the stack killed
    # outright: it never stops the stack, and its own hold of the lock is gone.
    survivor = stack._spawn("worker0", [sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        os.close(stack.redis_lock)
        stack.redis_lock = None
        with pytest.raises(RuntimeError, match=rf"\[{number}\] in use"):
            claim_redis_database(os.environ["REDIS_URL"], numbers=[number])  # the survivor still uses it
        os.killpg(survivor.pid, signal.SIGKILL)
        survivor.wait(timeout=30)

        url, lock = claim_redis_database(os.environ["REDIS_URL"], numbers=[number])
        try:
            assert redis_at(url).get("left:behind") is None  # what the dead stack left there is flushed
            assert redis_at(url).exists(STACK_MARKER)
        finally:
            give_back(url, lock)
    finally:
        stack.stop(graceful=False)  # the survivor if still there, and the PostgreSQL database


def test_a_database_is_free_again_when_the_process_that_took_it_is_killed():
    process = holder("""
        import os, redis
        from tests.e2e.stack import claim_redis_database
        url, lock = claim_redis_database(os.environ["REDIS_URL"])
        redis.Redis.from_url(url).set("left:behind", "job")
        print(url, flush=True)
        input()
    """)
    try:
        url = process.stdout.readline().strip()
        number = redis_database_number(url)
        with pytest.raises(RuntimeError, match=rf"\[{number}\] in use"):
            claim_redis_database(os.environ["REDIS_URL"], numbers=[number])
    finally:
        process.kill()
        process.wait(timeout=30)
    url, lock = claim_redis_database(os.environ["REDIS_URL"], numbers=[number])
    try:
        assert redis_at(url).get("left:behind") is None
    finally:
        give_back(url, lock)


def test_a_database_with_someone_elses_data_is_never_taken():
    url, lock = claim_redis_database(os.environ["REDIS_URL"])  # one no one else uses, to lend to "someone"
    number = redis_database_number(url)
    try:
        redis_at(url).delete(STACK_MARKER)
        redis_at(url).set("theirs", "keep me")  # an application of the user's, say
        os.close(lock)  # not a stack's: nothing on this machine holds its lock
        with pytest.raises(RuntimeError, match=rf"\[{number}\] holding someone else's data"):
            claim_redis_database(os.environ["REDIS_URL"], numbers=[number])
        assert redis_at(url).get("theirs") == b"keep me"
    finally:
        redis_at(url).flushdb()


def test_a_stack_of_another_run_never_takes_this_runs_own_database():
    """This run's REDIS_URL is held for the session (tests/conftest.py): a stack of another run, whose own
    REDIS_URL names another database, finds it in use."""
    own = redis_database_number(os.environ["REDIS_URL"])
    process = holder(f"""
        import os
        from tests.e2e.stack import claim_redis_database
        try:
            claim_redis_database(os.environ["REDIS_URL"], numbers=[{own}])
            print("taken", flush=True)
        except RuntimeError as error:
            print(error, flush=True)
    """, env={"REDIS_URL": at_database(1 if own == 0 else 0)})  # the other run's own database is not this one's
    answer, _ = process.communicate(timeout=60)
    assert f"[{own}] in use" in answer
