"""The review queue over the API, the audit log, and reviewer metrics."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Count, Min, Prefetch, Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform import exports
from atelier_platform.accounts.roles import Capability
from atelier_platform.api.idempotency import idempotent
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.negotiation import ExportNegotiation
from atelier_platform.api.pagination import OldestFirstCursorPagination, SafeCursorPagination
from atelier_platform.api.schema import (EXPORT_PARAMETER, EXPORT_RESPONSES, IDEMPOTENCY_PARAMETER, error_responses,
                                         export_format)
from atelier_platform.api.serializers import AuditEventSerializer, ReviewDecisionInputSerializer, ReviewItemSerializer
from atelier_platform.exports import trail
from atelier_platform.exports.models import ExportKind, ExportOrigin
from atelier_platform.instants import in_utc, parse_instant
from atelier_platform.jobs.submission import refuse_nul
from atelier_platform.moderation import audit, review
from atelier_platform.moderation.models import ReviewDecision, ReviewItem, ReviewItemState


def reviewer_of(request) -> review.Reviewer:
    access = request.access
    if access.api_key is not None:
        return review.Reviewer(actor=f"key:{access.api_key.prefix}", api_key_id=access.api_key.pk)
    return review.Reviewer(actor=f"user:{access.user.pk}", user_id=access.user.pk)


QUEUE_FILTERS = [
    OpenApiParameter("state", OpenApiTypes.STR, enum=["pending", "decided", "all"], description="default pending"),
    OpenApiParameter("plugin", OpenApiTypes.STR),
    OpenApiParameter("category", OpenApiTypes.STR),
    OpenApiParameter("flagged", OpenApiTypes.BOOL),
]


QUEUE_FILTER_NAMES = tuple(parameter.name for parameter in QUEUE_FILTERS)


def _filters(params) -> dict:
    for name in QUEUE_FILTER_NAMES:
        if "\x00" in params.get(name, ""):
            raise ValidationError({name: ["The NUL character is not allowed."]})
    state = params.get("state", "pending")
    if state not in ("pending", "decided", "all"):
        raise ValidationError({"state": ["One of: pending, decided, all."]})
    flagged = params.get("flagged")
    if flagged not in (None, "true", "false"):
        raise ValidationError({"flagged": ["true or false."]})
    return {"state": state, "plugin": params.get("plugin") or None, "category": params.get("category") or None,
            "flagged": None if flagged is None else flagged == "true"}


def refuse_a_body(request, endpoint: str) -> None:
    """400 naming each field of a body the endpoint does not read: its filters are query parameters.

    ``POST /reviews/claim-next/`` with ``{"plugin": "nope"}`` claimed an item of any plugin: the filter a caller
    meant was silently dropped, and it leased an item it did not want. Its filters are query parameters, as
    ``GET /reviews/`` takes them and the OpenAPI schema says (no request body), so a body is refused rather
    than read as a second place for them. No body, ``{}`` or ``null`` asks for nothing and passes.
    """
    body = request.data
    if body is None or (isinstance(body, (dict, list)) and not body):
        return
    if not isinstance(body, dict):
        raise ValidationError({"body": [f"{endpoint} takes no body; its filters ({', '.join(QUEUE_FILTER_NAMES)}) "
                                        "are query parameters."]})
    details = {}
    for name, value in body.items():
        if name in QUEUE_FILTER_NAMES:
            if isinstance(value, bool):  # as the query string says it
                shown = f"{name}={str(value).lower()}"
            else:
                shown = urlencode({name: value}) if isinstance(value, (str, int, float)) else f"{name}=..."
            details[name] = [f"A query parameter, not a body field: {endpoint}?{shown}"]
        else:
            details[name] = [f"Unknown field: {endpoint} takes no body; its filters ({', '.join(QUEUE_FILTER_NAMES)}) "
                             "are query parameters."]
    raise ValidationError(details)


class ReviewQueuePagination(SafeCursorPagination):
    ordering = ("-priority", "created_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Reviewers claim an item (a lease, 10 minutes by default, renewed by claiming again), then decide."""

    required_capabilities = {
        "list": Capability.REVIEWS_READ,
        "retrieve": Capability.REVIEWS_READ,
        "claim": Capability.REVIEWS_WRITE,
        "renew": Capability.REVIEWS_WRITE,
        "claim_next": Capability.REVIEWS_WRITE,
        "release": Capability.REVIEWS_WRITE,
        "decision": Capability.REVIEWS_WRITE,
    }
    serializer_class = ReviewItemSerializer
    pagination_class = ReviewQueuePagination
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReviewItem.objects.none()
        items = ReviewItem.objects.filter(project=self.request.access.project)
        if self.action == "list":
            items = review.queue(self.request.access.project, **_filters(self.request.query_params))
        return items.select_related("output__job").prefetch_related(
            "output__files", Prefetch("decisions", queryset=ReviewDecision.objects.order_by("decided_at"))
        )

    @extend_schema(parameters=QUEUE_FILTERS, responses={200: ReviewItemSerializer(many=True), **error_responses(400, 403)})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ReviewItemSerializer, **error_responses(403, 404)})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    def _fresh(self, item):
        return Response(ReviewItemSerializer(self.get_queryset().get(pk=item.pk)).data)

    @extend_schema(request=None, responses={200: ReviewItemSerializer, **error_responses(403, 404, 409)},
                   summary="Claim an item (a lease); claiming one's own item again renews the lease")
    @action(detail=True, methods=["post"])
    def claim(self, request, pk=None):
        return self._fresh(review.claim(self.get_object(), reviewer_of(request)))

    @extend_schema(request=None, responses={200: ReviewItemSerializer, **error_responses(403, 404, 409)},
                   summary="Renew one's lease on an item (409 lease_required when one does not hold it)")
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        item, reviewer = self.get_object(), reviewer_of(request)
        if item.state == ReviewItemState.DECIDED:
            review.refuse_decided(item)
        if item.lease_holder != reviewer.actor:
            # Unlike claim, renew never takes an item: a reviewer whose lease lapsed and was taken over must know.
            raise review.LeaseRequired("You do not hold this item's lease (it lapsed and was taken, or was never "
                                       "yours); claim it with POST .../claim/.")
        return self._fresh(review.claim(item, reviewer))

    @extend_schema(request=None, responses={200: ReviewItemSerializer, 204: None, **error_responses(400, 403, 415)},
                   parameters=QUEUE_FILTERS,
                   summary="Claim the next free item of the queue (204: none); filters as query parameters",
                   description="The filters are query parameters, as for GET /reviews/; a body with fields is "
                               "refused (400 naming them), never ignored.")
    @action(detail=False, methods=["post"], url_path="claim-next")
    def claim_next(self, request):
        refuse_a_body(request, "POST /api/v1/reviews/claim-next/")
        item = review.claim_next(request.access.project, reviewer_of(request), **_filters(request.query_params))
        return self._fresh(item) if item else Response(status=204)

    @extend_schema(request=None, responses={200: ReviewItemSerializer, **error_responses(400, 403, 404, 409)},
                   parameters=[OpenApiParameter(
                       "lease_expires_at", OpenApiTypes.DATETIME,
                       description="release only the lease ending then (the item's lease_expires_at as the caller last "
                                   "saw it): not one renewed or claimed again since, by this caller elsewhere too (409)")])
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        named = request.query_params.get("lease_expires_at")
        lease_expires_at = None
        if named is not None:
            lease_expires_at = parse_instant(named)
            if lease_expires_at is None:
                raise ValidationError({"lease_expires_at": ["An ISO 8601 time with its offset, as lease_expires_at "
                                                            "gives it."]})
        return self._fresh(review.release(self.get_object(), reviewer_of(request), lease_expires_at=lease_expires_at))

    @extend_schema(request=ReviewDecisionInputSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={200: ReviewItemSerializer, **error_responses(400, 403, 404, 409, 422)},
                   description="With an Idempotency-Key, a retried decision replays the first answer instead of "
                               "answering 409 review_decided; an item whose job's content was erased (which closed it) answers 409 "
                               "content_erased, on a claim too. An edit sends the whole output as output.content shows it, "
                               "changed only in the fields the plugin lists in editable_output_fields (GET /plugins/); "
                               "a change to any other field (token counts, ids, scores, sources...) is refused whole with "
                               "400 field_not_editable, each such field named in details (content.usage.prompt_tokens). "
                               "A regenerate queues a new job: the decision's regenerated_job, the first job's "
                               "regenerated_as, the new job's regenerated_from.")
    @action(detail=True, methods=["post"])
    @idempotent
    def decision(self, request, pk=None):
        incoming = ReviewDecisionInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        refuse_nul(incoming.validated_data["content"], "content")
        return self._fresh(review.decide(self.get_object(), reviewer_of(request), **incoming.validated_data))


