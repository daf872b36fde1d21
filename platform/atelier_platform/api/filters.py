import django_filters
from django.db.models import Q
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership
from atelier_platform.accounts.roles import Role
from atelier_platform.instants import InstantFilter
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES, Job, JobPurpose, JobStatus, Output, ReviewState
from atelier_platform.knowledge.models import IndexState, KnowledgeDocument


BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    plugin = django_filters.CharFilter(field_name="plugin_id")
    purpose = django_filters.ChoiceFilter(
        choices=JobPurpose.choices,
        help_text="request: callers' jobs only; evaluation: evaluation runs' jobs only (without it: both)")
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "plugin", "purpose", "created_after", "created_before"]


class OutputFilter(django_filters.FilterSet):
    job = django_filters.UUIDFilter(field_name="job_id")
    plugin = django_filters.CharFilter(field_name="job__plugin_id")
    review_state = django_filters.MultipleChoiceFilter(choices=ReviewState.choices)
    final = django_filters.ChoiceFilter(choices=BOOLEAN_CHOICES, method="filter_final",
                                        help_text="true: approved or released outputs only; false: the others")
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Output
        fields = ["job", "plugin", "review_state", "final", "created_after", "created_before"]

    def filter_final(self, queryset, name, value):
        deliverable = [str(state) for state in DELIVERABLE_REVIEW_STATES]
        return queryset.filter(review_state__in=deliverable) if value == "true" else queryset.exclude(review_state__in=deliverable)


class ApiKeyFilter(django_filters.FilterSet):
    active = django_filters.ChoiceFilter(choices=BOOLEAN_CHOICES, method="filter_active",
                                         help_text="true: the keys that work now; false: revoked or expired keys only")

    class Meta:
        model = ApiKey
        fields = ["active"]

    def filter_active(self, queryset, name, value):
        usable = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        return queryset.filter(usable) if value == "true" else queryset.exclude(usable)


class MemberFilter(django_filters.FilterSet):
    role = django_filters.MultipleChoiceFilter(choices=Role.choices, help_text="only members with this role (repeatable)")
    username = django_filters.CharFilter(field_name="user__username", max_length=150,
                                         help_text="the member with this username, if there is one (exact)")

    class Meta:
        model = Membership
        fields = ["role", "username"]


class KnowledgeDocumentFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=IndexState.choices)
    source_id_prefix = django_filters.CharFilter(field_name="source_id", lookup_expr="startswith")

    class Meta:
        model = KnowledgeDocument
        fields = ["state", "source_id_prefix"]
