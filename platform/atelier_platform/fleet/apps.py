from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "atelier_platform.fleet"
    label = "fleet"
    verbose_name = "Worker fleet"
    default_auto_field = "django.db.models.BigAutoField"
