from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "atelier_platform.jobs"
    label = "jobs"
    verbose_name = "Jobs and outputs"

    def ready(self) -> None:
        from atelier_platform.jobs import receivers  # noqa: F401 - connects them
