from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "atelier_platform.jobs"
    label = "jobs"
    verbose_name = "Jobs and outputs"
