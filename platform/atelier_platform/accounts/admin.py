from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.db.models import Count
from django.forms.models import BaseInlineFormSet

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import ApiKey, Invitation, Membership, Project
from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import projects_left_without_owner, rename_api_key, revoke_api_key
from atelier_platform.catalog.services import enable_installed_plugins
from atelier_platform.moderation import audit
from atelier_platform.moderation.admin import AtelierModelAdmin, AuditedAdmin, admin_actor
from atelier_platform.moderation.models import AuditEvent


def member_view(membership: Membership) -> dict:
    """A membership as the dashboard's audit records show it."""
    return {"user": membership.user.username, "role": membership.role}


def project_view(project: Project) -> dict:
    """A project's names as its audit records show them: its slug names it to scripts (``create_api_key
    --project``), its name to people."""
    return {"slug": project.slug, "name": project.name}


class MembershipFormSet(BaseInlineFormSet):
    """A project keeps at least one owner, as on the dashboard: removing or demoting the last one here left
    nobody able to manage the project's keys, members and policies."""

    def clean(self):
        super().clean()
        if any(self.errors) or self.instance.pk is None:
            return
        # The owners locked until this change commits (the admin's save is one transaction): two staff users
        # demoting one owner each cannot leave none.
        owners = set(Membership.objects.select_for_update().filter(project=self.instance, role=Role.OWNER)
                     .values_list("pk", flat=True))
        if not owners:
            return  # a project that had none (made here without members) is given one when someone is ready
        remaining = set(owners)
        for form in self.forms:
            if not form.has_changed() and form.instance.pk is None:
                continue  # an empty extra row
            deleted = bool(form.cleaned_data.get("DELETE"))
            if form.instance.pk is not None and (deleted or form.cleaned_data.get("role") != Role.OWNER):
                remaining.discard(form.instance.pk)
            elif not deleted and form.cleaned_data.get("role") == Role.OWNER:
                remaining.add(form.instance.pk or id(form))
        if not remaining:
            raise ValidationError("A project keeps at least one owner: make someone else owner first.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(AtelierModelAdmin):
    """Members added, removed or given another role here are audited as on the dashboard's settings page, and
    so is a project renamed (its slug or its name)."""

    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        before = project_view(Project.objects.get(pk=obj.pk)) if change else None  # the form's instance holds the post
        super().save_model(request, obj, form, change)
        if not change:
            enable_installed_plugins(obj)  # as every other way of making a project does (create_project, bootstrap)
        elif project_view(obj) != before:
            audit.record(obj, admin_actor(request), "project_renamed", obj, before=before, after=project_view(obj))

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        project, actor = form.instance, admin_actor(request)
        deleted = {f.instance.pk for f in formset.deleted_forms if f.instance.pk is not None}
        changed = [f.instance.pk for f in formset.initial_forms if f.instance.pk not in deleted and f.has_changed()]
        # As they are in the database: the forms' instances hold the posted values already.
        saved = Membership.objects.select_related("user").in_bulk([*deleted, *changed])
        for pk in deleted:
            audit.record(project, actor, "member_removed", saved[pk], before=member_view(saved[pk]))
        super().save_formset(request, form, formset, change)
        for pk in changed:
            membership = Membership.objects.select_related("user").get(pk=pk)
            audit.record(project, actor, "member_role_changed", membership, before=member_view(saved[pk]),
                         after=member_view(membership))
        for membership in formset.new_objects:
            audit.record(project, actor, "member_added", membership, after=member_view(membership))

    def get_deleted_objects(self, objs, request):
        # The audit log is append-only: its events protect their project (on_delete=PROTECT), so a project with
        # history is kept. Said here in one line per project: Django's own page listed every event (and walked
        # every job first), which for a busy project is a page of millions of lines that never finishes.
        histories = (AuditEvent.objects.filter(project__in=[project.pk for project in objs]).values("project__slug")
                     .annotate(events=Count("id")).order_by("project__slug"))
        protected = [f"{row['project__slug']}: its audit log ({row['events']} events) is append-only, so a project "
                     "with history is kept" for row in histories]
        if protected:
            return [], {}, set(), protected
        return super().get_deleted_objects(objs, request)


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    """Keys are issued with `create_api_key` (the secret is shown once); here they are listed, renamed
    and revoked (an action: audited, and for good). What a key may reach (its project, its scopes) and
    its revocation are never form fields: a cleared date would bring a revoked key back. Nor is its hash
    shown: it is all an offline guess needs to be checked against. A key is never deleted here: that
    revoked it unaudited and erased which key did what."""

    list_display = ["prefix", "project", "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["project"]
    list_select_related = ["project"]
    fields = ["prefix", "project", "name", "scopes", "rate_limit_per_minute", "created_at", "created_by",
              "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "project", "scopes", "created_at", "last_used_at", "created_by", "expires_at",
                       "revoked_at"]
    actions = ["revoke"]
    audit_action = "api_key_changed"

    def audit_view(self, obj) -> dict:
        return {"prefix": obj.prefix, "name": obj.name, "scopes": obj.scopes,
                "rate_limit_per_minute": obj.rate_limit_per_minute}

    def save_model(self, request, obj, form, change):
        # A new name goes through the service the API and the dashboard rename with: audited as api_key_renamed,
        # alike wherever it is done. What else changed (the rate limit) is then recorded as api_key_changed.
        if change and "name" in form.changed_data:
            rename_api_key(obj, obj.name, admin_actor(request))
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # for staff who may change keys: an action without permissions is offered to anyone who may view the list
    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True).select_related("project"):
            revoke_api_key(api_key, actor=admin_actor(request))
        self.message_user(request, "Revoked: the next request with these keys gets 401.")


@admin.register(Invitation)
class InvitationAdmin(AtelierModelAdmin):
    """Owners invite on their settings page (the link is shown to them once); here operators see every project's
    invitations and may revoke open ones (an action: audited, like an owner's revocation). Nothing is edited: a
    changed role or a cleared date would change what a link already sent grants. The token's hash is not shown."""

    list_display = ["email", "project", "role", "invited_by", "invited_by_key", "created_at", "expires_at",
                    "accepted_at", "accepted_by", "revoked_at"]
    list_filter = ["project", "role"]
    list_select_related = ["project", "invited_by", "invited_by_key", "accepted_by"]
    search_fields = ["email"]
    fields = ["email", "project", "role", "invited_by", "invited_by_key", "created_at", "expires_at", "accepted_at",
              "accepted_by", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected invitations", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(invitations.revoke(invitation, admin_actor(request))
                      for invitation in queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True)
                      .select_related("project"))
        self.message_user(request, f"Revoked {revoked}: their links no longer work.")


