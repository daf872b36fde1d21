from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "atelier_platform.exports"
    label = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from atelier_platform.exports import receivers  # noqa: F401 - an export's file goes with its row
