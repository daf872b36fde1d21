import django_filters
from django.core.validators import RegexValidator
from django.db.models import Q
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership
from atelier_platform.accounts.roles import Role
from atelier_platform.evaluation.models import EvaluationRun
from atelier_platform.instants import InstantFilter
from atelier_platform.jobs import library
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus, Output, ReviewState, final_content
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
    q = django_filters.CharFilter(
        method="filter_q", max_length=library.MAX_SEARCH_CHARACTERS,
        help_text="search, case-insensitive: outputs whose final text (a reply, a copy variant, a ranked item's title) "
                  "or whose job's prompt holds it; a withheld output's text is never searched")

    class Meta:
        model = Output
        fields = ["job", "plugin", "review_state", "final", "created_after", "created_before", "q"]

    def filter_final(self, queryset, name, value):
        return queryset.filter(final_content()) if value == "true" else queryset.exclude(final_content())

    def filter_q(self, queryset, name, value):
        return library.search(queryset, value)


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


class EvaluationRunFilter(django_filters.FilterSet):
    """A set's history (``reference_set``) and a version's runs (``model_version``). A set or version of another
    project names no run of this one: the list is empty, as for the other lists' filters."""

    reference_set = django_filters.UUIDFilter(field_name="reference_set_id", help_text="a reference set's id: its runs only")
    # an id up to 18 digits: a larger number is no id the database holds, and would overflow its integer
    model_version = django_filters.CharFilter(
        method="filter_model_version", max_length=18,
        validators=[RegexValidator(r"^(current|[1-9][0-9]{0,17})$", "Give a model version's id, or current.")],
        help_text="a model version's id: the runs that named it; current: the runs of the project's current model "
                  "(started without a version)")

    class Meta:
        model = EvaluationRun
        fields = ["reference_set", "model_version"]

    def filter_model_version(self, queryset, name, value):
        if value == "current":
            return queryset.filter(model_version__isnull=True)
        return queryset.filter(model_version_id=int(value))
