"""The dashboard and the moderation UI (templates, static assets and their views)."""
from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "atelier_frontend"
    label = "frontend"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        from atelier_frontend.i18n import compile_catalogues

        compile_catalogues()
