"""``python manage.py plugins``: installed plugins, their state, and why a broken one is broken."""

from django.core.management.base import BaseCommand

from atelier_platform.catalog.registry import get_registry


class Command(BaseCommand):
    help = "List the plugins found in the atelier.plugins entry-point group and ATELIER_EXTRA_PLUGINS."

    def handle(self, *args, **options):
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
