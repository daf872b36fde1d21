from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Registered so that the worker-side commands (demo model preparation) are manage.py commands."""

    name = "atelier_workers"
    label = "workers"
    verbose_name = "Worker runtime"
