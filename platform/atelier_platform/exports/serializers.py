"""What ``/api/v1/exports/`` takes and answers."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from atelier_platform.api.serializers import StrictSerializer
from atelier_platform.exports import services
from atelier_platform.exports.models import Export, ExportFormat, ExportKind


class ExportCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=ExportKind.choices, help_text=(
        "library: the project's outputs, as GET /api/v1/outputs/?export= gives them (needs jobs:read; reviewers' names "
        "only with reviews:read); audit: the audit log, as GET /api/v1/audit/?export= gives it (needs admin)."))
    format = serializers.ChoiceField(choices=ExportFormat.choices, help_text=(
        "csv (a header line; a cell starting with = + - @, a tab or a carriage return is written with a leading "
        "apostrophe) or jsonl (JSON Lines, one object a line)."))
    filters = serializers.JSONField(required=False, default=dict, help_text=(
        "The list's filters, as its query parameters name them, values as text (true/false and numbers as JSON "
        "too): library: job, plugin, review_state (a list for several), final, created_after, created_before, q; "
        "audit: action, actor, object_id, created_after, created_before, after_id. An unknown filter is a 400."))


class ExportErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="export_failed, export_lost (its worker kept dying), invalid_filters, cancelled")
    message = serializers.CharField()


class ExportSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ["id", "kind", "format", "filters", "status", "rows_done", "rows_total", "size", "error",
                  "requested_by", "created_at", "started_at", "finished_at", "expires_at", "withdrawn_at", "url",
                  "download_url"]
        extra_kwargs = {
            "rows_total": {"help_text": "rows the export holds, counted when its run started (null before)"},
            "size": {"help_text": "bytes of its file, once written"},
            "requested_by": {"help_text": "who asked for it, as the audit log names them: user:12, key:ab12cd34ef56"},
            "expires_at": {"help_text": "until when its file can be downloaded (ATELIER_EXPORTS_KEPT_HOURS after it "
                                        "succeeded); then the download answers 410 export_expired"},
            "withdrawn_at": {"help_text": "when an erasure took its file back: it held content erased since (the "
                                          "download answers 410 export_withdrawn)"},
        }

    @extend_schema_field(ExportErrorSerializer(allow_null=True))
    def get_error(self, export: Export) -> dict | None:
        return {"code": export.error_code, "message": export.error_message} if export.error_code else None

    def get_url(self, export: Export) -> str:
        return f"/api/v1/exports/{export.pk}/"

    @extend_schema_field(serializers.CharField(allow_null=True, help_text=(
        "where its file is downloaded, while it can be; null in another's export an owner sees (only its requester "
        "downloads it)")))
    def get_download_url(self, export: Export) -> str | None:
        access = getattr(self.context.get("request"), "access", None)
        if access is not None and not services.is_requester(export, user=access.user, api_key=access.api_key):
            return None
        return f"/api/v1/exports/{export.pk}/download/" if services.is_downloadable(export) else None
