"""Django settings. Every value an operator may change comes from ``config.get_config()``."""

from __future__ import annotations

import sys
from pathlib import Path

import dj_database_url

from atelier_platform.config import REPO_ROOT, get_config

CONFIG = get_config()
CONFIG.data_dir.mkdir(parents=True, exist_ok=True)

BASE_DIR = REPO_ROOT
SECRET_KEY = CONFIG.resolved_secret_key()
DEBUG = CONFIG.debug
ALLOWED_HOSTS = [host.strip() for host in CONFIG.allowed_hosts.split(",") if host.strip()]
CSRF_TRUSTED_ORIGINS = CONFIG.trusted_origins
CSRF_FAILURE_VIEW = "atelier_frontend.error_pages.csrf_failure"  # a refused form as a dashboard page, not Django's bare one
if CONFIG.trust_forwarded_proto:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# A signed-in owner's session never travels over plain HTTP: production is served over TLS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = CONFIG.production if CONFIG.secure_cookies is None else CONFIG.secure_cookies

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "atelier_platform.accounts",
    "atelier_platform.catalog",
    "atelier_platform.jobs",
    "atelier_platform.knowledge",
    "atelier_platform.conversations",
    "atelier_platform.moderation",
    "atelier_platform.webhooks",
    "atelier_platform.fleet",
    "atelier_platform.usage",
    "atelier_platform.evaluation",
    "atelier_platform.exports",
    "atelier_platform.api",
    "atelier_frontend",
    "atelier_workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "atelier_platform.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "atelier_platform.api.errors.ApiRequestGuardMiddleware",
    "atelier_platform.api.paths.ApiTrailingSlashMiddleware",  # before CommonMiddleware's APPEND_SLASH redirect
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the dashboard in English or Simplified Chinese
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "atelier_platform.accounts.signin.SignInThrottleMiddleware",  # 429 to password guessing on the sign-in forms
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "atelier_platform.urls"
WSGI_APPLICATION = "atelier_platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections, one per web thread and worker process, checked before reuse after each
# request or task, so that one the server dropped is replaced instead of failing a query. A new
# PostgreSQL connection costs about 10 ms; a new SQLite one about 1 ms (its pragmas, Django's SQL
# functions), and a connection that reopens also starts with an empty page cache.
DATABASES = {"default": dj_database_url.parse(CONFIG.resolved_database_url, conn_max_age=None, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one SQLite file at once: WAL lets readers go on during a
    # write, IMMEDIATE takes the write lock at BEGIN (no deadlock on lock upgrade), and the
    # timeout makes a writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that takes the connection and never answers (hung, a failover, a dropped route) must not hold a
    # web thread or a worker for good: connecting gives up after 5 s, and keepalives find a peer gone silent
    # under an open connection within about a minute. Options given in DATABASE_URL's query win.
    for name, value in {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                        "keepalives_count": 3}.items():
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(name, value)


def _runs_long_work() -> bool:
    """Whether this process is a Celery worker or beat, or a manage.py (django-admin) command, by the program
    that started it: ``celery ...``, ``python -m celery ...``, ``python manage.py ...``, ``python -m django ...``."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    name = program.parent.name if program.name == "__main__.py" else program.name
    return name in ("celery", "manage.py", "django-admin", "django")


# One runaway statement (a pathological filter, a wait on a lock never released) held a web thread and its
# connection for good; PostgreSQL now cancels it after ATELIER_DATABASE_STATEMENT_TIMEOUT_S, and the API
# answers 503 database_timeout (api/errors.py). Who gets it:
# - web processes (gunicorn or any WSGI server), and whatever else loads these settings (tests, scripts): yes.
#   A request's statements take milliseconds; one that needs 30 s is a bug, and its client gave up long ago.
# - Celery workers and beat: no. Their statements may rightly run long (a large knowledge base's chunks
#   written in one INSERT, a batch's outputs stored together, the sweeper on a big backlog) and a cancelled
#   one fails the work only to meet the same limit on its retry; a task's own time limits bound their work.
# - manage.py commands: no. migrate's DDL and data migrations on large tables (a new index, a backfill) and
#   the commands that build demo models and index knowledge bases run long by design; a migration cut off
#   halfway fails the deploy.
# A statement_timeout in DATABASE_URL's own ``options`` wins. PgBouncer refuses start-up parameters it does not
# track: behind one, list statement_timeout in its track_extra_parameters (1.20+), or set this to 0.
if (DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CONFIG.database_statement_timeout_ms
        and not _runs_long_work()):
    _given_options = DATABASES["default"]["OPTIONS"].get("options", "")
    if "statement_timeout" not in _given_options:
        DATABASES["default"]["OPTIONS"]["options"] = \
            f"{_given_options} -c statement_timeout={CONFIG.database_statement_timeout_ms}".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend whose health check skips its SELECT 1 while the server has said nothing (see the module).
    DATABASES["default"]["ENGINE"] = "atelier_platform.db.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CONFIG.data_dir / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = CONFIG.resolved_media_root
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if CONFIG.s3_bucket:
    # Credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, ...) or the host's role.
    # Files stay private: clients download them through the API, which checks the project.
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CONFIG.s3_bucket,
            "endpoint_url": CONFIG.s3_endpoint_url,
            "region_name": CONFIG.s3_region,
            "default_acl": "private",
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
WHITENOISE_USE_FINDERS = True

# The cache every web process shares: rate-limit counters and briefly cached quota figures.
# Redis when REDIS_URL is set (atomic INCR, shared by every host); else files under DATA_DIR,
# shared by the processes of this one machine (`make run` serves with two gunicorn processes,
# so a per-process memory cache would count each process apart) with counters under a file lock.
if CONFIG.redis_url:
    # JSON, not Django's default pickle: a value planted in Redis must not run code in the web process.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CONFIG.redis_url,
                          "KEY_PREFIX": "atelier", "TIMEOUT": 300,
                          "OPTIONS": {"serializer": "atelier_platform.usage.cache_serializer.JSONSerializer"}}}
else:
    CACHES = {"default": {"BACKEND": "atelier_platform.usage.filecache.LockingFileBasedCache",
                          "LOCATION": str(CONFIG.data_dir / "cache"), "TIMEOUT": 300,
                          "OPTIONS": {"MAX_ENTRIES": 100_000}}}

# Django reads at most this much of a body into memory; the API guard answers 413 before that.
DATA_UPLOAD_MAX_MEMORY_SIZE = CONFIG.max_request_bytes

# Invitation e-mails (accounts.invitations). Without ATELIER_EMAIL_HOST nothing is sent: the owner passes on the link
# the settings page shows, and the page says no e-mail went out (the dummy backend is how it knows).
if CONFIG.email_host:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT = CONFIG.email_host, CONFIG.email_port
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = CONFIG.email_user or "", CONFIG.email_password or ""
    EMAIL_USE_TLS, EMAIL_USE_SSL = CONFIG.email_security == "starttls", CONFIG.email_security == "tls"
    EMAIL_TIMEOUT = CONFIG.email_timeout_s  # an SMTP server that never answers must not hold the owner's request
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = CONFIG.email_from

LOGIN_URL = "login"  # the dashboard's sign-in page (atelier_frontend)
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "atelier_platform.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["atelier_platform.api.permissions.HasProjectCapability"],
    "DEFAULT_METADATA_CLASS": "atelier_platform.api.metadata.RouteMetadata",  # OPTIONS
    "DEFAULT_PARSER_CLASSES": ["atelier_platform.api.parsers.JSONParser"],  # DRF's, with a nesting cap
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # a format or Accept header no renderer serves: 406 naming what is offered (DRF: 404 for ?format=xml)
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "atelier_platform.api.negotiation.ApiContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # ATELIER_RATE_LIMIT_PER_MINUTE per API key (or signed-in person), in the shared cache above.
    "DEFAULT_THROTTLE_CLASSES": ["atelier_platform.api.throttling.CallerRateThrottle"],
    "EXCEPTION_HANDLER": "atelier_platform.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Atelier API",
    "DESCRIPTION": "Generative content with human review. Authenticate with `Authorization: Bearer <api key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # names for choice sets whose field names other sets share (a chat message's role, a review's state)
    "ENUM_NAME_OVERRIDES": {"MemberRoleEnum": "atelier_platform.accounts.roles.Role",
                            "InvitationStateEnum": "atelier_platform.accounts.invitations.STATES",
                            "StatusEnum": "atelier_platform.jobs.models.JobStatus",
                            "ExportKindEnum": "atelier_platform.exports.models.ExportKind",
                            "ExportFormatEnum": "atelier_platform.exports.models.ExportFormat",
                            "ExportStatusEnum": "atelier_platform.exports.models.ExportStatus",
                            # the one-value sets of OpenAI's shapes (a list's object, a message's type and role)
                            "ListObjectEnum": ["list"], "ResponseObjectEnum": ["response"], "MessageTypeEnum": ["message"], "AssistantRoleEnum": ["assistant"]},
    # Every /api/v1/ operation documents the error envelope of the statuses it can answer.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "atelier_platform.api.schema.add_error_responses"],
}

# --- Celery (read by atelier_platform.celery_app) -------------------------------------------
CELERY_BROKER_URL = CONFIG.resolved_broker_url
ATELIER = CONFIG
