from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "atelier_platform.moderation"
    label = "moderation"
    verbose_name = "Safety and review"
