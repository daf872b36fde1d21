"""The audit log in the admin (read only), a project's safety policy and blocklist, and what every Atelier admin
page shares: no 500 from odd input in a URL, and the changes a staff user makes recorded in the audit log like
the dashboard's and the API's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, transaction

from atelier_platform.accounts.models import Project
from atelier_platform.api.serializers import BlocklistTermSerializer, SafetyPolicySerializer
from atelier_platform.moderation import audit, policies
from atelier_platform.moderation.models import AuditEvent, BlocklistEntry, SafetyPolicy


def admin_actor(request) -> str:
    """The audit log's name for the staff user acting, as the dashboard names a member."""
    return f"user:{request.user.pk}"


def holds_nul(text: str) -> bool:
    return "\x00" in text


class AtelierModelAdmin(admin.ModelAdmin):
    """Every Atelier admin page: a save writes only what its form edits, and odd input in a URL is no 500
    (a NUL character in a list's filter, an autocomplete term or a form's initial value reached PostgreSQL,
    which refuses it; a relation's initial value that is no id at all failed the autocomplete widget)."""

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only the columns the form edits, and the change's own timestamp: a full save wrote back every column as
        # the page had read it, undoing what a service or a worker wrote meanwhile (a key revoked, a job finished,
        # a delivery claimed). A page with nothing to edit (a job, a delivery) writes nothing.
        edited = [field.name for field in obj._meta.concrete_fields if field.name in form.fields and not field.primary_key]
        if edited:
            stamped = [field.name for field in obj._meta.concrete_fields if getattr(field, "auto_now", False)]
            obj.save(update_fields=edited + stamped)

    def get_changelist_instance(self, request):
        # Any field can be filtered from the URL (?prefix=, ?input__text=): Django's bad-filter answer (back to
        # the list, "?e=1") instead of the database's error.
        if any(holds_nul(name) or holds_nul(value) for name, values in request.GET.lists() for value in values):
            raise IncorrectLookupParameters("a NUL character in the list's parameters")
        return super().get_changelist_instance(request)

    def get_search_results(self, request, queryset, search_term):
        if holds_nul(search_term):
            return queryset.none(), False  # no stored text holds one (autocomplete; the list's own form refuses it)
        return super().get_search_results(request, queryset, search_term)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        for name, value in list(initial.items()):
            if isinstance(value, str) and holds_nul(value):
                del initial[name]
                continue
            try:
                field = self.opts.get_field(name)
            except FieldDoesNotExist:
                continue
            if isinstance(field, models.ForeignKey):
                try:
                    field.target_field.to_python(value)
                except ValidationError:
                    del initial[name]  # ?project=abc: an autocomplete widget looks it up by id
        return initial


class AuditedAdmin(AtelierModelAdmin):
    """Saves and deletions recorded in the audit log under ``audit_action``, before and after as
    ``audit_view`` shows the row, in the transaction of the change itself."""

    audit_action = ""

    def audit_view(self, obj) -> dict[str, Any]:
        raise NotImplementedError

    def audit_project(self, obj):
        return obj.project

    def save_model(self, request, obj, form, change):
        before = self.audit_view(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = self.audit_view(obj)
        if after != before:
            audit.record(self.audit_project(obj), admin_actor(request), self.audit_action, obj, before=before, after=after)

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit.record(self.audit_project(obj), admin_actor(request), self.audit_action, obj,
                         before=self.audit_view(obj), after=None)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)  # one audit record each (the bulk action's deletion is one statement)