class ReviewMetricsSerializer(serializers.Serializer):
    queue_depth = serializers.IntegerField(help_text="items waiting for a reviewer")
    oldest_item_age_s = serializers.FloatField(allow_null=True, help_text="null when the queue is empty")
    decisions_per_hour_last_24h = serializers.DictField(child=serializers.FloatField(), help_text="by reviewer")
    approval_rate_by_plugin = serializers.DictField(child=serializers.FloatField(allow_null=True))
    approval_rate_by_category = serializers.DictField(child=serializers.FloatField(),
                                                      help_text='"(none)": items screening flagged in no category')


class ReviewMetricsView(APIView):
    required_capabilities = {"get": Capability.REVIEWS_READ}

    @extend_schema(responses={200: ReviewMetricsSerializer, **error_responses(403)})
    def get(self, request):
        project = request.access.project
        now = timezone.now()
        open_items = ReviewItem.objects.filter(project=project, state=ReviewItemState.OPEN)
        oldest = open_items.aggregate(oldest=Min("created_at"))["oldest"]
        last_day = ReviewDecision.objects.filter(item__project=project, decided_at__gte=now - timedelta(hours=24))
        per_reviewer = {row["decided_by"]: round(row["n"] / 24, 2) for row in last_day.values("decided_by").annotate(n=Count("id"))}
        # decided by reviewers: an item closed by an erasure was decided by nobody, and is neither approved nor not
        decided = review.decided_by_reviewers(ReviewItem.objects.filter(project=project))
        by_plugin = {
            row["output__job__plugin_id"]: round(row["approved"] / row["n"], 3) if row["n"] else None
            for row in decided.values("output__job__plugin_id").annotate(
                n=Count("id"), approved=Count("id", filter=Q(output__review_state="approved")))
        }
        by_category: dict[str, list[int]] = {}
        for categories, state in decided.values_list("categories", "output__review_state"):
            for category in categories or ["(none)"]:
                tally = by_category.setdefault(category, [0, 0])
                tally[0] += 1
                tally[1] += state == "approved"
        return Response({
            "queue_depth": open_items.count(),
            "oldest_item_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
            "decisions_per_hour_last_24h": per_reviewer,
            "approval_rate_by_plugin": by_plugin,
            "approval_rate_by_category": {c: round(a / n, 3) for c, (n, a) in sorted(by_category.items())},
        })


