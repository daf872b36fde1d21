"""Settings for the test process: the real settings, on a throw-away data directory.

DATABASE_URL and REDIS_URL pass through from the environment, so that CI runs the suite on
the real PostgreSQL and Redis; without them the suite runs on the embedded defaults.
"""

import os
import tempfile

os.environ.setdefault("ATELIER_DATA_DIR", tempfile.mkdtemp(prefix="atelier-test-"))
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")

from atelier_platform.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests only
