"""``GET /api/v1/usage/`` (jobs, tokens, images, compute per plugin per day) and ``GET /api/v1/usage/quota/``."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.schema import error_responses
from atelier_platform.api.serializers import QuotaSerializer, UsageQuerySerializer, UsageReportSerializer
from atelier_platform.api.throttling import caller_limit
from atelier_platform.usage import quotas, reports


EARLIEST, LATEST = date(1970, 1, 1), date(9000, 12, 31)


class UsageView(APIView):
    """A report over a bounded range (at most 366 days x plugins rows), returned whole rather than in pages."""

    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="first UTC day (default: 29 days before 'to')"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="last UTC day, inclusive (default: today)"),
            OpenApiParameter("plugin", OpenApiTypes.STR, description="one plugin only"),
        ],
        responses={200: UsageReportSerializer, **error_responses(400, 403)},
        summary="Usage per plugin per day: jobs by status, tokens, images, compute seconds",
    )
    def get(self, request):
        incoming = UsageQuerySerializer(data=request.query_params)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        for name in ("from", "to"):
            if name in data and not EARLIEST <= data[name] <= LATEST:
                raise ValidationError({name: [f"A day from {EARLIEST} to {LATEST}."]})
        date_to = data.get("to") or timezone.now().date()
        date_from = data.get("from") or date_to - timedelta(days=29)
        if date_from > date_to:
            raise ValidationError({"from": ["Must not be after 'to'."]})
        if (date_to - date_from).days + 1 > reports.MAX_DAYS:
            raise ValidationError({"from": [f"At most {reports.MAX_DAYS} days per report; ask for a shorter range."]})
        query = reports.UsageQuery(date_from=date_from, date_to=date_to, plugin=data.get("plugin") or None)
        rows = reports.usage_rows(request.access.project, query)
        return Response(UsageReportSerializer({
            "from": date_from, "to": date_to, "plugin": query.plugin, "totals": reports.totals(rows), "results": rows,
        }).data)


class QuotaView(APIView):
    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(responses={200: QuotaSerializer, **error_responses(403)},
                   summary="The project's quotas (limit, used, remaining, resets_at) and the caller's rate limit")
    def get(self, request):
        status = quotas.quota_status(request.access.project)
        found = caller_limit(request)
        status["rate_limit_per_minute"] = found[1] if found and found[1] > 0 else None
        return Response(QuotaSerializer(status).data)
