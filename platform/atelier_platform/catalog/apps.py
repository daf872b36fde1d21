from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "atelier_platform.catalog"
    label = "catalog"
    verbose_name = "Plugins and model versions"
