"""Projects, API keys and the create_api_key command."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.accounts.services import authenticate_api_key, issue_api_key, revoke_api_key
from atelier_platform.catalog.models import ProjectPlugin

REPO = Path(__file__).resolve().parents[2]
KEY_PATTERN = re.compile(r"^atl_[0-9a-f]{12}_[A-Za-z0-9_-]{40,}$")


def run_command(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
class TestCreateApiKeyCommand:
    def test_prints_only_the_key(self, reverse_plugin):
        out, err = run_command("--project", "acme", "--create-project")
        assert KEY_PATTERN.match(out.strip()), out
        assert out.count("\n") == 1
        assert "acme" in err
        project = Project.objects.get(slug="acme")
        # a new project may use what is installed
        assert set(ProjectPlugin.objects.filter(project=project).values_list("plugin_id", flat=True)) == {
            "reverse_text", "gpu_reverse",
        }
        assert authenticate_api_key(out.strip()).project == project

    def test_stores_only_a_hash(self, db):
        out, _ = run_command("--project", "acme", "--create-project")
        raw = out.strip()
        key = ApiKey.objects.get()
        secret = raw.split("_", 2)[2]
        stored = " ".join(str(v) for v in ApiKey.objects.values().get().values())
        assert secret not in stored
        assert raw.startswith(f"atl_{key.prefix}_")

    def test_scopes(self, db):
        out, _ = run_command("--project", "acme", "--create-project", "--scopes", "jobs:read", "reviews:write")
        assert authenticate_api_key(out.strip()).scopes == ["jobs:read", "reviews:write"]

    @pytest.mark.parametrize("scopes", ["", ",", " "])
    def test_an_empty_list_of_scopes_is_refused_and_nothing_is_created(self, db, scopes):
        """``--scopes ""`` split into no scope at all, which was read as "not said": a key with jobs:read jobs:write."""
        with pytest.raises(CommandError, match="at least one scope"):
            run_command("--project", "acme", "--create-project", "--scopes", scopes)
        assert not ApiKey.objects.exists() and not Project.objects.exists()

    def test_unknown_project_needs_create_flag(self, db):
        with pytest.raises(CommandError, match="--create-project"):
            run_command("--project", "ghost")
        assert not Project.objects.exists()

    def test_unknown_scope_is_refused_and_nothing_is_created(self, db):
        with pytest.raises(CommandError, match="Unknown scope"):
            run_command("--project", "acme", "--create-project", "--scopes", "everything")
        assert not Project.objects.exists() and not ApiKey.objects.exists()

    def test_bad_slug_is_refused(self, db):
        with pytest.raises(CommandError):
            run_command("--project", "Not A Slug!", "--create-project")

    def test_a_name_too_long_is_refused_clearly_and_nothing_is_created(self, db):
        # PostgreSQL refuses a 101-character name with a DataError traceback; SQLite stored it whole
        # (and the API refuses it: the name is at most 100 characters wherever a key is made).
        with pytest.raises(CommandError, match="--name"):
            run_command("--project", "acme", "--create-project", "--name", "n" * 101)
        assert not Project.objects.exists() and not ApiKey.objects.exists()

    def test_expires_in_days_gives_the_key_an_expiry_and_prints_only_the_key(self, db):
        before = timezone.now()
        out, err = run_command("--project", "acme", "--create-project", "--expires-in-days", "30")
        assert KEY_PATTERN.match(out.strip()) and out.count("\n") == 1
        key = authenticate_api_key(out.strip())
        assert key is not None
        assert before + timedelta(days=30) <= key.expires_at <= timezone.now() + timedelta(days=30)
        assert "expires 20" in err  # said on stderr, never on stdout

    def test_expires_at_gives_the_key_that_expiry(self, db):
        when = (timezone.now() + timedelta(days=10)).replace(microsecond=0)
        out, _ = run_command("--project", "acme", "--create-project",
                             "--expires-at", when.isoformat().replace("+00:00", "Z"))
        assert ApiKey.objects.get().expires_at == when
        assert authenticate_api_key(out.strip()) is not None

    def test_without_an_expiry_option_the_key_does_not_expire(self, db):
        run_command("--project", "acme", "--create-project")
        assert ApiKey.objects.get().expires_at is None

    @pytest.mark.parametrize("args, message", [
        (["--expires-in-days", "0"], "--expires-in-days: between 1 and 3650"),
        (["--expires-in-days", "-3"], "--expires-in-days: between 1 and 3650"),
        (["--expires-in-days", "3651"], "--expires-in-days: between 1 and 3650"),
        (["--expires-in-days", "soon"], "--expires-in-days: a whole number"),
        (["--expires-in-days", "1.5"], "--expires-in-days: a whole number"),
        (["--expires-at", "tomorrow"], "--expires-at: an ISO 8601 time with its offset"),
        (["--expires-at", "2030-01-01T00:00:00"], "--expires-at: an ISO 8601 time with its offset"),  # no offset
        (["--expires-at", "2030-02-30T00:00:00Z"], "--expires-at: an ISO 8601 time"),  # no such day
        (["--expires-at", "2020-01-01T00:00:00Z"], "--expires-at: The expiry .* has already passed"),
        (["--expires-at", "2999-01-01T00:00:00Z"], "--expires-at: The expiry .* more than 3650 days away"),
        (["--expires-in-days", "3", "--expires-at", "2030-01-01T00:00:00Z"], "not allowed with argument"),
    ])
    def test_a_bad_expiry_is_refused_clearly_and_nothing_is_created(self, db, args, message):
        out = io.StringIO()
        with pytest.raises(CommandError, match=message):
            call_command("create_api_key", "--project", "acme", "--create-project", *args,
                         stdout=out, stderr=io.StringIO())
        assert out.getvalue() == ""
        assert not Project.objects.exists() and not ApiKey.objects.exists()

    def test_as_a_script_sees_it(self, tmp_path):
        """Subprocess: stdout carries the key and nothing else, whatever Django logs."""
        env = {"PATH": "/usr/bin:/bin", "ATELIER_DATA_DIR": str(tmp_path)}
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], check=True, env=env, cwd=REPO, capture_output=True)
        result = subprocess.run(
            [*manage, "create_api_key", "--project", "cli", "--create-project"],
            env=env, cwd=REPO, capture_output=True, text=True, check=True,
        )
        assert KEY_PATTERN.match(result.stdout.strip()) and result.stdout.count("\n") == 1


@pytest.mark.django_db
class TestApiKeys:
    def test_revoked_key_no_longer_authenticates(self, project):
        issued = issue_api_key(project)
        assert authenticate_api_key(issued.raw) is not None
        revoke_api_key(issued.api_key)
        assert authenticate_api_key(issued.raw) is None

    def test_last_used_is_recorded(self, project):
        issued = issue_api_key(project)
        assert issued.api_key.last_used_at is None
        authenticate_api_key(issued.raw)
        issued.api_key.refresh_from_db()
        assert issued.api_key.last_used_at is not None

    def test_two_keys_never_share_a_prefix_or_secret(self, project):
        first, second = issue_api_key(project), issue_api_key(project)
        assert first.api_key.prefix != second.api_key.prefix and first.raw != second.raw


def test_import_platform_is_the_standard_library():
    """Our folder is called platform/; `import platform` must still be Python's module."""
    code = "import platform, sys; print(platform.__file__); print(platform.python_version())"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    path, version = result.stdout.split()
    assert not path.startswith(str(REPO)) and version.startswith("3.11")
