from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "atelier_platform.api"
    label = "api"
    verbose_name = "REST API"
