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
# Heartbeats fast enough that a cancel reaches a running job within a test's patience.
os.environ.setdefault("ATELIER_JOB_HEARTBEAT_S", "0.2")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")

from atelier_platform.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests only

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's default in-memory test database: the worker tests run threads, and a
    # shared-cache memory database answers "table is locked" where a file in WAL mode waits.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["ATELIER_DATA_DIR"], "test.sqlite3")}  # noqa: F405