@admin.register(AuditEvent)
class AuditEventAdmin(AtelierModelAdmin):
    """Append-only: read here, never added, changed or deleted (the bulk delete action included). A project
    with audit events cannot be deleted either: the events protect it, so its history outlives any mistake."""

    list_display = ["created_at", "project", "actor", "action", "object_type", "object_id"]
    list_filter = ["project"]  # the projects table is small; a filter by action would scan the whole log
    list_select_related = ["project"]
    search_fields = ["=action", "=actor", "=object_id"]
    ordering = ["-id"]  # newest first, along the primary key's index
    show_full_result_count = False  # the log only grows: one count per page is enough
    readonly_fields = ["created_at", "project", "actor", "action", "object_type", "object_id", "before", "after"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- a project's safety policy and blocklist -------------------------------------------------------------------

def error_lines(detail, path: str = "") -> list[str]:
    """A serializer's errors as lines, a nested one with where it is (``hate: review: Ensure this value...``)."""
    if isinstance(detail, dict):
        return [line for key, inner in detail.items() for line in error_lines(inner, f"{path}{key}: ")]
    if isinstance(detail, list):
        return [line for inner in detail for line in error_lines(inner, path)]
    return [f"{path}{detail}"]


def add_errors(form: forms.Form, errors: dict) -> None:
    """Errors by field, each on its field where the form shows one (else at the top of the form)."""
    for name, messages in errors.items():
        form.add_error(name if name in form.fields else None, messages)


class SafetyPolicyForm(forms.ModelForm):
    """The API's checks, in the API's order: the values changed through ``SafetyPolicySerializer``, then the
    policy as ``update_policy`` would save it (thresholds merged into the stored ones). Input the API refuses
    is a form error here, never a 500 nor a policy screening cannot use."""

    class Meta:
        model = SafetyPolicy
        fields = ["project", *policies.POLICY_FIELDS]

    def clean(self):
        cleaned = super().clean()
        self.policy_changes = {}
        posted = {name: cleaned[name] for name in self.changed_data if name in policies.POLICY_FIELDS and name in cleaned}
        incoming = SafetyPolicySerializer(data=posted)
        if not incoming.is_valid():
            add_errors(self, {name: error_lines(detail) for name, detail in incoming.errors.items()})
            return cleaned
        policy = SafetyPolicy.objects.get(pk=self.instance.pk) if self.instance.pk else SafetyPolicy()
        try:
            policies.apply_policy_changes(policy, incoming.validated_data)
        except ValidationError as error:
            add_errors(self, error.message_dict)
            return cleaned
        self.policy_changes = incoming.validated_data
        # the form's own model checks see the policy as it will be saved (a threshold given alone, merged)
        cleaned.update({name: getattr(policy, name) for name in posted})
        return cleaned


@admin.register(SafetyPolicy)
class SafetyPolicyAdmin(AtelierModelAdmin):
    """An operator's way to fix a project's policy without the shell: saved through ``update_policy`` as the API
    and the dashboard save it, so checked and audited alike. A policy stays with its project, and is never
    deleted here: gone, it came back with the defaults at the next job, unaudited."""

    form = SafetyPolicyForm
    list_display = ["project", "review_mode", "audit_sample_percent", "lease_seconds", "updated_at"]
    list_select_related = ["project"]
    search_fields = ["project__slug"]
    autocomplete_fields = ["project"]

    def get_readonly_fields(self, request, obj=None):
        revisions = ["blocklist_revision", "allowlist_revision", "updated_at"]
        return ["project", *revisions] if obj is not None else revisions

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change and not form.policy_changes:
            return  # nothing changed: nothing written, nothing audited
        # a policy added here is made with the defaults, then given the form's values, in one audited change
        obj.pk = policies.update_policy(obj.project, admin_actor(request), form.policy_changes).pk


#: the categories the API takes for a blocklist term
BLOCKLIST_CATEGORIES = list(BlocklistTermSerializer().fields["category"].choices)


class BlocklistEntryForm(forms.ModelForm):
    """A term checked as the API checks one: ``BlocklistTermSerializer``, then ``validate_term`` (every installed
    safety check must be able to match it; no regular expression that does not compile or could hang screening)."""

    # kept as given, as the API keeps it: a space can be part of a term (" ass ", not "class")
    pattern = forms.CharField(max_length=500, strip=False)
    category = forms.ChoiceField(choices=[(category, category) for category in BLOCKLIST_CATEGORIES], initial="custom")

    class Meta:
        model = BlocklistEntry
        fields = ["project", "pattern", "is_regex", "category"]

    def clean(self):
        cleaned = super().clean()
        term = {name: cleaned.get(name) if name in self.fields else getattr(self.instance, name)
                for name in ("pattern", "is_regex", "category")}
        if any(name in self.fields and name not in cleaned for name in term):
            return cleaned  # refused by its own field already
        incoming = BlocklistTermSerializer(data=term)
        if not incoming.is_valid():
            add_errors(self, {name: error_lines(detail) for name, detail in incoming.errors.items()})
            return cleaned
        try:
            policies.validate_term(**incoming.validated_data)
        except ValidationError as error:
            add_errors(self, {"pattern": error.messages})
            return cleaned
        if self.instance._state.adding and cleaned.get("project") is not None:
            # Before the form's unique check (which runs after clean), so that it sees what an import that held the
            # lists meanwhile added: "already exists", where the insert met the constraint and answered 500. The
            # admin's add view runs in one transaction, so the lock holds until the entry is saved.
            policies.lock_lists(cleaned["project"])
        return cleaned


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(AuditedAdmin):
    """A project's blocklist, term by term, for an operator who must fix one. Additions, category changes and
    deletions are audited; the audit says which entry and its category, not the term: the log is read by the
    project's owners, to whom the API and the dashboard show only counts. An entry keeps its project and its
    term: a wrong term is deleted and the right one added, as the API replaces terms rather than editing them."""

    form = BlocklistEntryForm
    list_display = ["pattern", "project", "is_regex", "category", "created_at"]
    list_filter = ["is_regex", "project"]  # no filter by category: Django's would read every entry for its values
    list_select_related = ["project"]
    search_fields = ["pattern"]
    autocomplete_fields = ["project"]
    show_full_result_count = False
    audit_action = "blocklist_entry_changed"

    def get_readonly_fields(self, request, obj=None):
        return ["project", "pattern", "is_regex", "created_at"] if obj is not None else ["created_at"]

    # An edit takes the project's lists as the API's imports and removals do (``policies.lock_lists``), and reads the
    # entry again once it holds them: a change or a deletion of an entry that a replacing import had just deleted
    # failed to save (a 500), where the admin now says the entry no longer exists. The admin's change and delete
    # views run a POST in one transaction: the lock holds until the change is saved.
    def get_object(self, request, object_id, from_field=None):
        entry = super().get_object(request, object_id, from_field)
        if entry is None or request.method != "POST":
            return entry
        policies.lock_lists(entry.project)
        return super().get_object(request, object_id, from_field)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            ids = list(queryset.values_list("pk", flat=True))
            for project in Project.objects.filter(blocklist__pk__in=ids).distinct().order_by("pk"):
                policies.lock_lists(project)
            super().delete_queryset(request, BlocklistEntry.objects.filter(pk__in=ids))  # those still there

    def audit_view(self, obj) -> dict:
        return {"category": obj.category, "is_regex": obj.is_regex}
