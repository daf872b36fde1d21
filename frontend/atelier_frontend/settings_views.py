"""Project settings for owners: members and roles, API keys, review policy and thresholds, the
blocklist and the allow list, and the audit log. Each change goes through the platform's services and is audited."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from types import SimpleNamespace

from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import transaction
from django.db.models import Count
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy

from atelier_platform.accounts import invitations, members
from atelier_platform.accounts.models import MAX_KEY_RATE_LIMIT_PER_MINUTE, ApiKey, Invitation, Membership
from atelier_platform.accounts.roles import Capability, Role
from atelier_platform.accounts.services import (
    ScopeNotGrantable,
    create_api_key,
    rename_api_key,
    revoke_api_key,
    with_maker_membership,
)
from atelier_platform.config import get_config
from atelier_platform.exports.models import ExportKind
from atelier_platform.moderation import audit, policies
from atelier_platform.moderation.models import (LEASE_SECONDS, RETENTION_DAYS, AllowlistEntry, AuditEvent, BlocklistEntry,
                                                ReviewMode)
from atelier_platform.moderation.screening import policy_for
from atelier_platform.webhooks import services as webhooks
from atelier_platform.webhooks.events import SUBSCRIBABLE_EVENTS
from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

from atelier_frontend.actors import action_words, actor_names, change_words
from atelier_frontend.export_views import background_exports
from atelier_frontend.invitation_views import invitation_link, invitation_mail
from atelier_frontend.labels import UNPINNED_MODEL, category_label
from atelier_frontend.settings_refusals import category_of, coded_words, in_page_words, scope_words, webhook_words
from atelier_frontend.projects import needs
from atelier_frontend.schema_form import whole_number

AUDIT_ROWS = 50
DELIVERY_ROWS = 30
NEW_KEY_SESSION = "atelier_new_api_key"
NEW_WEBHOOK_SESSION = "atelier_new_webhook_secret"
NOTICE_SESSION = "atelier_settings_notice"
NEW_INVITATION_SESSION = "atelier_new_invitation"
INVITATION_ROWS = 100
WEBHOOK_ACTIONS = ("webhook_create", "webhook_update", "webhook_delete", "webhook_test", "webhook_rotate")
REASON = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
#: A new key's lifetimes the form offers, in days ("": it does not expire); the API takes any time up to 3650 days
KEY_LIFETIMES = [("", pgettext_lazy("a key's expiry", "never")), ("30", gettext_lazy("in 30 days")), ("90", gettext_lazy("in 90 days")),
                 ("365", gettext_lazy("in a year"))]
#: A key that expires within this is flagged in the list: its owner has that long to replace it
KEY_EXPIRY_WARNING = timedelta(days=7)
#: the policy form's fields as it labels them, to name a refused one in the page's words (the template's own
#: messages, whose "%" the translate tag doubles)
POLICY_FIELD_LABELS = {"review_mode": gettext_lazy("Mode"),
                       "audit_sample_percent": gettext_lazy("Audit sample, %% of released outputs"),
                       "lease_seconds": gettext_lazy("Lease, seconds"),
                       "content_retention_days": gettext_lazy("Keep generated content, days"),
                       "reject_reasons": gettext_lazy("Reject reasons (comma-separated)"),
                       "thresholds": gettext_lazy("Safety thresholds")}
#: The section of the page each action's form is in: a refused form's errors are shown there, at the form the
#: owner pressed Save in (a box at the top of a long page was out of sight, and Save seemed to do nothing).
SECTION_OF_ACTION = {"add_member": "members", "set_role": "members", "remove_member": "members",
                     "invite": "invitations", "revoke_invitation": "invitations",
                     "create_key": "key", "revoke_key": "key", "rename_key": "key", "policy": "policy", "blocklist": "blocklist",
                     "blocklist_remove": "blocklist", "allowlist": "allowlist", "allowlist_remove": "allowlist",
                     "plugin": "plugins", "plugin_defaults": "plugins", "evaluate": "evaluation", "reference_set_upload": "evaluation",
                     "reference_set_delete": "evaluation", "webhook_retry": "webhooks",
                     **{action: "webhooks" for action in WEBHOOK_ACTIONS}}
BLOCKLIST_CATEGORIES = ["custom", "sexual", "sexual/minors", "hate", "harassment", "violence", "self-harm", "illicit",
                        "personal_data", "prompt_injection", "spam"]
#: the kinds of allow-list entry the form offers (empty: detected from each line)
ALLOW_KINDS = [("term", gettext_lazy("word or phrase")), ("email", gettext_lazy("e-mail address")),
               ("phone", gettext_lazy("phone number")), ("url", gettext_lazy("web address"))]


class NotInProject(ValidationError):
    """A form named something this project does not have (another project's invitation, one never made): the page
    answers 404 with the refusal, as the API does for an object of another project."""


@needs(Capability.ADMIN)
def project_settings(request, here):
    from atelier_frontend.views import page

    project, actor = here.project, f"user:{request.user.pk}"
    errors, notice, new_key = [], "", None
    webhook_form = None  # the webhook form that was refused, to show again with its errors
    refused = ""  # the action whose form was refused: shown again as it was typed, not as stored
    invalid: dict[str, list[str]] = {}  # the refused form's inputs its errors are about, by name: marked, with their errors
    invited = None  # a new invitation, e-mailed once its transaction has committed
    missing = False  # the form named an object of another project, or none: 404
    defaults_form = None  # a plugin's default params form that was refused, as typed, its errors on its fields
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            _refuse_nul(request.POST)
            # all of a change or none of it: a step refused after another was written leaves nothing behind
            with transaction.atomic():
                if action in WEBHOOK_ACTIONS:
                    notice, webhook_form = _webhook(request, project, actor, action)
                elif action == "webhook_retry":
                    notice = _retry_delivery(project, actor, request.POST)
                elif action in ("add_member", "set_role", "remove_member"):
                    notice = _members(project, actor, request.POST, action, here.capabilities, request.user)
                elif action == "invite":
                    # any role, owner too: an owner may already make any member owner
                    invited = invitations.invite(project, actor, email=request.POST.get("email", ""),
                                                 role=request.POST.get("role", ""), invited_by=request.user,
                                                 granted_by=here.capabilities)
                elif action == "revoke_invitation":
                    notice = _revoke_invitation(project, actor, request.POST)
                elif action == "create_key":
                    # the same service as POST /api/v1/keys/: never a scope the owner lacks, audited alike. The
                    # form ticks the default scopes; unticking every box asks for a key with none, which the service
                    # refuses (it was read as "not said" and gave the default jobs:read jobs:write)
                    new_key = create_api_key(project, actor, granted_by=here.capabilities,
                                             scopes=request.POST.getlist("scopes"),
                                             name=request.POST.get("name", "").strip()[:100], created_by=request.user,
                                             rate_limit_per_minute=_key_rate_limit(request.POST),
                                             expires_at=_key_expiry(request.POST))
                    # shown on the page the redirect leads to, then gone: reloading cannot show it again
                    # (nor, re-posting the form, make another key)
                    request.session[NEW_KEY_SESSION] = new_key.raw
                elif action == "revoke_key":
                    key = ApiKey.objects.filter(project=project, pk=whole_number(request.POST.get("key"))).first()
                    if key is not None and key.revoked_at is None:
                        revoke_api_key(key, actor)
                        notice = _("Key %(prefix)s revoked.") % {"prefix": key.prefix}
                elif action == "rename_key":
                    key = ApiKey.objects.filter(project=project, pk=whole_number(request.POST.get("key"))).first()
                    if key is not None:
                        rename_api_key(key, request.POST.get("new_name", ""), actor)
                        notice = _("Key %(prefix)s renamed.") % {"prefix": key.prefix}
                elif action == "plugin":
                    notice = _plugin(project, actor, request.POST)
                elif action == "plugin_defaults":
                    notice = _plugin_defaults(project, actor, request.POST)
                elif action == "evaluate":
                    notice = start_evaluation(project, request.user, actor, request.POST)
                elif action == "reference_set_upload":
                    notice = _upload_reference_set(project, request.user, actor, request.POST, request.FILES)
                elif action == "reference_set_delete":
                    notice = _delete_reference_set(project, actor, request.POST)
                elif action == "policy":
                    policies.update_policy(project, actor, _policy_changes(request.POST), granted_by=here.capabilities)
                    notice = _("Review policy saved.")
                elif action == "blocklist":
                    terms = [{"pattern": line.strip(), "is_regex": request.POST.get("is_regex") == "on",
                              "category": request.POST.get("category", "custom")}
                             for line in request.POST.get("terms", "").splitlines() if line.strip()]
                    if request.POST.get("category") not in BLOCKLIST_CATEGORIES:
                        raise ValidationError(_("Choose a category."))
                    result = policies.import_blocklist(project, actor, terms, replace=request.POST.get("replace") == "on")
                    notice = _("Blocklist: %(added)s added, %(removed)s removed, %(total)s in all.") % result
                elif action == "blocklist_remove":
                    terms = [{"pattern": line.strip(), "is_regex": request.POST.get("remove_regex") == "on"}
                             for line in request.POST.get("remove_terms", "").splitlines() if line.strip()]
                    if not terms:
                        raise ValidationError({"remove_terms": [_("Type the terms to remove, one per line.")]})
                    result = policies.remove_blocklist_terms(project, actor, terms)
                    notice = ngettext("Blocklist: %(removed)s term removed, %(total)s left. Texts with it are no longer "
                                      "blocked.", "Blocklist: %(removed)s terms removed, %(total)s left. Texts with "
                                      "them are no longer blocked.", result["removed"]) % result
                elif action == "allowlist_remove":
                    ids = [whole_number(value) for value in request.POST.getlist("remove")]
                    if not ids:
                        raise ValidationError({"remove": [_("Tick the entries to remove.")]})
                    if None in ids:
                        raise ValidationError({"remove": [_("No such entry.")]})
                    result = policies.remove_allowlist_ids(project, actor, ids)
                    notice = ngettext("Allow list: %(removed)s entry removed, %(total)s left.",
                                      "Allow list: %(removed)s entries removed, %(total)s left.", result["removed"]) % result
                elif action == "allowlist":
                    kind = request.POST.get("allow_kind", "")
                    if kind and kind not in dict(ALLOW_KINDS):
                        raise ValidationError(_("Choose a kind."))
                    entries = [{"value": line.strip(), "kind": kind or None}
                               for line in request.POST.get("allow_entries", "").splitlines() if line.strip()]
                    result = policies.import_allowlist(project, actor, entries, replace=request.POST.get("replace") == "on")
                    notice = _("Allow list: %(added)s added, %(removed)s removed, %(total)s in all.") % result
        except ValidationError as error:
            missing = isinstance(error, NotInProject)
            errors.extend(_messages(error, request.POST))
            invalid = _invalid_inputs(error, request.POST)
            defaults_form = getattr(error, "form", None)
            refused = action
        except ScopeNotGrantable as error:
            errors.append(scope_words(error))
            refused = action
        if invited is not None and not errors:
            # after the commit: a slow or failing mail server holds no lock and loses no invitation; the link is
            # shown once on the page the redirect leads to, whether the e-mail went or not
            link = invitation_link(request, invited.token)
            mail = invitations.send(invited, **invitation_mail(invited, link, request.user))
            request.session[NEW_INVITATION_SESSION] = {
                "link": link, "email": invited.invitation.email, "role": invited.invitation.role, "mail": mail,
                "replaced": invited.replaced is not None}
        if not errors and not webhook_form:
            if notice:
                request.session[NOTICE_SESSION] = notice
            anchor = ("#webhooks" if action in WEBHOOK_ACTIONS or action == "webhook_retry" else
                      "#invitations" if action in ("invite", "revoke_invitation") else
                      # (and a pin made from a version's row there, beside its scores)
                      "#evaluation" if SECTION_OF_ACTION.get(action) == "evaluation" or request.POST.get("from") == "evaluation"
                      # (a plugin installed: its id is a manifest's, [a-z0-9_])
                      else f"#defaults-{request.POST['plugin']}" if action == "plugin_defaults"
                      else "")
            if not Membership.objects.filter(project=project, user=request.user, role=Role.OWNER).exists():
                # they gave up their own ownership (or left): the settings page would answer 403 now
                return redirect("home")
            return redirect(f"{request.path}?saved=1{anchor}")
    new_key = request.session.pop(NEW_KEY_SESSION, None)
    new_webhook = request.session.pop(NEW_WEBHOOK_SESSION, None)
    new_invitation = request.session.pop(NEW_INVITATION_SESSION, None)
    if new_webhook and new_webhook.get("old_until"):
        new_webhook["old_until"] = parse_datetime(new_webhook["old_until"])  # for the page to show in its time zone
    if request.method != "POST":
        notice = request.session.pop(NOTICE_SESSION, "") or notice
    if request.GET.get("saved") and not notice and not new_key and not new_webhook and not new_invitation:
        notice = _("Saved.")

    policy = policy_for(project)
    shown_policy = _posted_policy(request.POST, policy) if refused == "policy" else {
        "policy": policy, "thresholds": sorted(policy.thresholds.items()), "reasons": ", ".join(policy.reasons)}
    response = page(request, "atelier_frontend/settings.html", {
        "members": Membership.objects.filter(project=project).select_related("user").order_by("user__username"),
        "roles": Role.choices, "keys": _keys(project), "server_rate_limit": get_config().rate_limit_per_minute,
        "key_lifetimes": KEY_LIFETIMES,
        "invitations": _invitations(project), "new_invitation": new_invitation,
        "invite_form": request.POST if refused == "invite" else {},
        "scopes": Capability.choices, "new_key": new_key, "review_modes": ReviewMode.choices, **shown_policy,
        "blocklist_form": request.POST if refused == "blocklist" else {},
        "blocklist": BlocklistEntry.objects.filter(project=project).values("category").annotate(n=Count("id")).order_by("category"),
        "categories": BLOCKLIST_CATEGORIES,
        "blocklist_remove_form": request.POST if refused == "blocklist_remove" else {},
        "allowlist_form": request.POST if refused == "allowlist" else {},
        "allowlist_ticked": {whole_number(v) for v in request.POST.getlist("remove")} if refused == "allowlist_remove" else set(),
        "allowlist": AllowlistEntry.objects.filter(project=project).order_by("kind", "normalised")[:1000],
        "allow_kinds": ALLOW_KINDS,
        **_audit(project, request.GET),
        **background_exports(request, project, ExportKind.AUDIT, prefix="audit_"),
        **_plugins_and_evaluations(project, defaults_form),
        "reference_set_form": request.POST if refused == "reference_set_upload" else {},
        **_webhook_forms(project, WebhookEndpoint.objects.filter(project=project).order_by("created_at")[:50],
                         webhook_form),
        "event_types": SUBSCRIBABLE_EVENTS, "new_webhook": new_webhook,
        **_deliveries(project, request.GET),
        "errors": errors, "notice": notice, "invalid": invalid,
        "refused_section": SECTION_OF_ACTION.get(refused or request.POST.get("action", ""), "") if errors or webhook_form else "",
    }, status=404 if missing else 400 if errors or webhook_form else 200)
    if new_key or new_webhook or new_invitation:
        # a secret in clear: not for the browser's cache (Back, or the disk of a shared computer)
        add_never_cache_headers(response)
    return response


#: the audit log's filters on the settings page (query parameters) and the API's names for them, which its export
#: links carry: an export holds what the page found, not the whole log
AUDIT_FILTERS = {"audit_action": "action", "audit_actor": "actor", "audit_object": "object_id",
                 "audit_from": "created_after", "audit_to": "created_before"}


def _key_rate_limit(posted) -> int | None:
    """The new key's own requests per minute, as the API takes it: empty for the server's limit, else from 1 to
    that limit (an owner may make a slower key for a script that must not starve the others)."""
    typed = posted.get("rate_limit_per_minute", "").strip()
    if not typed:
        return None
    server_limit = get_config().rate_limit_per_minute
    wanted = whole_number(typed)
    # without a server limit, the most a key's column holds (a larger number failed the insert: a 500)
    if wanted is None or wanted < 1 or wanted > (server_limit or MAX_KEY_RATE_LIMIT_PER_MINUTE):
        raise ValidationError(_("Requests per minute: a whole number from 1 to %(limit)s, or empty for the "
                                "server's limit.") % {"limit": server_limit} if server_limit else
                              _("Requests per minute: a whole number from 1 to %(limit)s, or empty for no limit.")
                              % {"limit": MAX_KEY_RATE_LIMIT_PER_MINUTE})
    return wanted


def _key_expiry(posted):
    """The new key's expiry from the lifetime chosen (``KEY_LIFETIMES``); None: it does not expire."""
    from django.utils import timezone

    chosen = posted.get("expires_in_days", "").strip()
    if chosen not in dict(KEY_LIFETIMES):
        raise ValidationError(_("Expires: choose one of the lifetimes offered."))
    return timezone.now() + timedelta(days=int(chosen)) if chosen else None


def _keys(project) -> list:
    """The project's keys, the active ones first and newest first, with who made each and whether they are still
    a member (one query); each says whether it has expired, or expires within ``KEY_EXPIRY_WARNING``."""
    from django.db.models import F
    from django.utils import timezone

    keys = list(with_maker_membership(ApiKey.objects.filter(project=project)).select_related("created_by")
                .order_by(F("revoked_at").desc(nulls_first=True), "-created_at")[:100])
    now = timezone.now()
    for key in keys:
        key.expired = key.expires_at is not None and key.expires_at <= now
        key.expires_soon = not key.expired and key.expires_at is not None and key.expires_at - now <= KEY_EXPIRY_WARNING
        key.maker_left = key.created_by_id is not None and not key.maker_is_member
    return keys


def audit_filters(query) -> tuple[dict[str, str], dict, list[str], dict[str, str]]:
    """The audit log's filters on the settings page: as typed (``AUDIT_FILTERS``' names; a day that is no date left
    out), as the moments they mean, what is wrong with them, and as the API's query names them (the export links'
    and the background export's filters)."""
    filters = {name: query.get(name, "").strip().replace("\x00", "")[:100] for name in AUDIT_FILTERS}
    errors, moments = [], {}
    for name, api_name in (("audit_from", "created_after"), ("audit_to", "created_before")):
        if filters[name]:
            day = _day(filters[name])
            if day is not None and name == "audit_to" and day.date() == day.date().max:
                day = None  # "to" 9999-12-31 would end after the last day a date can name
            if day is None:
                errors.append(_("Dates as 2026-12-01."))
                filters[name] = ""
            else:
                # "to" a day includes it: the events before the next one
                moments[api_name] = day + timedelta(days=1) if name == "audit_to" else day
    api_filters = {AUDIT_FILTERS[name]: value for name, value in filters.items() if value and name not in ("audit_from", "audit_to")}
    api_filters.update({name: moment.date().isoformat() for name, moment in moments.items()})
    return filters, moments, errors, api_filters


def _audit(project, query) -> dict:
    """The audit log section: its latest events (or those before ``audit_before``, the page of older ones) narrowed
    by the filters asked for, each saying who in names and what in words (the exports keep the ids and codes); the
    actions and actors to filter by; the link to the older events; the export's query."""
    from urllib.parse import urlencode

    filters, moments, errors, api_filters = audit_filters(query)
    events = audit.search(project, action=filters["audit_action"], actor=filters["audit_actor"],
                          object_id=filters["audit_object"], **moments)
    before = whole_number(query.get("audit_before", ""))
    if before is not None and before >= 2 ** 63:
        before = None  # past any id: a link nobody was given (PostgreSQL would refuse the number)
    shown = list((events.filter(id__lt=before) if before else events).order_by("-id")[:AUDIT_ROWS + 1])
    older = shown[AUDIT_ROWS].pk + 1 if len(shown) > AUDIT_ROWS else None
    shown = shown[:AUDIT_ROWS]
    # order_by(): the model's ordering (created_at, id) would join the DISTINCT, which then kept every event, and the
    # 200 rows were the oldest events': whoever or whatever acted only after them was missing from the selects
    known = AuditEvent.objects.filter(project=project).order_by()
    actors = sorted(set(known.values_list("actor", flat=True).distinct()[:200]))
    names = actor_names(project, [*actors, *(event.actor for event in shown)])
    jobs = _jobs_of(project, shown)
    rows = [{"event": event, "who": names.get(event.actor, event.actor), "what": action_words(event.action),
             "details": change_words(event.before, event.after), "job": jobs.get((event.object_type, event.object_id))}
            for event in shown]
    kept = {name: value for name, value in filters.items() if value}
    return {
        "audit": rows, "audit_filters": filters, "audit_filtered": bool(kept), "audit_errors": errors,
        "audit_actions": sorted(((code, action_words(code)) for code in set(known.values_list("action", flat=True)
                                                                              .distinct()[:200])), key=lambda pair: pair[1]),
        "audit_actors": sorted(((actor, names.get(actor, actor)) for actor in actors), key=lambda pair: pair[1].lower()),
        "audit_older": urlencode({**kept, "audit_before": older}) if older else "",
        "audit_export": urlencode({**api_filters, "project": project.slug}),
    }


def _day(text: str):
    from datetime import datetime, time, timezone as dt_timezone

    from django.utils.dateparse import parse_date

    try:
        day = parse_date(text)
    except ValueError:
        return None
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc) if day else None


