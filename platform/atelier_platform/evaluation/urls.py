"""Routes under /api/v1/evaluation/ (included by atelier_platform.api.urls)."""

from rest_framework.routers import DefaultRouter

from atelier_platform.evaluation.views import EvaluationRunViewSet, EvaluationScheduleViewSet, ReferenceSetViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("evaluation/reference-sets", ReferenceSetViewSet, basename="evaluation-reference-set")
router.register("evaluation/runs", EvaluationRunViewSet, basename="evaluation-run")
router.register("evaluation/schedules", EvaluationScheduleViewSet, basename="evaluation-schedule")

urlpatterns = router.urls
