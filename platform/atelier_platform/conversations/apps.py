from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "atelier_platform.conversations"
    label = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        from atelier_platform.conversations import receivers  # noqa: F401 - connects signal receivers
