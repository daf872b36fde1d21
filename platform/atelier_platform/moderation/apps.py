from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "atelier_platform.moderation"
    label = "moderation"
    verbose_name = "Safety and review"

    def ready(self) -> None:
        from atelier_plugins.safety.compiled_lists import set_budget_bytes

        from atelier_platform.config import get_config

        set_budget_bytes(get_config().safety_list_cache_bytes)
