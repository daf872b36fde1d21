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

# Under /api/ and /v1/ errors are JSON in each API's shape (api.errors); elsewhere, the dashboard's pages, which
# hand the API's paths to api.errors (a bad request's page stays Django's plain one: its cause, a bad Host header or
# a damaged cookie, may break what the dashboard's layout reads).
handler400 = "atelier_platform.api.errors.json_bad_request"
handler403 = "atelier_frontend.error_pages.permission_denied"
handler404 = "atelier_frontend.error_pages.page_not_found"
handler500 = "atelier_frontend.error_pages.server_error"
