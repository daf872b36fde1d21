from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "atelier_platform.knowledge"
    label = "knowledge"
    verbose_name = "Knowledge bases"
