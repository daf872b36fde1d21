"""``manage.py bootstrap`` tells where to sign in to the dashboard."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from atelier_platform.config import get_config

pytestmark = pytest.mark.django_db


def test_bootstrap_prints_the_dashboard_and_its_sign_in_address(monkeypatch, tmp_path, client):
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATELIER_ADMIN_PASSWORD", "a long demo password")
    get_config.cache_clear()
    try:
        out = io.StringIO()
        call_command("bootstrap", "--url", "http://127.0.0.1:8000/", stdout=out)
    finally:
        monkeypatch.undo()
        get_config.cache_clear()
    printed = out.getvalue()
    assert "the dashboard is at http://127.0.0.1:8000/\n" in printed
    assert "Sign in at http://127.0.0.1:8000/login/ as 'admin', password 'a long demo password'" in printed
    assert "Log in at http://127.0.0.1:8000/admin/" not in printed
    # and that address is the dashboard's sign-in, where the printed account gets in
    assert client.get("/login/").status_code == 200
    assert client.post("/login/", {"username": "admin", "password": "a long demo password"}).status_code == 302
    assert client.get("/jobs/").status_code == 200
