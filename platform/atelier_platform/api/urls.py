from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from atelier_platform.api.catalog_views import ModelVersionViewSet, PluginSettingsView
from atelier_platform.api.fleet_views import WorkerListView
from atelier_platform.api.keys_views import ApiKeyViewSet
from atelier_platform.api.members_views import InvitationViewSet, MemberViewSet
from atelier_platform.api.knowledge_views import (
    ConversationMessageViewSet,
    ConversationViewSet,
    KnowledgeDocumentViewSet,
    OutputFileDownloadView,
)
from atelier_platform.api.review_views import AuditLogView, ReviewMetricsView, ReviewViewSet
from atelier_platform.api.safety_views import (
    AllowlistRemovalView,
    AllowlistView,
    BlocklistRemovalView,
    BlocklistView,
    SafetyPolicyView,
)
from atelier_platform.api.usage_views import QuotaView, UsageView
from atelier_platform.api.views import JobViewSet, OutputViewSet, PluginListView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("jobs", JobViewSet, basename="job")
router.register("knowledge/documents", KnowledgeDocumentViewSet, basename="knowledge-document")
router.register("conversations", ConversationViewSet, basename="conversation")
router.register(r"conversations/(?P<conversation_id>[0-9a-fA-F-]{36})/messages", ConversationMessageViewSet,
                basename="conversation-message")
router.register("reviews", ReviewViewSet, basename="review")
router.register("outputs", OutputViewSet, basename="output")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("members", MemberViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("model-versions", ModelVersionViewSet, basename="model-version")

urlpatterns = [
    path("plugins/", PluginListView.as_view(), name="plugin-list"),
    path("plugins/<str:plugin_id>/settings/", PluginSettingsView.as_view(), name="plugin-settings"),
    path("workers/", WorkerListView.as_view(), name="worker-list"),
    path("outputs/<uuid:output_id>/files/<int:file_id>/", OutputFileDownloadView.as_view(), name="output-file"),
    path("reviews/metrics/", ReviewMetricsView.as_view(), name="review-metrics"),
    path("audit/", AuditLogView.as_view(), name="audit-log"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("usage/quota/", QuotaView.as_view(), name="usage-quota"),
    path("safety/policy/", SafetyPolicyView.as_view(), name="safety-policy"),
    path("safety/blocklist/", BlocklistView.as_view(), name="safety-blocklist"),
    path("safety/blocklist/remove/", BlocklistRemovalView.as_view(), name="safety-blocklist-remove"),
    path("safety/allowlist/", AllowlistView.as_view(), name="safety-allowlist"),
    path("safety/allowlist/remove/", AllowlistRemovalView.as_view(), name="safety-allowlist-remove"),
    path("", include("atelier_platform.webhooks.urls")),
    path("", include("atelier_platform.evaluation.urls")),
    path("", include("atelier_platform.exports.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the page and its script apart (?script): the Content-Security-Policy runs no inline script
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    *router.urls,
]
