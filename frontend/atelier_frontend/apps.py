from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "atelier_frontend"
    label = "frontend"
    verbose_name = "Dashboard"
