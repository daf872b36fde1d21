"""Routes under /api/v1/exports/ (included by atelier_platform.api.urls)."""

from rest_framework.routers import DefaultRouter

from atelier_platform.exports.views import ExportViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("exports", ExportViewSet, basename="export")

urlpatterns = router.urls
