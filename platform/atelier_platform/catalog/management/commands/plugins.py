"""``python manage.py plugins``: installed plugins, their state, and why a broken one is broken."""

from django.core.management.base import BaseCommand

from atelier_platform.catalog.registry import get_registry


class Command(BaseCommand):
    help = "List the plugins found in the atelier.plugins entry-point group and ATELIER_EXTRA_PLUGINS."

    def handle(self, *args, **options):
        self._model_plugins()
        self._safety_checks()

    def _safety_checks(self):
        from atelier_sdk.safety_registry import discover_safety_checks

        from atelier_platform.config import get_config

        records = discover_safety_checks(extra_paths=get_config().extra_safety_checks.split(","))
        self.stdout.write("")
        if not records:
            self.stdout.write("No safety checks found: inputs and outputs are not screened.")
            return
        self.stdout.write(f"{'SAFETY CHECK':<24} {'STATE':<7} {'TARGETS':<13} SOURCE / REASON")
        for record in records:
            if record.check is not None:
                m = record.check.manifest
                targets = ",".join(sorted(t.value for t in m.targets))
                self.stdout.write(f"{m.id:<24} {'ok':<7} {targets:<13} {record.source}")
            else:
                self.stdout.write(self.style.ERROR(f"{record.name:<24} {'broken':<7} {'-':<13} {record.error}"))

    def _model_plugins(self):
        records = get_registry().records()
        if not records:
            self.stdout.write("No plugins found. Install one (pip) or set ATELIER_EXTRA_PLUGINS=module:Class.")
            return
        header = f"{'ID':<24} {'STATE':<7} {'VERSION':<10} {'RESOURCE':<8} {'BATCH':>5}  SOURCE / REASON"
        self.stdout.write(header)
        for record in records:
            if record.plugin is not None:
                m = record.plugin.manifest
                self.stdout.write(
                    f"{m.id:<24} {'ok':<7} {m.version:<10} {m.resource_class.value:<8} {m.max_batch_size:>5}  {record.source}"
                )
            else:
                self.stdout.write(
                    self.style.ERROR(f"{record.name:<24} {'broken':<7} {'-':<10} {'-':<8} {'-':>5}  {record.error}")
                )
