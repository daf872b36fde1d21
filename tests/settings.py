"""Settings for the test process: the real settings, on a throw-away data directory.

DATABASE_URL and REDIS_URL pass through from the environment, so that CI runs the suite on
the real PostgreSQL and Redis; without them the suite runs on the embedded defaults.
"""

import atexit
import os
import shutil
import tempfile

if "ATELIER_DATA_DIR" not in os.environ:
    # Made (and removed at exit) only by the process that chooses it: the processes a test starts
    # inherit the variable and share the folder. (``setdefault(..., mkdtemp())`` made one in each.)
    os.environ["ATELIER_DATA_DIR"] = tempfile.mkdtemp(prefix="atelier-test-")
    atexit.register(shutil.rmtree, os.environ["ATELIER_DATA_DIR"], ignore_errors=True)
# Under pytest-xdist (`make test` runs two processes) each test process gets a data folder and a Redis database
# of its own, as two runs would: a file-system broker's queue, a stored file or a rate-limit counter of one
# process's test must not be what the other's reads (both count their projects from 1). The variable below
# marks what a test process chose, so that the processes its tests start (which inherit the environment,
# PYTEST_XDIST_WORKER included) use the same and choose nothing.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
TEST_REDIS_DATABASE_LOCK = None  # the claim on this process's Redis database, held while it lives (tests/conftest.py)
if _worker and os.environ.get("ATELIER_TEST_PROCESS") != _worker:
    os.environ["ATELIER_TEST_PROCESS"] = _worker
    _folder = os.path.join(os.environ["ATELIER_DATA_DIR"], _worker)
    os.makedirs(_folder, exist_ok=True)  # removed with the run's folder at exit
    os.environ["ATELIER_DATA_DIR"] = _folder
    if os.environ.get("REDIS_URL", "").startswith("redis://"):
        from tests.e2e.stack import claim_redis_database

        os.environ["REDIS_URL"], TEST_REDIS_DATABASE_LOCK = claim_redis_database(os.environ["REDIS_URL"])
# Heartbeats fast enough that a cancel reaches a running job within a test's patience.
os.environ.setdefault("ATELIER_JOB_HEARTBEAT_S", "0.2")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")

from atelier_platform.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests only

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's default in-memory test database: the worker tests run threads, and a
    # shared-cache memory database answers "table is locked" where a file in WAL mode waits.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["ATELIER_DATA_DIR"], "test.sqlite3")}  # noqa: F405
