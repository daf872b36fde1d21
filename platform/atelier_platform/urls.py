from django.contrib import admin
from django.urls import include, path

from atelier_platform import health
from atelier_platform.fleet.metrics import metrics_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("atelier_platform.api.urls")),
    path("v1/", include("atelier_platform.openai_compat.urls")),  # OpenAI-compatible: GET /v1/models, ...
    path("admin/", admin.site.urls),
    path("", include("atelier_frontend.urls")),
]

handler400 = "atelier_platform.api.errors.json_bad_request"
handler404 = "atelier_platform.api.errors.json_not_found"
handler500 = "atelier_platform.api.errors.json_server_error"