class AuditLogPagination(OldestFirstCursorPagination):
    """Cursor pages, oldest first; ``next_after_id`` is kept for callers of the earlier ``after_id`` paging."""

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        last = self.page[-1].id if self.page else None
        response.data["next_after_id"] = last if self.has_next else None
        return response



class AuditLogPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AuditEventSerializer(many=True)
    next_after_id = serializers.IntegerField(allow_null=True)


#: The columns of the audit log's CSV export (``before`` and ``after`` as JSON), as its JSON Lines name them.
AUDIT_EXPORT_FIELDS = ["id", "created_at", "actor", "action", "object_type", "object_id", "before", "after"]
AUDIT_EXPORT_JSON_FIELDS = ("before", "after")


class AuditLogView(ExportNegotiation, APIView):
    """The project's audit log, oldest first: JSON cursor pages, or the whole log as CSV or JSON Lines."""

    required_capabilities = {"get": Capability.ADMIN}
    pagination_class = AuditLogPagination

    @extend_schema(parameters=[EXPORT_PARAMETER,
                               OpenApiParameter("after_id", OpenApiTypes.INT, description="only events after this id"),
                               OpenApiParameter("action", OpenApiTypes.STR, description="only events of this action"),
                               OpenApiParameter("actor", OpenApiTypes.STR,
                                                description="only events of this actor: user:12, key:ab12cd34ef56, screening"),
                               OpenApiParameter("object_id", OpenApiTypes.STR,
                                                description="only events about this object: a job's id also gives its "
                                                            "outputs' and their review items' events, an output's its "
                                                            "review item's"),
                               OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="at or after"),
                               OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="before"),
                               OpenApiParameter("cursor", OpenApiTypes.STR),
                               OpenApiParameter("page_size", OpenApiTypes.INT, description="at most 500")],
                   responses={(200, "application/json"): AuditLogPageSerializer, **EXPORT_RESPONSES,
                              **error_responses(400, 403)})
    def get(self, request):
        params = request.query_params
        export = export_format(params)
        events = audit_events(request.access.project, params)
        if export is None:
            paginator = self.pagination_class()
            page = paginator.paginate_queryset(events, request, view=self)
            return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)
        trail.streamed(request.access.project, actor_of(request), kind=ExportKind.AUDIT, format=export,
                       filters=trail.filters_in_query(ExportKind.AUDIT, params), origin=ExportOrigin.API)
        return exports.streamed_export(audit_export_rows(events), export, fields=AUDIT_EXPORT_FIELDS,
                                       json_fields=AUDIT_EXPORT_JSON_FIELDS, filename=f"audit-{request.access.project.slug}")


