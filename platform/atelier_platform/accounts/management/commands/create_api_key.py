"""``python manage.py create_api_key --project SLUG [--create-project] [--scopes ...]``

Prints only the new key on stdout, so that scripts can capture it; everything else goes to stderr.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.accounts.roles import Capability, DEFAULT_API_KEY_SCOPES
from atelier_platform.accounts.services import create_project, issue_api_key


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

    def handle(self, *args, **options):
        project = options["project"]
        scopes = [scope for item in options["scopes"] for scope in item.replace(",", " ").split()]
        longest_name = ApiKey._meta.get_field("name").max_length
        if len(options["name"]) > longest_name:  # PostgreSQL would refuse it with a traceback
            raise CommandError(f"--name: at most {longest_name} characters (got {len(options['name'])}).")
        created = False
        try:
            with transaction.atomic():
                found = Project.objects.filter(slug=project).first()
                if found is None:
                    if not options["create_project"]:
                        raise CommandError(f"No project {project!r}. Pass --create-project to create it.")
                    found, created = create_project(project), True
                issued = issue_api_key(found, scopes=scopes, name=options["name"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if created:  # only now: a refused key (unknown scope) creates no project either
            self.stderr.write(f"Created project {project!r}.")
        self.stderr.write(f"Key {issued.api_key.prefix} for project {found.slug!r}, scopes: {' '.join(issued.api_key.scopes)}")
        self.stdout.write(issued.raw)