def _jobs_of(project, events) -> dict[tuple[str, str], str]:
    """The job each shown event about a job, an output or a review item belongs to, for a link to its page (where
    its timeline is); two queries whatever the number of events."""
    import uuid

    from atelier_platform.jobs.models import Job, Output
    from atelier_platform.moderation.models import ReviewItem

    def uuids(kind):
        found = []
        for event in events:
            if event.object_type == kind:
                try:
                    found.append(uuid.UUID(event.object_id))
                except ValueError:
                    pass
        return found

    items = {e.object_id for e in events if e.object_type == "reviewitem" and e.object_id.isdigit()}
    outputs = {str(pk): str(job) for pk, job in Output.objects.filter(job__project=project, pk__in=uuids("output"))
               .values_list("pk", "job_id")}
    by_item = {str(pk): str(job) for pk, job in ReviewItem.objects.filter(project=project, pk__in=[int(i) for i in items])
               .values_list("pk", "output__job_id")}
    jobs = {("job", str(pk)): str(pk) for pk in Job.objects.filter(project=project, pk__in=uuids("job"))
            .values_list("pk", flat=True)}
    return {**jobs, **{("output", k): v for k, v in outputs.items()}, **{("reviewitem", k): v for k, v in by_item.items()}}


def _refuse_nul(posted) -> None:
    """A NUL character in any name or value posted: PostgreSQL refuses one in a query, so nothing is looked
    up or saved with it."""
    refuse = ProhibitNullCharactersValidator()
    for name, values in posted.lists():
        for text in (name, *values):
            refuse(text)