#: The filters of the audit log's list and of its exports, streamed or in the background (``exports.kinds``).
AUDIT_FILTER_NAMES = ("action", "actor", "object_id", "created_after", "created_before", "after_id")


def audit_events(project, params):
    """The project's audit events, oldest first, as ``params`` (the query's, or an export job's filters) narrow them:
    ``AUDIT_FILTER_NAMES``; a bad value is a ``ValidationError`` naming it."""
    texts = {name: params.get(name, "") for name in ("action", "actor", "object_id")}
    for name, value in texts.items():
        if "\x00" in value:
            raise ValidationError({name: ["The NUL character is not allowed."]})
    moments = {}
    for name in ("created_after", "created_before"):
        if params.get(name):
            moments[name] = _moment(name, params[name])
    # the same search as the settings page's audit log, whose export links carry its filters here
    events = audit.search(project, **texts, **moments)
    after = params.get("after_id")
    if after is not None:
        if not after.isdigit() or len(after) > 18:
            raise ValidationError({"after_id": ["A non-negative integer."]})
        events = events.filter(id__gt=int(after))
    return events


def audit_export_rows(events):
    """``events`` as an export's rows (``AUDIT_EXPORT_FIELDS``), read ``exports.EXPORT_CHUNK_SIZE`` at a time."""
    return (AuditEventSerializer(e).data for e in events.iterator(chunk_size=exports.EXPORT_CHUNK_SIZE))


def _moment(name: str, value: str):
    """An ISO 8601 date-time (or a date: its start, UTC) of a query parameter, in UTC (``instants``); 400 naming it
    otherwise."""
    from datetime import datetime, time, timezone as dt_timezone

    from django.utils.dateparse import parse_date, parse_datetime

    try:
        moment = parse_datetime(value)
        day = None if moment else parse_date(value)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
    if moment is not None:
        moment = in_utc(moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc))
    if moment is None:
        raise ValidationError({name: ["An ISO 8601 date-time (2026-12-01T09:00:00Z) or date (2026-12-01)."]})
    return moment
