"""The audit log in the admin (read only), and what every Atelier admin page shares: no 500 from odd input
in a URL, and the changes a staff user makes recorded in the audit log like the dashboard's and the API's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, transaction

from atelier_platform.moderation import audit
from atelier_platform.moderation.models import AuditEvent


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