def _messages(error: ValidationError, posted) -> list[str]:
    """A refusal's messages in the page's words (``settings_refusals``), each naming the field it is about."""
    if hasattr(error, "error_dict"):
        return [f"{_field_words(field, posted)}: {in_page_words(refusal)}" for field, refusals in error.error_dict.items()
                for refusal in refusals]
    return [in_page_words(refusal) for refusal in error.error_list]


def _invalid_inputs(error: ValidationError, posted) -> dict[str, list[str]]:
    """The inputs a refusal is about, by name, each with its errors to show beside it: a policy field, both of a
    threshold's inputs (the category the policy refused), the blocklist's terms (each error naming its line), the
    allow list's entries."""
    if not hasattr(error, "error_dict"):
        return {}
    inputs: dict[str, list[str]] = {}
    for field, refusals in error.error_dict.items():
        messages = [in_page_words(refusal) for refusal in refusals]
        if field == "thresholds":
            for refusal, message in zip(refusals, messages):
                category = category_of(refusal)
                for name in (f"review:{category}", f"block:{category}") if category else ("thresholds",):
                    inputs.setdefault(name, []).append(message)
        elif field.startswith("terms."):
            inputs.setdefault(_terms_input(posted), []).extend(f"{_field_words(field, posted)}: {message}" for message in messages)
        elif field == "entries" or field.startswith("entries."):
            inputs.setdefault("allow_entries", []).extend(messages)
        else:
            inputs.setdefault(field, []).extend(messages)
    return inputs