User = get_user_model()
admin.site.unregister(User)  # registered by django.contrib.auth.admin, imported above


def last_owner_message(left) -> str:
    return f"A project keeps at least one owner: make someone else owner of {', '.join(left)} first."


class AtelierUserChangeForm(UserChangeForm):
    """A user who cannot sign in manages nothing: the last active owner of a project stays active."""

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and self.instance.is_active and cleaned.get("is_active") is False:
            # the admin's save runs in one transaction: the owner rows stay locked until it commits
            left = projects_left_without_owner([self.instance.pk])
            if left:
                raise ValidationError(last_owner_message(left))
        return cleaned


@admin.register(User)
class AtelierUserAdmin(AtelierModelAdmin, UserAdmin):
    """Django's user admin, safe from odd input like the others (it answers the members' user autocomplete),
    and a deleted user's memberships recorded as removals in their projects' audit logs. A user who is the
    last owner of a project is not deleted (nor a group that holds all its owners), nor made inactive: the project
    would be left with its members and jobs and nobody to manage its keys, members and settings."""

    form = AtelierUserChangeForm

    def get_deleted_objects(self, objs, request):
        # Django's delete view runs a POST in one transaction and a GET (the confirmation page) in none, where
        # a lock must have one of its own; on "yes" the owners stay locked until the deletion commits.
        with transaction.atomic(using=router.db_for_write(Membership)):
            left = projects_left_without_owner(user.pk for user in objs)
        if left:
            # one line, as the membership form says it, for the single deletion and the bulk action alike
            return [], {}, set(), [last_owner_message(left)]
        return super().get_deleted_objects(objs, request)

    def response_action(self, request, queryset):
        # The bulk deletion's check (its confirmation page, then again on "yes") and the deletion in one
        # transaction, as Django's single delete view has them: the owners it read stay locked until then.
        with transaction.atomic(using=router.db_for_write(self.model)):
            return super().response_action(request, queryset)

    def delete_model(self, request, obj):
        self._record_memberships_removed(request, [obj.pk])
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        self._record_memberships_removed(request, list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)

    def _record_memberships_removed(self, request, user_ids: list) -> None:
        for membership in Membership.objects.filter(user__in=user_ids).select_related("project", "user"):
            audit.record(membership.project, admin_actor(request), "member_removed", membership,
                         before=member_view(membership))
