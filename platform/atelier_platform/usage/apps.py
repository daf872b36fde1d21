from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "atelier_platform.usage"
    label = "usage"
    verbose_name = "Usage, quotas and limits"
