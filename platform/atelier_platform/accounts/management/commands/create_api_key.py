"""``python manage.py create_api_key --project SLUG [--create-project] [--scopes ...] [--expires-in-days N | --expires-at ISO]``

Prints only the new key on stdout, so that scripts can capture it; everything else goes to stderr.
"""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.accounts.roles import Capability, DEFAULT_API_KEY_SCOPES
from atelier_platform.accounts.services import MAX_KEY_LIFETIME, check_expiry, create_project, issue_api_key
from atelier_platform.instants import parse_instant


class Command(BaseCommand):
    help = "Create an API key for a project and print it (only it) on stdout."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--create-project", action="store_true", help="create the project if it does not exist")
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=list(DEFAULT_API_KEY_SCOPES),
            help=f"scopes (default: {' '.join(DEFAULT_API_KEY_SCOPES)}); any of: {' '.join(Capability.values)}",
        )
        parser.add_argument("--name", default="", help="a label shown in key lists")
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument(
            "--expires-in-days", metavar="N",
            help=f"the key stops working N days from now (1 to {MAX_KEY_LIFETIME.days}); default: it does not expire",
        )
        expiry.add_argument(
            "--expires-at", metavar="ISO",
            help="the key stops working then: an ISO 8601 time with its offset, e.g. 2027-01-31T18:00:00Z",
        )

    @staticmethod
    def _expiry(options):
        """The expiry asked for (aware, UTC) or None; a bad value is a CommandError naming the option."""
        days, at = options.get("expires_in_days"), options.get("expires_at")
        if days is not None:
            try:
                number = int(str(days).strip())
            except ValueError:
                raise CommandError(f"--expires-in-days: a whole number of days (got {days!r}).") from None
            if not 1 <= number <= MAX_KEY_LIFETIME.days:
                raise CommandError(f"--expires-in-days: between 1 and {MAX_KEY_LIFETIME.days} (got {number}).")
            return timezone.now() + timedelta(days=number)
        if at is None:
            return None
        when = parse_instant(str(at).strip())
        if when is None:
            raise CommandError(f"--expires-at: an ISO 8601 time with its offset, e.g. 2027-01-31T18:00:00Z (got {at!r}).")
        try:
            return check_expiry(when)
        except ValidationError as exc:
            raise CommandError(f"--expires-at: {'; '.join(exc.messages)}") from None

    def handle(self, *args, **options):
        project = options["project"]
        scopes = [scope for item in options["scopes"] for scope in item.replace(",", " ").split()]
        longest_name = ApiKey._meta.get_field("name").max_length
        if len(options["name"]) > longest_name:  # PostgreSQL would refuse it with a traceback
            raise CommandError(f"--name: at most {longest_name} characters (got {len(options['name'])}).")
        expires_at = self._expiry(options)
        created = False
        try:
            with transaction.atomic():
                found = Project.objects.filter(slug=project).first()
                if found is None:
                    if not options["create_project"]:
                        raise CommandError(f"No project {project!r}. Pass --create-project to create it.")
                    found, created = create_project(project), True
                issued = issue_api_key(found, scopes=scopes, name=options["name"], expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if created:  # only now: a refused key (unknown scope) creates no project either
            self.stderr.write(f"Created project {project!r}.")
        expiry = issued.api_key.expires_at
        until = f", expires {expiry.replace(microsecond=0).isoformat().replace('+00:00', 'Z')}" if expiry else ""
        self.stderr.write(f"Key {issued.api_key.prefix} for project {found.slug!r}, scopes: "
                          f"{' '.join(issued.api_key.scopes)}{until}")
        self.stdout.write(issued.raw)
