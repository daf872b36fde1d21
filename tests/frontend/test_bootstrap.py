"""``manage.py bootstrap`` tells where to sign in to the dashboard."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from atelier_platform.config import get_config

pytestmark = pytest.mark.django_db


def test_bootstrap_prints_the_dashboard_and_its_sign_in_address(monkeypatch, tmp_path, client):
    printed = _bootstrap(monkeypatch, tmp_path, "a long demo password", url="http://127.0.0.1:8000/")
    assert "the dashboard is at http://127.0.0.1:8000/\n" in printed
    assert "Sign in at http://127.0.0.1:8000/login/ as 'admin', password 'a long demo password'" in printed
    assert "Log in at http://127.0.0.1:8000/admin/" not in printed
    # and that address is the dashboard's sign-in, where the printed account gets in
    assert client.get("/login/").status_code == 200
    assert client.post("/login/", {"username": "admin", "password": "a long demo password"}).status_code == 302
    assert client.get("/jobs/").status_code == 200


def _bootstrap(monkeypatch, data_dir, password=None, url="http://127.0.0.1:8000") -> str:
    monkeypatch.setenv("ATELIER_DATA_DIR", str(data_dir))
    if password:
        monkeypatch.setenv("ATELIER_ADMIN_PASSWORD", password)
    else:
        monkeypatch.delenv("ATELIER_ADMIN_PASSWORD", raising=False)
    get_config.cache_clear()
    try:
        out = io.StringIO()
        call_command("bootstrap", "--url", url, stdout=out)
    finally:
        get_config.cache_clear()
    return out.getvalue()


def test_bootstrap_never_prints_a_password_that_is_not_the_accounts(monkeypatch, tmp_path, client):
    """The password file belongs to the data folder, the account to the database. `make run` on PostgreSQL
    (DATABASE_URL set) and then again on the embedded SQLite, one data folder for both, printed the other
    database's admin password, which the dashboard refused."""
    assert "password 'first database'" in _bootstrap(monkeypatch, tmp_path, "first database")
    assert "password 'first database'" in _bootstrap(monkeypatch, tmp_path)  # a second run: the same account

    # what a run on another database leaves in the shared data folder: that database's new admin password
    (tmp_path / "admin_password").write_text("other database")
    printed = _bootstrap(monkeypatch, tmp_path)
    assert "other database" not in printed
    assert "python manage.py changepassword admin" in printed
    assert client.post("/login/", {"username": "admin", "password": "first database"}).status_code == 302

    # nor one changed since it was generated
    (tmp_path / "admin_password").write_text("first database")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed in the admin")
    admin.save()
    assert "first database" not in _bootstrap(monkeypatch, tmp_path)
