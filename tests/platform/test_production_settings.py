"""What ATELIER_PRODUCTION and the proxy settings give an operator: the real settings module, loaded in a
fresh process with the environment an operator sets (as the README's configuration table describes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, os, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "atelier_platform.settings"
    django.setup()
    from django.conf import settings
    out = {name: getattr(settings, name, None) for name in (
        "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS")}
    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth import get_user_model
    get_user_model().objects.create_user("alice", password="a-long-enough-passphrase-42")
    from django.test import Client
    # What a TLS-terminating proxy forwards: the public host, X-Forwarded-Proto; the browser's Origin.
    client = Client(enforce_csrf_checks=True, HTTP_HOST="atelier.example.com", HTTP_X_FORWARDED_PROTO="https")
    client.get("/login/")
    answer = client.post("/login/", {"username": "alice", "password": "a-long-enough-passphrase-42",
                                     "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
                         HTTP_ORIGIN="https://atelier.example.com", HTTP_REFERER="https://atelier.example.com/login/")
    out["login_status"] = answer.status_code
    session = answer.cookies.get("sessionid")
    out["session_cookie_secure"] = bool(session and session["secure"])
    print("PROBE" + json.dumps(out, default=str))
    """
)

PRODUCTION = {"ATELIER_PRODUCTION": "true", "SECRET_KEY": "x" * 60, "ATELIER_ALLOWED_HOSTS": "atelier.example.com",
              "ATELIER_PUBLIC_URL": "https://atelier.example.com"}


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ATELIER_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "SECRET_KEY")}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, "ATELIER_DATA_DIR": str(tmp_path / "data"), **env},
                          cwd=REPO, capture_output=True, text=True, timeout=180)


def probed(result: subprocess.CompletedProcess) -> dict:
    for line in result.stdout.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[len("PROBE"):])
    raise AssertionError(f"the settings did not load (rc {result.returncode}): {result.stderr[-2000:]}")


def test_behind_a_tls_proxy_an_owner_signs_in_and_the_session_cookie_is_secure(tmp_path):
    """Before: the sign-in answered 403 (CSRF: the browser's https Origin against an http request), and the
    production session cookie was sent over plain HTTP too."""
    settings = probed(load_settings(tmp_path, **PRODUCTION, ATELIER_TRUST_FORWARDED_PROTO="true"))
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://atelier.example.com"]  # from ATELIER_PUBLIC_URL
    assert settings["SESSION_COOKIE_SECURE"] is True and settings["CSRF_COOKIE_SECURE"] is True
    assert settings["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert settings["login_status"] == 302 and settings["session_cookie_secure"] is True


def test_outside_production_nothing_is_trusted_that_was_not_asked_for(tmp_path):
    settings = probed(load_settings(tmp_path, ATELIER_ALLOWED_HOSTS="atelier.example.com"))
    assert settings["SECURE_PROXY_SSL_HEADER"] is None and settings["CSRF_TRUSTED_ORIGINS"] == []
    assert settings["SESSION_COOKIE_SECURE"] is False


def test_production_refuses_to_start_with_debug_pages(tmp_path):
    """They show settings and tracebacks to whoever causes an error; production ran with them when asked."""
    result = load_settings(tmp_path, **PRODUCTION, ATELIER_DEBUG="true")
    assert result.returncode != 0
    assert "ATELIER_DEBUG must be false when ATELIER_PRODUCTION is true" in result.stderr


def test_a_production_stack_can_be_tried_over_plain_http_when_asked(tmp_path):
    settings = probed(load_settings(tmp_path, **PRODUCTION, ATELIER_SECURE_COOKIES="false"))
    assert settings["SESSION_COOKIE_SECURE"] is False and settings["CSRF_COOKIE_SECURE"] is False
