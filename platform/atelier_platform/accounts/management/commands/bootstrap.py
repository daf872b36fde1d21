"""``python manage.py bootstrap``: the demo project and an admin account for ``make run``.

Idempotent: a second run keeps existing accounts and passwords. The admin password is taken
from ATELIER_ADMIN_PASSWORD, else generated once and kept in DATA_DIR/admin_password; it is
printed only while it is still the account's.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from atelier_platform.accounts.models import Project
from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import add_member, create_project
from atelier_platform.catalog.services import enable_installed_plugins
from atelier_platform.config import get_config

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo project and an admin account if missing; print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")

    @transaction.atomic
    def handle(self, *args, username: str, url: str, **options):
        url = url.rstrip("/")
        password_file = get_config().data_dir / "admin_password"
        User = get_user_model()
        try:
            User.username_validator(username)
            if not username or len(username) > User._meta.get_field("username").max_length:
                raise ValidationError("give 1 to 150 characters")
        except ValidationError as error:
            raise CommandError(f"--username {username!r}: {' '.join(error.messages)}") from None
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("ATELIER_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            password_file.write_text(password)
            password_file.chmod(0o600)
        project = Project.objects.filter(slug=DEMO_SLUG).first() or create_project(DEMO_SLUG, "Demo project")
        enable_installed_plugins(project)
        add_member(project, user, Role.OWNER)
        # The file belongs to the data folder, the account to the database: after a run on another database
        # (DATABASE_URL set, then unset) or a password changed since, the file's password is not this account's.
        stored = password_file.read_text().strip() if password_file.exists() else ""
        if stored and user.check_password(stored):
            password = f"password {stored!r}"
        else:
            password = (f"with the password it was given (not the one in {password_file}; "
                        f"`python manage.py changepassword {username}` sets a new one)")
        self.stdout.write(
            "\n"
            f"  Atelier is starting: the dashboard is at {url}/\n"
            f"  Sign in at {url}/login/ as {username!r}, {password} (the same account opens {url}/admin/)\n"
            f"  API docs: {url}/api/v1/docs/   API key: python manage.py create_api_key --project {DEMO_SLUG}\n"
        )
