from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "atelier_platform.api"
    label = "api"
    verbose_name = "REST API"

    def ready(self) -> None:
        from atelier_platform.api import schema  # noqa: F401 - registers the OpenAPI auth extension
