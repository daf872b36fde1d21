"""The one typed helper that reads Atelier's configuration from the environment.

Every setting an operator may change is a field here, with its environment variable name
(prefix ``ATELIER_`` unless it is a well-known name such as ``DATABASE_URL``), its type and its
default. Defaults are the embedded single-machine mode: SQLite and a file-system broker under
``ATELIER_DATA_DIR``. A bad value fails at start-up with a message naming the variable.
"""

from __future__ import annotations

import json
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigurationError(RuntimeError):
    """Raised at start-up when the environment holds a missing or bad value."""


class AtelierConfig(BaseSettings):
    # No inf or nan: "inf" seconds passes gt=0, then fails the sweeper at every run (timedelta overflows).
    model_config = SettingsConfigDict(env_prefix="ATELIER_", extra="ignore", frozen=True, allow_inf_nan=False)

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(default=REPO_ROOT / "var", description="SQLite file, broker folder, media, secret key")
    models_root: Path | None = Field(default=None, description="root of local model directories (default DATA_DIR/models)")
    media_root: Path | None = Field(default=None, description="uploaded and generated files (default DATA_DIR/media)")
    evaluation_image_features: Path | None = Field(
        default=None, description="directory of the Hugging Face vision model whose features score image evaluation "
        "runs (FID, KID, similarity); relative to the models root; default the demo's, demo/image-features")

    # --- services ----------------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "ATELIER_DATABASE_URL"))
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "ATELIER_REDIS_URL"))
    broker_url: str | None = Field(default=None, validation_alias=AliasChoices("BROKER_URL", "ATELIER_BROKER_URL"))
    # How often the embedded file-system broker looks for messages: its latency. An idle process looking
    # 50 times a second lists a few folders each time, well under 1% of a core.
    broker_poll_interval_s: float = Field(default=0.02, gt=0, le=5)
    # Redis redelivers an unacknowledged message after this long. It must exceed the longest
    # plugin time limit, or a slow job would be handed to a second worker while it still runs.
    broker_visibility_timeout_s: int = Field(default=3600, ge=10)

    # Longest one SQL statement of a web process may run on PostgreSQL before the server stops it: a runaway
    # query held a web thread and its connection for good. Web processes only (settings.py says why).
    database_statement_timeout_s: float = Field(
        default=30.0, ge=0, le=86_400,
        description="seconds one SQL statement of a web process may run on PostgreSQL before the server cancels it "
        "(the request answers 503 database_timeout); 0: no limit. Workers, beat and manage.py commands have none",
    )

    # --- object storage (generated files); unset: the local file system under MEDIA_ROOT ---
    s3_bucket: str | None = Field(default=None, description="store generated files in this S3-compatible bucket")
    s3_endpoint_url: str | None = Field(default=None, description="for MinIO, Ceph and other S3-compatible stores")
    s3_region: str | None = None

    # --- web -----------------------------------------------------------------------------
    debug: bool = False
    secret_key: str | None = Field(default=None, validation_alias=AliasChoices("SECRET_KEY", "ATELIER_SECRET_KEY"))
    allowed_hosts: str = "127.0.0.1,localhost"
    csrf_trusted_origins: str = Field(default="", description="origins trusted for the dashboard's forms besides "
                                      "ATELIER_PUBLIC_URL's, comma-separated (https://atelier.example.com)")
    secure_cookies: bool | None = Field(default=None, description="session and CSRF cookies only over HTTPS; unset: "
                                        "as ATELIER_PRODUCTION (false only to try a production stack over plain HTTP)")
    trust_forwarded_proto: bool = Field(default=False, description="behind a TLS-terminating proxy that sets "
                                        "X-Forwarded-Proto (and strips a client's own): requests it marks https are")
    max_request_bytes: int = Field(default=1_048_576, ge=1024, description="largest API request body accepted")
    production: bool = Field(default=False, description="refuse embedded defaults that are unsafe in production")

    # --- API limits and quotas ------------------------------------------------------------
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="API requests per minute per API key (and per signed-in person); 0: no rate limit"
    )
    sign_in_failures_per_minute: int = Field(
        default=10, ge=0, description="failed sign-ins per username per minute (dashboard and admin) before further "
        "sign-ins with it are answered 429 for a while; 0: no limit"
    )
    sign_in_failures_per_minute_per_address: int = Field(
        default=100, ge=0, description="failed sign-ins per client address per minute, whatever the username, before "
        "further sign-ins from it are answered 429 for a while; 0: no limit"
    )
    max_jobs_per_request: int = Field(default=100, ge=1, le=1000, description="most jobs one POST /api/v1/jobs/batch/ may hold")
    quota_jobs_per_day: int = Field(
        default=0, ge=0, description="jobs a project may submit per UTC day (blocked inputs not counted); 0: unlimited. "
        "Per project in the Django admin (Project quotas)"
    )
    quota_compute_seconds_per_month: int = Field(
        default=0, ge=0, description="worker seconds (finished_at - started_at) a project's jobs may use per UTC calendar "
        "month; 0: unlimited. Per project in the Django admin"
    )
    # Caps on what one job may ask for, applied at submission on top of the plugins' own schemas.
    max_prompt_chars: int | None = Field(default=None, ge=1, description="longest prompt / chat message, in characters")
    max_new_tokens: int | None = Field(default=None, ge=1, description="largest max_new_tokens of a chat job")
    max_image_pixels: int | None = Field(default=None, ge=1, description="largest width x height of an image job")
    max_image_steps: int | None = Field(default=None, ge=1, description="most denoising steps of an image job")
    max_image_count: int | None = Field(default=None, ge=1, description="most images one image job may ask for")
    plugin_limits: str = Field(
        default="", description='JSON caps per plugin id and field path, e.g. {"image": {"input.steps": 30, '
        '"input.width*input.height": 262144}, "chatbot": {"input.messages[].content": 2000}}'
    )

    # --- jobs ----------------------------------------------------------------------------
    job_heartbeat_s: float = Field(default=5.0, gt=0, description="how often a running job proves its worker alive")
    job_stale_after_s: float = Field(default=60.0, gt=0, description="a running job silent this long lost its worker")
    job_requeue_after_s: float = Field(default=300.0, gt=0, description="a queued job untouched this long lost its message")
    sweep_interval_s: float = Field(default=15.0, gt=0)
    retry_backoff_base_s: float = Field(default=2.0, ge=0)
    retry_backoff_max_s: float = Field(default=300.0, ge=0)
    # A run of the content retention holds a worker of the platform queue: past this it stops between two batches and
    # queues its own follow-up, so that a large backlog is worked off within hours, not one bounded run an hour.
    retention_run_budget_s: float = Field(
        default=60.0, gt=0, le=600,
        description="seconds one run of the content retention erases for before it leaves the rest to a follow-up run "
                    "as long after (a backlog takes at most half of a platform worker's time); at most 600, well under "
                    "the broker's visibility timeout, past which Redis would deliver a running run a second time",
    )

    # --- exports in the background ------------------------------------------------------------
    exports_kept_hours: int = Field(
        default=72, ge=1, le=8760,
        description="hours an export's file (POST /api/v1/exports/) can be downloaded after it was written; then it "
        "is deleted",
    )

    # --- webhooks --------------------------------------------------------------------------
    public_url: str = Field(default="", description="the platform's address as clients reach it; links in webhook payloads start with it")
    webhooks_allow_private_targets: bool = Field(
        default=False, description="let webhook URLs reach loopback, private and link-local addresses (closed networks, tests)"
    )
    webhooks_retry_schedule_s: str = Field(
        default="5,30,120,600,1800,3600,7200,14400",
        description="comma-separated seconds to wait before each retry of a failed delivery; its length is the number of retries",
    )
    webhooks_timeout_s: float = Field(default=10.0, gt=0, le=120, description="time limit of one delivery attempt")
    webhooks_disable_after_failures: int = Field(
        default=5, ge=1, description="an endpoint is disabled after this many deliveries in a row failed every attempt"
    )

    # --- e-mail (project invitations) ----------------------------------------------------------
    email_host: str | None = Field(
        default=None, description="SMTP server that sends invitation e-mails; unset: none is sent, and the owner "
        "passes on the link the settings page shows"
    )
    email_port: int = Field(default=587, ge=1, le=65535)
    email_user: str | None = Field(default=None, description="SMTP user name, if the server asks for one")
    email_password: str | None = Field(default=None, description="SMTP password")
    email_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit TLS, port 465) or none (a local relay)"
    )
    email_from: str = Field(default="atelier@localhost", min_length=3, description="the From address of the e-mails sent")
    email_timeout_s: float = Field(default=10.0, gt=0, le=120, description="time limit of one SMTP connection")

    # --- OpenAI-compatible endpoints (/v1/) -------------------------------------------------
    openai_wait_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="how long POST /v1/chat/completions and /v1/images/generations wait for their job before "
        "answering 504 job_still_running (the job goes on; fetch it at /api/v1/jobs/{id}/)",
    )

    # --- requests that wait for their job (Prefer: wait, the /v1/ endpoints) ---------------------------
    # Each waiting request holds one of its web process's threads. With every thread waiting (12 waits
    # on the Procfile's 2 processes x 4 threads, or 8 chat users), the process served nothing else, not
    # even /healthz. gunicorn's --threads is written into each start command (Procfile, Dockerfile,
    # docker-compose.yml: 4 each), none of which the app can read reliably, so this is a setting of its
    # own: the default, 2, keeps half of the shipped 4 threads free; a web process warns at start-up
    # when it is not below the --threads on its command line (jobs.waiting.check_waiting_limit).
    max_waiting_requests: int = Field(
        default=2, ge=1, le=10_000,
        description="requests one web process lets wait for their job at once (Prefer: wait, /v1/chat/completions, "
        "/v1/images/generations); keep it below gunicorn's --threads. Past it, Prefer: wait is answered at once "
        "(no Preference-Applied) and the /v1/ endpoints answer 503 with Retry-After, submitting nothing",
    )
    max_waiting_requests_per_project: int = Field(
        default=0, ge=0, le=10_000,
        description="of those, how many one project may take at once (past it the /v1/ endpoints answer 429); "
        "0: no share, a project may take them all",
    )

    # --- plugins and workers ---------------------------------------------------------------
    extra_plugins: str = Field(default="", description="comma-separated module:Class plugins loaded besides entry points")
    extra_safety_checks: str = Field(default="", description="comma-separated module:Class safety checks besides entry points")
    # Bytes, not a count of lists: a count thrashed with more active projects than places (each batch compiled
    # a list again, 2.5 s for 50,000 terms) and held far more than meant with a few huge lists.
    safety_list_cache_bytes: int = Field(
        default=256 * 2**20, ge=0,
        description="bytes of projects' blocklists and allow lists, read and compiled, one process keeps "
        "(least recently used dropped first; a list larger than this is still used, and kept alone)",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    worker_name: str | None = None
    batch_max_wait_ms: float = Field(
        default=50.0, ge=0, le=10_000,
        description="longest a worker holds a claimed job while more compatible jobs keep arriving",
    )
    max_batch_size: int | None = Field(default=None, ge=1, le=1024, description="cap on every plugin's max_batch_size")
    model_memory_budget_bytes: int | None = Field(
        default=None, ge=0,
        description="bytes of loaded models one worker process keeps (least recently used evicted first); "
        "default: 80% of the GPU's memory, or half the machine's RAM on CPU",
    )
    preload_plugins: str = Field(default="", description="comma-separated plugin ids whose default models a worker loads at start")
    worker_report_s: float = Field(default=5.0, gt=0, description="how often a worker process reports its state")
    worker_lost_after_s: float = Field(default=30.0, gt=0, description="a worker silent this long is shown as lost")
    progress_flush_s: float = Field(default=0.5, gt=0, description="how often running jobs' progress is written")
    metrics_token: str | None = Field(
        default=None, description="bearer token /metrics requires; unset: /metrics answers loopback addresses only"
    )

    @field_validator("database_url", "redis_url", "broker_url", "secret_key", "worker_name", "s3_bucket", "metrics_token",
                     "s3_endpoint_url", "s3_region", "email_host", "email_user", "email_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_usable(cls, value: str | None) -> str | None:
        # Django's settings parse it at start-up; a URL of an unknown kind failed there with a traceback.
        if value is not None:
            import dj_database_url

            try:
                dj_database_url.parse(value)
            except ValueError:
                raise ValueError(f"{_scheme_of(value)} is not a database Atelier can use; use "
                                 "postgres://user:password@host:5432/name or sqlite:////absolute/path.sqlite3") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, value: str | None) -> str | None:
        # It is the broker, the cache and the finish notices: a URL of another kind started, then failed
        # every publish and every rate-limited request.
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
                raise ValueError(f"{_scheme_of(value)} is not a Redis URL; use redis://host:6379/0 "
                                 "(rediss:// with TLS, unix:///path/to/redis.sock)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url_is_a_transport(cls, value: str | None) -> str | None:
        if value is not None:
            from kombu.transport import TRANSPORT_ALIASES

            transport = urlsplit(value).scheme.partition("+")[0]  # sqla+postgresql://: kombu's sqla transport
            if transport not in TRANSPORT_ALIASES and transport != "atelierfs":
                raise ValueError(f"{_scheme_of(value)} is not a broker Celery knows; use redis://host:6379/0 "
                                 "(or leave it unset: REDIS_URL's broker)")
        return value

    @field_validator("database_statement_timeout_s")
    @classmethod
    def _statement_timeout_is_at_least_a_millisecond(cls, value: float) -> float:
        # PostgreSQL counts it in whole milliseconds, and 0 means no limit: 0.0004 s would have turned it off.
        if 0 < value < 0.001:
            raise ValueError(f"{value:g} s is under PostgreSQL's 1 ms; use 0 for no limit, or at least 0.001")
        return value

    @field_validator("device")
    @classmethod
    def _device_is_torchs(cls, value: str) -> str:
        # Accepted before, a device torch does not know let the worker start and fail every job at its load.
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value):
            raise ValueError(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N (N: the GPU's index)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_an_address(cls, value: str) -> str:
        # Without its scheme it was dropped from the trusted origins silently, and webhook links were relative.
        if value.strip() and not _is_origin_like(value.strip()):
            raise ValueError(f"{value!r} is not an address; use https://atelier.example.com")
        return value.strip()

    @field_validator("csrf_trusted_origins")
    @classmethod
    def _origins_have_schemes(cls, value: str) -> str:
        # Django compares origins with their scheme: one without never matched, and the forms got 403.
        for origin in (part.strip() for part in value.split(",")):
            if origin and not _is_origin_like(origin):
                raise ValueError(f"{origin!r} is not an origin; use https://atelier.example.com")
        return value

    @field_validator("webhooks_retry_schedule_s")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        _retry_schedule(value)
        return value

    @field_validator("plugin_limits")
    @classmethod
    def _plugin_limits_are_caps(cls, value: str) -> str:
        parse_plugin_limits(value)
        return value

    @model_validator(mode="after")
    def _production_never_debugs(self) -> "AtelierConfig":
        # Debug pages show settings and tracebacks to whoever causes an error.
        if self.production and self.debug:
            raise ValueError("ATELIER_DEBUG must be false when ATELIER_PRODUCTION is true")
        return self

    @model_validator(mode="after")
    def _silences_outlast_two_signs_of_life(self) -> "AtelierConfig":
        """A worker or a job counted lost after a silence shorter than two of its own reports would look
        dead between two of them: shown ``lost`` while ready, its running jobs queued again by the sweeper."""
        for beat, silence in (("worker_report_s", "worker_lost_after_s"), ("job_heartbeat_s", "job_stale_after_s")):
            if getattr(self, silence) < 2 * getattr(self, beat):
                raise ValueError(f"ATELIER_{silence.upper()} ({getattr(self, silence):g} s) must be at least twice "
                                 f"ATELIER_{beat.upper()} ({getattr(self, beat):g} s)")
        return self

    # --- derived values ----------------------------------------------------------------------
    @property
    def trusted_origins(self) -> list[str]:
        """Origins whose form posts the dashboard accepts: ATELIER_PUBLIC_URL's and ATELIER_CSRF_TRUSTED_ORIGINS."""
        origins = [origin.strip() for origin in self.csrf_trusted_origins.split(",") if origin.strip()]
        public = urlsplit(self.public_url)
        if public.scheme in ("http", "https") and public.netloc:
            origins.insert(0, f"{public.scheme}://{public.netloc}")
        return list(dict.fromkeys(origins))

    @property
    def webhooks_retry_delays_s(self) -> tuple[float, ...]:
        return _retry_schedule(self.webhooks_retry_schedule_s)

    @property
    def resolved_models_root(self) -> Path:
        return (self.models_root or self.data_dir / "models").resolve()

    @property
    def resolved_image_features_dir(self) -> Path:
        """ATELIER_EVALUATION_IMAGE_FEATURES, relative to the models root unless absolute (default: the demo's)."""
        chosen = self.evaluation_image_features or Path("demo/image-features")
        return (chosen if chosen.is_absolute() else self.resolved_models_root / chosen).resolve()

    @property
    def resolved_media_root(self) -> Path:
        return (self.media_root or self.data_dir / "media").resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'atelier.sqlite3').resolve()}"

    @property
    def database_statement_timeout_ms(self) -> int:
        """``ATELIER_DATABASE_STATEMENT_TIMEOUT_S`` as PostgreSQL's ``statement_timeout`` (0: no limit)."""
        return round(self.database_statement_timeout_s * 1000)

    @property
    def resolved_broker_url(self) -> str:
        """Explicit BROKER_URL, else REDIS_URL, else the embedded file-system broker."""
        return self.broker_url or self.redis_url or "atelierfs://localhost//"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def uses_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("atelierfs://")

    def resolved_secret_key(self) -> str:
        """SECRET_KEY from the environment; outside production, one generated and kept in DATA_DIR."""
        if self.secret_key:
            return self.secret_key
        if self.production:
            raise ConfigurationError(
                "SECRET_KEY is not set. Set SECRET_KEY to a long random string "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
            )
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        return key_file.read_text().strip()


def _scheme_of(url: str) -> str:
    """What a URL's kind reads as, for a message: never the URL itself, which may hold a password."""
    scheme = urlsplit(url).scheme
    return f"a URL of scheme {scheme!r}" if scheme else "a URL without a scheme (such as postgres://)"


def _is_origin_like(address: str) -> bool:
    parts = urlsplit(address)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _retry_schedule(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("use comma-separated seconds, e.g. 5,30,120") from None
    if any(not 0 <= delay <= 86_400 for delay in delays) or len(delays) > 20:  # "nan" fails this too
        raise ValueError("use at most 20 delays, each 0 to 86400 seconds")
    return delays


_LIMIT_PATH = re.compile(r"^(input|params)(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)+$")


def parse_plugin_limits(text: str) -> dict[str, dict[str, float]]:
    """``ATELIER_PLUGIN_LIMITS``: ``{"plugin id": {"input.path": max, "input.a*input.b": max}}``.

    A path names a field of the job's input or params; ``[]`` after a name means each item of that
    list; ``*`` between paths multiplies the values (image width times height).
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError('use a JSON object such as {"image": {"input.steps": 30}}') from None
    if not isinstance(data, dict) or not all(isinstance(caps, dict) for caps in data.values()):
        raise ValueError('use a JSON object of objects, such as {"image": {"input.steps": 30}}')
    parsed: dict[str, dict[str, float]] = {}
    for plugin_id, caps in data.items():
        for path, cap in caps.items():
            if not all(_LIMIT_PATH.match(part) for part in path.split("*")):
                raise ValueError(f"{plugin_id}: {path!r} is not a field path such as input.prompt or input.messages[].content")
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 <= cap < 1e15:
                raise ValueError(f"{plugin_id}: the cap of {path} must be a number of at least 0")
            parsed.setdefault(plugin_id, {})[path] = float(cap)
    return parsed


def _variable(location: object) -> str:
    """The environment variable behind an error's location: a field's name, or the alias it was read by
    (``DATABASE_URL``, not ``ATELIER_DATABASE_URL``, which the operator did not set)."""
    name = str(location)
    return name if name.isupper() else f"ATELIER_{name.upper()}"


@lru_cache(maxsize=1)
def get_config() -> AtelierConfig:
    try:
        return AtelierConfig()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(err['loc'][0]) + ': ' if err['loc'] else ''}{err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"Bad configuration in the environment: {problems}") from None