def _terms_input(posted) -> str:
    """The text area whose lines a refusal's ``terms.N.pattern`` numbers: the import's, or the removal's."""
    return "remove_terms" if posted.get("action") == "blocklist_remove" else "terms"


def _field_words(field: str, posted) -> str:
    """A refused field as the form shows it: by its label, a threshold by its category and column, a blocklist
    term by its line in the text pasted (not ``reject_reasons``, ``review:hate`` or ``terms.7.pattern``)."""
    if field in POLICY_FIELD_LABELS:
        return str(POLICY_FIELD_LABELS[field]).replace("%%", "%")
    kind, _colon, category = field.partition(":")
    if category and kind in ("review", "block"):
        return f"{category_label(category)}: {_('Review at') if kind == 'review' else _('Block at')}"
    if field in ("entries", "remove"):
        return _("Allow list")
    if field == "remove_terms":
        return _("Blocklist")
    if posted.get("action") == "reference_set_upload" and field in ("name", "plugin", "file"):
        return {"name": _("Name"), "plugin": _("Plugin"), "file": _("File")}[field]
    term = re.fullmatch(r"terms\.(\d+)\.pattern", field) or re.fullmatch(r"entries\.(\d+)\.value", field)
    if term:
        # the service numbers the terms (or allow-list entries), which are the text's lines less the blank ones
        text = posted.get(_terms_input(posted) if field.startswith("terms.") else "allow_entries", "")
        lines = [number for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        if int(term[1]) < len(lines):
            return _("Line %(line)s") % {"line": lines[int(term[1])]}
    return field


def _posted_policy(posted, stored) -> dict:
    """A refused policy form as the owner typed it, for the template to show as it shows the stored policy:
    whatever else they changed is not lost with the one value refused."""
    typed = SimpleNamespace(
        review_mode=posted.get("review_mode", ""), audit_sample_percent=posted.get("audit_sample_percent", ""),
        lease_seconds=posted.get("lease_seconds", ""), content_retention_days=posted.get("content_retention_days", ""),
        **{name: posted.get(name) == "on" for name in ("second_review_for_flagged", "forbid_self_approval", "mask_personal_data")})
    thresholds = [(category, {"review": posted.get(f"review:{category}", limits["review"]),
                              "block": posted.get(f"block:{category}", limits["block"])})
                  for category, limits in sorted(stored.thresholds.items())]
    return {"policy": typed, "thresholds": thresholds, "reasons": posted.get("reject_reasons", "")}


def _members(project, actor, posted, action, capabilities, user) -> str:
    """A member added, given a role or removed (``accounts.members``: its refusals are said by their codes,
    ``settings_refusals``; the API's rules, who may be added without an invitation included); the notice says what
    was done."""
    if action == "add_member":
        membership = members.add(project, actor, username=posted.get("username", ""), role=posted.get("role", ""),
                                 granted_by=capabilities, added_by=user)
        return _("%(username)s added as %(role)s.") % {"username": membership.user.username, "role": _(membership.role)}
    membership = Membership.objects.filter(project=project, pk=whole_number(posted.get("member"))).select_related("user").first()
    if membership is None:
        raise ValidationError(_("No such member."))
    try:
        if action == "remove_member":
            change = members.remove(project, membership, actor, granted_by=capabilities)
        else:
            change = members.change_role(project, membership, actor, role=posted.get("role", ""),
                                         granted_by=capabilities)
    except Membership.DoesNotExist:  # removed meanwhile
        raise ValidationError(_("No such member.")) from None
    names = {"username": membership.user.username, "role": _(change.membership.role), "before": _(change.before)}
    if action == "remove_member":
        said = _("%(username)s removed from the project: they lost access at once.") % names
    elif not change.changed:
        return _("%(username)s is already %(role)s: nothing changed.") % names
    else:
        said = _("%(username)s is now %(role)s (was %(before)s).") % names
    if change.revoked_invitations:
        said += " " + ngettext("The invitation they sent was revoked.", "The %(n)s invitations they sent were revoked.",
                               change.revoked_invitations) % {"n": change.revoked_invitations}
    return said


def _invitations(project) -> list:
    """The project's open invitations, newest first, each marked ``expired`` once its link no longer works."""
    from django.utils import timezone

    now = timezone.now()
    rows = list(invitations.open_invitations(project)[:INVITATION_ROWS])
    for row in rows:
        row.expired = row.expires_at <= now
        row.sender = _sender_words(row)
    return rows


def _sender_words(invitation) -> str:
    """Who sent an invitation: a member by username, a key (through the API) as the audit log names it."""
    if invitation.invited_by is not None:
        return invitation.invited_by.username
    key = invitation.invited_by_key
    if key is None:
        return "–"
    names = {"name": key.name, "key": f"atl_{key.prefix}_…"}
    return _("API key %(name)s (%(key)s)") % names if key.name else _("API key %(key)s") % names


def _revoke_invitation(project, actor, posted) -> str:
    invitation = Invitation.objects.filter(project=project, pk=whole_number(posted.get("invitation"))).first()
    if invitation is None:
        raise NotInProject(_("No such invitation."))
    if not invitations.revoke(invitation, actor):
        raise ValidationError(_("The invitation of %(email)s was used or revoked already.") % {"email": invitation.email})
    return _("The invitation of %(email)s is revoked: its link no longer works.") % {"email": invitation.email}


def _policy_changes(posted) -> dict:
    def number(name, kind=int):
        try:
            return kind(posted.get(name, ""))
        except ValueError:
            raise ValidationError({name: [_("Enter a number.")]}) from None

    thresholds = {}
    for key in posted:
        if key.startswith("review:"):
            category = key.split(":", 1)[1]
            thresholds[category] = {"review": number(f"review:{category}", float), "block": number(f"block:{category}", float)}
    reasons = [r.strip() for r in posted.get("reject_reasons", "").split(",") if r.strip()]
    if not reasons or not all(REASON.match(r) for r in reasons):
        raise ValidationError({"reject_reasons": [_("Give reasons as lowercase words joined by underscores, separated by commas.")]})
    if not LEASE_SECONDS[0] <= number("lease_seconds") <= LEASE_SECONDS[1]:
        raise ValidationError({"lease_seconds": [_("From 30 to 86,400 seconds (a day).")]})
    retention = None  # empty: content is kept for good
    if posted.get("content_retention_days", "").strip():
        retention = number("content_retention_days")
        if not RETENTION_DAYS[0] <= retention <= RETENTION_DAYS[1]:
            raise ValidationError({"content_retention_days": [_("From 1 to 3,650 days (ten years), or empty to keep "
                                                                "content for good.")]})
    return {
        "content_retention_days": retention,
        "review_mode": posted.get("review_mode"),
        "audit_sample_percent": number("audit_sample_percent"),
        "lease_seconds": number("lease_seconds"),
        "second_review_for_flagged": posted.get("second_review_for_flagged") == "on",
        "forbid_self_approval": posted.get("forbid_self_approval") == "on",
        "mask_personal_data": posted.get("mask_personal_data") == "on",
        "reject_reasons": reasons,
        "thresholds": thresholds,
    }


def _plugins(project, defaults_form=None) -> list[dict]:
    """Installed plugins with this project's switch and model version, the versions to choose from, and the form of
    its default params (``defaults_form``: the one refused, as it was typed)."""
    from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
    from atelier_platform.catalog.registry import get_registry
    from atelier_platform.catalog.services import param_defaults_of

    from atelier_frontend.plugin_defaults import defaults_form as form_of

    settings = {p.plugin_id: p for p in ProjectPlugin.objects.filter(project=project).select_related("model_version")}
    versions: dict[str, list] = {}
    # the shared versions and this project's own: another tenant's fine-tunes are not even named here
    for version in ModelVersion.objects.available_to(project).order_by("plugin_id", "-created_at")[:500]:
        versions.setdefault(version.plugin_id, []).append(version)
    rows = []
    for plugin in get_registry().available():
        setting = settings.get(plugin.manifest.id)
        refused = defaults_form is not None and defaults_form.plugin_id == plugin.manifest.id
        rows.append({"plugin": plugin.manifest, "enabled": bool(setting and setting.enabled),
                     "model_version": setting.usable_model_version if setting else None,
                     "versions": versions.get(plugin.manifest.id, []),
                     "defaults": defaults_form if refused else
                     form_of(plugin, param_defaults_of(setting.config if setting else None))})
    return rows


def _plugins_and_evaluations(project, defaults_form=None) -> dict:
    plugins = _plugins(project, defaults_form)
    from atelier_platform.evaluation.services import MAX_CASES, evaluable_plugin_ids
    from atelier_platform.evaluation.uploads import MAX_UPLOAD_BYTES, MAX_ZIP_BYTES

    return {"plugins": plugins, "evaluations": _evaluations(project, plugins), "evaluable_plugins": evaluable_plugin_ids(),
            "max_cases": MAX_CASES, "max_upload_mib": MAX_UPLOAD_BYTES // 2**20, "max_zip_mib": MAX_ZIP_BYTES // 2**20}


def _evaluations(project, plugins) -> list[dict]:
    """Each reference set of the project with a row per model version it may evaluate (the current model first):
    the newest scored run's metrics, the newest run if one is going or failed after it, and what the Evaluate
    button starts. A few queries however many sets and runs."""
    from atelier_platform.evaluation import history, services as evaluation
    from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus

    installed = {row["plugin"].id: row for row in plugins if row["plugin"].id in evaluation.evaluable_plugin_ids()}
    sets = list(ReferenceSet.objects.filter(project=project, plugin_id__in=list(installed)).with_case_count()
                .order_by("name")[:50])
    if not sets:
        return []
    versions = {plugin_id: list(evaluation.evaluable_model_versions(project, plugin_id).order_by("-created_at")[:50])
                for plugin_id in {s.plugin_id for s in sets}}
    by_name = history.versions_by_name(v for listed in versions.values() for v in listed)

    newest, scored = {}, {}
    for run in (EvaluationRun.objects.filter(project=project, reference_set__in=sets).defer("results")
                .order_by("-created_at", "-id")[:2000]):
        if run.status == RunStatus.SUCCEEDED:
            # the model that answered it: a run of "the current model" counts for the one current then
            scored.setdefault((run.reference_set_id, history.answered_by(run, by_name)), run)
        newest.setdefault((run.reference_set_id, run.model_version_id or "current"), run)
    shown = []
    for reference_set in sets:
        plugin = installed[reference_set.plugin_id]
        current = plugin["model_version"]
        rows = [{"version": None, "answered_by": f"v{current.pk}" if current else history.DEFAULT, "label": _(
            "current model: %(model)s") % {"model": current.version if current else UNPINNED_MODEL}}]
        rows += [{"version": v, "answered_by": f"v{v.pk}", "label": f"{v.version} · {v.model_dir}",
                  "pinned": current is not None and v.pk == current.pk} for v in versions[reference_set.plugin_id]]
        for row in rows:
            row["once"] = uuid.uuid4().hex  # the Evaluate form's one-time token (``start_evaluation``)
            row["scored"] = scored.get((reference_set.pk, row["answered_by"]))
            latest = newest.get((reference_set.pk, row["version"].pk if row["version"] else "current"))
            row["latest"] = latest if latest is not None and latest is not row["scored"] else None
        shown.append({"set": reference_set, "plugin": plugin["plugin"], "enabled": plugin["enabled"],
                      "cases": reference_set.case_count, "rows": rows,
                      "images": reference_set.plugin_id in evaluation.IMAGE_PLUGINS,
                      "scores": _scores_shown(reference_set.plugin_id,
                                               [row["scored"] for row in rows if row["scored"] is not None])})
    return shown


def _scores_shown(plugin_id, runs) -> str:
    """Which two figures a text set's runs are summed up by (the run page's primary metric, without reading the set's
    cases): NDCG and hit rate where its runs scored rankings, source recall and precision where they scored sources,
    else chrF and BLEU (a set of rankings alone has no chrF to show)."""
    from atelier_platform.evaluation.comparison import runs_primary_score

    primary = runs_primary_score(plugin_id, [run.metrics for run in runs])
    return "text" if primary == "chrf" else primary


#: an Evaluate form's one-time token, as ``_evaluations`` makes it
ONE_TIME_TOKEN = re.compile(r"[0-9a-f]{32}")


def start_evaluation(project, user, actor, posted) -> str:
    """Start an evaluation run from the settings page or a reference set's page, through the service the API uses; the
    notice that says what it did. The form's one-time token is
    the start's Idempotency-Key: a double click (or a resent form) gives the run the first click started, not a second
    run of up to 500 jobs. The second request waits for the first's commit (the key's row, written in this page's
    transaction) and then finds its run."""
    from atelier_platform.evaluation import services as evaluation
    from atelier_platform.jobs.errors import JobServiceError
    from atelier_platform.usage.errors import IdempotencyInFlight

    reference_set = _reference_set_of(project, posted)  # another project's: 404, as for a deletion
    chosen = posted.get("model_version", "")
    version_id = whole_number(chosen) if chosen else None
    if chosen and version_id is None:
        raise ValidationError(_("No such model version for this plugin."))
    once = posted.get("once", "")
    if not ONE_TIME_TOKEN.fullmatch(once):
        raise ValidationError(_("This form is out of date: reload the page and press Evaluate again."))
    try:
        run, started = evaluation.start_run_once(project, reference_set, idempotency_key=f"dashboard:{once}",
                                                 model_version_id=version_id, actor=actor, user=user)
    except IdempotencyInFlight:
        raise ValidationError(_("This evaluation is being started already: reload the page in a moment to see it.")
                              ) from None
    except JobServiceError as error:
        raise ValidationError(_("The evaluation could not start: %(reason)s") % {"reason": error.message}) from None
    model = _model_words(run.model_version) if run.model_version else _("the current model")
    if not started:  # the same form again: a double click, or the page the back button showed again
        return _("Evaluation of %(set)s with %(model)s was started already from this form: nothing more started. "
                 "To evaluate again, reload the page and press Evaluate.") % {"set": reference_set.name, "model": model}
    return _("Evaluation of %(set)s with %(model)s started; its jobs wait behind the project's own. Reload the page "
             "to see its progress.") % {"set": reference_set.name, "model": model}


def _reference_set_of(project, posted):
    import uuid

    from atelier_platform.evaluation.models import ReferenceSet

    try:
        set_id = uuid.UUID(posted.get("reference_set", ""))
    except ValueError:
        set_id = None
    reference_set = ReferenceSet.objects.filter(project=project, pk=set_id).first() if set_id else None
    if reference_set is None:
        raise NotInProject(_("No such reference set in this project."))
    return reference_set


def _upload_reference_set(project, user, actor, posted, files) -> str:
    """A reference set from an uploaded CSV or JSON Lines file, through the service the API uses (its checks, its
    audit entry); refused, nothing is saved, and each bad line is named with its column, in the page's words."""
    from atelier_platform.evaluation import services as evaluation
    from atelier_platform.evaluation.uploads import (MAX_UPLOAD_BYTES, MAX_ZIP_BYTES, UploadRefused,
                                                      create_reference_set_from_upload)
    from atelier_platform.jobs.errors import JobServiceError

    from atelier_frontend.evaluation_words import UPLOAD_REASONS, upload_refusal_words

    name = posted.get("name", "").strip()
    if not name:
        raise ValidationError({"name": [_("Name the reference set.")]})
    if len(name) > 100:
        raise ValidationError({"name": [_("At most 100 characters.")]})
    plugin_id = posted.get("plugin", "")
    if plugin_id not in evaluation.evaluable_plugin_ids():
        raise ValidationError({"plugin": [_("Choose a plugin.")]})
    upload = files.get("file")
    if upload is None:
        raise ValidationError({"file": [_("Choose a file.")]})
    limit = MAX_ZIP_BYTES if plugin_id in evaluation.IMAGE_PLUGINS else MAX_UPLOAD_BYTES  # an image set's ZIP
    if upload.size > limit:  # said before it is read
        raise ValidationError({"file": [str(UPLOAD_REASONS["too_large"]) % {"limit_mib": limit // 2**20}]})
    try:
        reference_set = create_reference_set_from_upload(
            project, plugin_id=plugin_id, name=name, filename=upload.name or "", data=upload.read(), actor=actor,
            user=user)
    except UploadRefused as error:
        raise ValidationError({"file": upload_refusal_words(error)}) from None
    except JobServiceError as error:
        lines = upload_refusal_words(error)
        if lines:
            raise ValidationError({"file": lines}) from None
        if error.code == "limit_exceeded":
            raise ValidationError({"file": [_("At most %(limit)s cases per reference set.") % {
                "limit": evaluation.MAX_CASES}]}) from None
        if "name" in (error.details or {}):
            raise ValidationError({"name": [_("The project has a reference set named %(name)s already.") % {
                "name": name}]}) from None
        if "plugin" in (error.details or {}):
            raise ValidationError({"plugin": [_("Choose a plugin.")]}) from None
        raise ValidationError(error.message) from None
    count = len(reference_set.cases)
    return ngettext("Reference set %(name)s saved with %(n)s case.", "Reference set %(name)s saved with %(n)s cases.",
                    count) % {"name": reference_set.name, "n": count}


def _delete_reference_set(project, actor, posted) -> str:
    """Delete a set through the service the API uses: refused while one of its runs is going."""
    from atelier_platform.evaluation import services as evaluation

    reference_set = _reference_set_of(project, posted)
    try:
        evaluation.delete_reference_set(reference_set, actor=actor)
    except evaluation.ReferenceSetBusy:
        raise ValidationError(_("A run of %(name)s is still going; delete it once the run has finished.") % {
            "name": reference_set.name}) from None
    return _("Reference set %(name)s and its runs deleted.") % {"name": reference_set.name}


def _plugin(project, actor, posted) -> str:
    """The switch and the pin of a plugin's row, through the service the API uses (its checks, its audit event)."""
    from atelier_platform.catalog.configuration import configure_plugin
    from atelier_platform.catalog.registry import get_registry
    from atelier_platform.jobs.errors import InvalidJobInput, UnknownPlugin

    plugin_id = posted.get("plugin", "")
    chosen = posted.get("model_version", "")
    # a number that is no id is no version either: refused as one the plugin does not have
    version_id = (whole_number(chosen) or -1) if chosen else None
    try:
        configured = configure_plugin(project, plugin_id, actor, enabled=posted.get("enabled") == "on",
                                      model_version=version_id)
    except UnknownPlugin:
        raise ValidationError(_("No such plugin is installed.")) from None
    except InvalidJobInput:
        # another project's private version reads as no version at all: a forged id learns nothing of it
        raise ValidationError(_("No such model version for this plugin.")) from None
    # what the change does, said where it was made: a pin (a promotion, a rollback) is invisible otherwise
    name = get_registry().get(plugin_id).manifest.name
    after = configured.after
    said = []
    if "enabled" in configured.changed:
        said.append(_("%(plugin)s switched on.") % {"plugin": name} if after.enabled else
                    _("%(plugin)s switched off: requests for it are refused until it is switched on again.")
                    % {"plugin": name})
    if "model_version" in configured.changed:
        said.append(pin_words(name, configured))
    return " ".join(said) or _("%(plugin)s: nothing changed.") % {"plugin": name}


def pin_words(name: str, configured) -> str:
    """What a change of a plugin's pin does, said where it was made (the settings page, a reference set's page): a
    pin, a promotion or a rollback, is invisible otherwise."""
    # a pin is read as each job starts (workers/atelier_workers/runtime.py): a rollback keeps the queue off the
    # version too
    return _("%(plugin)s: jobs that start from now on use %(now)s (was %(before)s), those already queued "
             "too; a running job finishes on its own.") % {"plugin": name, "now": _model_words(configured.after.model_version),
                                                            "before": _model_words(configured.before.model_version)}


def _plugin_defaults(project, actor, posted) -> str:
    """A plugin's default params from its form (brand voice, banned words...), through the catalog's service: each
    refused field is marked with its error, in the page's language, and nothing is saved."""
    from atelier_platform.catalog.models import ProjectPlugin
    from atelier_platform.catalog.registry import get_registry
    from atelier_platform.catalog.services import param_defaults_of

    from atelier_frontend.plugin_defaults import save_defaults

    plugin = get_registry().get(posted.get("plugin", ""))
    if plugin is None:
        raise ValidationError(_("No such plugin is installed."))
    setting = ProjectPlugin.objects.filter(project=project, plugin_id=plugin.manifest.id).first()
    return save_defaults(project, actor, plugin, param_defaults_of(setting.config if setting else None), posted)


def _model_words(version) -> str:
    """A model version as the settings page names it: its name and directory, or the plugin's own default."""
    if version is None:
        return _("the plugin's default model")
    return _("model version %(version)s (%(dir)s)") % {"version": version.version, "dir": version.model_dir}


def _webhook(request, project, actor, action) -> tuple[str, dict | None]:
    """Create, edit, delete or ping an endpoint through the webhook services (which check the URL
    against private targets and audit each change). Answers the notice, or the refused form:
    ``{"endpoint": id or None, "values": what was posted, "errors": [...], "fields": {name: [...]}}``."""
    posted = request.POST
    endpoint = None
    if action != "webhook_create":
        endpoint = WebhookEndpoint.objects.filter(project=project, pk=posted.get("endpoint", "")).first() \
            if _is_uuid(posted.get("endpoint", "")) else None
        if endpoint is None:
            raise ValidationError(_("No such webhook endpoint."))
    values = {"url": posted.get("url", "").strip(), "description": posted.get("description", "").strip()[:300],
              "event_types": posted.getlist("event_types"), "enabled": posted.get("enabled") == "on"}
    if action == "webhook_rotate":
        # no form's values posted: a refused rotation opens the endpoint's form as it is stored, its error above it
        values = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types,
                  "enabled": endpoint.enabled}
    try:
        if action == "webhook_create":
            created = webhooks.create_endpoint(project, actor, **values)
            request.session[NEW_WEBHOOK_SESSION] = {"id": str(created.pk), "url": created.url, "secret": created.secret}
            return "", None
        if action == "webhook_update":
            webhooks.update_endpoint(endpoint, actor, values)
            return _("Webhook endpoint saved."), None
        if action == "webhook_rotate":
            # as POST /api/v1/webhooks/{id}/rotate-secret/: the secret replaced keeps signing for the grace time (the
            # receiver switches over without a gap); "expire_previous" stops the ones rotated away before, at once
            rotated = webhooks.rotate_secret(endpoint, actor, expire_previous=posted.get("expire_previous") == "on")
            request.session[NEW_WEBHOOK_SESSION] = {
                "id": str(rotated.pk), "url": rotated.url, "secret": rotated.secret, "rotated": True,
                "old_until": rotated.previous_secrets_at(timezone.now())[0].expires_at.isoformat()}
            return "", None
        if action == "webhook_delete":
            webhooks.delete_endpoint(endpoint, actor)
            return _("Webhook endpoint %(url)s deleted.") % {"url": endpoint.url}, None
        webhooks.send_test(endpoint, actor)
        return _("Test ping queued for %(url)s: see the delivery log.") % {"url": endpoint.url}, None
    except webhooks.WebhookError as exc:
        details = getattr(exc, "details", None) or {}
        words = webhook_words(exc)  # the refusal's own message in the page's words, under its field or the form
        fields = {name: [words if str(m) == exc.message else str(m) for m in messages]
                  # the form's own fields: a refusal's other details (a rotation's secrets still signing) are no field
                  for name, messages in details.items() if isinstance(messages, list) and name in values}
        return "", {"endpoint": str(endpoint.pk) if endpoint else None, "values": values,
                    "errors": [] if fields else [words], "fields": fields}


def _disabled_words(endpoint, names: dict[str, str]) -> str:
    """Why an endpoint is disabled in the page's words, naming who disabled it (not ``user:12``)."""
    coded = endpoint.disabled_reason_coded or {}
    actor = (coded.get("params") or {}).get("actor")
    if actor:
        coded = {**coded, "params": {**coded["params"], "actor": names.get(actor, actor)}}
    return coded_words(coded, endpoint.disabled_reason)


def _deliveries(project, query) -> dict:
    """The delivery log section: the latest deliveries, of one endpoint where ``delivery_endpoint`` names one (the
    latest of all endpoints together hid a quiet endpoint's behind a busy one's), or those before ``delivery_before``
    (a delivery's id: the page of older ones); each with why its last attempt failed in the page's words
    (``error_words``); the link to the older ones. An endpoint that is not the project's is refused in the section
    (no deliveries shown); a ``delivery_before`` that is not one of its deliveries starts from the newest."""
    from urllib.parse import urlencode

    from django.db.models import Q

    deliveries = WebhookDelivery.objects.filter(endpoint__project=project)
    chosen, errors = query.get("delivery_endpoint", "").strip(), []
    endpoint = None
    if chosen:
        endpoint = WebhookEndpoint.objects.filter(project=project, pk=chosen).first() if _is_uuid(chosen) else None
        if endpoint is None:
            errors.append(_("No such webhook endpoint: its deliveries cannot be shown."))
            deliveries = deliveries.none()
        else:
            deliveries = deliveries.filter(endpoint=endpoint)
    before = query.get("delivery_before", "").strip()
    last = deliveries.filter(pk=before).values("created_at", "pk").first() if _is_uuid(before) else None
    if last is not None:
        deliveries = deliveries.filter(Q(created_at__lt=last["created_at"]) | Q(created_at=last["created_at"],
                                                                              pk__lt=last["pk"]))
    shown = list(deliveries.select_related("endpoint").order_by("-created_at", "-pk")[:DELIVERY_ROWS + 1])
    kept = {"delivery_endpoint": str(endpoint.pk)} if endpoint else {}
    older = urlencode({**kept, "delivery_before": shown[DELIVERY_ROWS - 1].pk}) if len(shown) > DELIVERY_ROWS else ""
    shown = shown[:DELIVERY_ROWS]
    for delivery in shown:
        delivery.error_words = coded_words(delivery.last_error_coded, delivery.last_error)
    return {"deliveries": shown, "delivery_endpoint": endpoint, "delivery_errors": errors, "delivery_older": older,
            "delivery_paged": last is not None, "delivery_newest": urlencode(kept)}


def _retry_delivery(project, actor, posted) -> str:
    """Send a finished delivery once more, as ``POST .../deliveries/{id}/retry/`` does: the owner who fixed their
    receiver resends what it missed from the log where they saw it fail."""
    chosen = posted.get("delivery", "")
    delivery = WebhookDelivery.objects.filter(endpoint__project=project, pk=chosen).select_related("endpoint").first() \
        if _is_uuid(chosen) else None
    if delivery is None:
        raise ValidationError(_("No such delivery."))
    try:
        webhooks.retry_delivery(delivery, actor)
    except webhooks.WebhookError as exc:
        if getattr(exc, "code", "") == "endpoint_disabled":
            raise ValidationError(_("The endpoint is disabled: tick “enabled” in its Edit form and save, then send "
                                    "the delivery again.")) from None
        raise ValidationError(_("This delivery is still waiting for an attempt: it is sent again by itself.")) from None
    return _("%(event)s queued again for %(url)s: its state below changes once it is sent.") % {
        "event": delivery.event_type, "url": delivery.target_url or delivery.endpoint.url}


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _webhook_forms(project, endpoints, refused: dict | None) -> dict:
    """Each endpoint with why it is disabled, in the page's words, and its edit form's values (what was posted, where
    that form was refused), and the form for a new one."""
    def form(values, key):
        mine = refused is not None and refused["endpoint"] == key
        return {**(refused["values"] if mine else values), "fields": refused["fields"] if mine else {},
                "errors": refused["errors"] if mine else [], "open": mine}

    endpoints = list(endpoints)
    names = actor_names(project, [(e.disabled_reason_coded.get("params") or {}).get("actor") for e in endpoints
                                  if e.disabled_reason_coded])
    from atelier_platform.webhooks.signing import secret_hint

    now = timezone.now()
    rows = [{"endpoint": e, "disabled_words": _disabled_words(e, names),
             # the secrets rotated away that still sign, by their start: the owner sees what a receiver may still use
             "still_signing": [{"hint": secret_hint(p.secret), "until": p.expires_at} for p in e.previous_secrets_at(now)],
             "form": form({"url": e.url, "description": e.description, "event_types": e.event_types,
                           "enabled": e.enabled}, str(e.pk))} for e in endpoints]
    return {"endpoints": rows,
            "new_endpoint": form({"url": "", "description": "", "event_types": [], "enabled": True}, None)}
