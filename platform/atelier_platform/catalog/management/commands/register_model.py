"""``python manage.py register_model --plugin ID --name VERSION --dir RELATIVE [--project PROJECT] [--pin PROJECT ...]``"""

import re

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ModelVersion, ProjectPlugin, reserved_version_name_problem
from atelier_platform.catalog.models_dir import ModelDirError, resolve_model_dir
from atelier_platform.catalog.registry import get_registry
from atelier_platform.config import get_config

VERSION_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Command(BaseCommand):
    help = "Register a model directory as a named version of a plugin's model, and optionally pin projects to it."

    def add_arguments(self, parser):
        parser.add_argument("--plugin", required=True)
        parser.add_argument("--name", required=True, help="the version name, such as 2026-11-28 or v2")
        parser.add_argument("--dir", required=True, help="directory relative to the models root")
        parser.add_argument("--description", default="")
        parser.add_argument("--project", default=None, metavar="PROJECT",
                            help="the slug of the one project that may see and pin this version (such as a fine-tune "
                                 "made for it); without it the version is shared by every project")
        parser.add_argument("--pin", nargs="*", default=[], metavar="PROJECT", help="project slugs to pin to this version")

    @transaction.atomic
    def handle(self, *args, **options):
        plugin_id, version = options["plugin"], options["name"]
        if not VERSION_NAME.fullmatch(version):
            raise CommandError(f"Version name {version!r}: 1 to 64 letters, digits, '.', '_' or '-' (such as v2 or 2026-11-28).")
        reserved = reserved_version_name_problem(version)
        if reserved:
            raise CommandError(f"Version name {reserved}")
        if get_registry().get(plugin_id) is None:
            raise CommandError(f"No plugin {plugin_id!r} is installed (see `manage.py plugins`).")
        try:
            path = resolve_model_dir(options["dir"])
        except ModelDirError as error:
            raise CommandError(str(error)) from None
        # Stored relative to the models root, however it was typed: a host that mounts the root elsewhere
        # finds it too.
        model_dir = path.relative_to(get_config().resolved_models_root).as_posix()
        owner = None
        if options["project"] is not None:
            owner = Project.objects.filter(slug=options["project"]).first()
            if owner is None:
                raise CommandError(f"No project {options['project']!r}.")
        pinned = []
        for slug in options["pin"]:
            project = Project.objects.filter(slug=slug).first()
            if project is None:
                raise CommandError(f"No project {slug!r}.")
            pinned.append(project)
        # One name, one directory and one owner: run again, the command pins; it never moves a name elsewhere.
        model, created = ModelVersion.objects.get_or_create(
            plugin_id=plugin_id, version=version,
            defaults={"model_dir": model_dir, "description": options["description"], "project": owner},
        )
        if not created and model.model_dir != model_dir:
            raise CommandError(f"{plugin_id} {version} already names {model.model_dir}; choose a new version name.")
        if not created and model.project_id != (owner.pk if owner else None):
            if model.project_id is None:
                raise CommandError(f"{plugin_id} {version} is already registered, shared by every project (a shared "
                                   f"version is never made private); choose a new version name.")
            raise CommandError(f"{plugin_id} {version} is already registered, private to project "
                               f"{model.project.slug!r}: give --project {model.project.slug} to pin it, or choose a new "
                               f"version name.")
        disabled = []
        for project in pinned:
            slug = project.slug
            if not model.is_available_to(project.pk):
                # another tenant's fine-tune: nothing of this run is kept (the version included)
                raise CommandError(f"{plugin_id} {version} is private to project {model.project.slug!r}: "
                                   f"it cannot be pinned for {slug!r}.")
            # A pin chooses the model, never whether the project may use the plugin.
            setting, _ = ProjectPlugin.objects.update_or_create(
                project=project, plugin_id=plugin_id, defaults={"model_version": model},
                create_defaults={"model_version": model, "enabled": False})
            if not setting.enabled:
                disabled.append(slug)
        self.stdout.write(f"{plugin_id} {version} -> {path}" + (f" (private to {owner.slug})" if owner else "")
                          + (f"; pinned for {', '.join(options['pin'])}" if options["pin"] else ""))
        if disabled:
            self.stdout.write(f"{plugin_id} is not enabled for {', '.join(disabled)}: enable it in the project's settings.")
