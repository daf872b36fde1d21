from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "atelier_platform.evaluation"
    label = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        from atelier_platform.evaluation import receivers  # noqa: F401 - connects the job-finish receivers
