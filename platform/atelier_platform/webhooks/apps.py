from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "atelier_platform.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from atelier_platform.webhooks import receivers  # noqa: F401 - connects the event signals
