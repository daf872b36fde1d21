"""A bad value in the environment stops start-up with a message naming the variable to fix, not a traceback
from deep inside Django, Celery or the sweeper later."""

from __future__ import annotations


import pytest

from atelier_platform.config import ConfigurationError, get_config


@pytest.mark.parametrize("name,value", [
    ("DATABASE_URL", "postgress://atelier@db:5432/atelier"),  # dj_database_url's UnknownSchemeError in settings
    ("DATABASE_URL", "db.example.com:5432/atelier"),
    ("REDIS_URL", "localhost:6379"),  # accepted: every publish failed, the cache raised on every request
    ("BROKER_URL", "redis//localhost:6379/0"),
])
def test_a_service_url_that_cannot_work_names_its_variable(environment, name, value):
    environment(**{name: value})
    with pytest.raises(ConfigurationError, match=rf"(^|\W){name}: .*scheme") as error:
        get_config()
    assert f"ATELIER_{name}" not in str(error.value)  # the variable the operator set, not an alias of it


@pytest.mark.parametrize("name,value", [
    ("DATABASE_URL", "postgres://atelier:secret@db:5432/atelier"),
    ("DATABASE_URL", "sqlite:////srv/atelier/atelier.sqlite3"),
    ("REDIS_URL", "rediss://:secret@redis.example.com:6380/0"),
    ("BROKER_URL", "amqp://guest@rabbit:5672//"),
])
def test_service_urls_of_known_kinds_are_taken(environment, name, value):
    environment(**{name: value})
    assert getattr(get_config(), name.lower()) == value


def test_a_bad_url_is_not_echoed_with_its_password(environment):
    environment(DATABASE_URL="postgress://atelier:hunter2@db:5432/atelier")
    with pytest.raises(ConfigurationError) as error:
        get_config()
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize("variable", ["ATELIER_JOB_STALE_AFTER_S", "ATELIER_JOB_REQUEUE_AFTER_S",
                                      "ATELIER_SWEEP_INTERVAL_S", "ATELIER_RETRY_BACKOFF_MAX_S",
                                      "ATELIER_RETENTION_RUN_BUDGET_S"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_durations_are_finite(environment, variable, value):
    """``inf`` passed ``gt=0``: the sweeper then failed at every run (``timedelta(seconds=inf)``:
    OverflowError) and running jobs of dead workers were never queued again."""
    environment(**{variable: value})
    with pytest.raises(ConfigurationError, match=variable):
        get_config()


@pytest.mark.parametrize("value", ["0", "-5", "601", "3600", "two minutes", ""])
def test_a_retention_run_budget_of_no_time_or_over_ten_minutes_names_its_variable(environment, value):
    """A run of the content retention must erase something (more than 0 s) and let go of its platform worker soon
    (the sweeper's ticks expire), well before the broker's visibility timeout would deliver it a second time."""
    environment(ATELIER_RETENTION_RUN_BUDGET_S=value)
    with pytest.raises(ConfigurationError, match="ATELIER_RETENTION_RUN_BUDGET_S"):
        get_config()


def test_the_retention_run_budget_is_a_minute_unless_set(environment):
    assert get_config().retention_run_budget_s == 60
    environment(ATELIER_RETENTION_RUN_BUDGET_S="30.5")
    assert get_config().retention_run_budget_s == 30.5


@pytest.mark.parametrize("value", ["gpu", "cuda0", "cuda:x", "CPU "])
def test_a_device_torch_does_not_know_names_its_variable(environment, value):
    """Accepted before: the worker started, then failed every job at its model's load."""
    environment(ATELIER_DEVICE=value)
    with pytest.raises(ConfigurationError, match="ATELIER_DEVICE"):
        get_config()


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:3"])
def test_the_documented_devices_are_taken(environment, value):
    environment(ATELIER_DEVICE=value)
    assert get_config().device == value


@pytest.mark.parametrize("name,value", [
    ("ATELIER_PUBLIC_URL", "atelier.example.com"),  # dropped silently: forms refused, webhook links relative
    ("ATELIER_CSRF_TRUSTED_ORIGINS", "https://ok.example.com,atelier.example.com"),  # never matched: 403 on forms
])
def test_an_address_without_its_scheme_names_its_variable(environment, name, value):
    environment(**{name: value})
    with pytest.raises(ConfigurationError, match=name):
        get_config()
