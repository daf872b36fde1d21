"""Changing a project's safety policy, blocklist and allow list; every change is audited."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from atelier_platform.accounts.models import Project
from atelier_platform.moderation import audit
from atelier_platform.moderation.models import AllowlistEntry, BlocklistEntry, SafetyPolicy, default_thresholds
from atelier_platform.moderation.screening import policy_for

POLICY_FIELDS = ("review_mode", "audit_sample_percent", "thresholds", "mask_personal_data",
                 "second_review_for_flagged", "forbid_self_approval", "reject_reasons", "lease_seconds",
                 "content_retention_days")
#: (a+)+ and friends: a regex that can take exponential time on a crafted input
NESTED_QUANTIFIER = re.compile(r"\([^)]*[+*}]\)[+*{]")


class RetentionNotGrantable(PermissionError):
    """A caller without ``content:erase`` changed ``content_retention_days``: a retention erases content for good
    (a day's retention erases the project's history within the hour), which is that scope's to decide, not ``admin``'s."""

    def __init__(self) -> None:
        super().__init__("Changing content_retention_days decides which content is erased for good: it needs the scope "
                         "content:erase as well as admin. Nothing was changed.")


def policy_json(policy: SafetyPolicy) -> dict:
    return {field: getattr(policy, field) for field in POLICY_FIELDS} | {"reject_reasons": policy.reasons}


def apply_policy_changes(policy: SafetyPolicy, changes: dict) -> None:
    """Set ``changes`` (checked by ``SafetyPolicySerializer``) on ``policy`` as ``update_policy`` saves them, and
    check the whole result; nothing is saved. Raises ValidationError (by field) for a policy the platform
    refuses, such as a review threshold given alone above the stored block threshold."""
    if "thresholds" in changes:
        # The categories named change, and of those only the values named; the others keep theirs (sexual/minors
        # its strict default). A category the saved policy lacks starts from its default.
        defaults = default_thresholds()
        merged = dict(policy.thresholds)
        for category, limits in changes["thresholds"].items():
            merged[category] = {**(merged.get(category) or defaults.get(category) or defaults["custom"]), **limits}
        changes = {**changes, "thresholds": merged}
    for field, value in changes.items():
        setattr(policy, field, value)
    policy.full_clean(exclude=["project"])  # a policy never changes project


@transaction.atomic
def update_policy(project, actor: str, changes: dict, *, granted_by=None) -> SafetyPolicy:
    """Save ``changes`` to the project's policy, audited. ``granted_by``: the caller's capabilities (None: an operator,
    who may change anything); changing ``content_retention_days`` needs ``content:erase`` (``RetentionNotGrantable``),
    sending the stored value back changes nothing and needs no more than ``admin``."""
    from atelier_platform.accounts.roles import Capability

    # Read as stored, and locked: the thresholds are merged into the stored ones, so two changes at once must
    # not each write back the other's categories as they were; and a copy the caller holds (the project's
    # cached policy, an admin form's instance with the posted values) is not taken for the stored one.
    policy = SafetyPolicy.objects.select_for_update().filter(project=project).first() or policy_for(project, fresh=True)
    before = policy_json(policy)
    if (granted_by is not None and Capability.CONTENT_ERASE not in granted_by and "content_retention_days" in changes
            and changes["content_retention_days"] != policy.content_retention_days):
        raise RetentionNotGrantable()
    apply_policy_changes(policy, changes)
    # Only the fields changed here: the blocklist revision (kept by triggers) stays as the database has it.
    policy.save(update_fields=[field for field in POLICY_FIELDS if field in changes] + ["updated_at"])
    audit.record(project, actor, "policy_changed", policy, before=before, after=policy_json(policy))
    Project.safety_policy.related.set_cached_value(project, policy)  # what the caller reads next is this
    return policy


def validate_term(pattern: str, is_regex: bool, category: str = "custom") -> None:
    """Refuse a term any installed check could not match safely, with that check's reason. Each refusal (English,
    as the API gives it) carries a code and its values, for the dashboard to say it in its reader's language (a
    check's own where it raises ``RefusedValue``); the platform's come before the checks', so a regular expression
    that hangs or does not compile is refused in the platform's words whatever checks are installed."""
    from atelier_sdk.safety import BlocklistTerm

    from atelier_platform.moderation.checks import get_safety_checks

    if not pattern.strip():
        raise ValidationError("Empty term.", code="empty_term")
    if is_regex:
        if NESTED_QUANTIFIER.search(pattern):
            raise ValidationError("Regular expression %(pattern)r nests quantifiers (like (a+)+) and could hang screening.",
                                  code="regex_nests_quantifiers", params={"pattern": pattern})
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValidationError("Regular expression %(pattern)r does not compile: %(error)s.", code="regex_does_not_compile",
                                  params={"pattern": pattern, "error": error}) from None
    for check in get_safety_checks():
        try:
            check.validate_blocklist_term(BlocklistTerm(pattern=pattern, is_regex=is_regex, category=category))
        except ValueError as error:
            raise check_refusal(error) from None


def check_refusal(error: ValueError) -> ValidationError:
    """A safety check's refusal of a value as the platform raises it: its English as the check wrote it, with the
    check's code and values (``RefusedValue``) where it gave them. The message is the template ``%(message)s``:
    a check's English is not one (a pattern may hold a %), and Django fills a message's template from its values."""
    return ValidationError("%(message)s", code=getattr(error, "code", None),
                           params={**(getattr(error, "params", None) or {}), "message": str(error)})


@transaction.atomic
def import_blocklist(project, actor: str, terms: list[dict], *, replace: bool = False) -> dict:
    """Add (or with ``replace``, set) a project's blocklist in one transaction: all or nothing."""
    errors = {}
    for index, term in enumerate(terms):
        try:
            validate_term(term["pattern"], term.get("is_regex", False), term.get("category", "custom"))
        except ValidationError as error:
            errors[f"terms.{index}.pattern"] = error.error_list  # with their codes and values
    if errors:
        raise ValidationError(errors)
    # one change of the lists at a time per project, as the allow list's import and the removals: two imports (or an
    # import and a removal) interleaving could both find a term missing and add it twice, or count a stale total
    lock_lists(project)
    removed = BlocklistEntry.objects.filter(project=project).delete()[0] if replace else 0
    existing = set(BlocklistEntry.objects.filter(project=project).values_list("pattern", "is_regex"))
    new = {}
    for term in terms:
        key = (term["pattern"], term.get("is_regex", False))
        if key not in existing:
            new[key] = BlocklistEntry(project=project, pattern=key[0], is_regex=key[1], category=term.get("category", "custom"))
    BlocklistEntry.objects.bulk_create(new.values(), batch_size=1000)
    total = BlocklistEntry.objects.filter(project=project).count()
    # the audit keeps counts, not the terms: the list is the project's secret
    audit.record(project, actor, "blocklist_imported", project, after={"added": len(new), "removed": removed, "total": total})
    return {"added": len(new), "removed": removed, "total": total}


#: The most terms (or allow-list entries) one removal names.
MAX_REMOVED_AT_ONCE = 1_000


class NotInList(ValidationError):
    """Some of the terms or entries a removal names are not in the project's list (another project's, a typo):
    nothing is removed. ``error_dict`` names each by its place in the request."""


def lock_lists(project) -> None:
    """Hold the project's policy row until the transaction ends: one change of its lists at a time (the API's and
    the dashboard's imports and removals, and the admin's edits of single entries)."""
    policy_for(project)
    SafetyPolicy.objects.select_for_update().filter(project=project).first()


@transaction.atomic
def remove_blocklist_terms(project, actor: str, terms: list[dict]) -> dict:
    """Remove these terms from a project's blocklist, all or none: a term the list does not hold (a typo, another
    project's) refuses the whole removal (``NotInList``) and nothing is removed. A plain term is found whatever its
    case, as screening matches it (a "Wool" left behind would still block "wool"); a regular expression by its exact
    text (``\\d`` is not ``\\D``). The audit keeps counts, as for an import: the terms are the project's secret."""
    if len(terms) > MAX_REMOVED_AT_ONCE:
        raise ValidationError({"terms": [ValidationError("At most %(limit)s terms at a time.", code="too_many_terms",
                                                         params={"limit": f"{MAX_REMOVED_AT_ONCE:,}"})]})
    lock_lists(project)
    found, missing = set(), {}
    for index, term in enumerate(terms):
        pattern, is_regex = term["pattern"], term.get("is_regex", False)
        rows = BlocklistEntry.objects.filter(project=project, is_regex=is_regex)
        ids = list((rows.filter(pattern=pattern) if is_regex else rows.filter(pattern__iexact=pattern))
                   .values_list("pk", flat=True))
        if not ids:
            missing[f"terms.{index}.pattern"] = [ValidationError("Not in the blocklist.", code="not_in_blocklist")]
        found.update(ids)
    if missing:
        raise NotInList(missing)
    removed = BlocklistEntry.objects.filter(project=project, pk__in=found).delete()[0]
    total = BlocklistEntry.objects.filter(project=project).count()
    audit.record(project, actor, "blocklist_terms_removed", project, after={"removed": removed, "total": total})
    return {"removed": removed, "total": total}


#: The most entries a project's allow list holds (and so one import takes): an allow list is a short list of
#: exceptions, and every entry it holds is a word the classifiers no longer see.
MAX_ALLOW_ENTRIES = 1_000


def allow_entry(kind: str | None, value: str) -> tuple[str, str]:
    """(kind, normalised) of an allow-list value, its kind detected when not given; ValidationError saying why a
    value cannot be used (an e-mail address that is not one, a phone number without its country code...)."""
    from atelier_plugins.safety.allowlist import InvalidAllowEntry, allow_entry_key, detect_kind

    if not value.strip():
        raise ValidationError("Empty value.", code="empty_value")
    kind = kind or detect_kind(value)
    try:
        return kind, allow_entry_key(kind, value)
    except InvalidAllowEntry as error:
        raise check_refusal(error) from None


def allowlist_json(project) -> dict:
    entries = list(AllowlistEntry.objects.filter(project=project).values("kind", "value").order_by("kind", "normalised"))
    return {"total": len(entries), "entries": entries}


@transaction.atomic
def import_allowlist(project, actor: str, entries: list[dict], *, replace: bool = False) -> dict:
    """Add (or with ``replace``, set) a project's allow list in one transaction: all or nothing. Each entry is
    ``{"value": ..., "kind": ...}`` (kind optional: detected). Unlike the blocklist's, the audit names the entries:
    they are not secret (product words, contacts the project publishes) and each one weakens screening."""
    if len(entries) > MAX_ALLOW_ENTRIES:
        raise ValidationError({"entries": [ValidationError("At most %(limit)s entries at a time.", code="too_many_entries",
                                                           params={"limit": f"{MAX_ALLOW_ENTRIES:,}"})]})
    errors, checked = {}, {}
    for index, entry in enumerate(entries):
        value = entry["value"].strip()
        try:
            kind, normalised = allow_entry(entry.get("kind"), value)
            if len(value) > 500 or len(normalised) > 500:
                raise ValidationError("%(start)r... is longer than 500 characters.", code="entry_too_long",
                                      params={"start": value[:40]})
        except ValidationError as error:
            errors[f"entries.{index}.value"] = error.error_list  # with their codes and values
            continue
        checked.setdefault((kind, normalised), value)
    if errors:
        raise ValidationError(errors)
    # one import at a time per project: two adding the same value at once would both find it missing
    lock_lists(project)
    stored = list(AllowlistEntry.objects.filter(project=project).values_list("pk", "kind", "value", "normalised"))
    # with ``replace``, what the new list also holds stays as it is: only what it leaves out is removed
    dropped = [(pk, kind, value) for pk, kind, value, normalised in stored if replace and (kind, normalised) not in checked]
    kept = {(kind, normalised) for _pk, kind, _value, normalised in stored}
    new = [AllowlistEntry(project=project, kind=kind, value=value, normalised=normalised)
           for (kind, normalised), value in checked.items() if (kind, normalised) not in kept]
    # the list as a whole, not only one import: imports that each add 1,000 would grow it without end
    if len(stored) - len(dropped) + len(new) > MAX_ALLOW_ENTRIES:
        raise ValidationError({"entries": [ValidationError(
            "A project's allow list holds at most %(limit)s entries; this would make it %(total)s.", code="allowlist_full",
            params={"limit": f"{MAX_ALLOW_ENTRIES:,}", "total": f"{len(stored) - len(dropped) + len(new):,}"})]})
    AllowlistEntry.objects.filter(pk__in=[pk for pk, _kind, _value in dropped]).delete()
    AllowlistEntry.objects.bulk_create(new)
    total = AllowlistEntry.objects.filter(project=project).count()
    audit.record(project, actor, "allowlist_imported", project, after={
        "added": [f"{entry.kind}: {entry.value}" for entry in new],
        "removed": [f"{kind}: {value}" for _pk, kind, value in dropped], "total": total})
    return {"added": len(new), "removed": len(dropped), "total": total}


@transaction.atomic
def remove_allowlist_entries(project, actor: str, entries: list[dict]) -> dict:
    """Remove these entries (``{"value": ..., "kind": ...}``, kind optional: detected) from a project's allow list,
    all or none: each is found as an import would store it (an e-mail address whatever its case, a phone number
    however it is written), and one the list does not hold refuses the whole removal (``NotInList``). The audit
    names what was removed, as an import's does."""
    if len(entries) > MAX_REMOVED_AT_ONCE:
        raise ValidationError({"entries": [ValidationError("At most %(limit)s entries at a time.", code="too_many_entries",
                                                           params={"limit": f"{MAX_REMOVED_AT_ONCE:,}"})]})
    wanted, errors = {}, {}
    for index, entry in enumerate(entries):
        try:
            wanted[index] = allow_entry(entry.get("kind"), entry["value"].strip())
        except ValidationError as error:
            errors[f"entries.{index}.value"] = error.error_list
    if errors:
        raise ValidationError(errors)
    lock_lists(project)
    stored = {(kind, normalised): (pk, value) for pk, kind, value, normalised in
              AllowlistEntry.objects.filter(project=project).values_list("pk", "kind", "value", "normalised")}
    missing = {f"entries.{index}.value": [ValidationError("Not in the allow list.", code="not_in_allowlist")]
               for index, key in wanted.items() if key not in stored}
    if missing:
        raise NotInList(missing)
    return _remove_allowed(project, actor, {stored[key][0]: (key[0], stored[key][1]) for key in wanted.values()})


@transaction.atomic
def remove_allowlist_ids(project, actor: str, ids: list[int]) -> dict:
    """Remove the allow-list entries with these ids (the settings page's ticked entries), all or none: an id that
    is not one of the project's entries (another project's, one removed meanwhile) refuses the whole removal."""
    lock_lists(project)
    rows = {pk: (kind, value) for pk, kind, value in
            AllowlistEntry.objects.filter(project=project, pk__in=ids).values_list("pk", "kind", "value")}
    if not ids or set(ids) - set(rows):
        raise NotInList({"remove": [ValidationError("Not in the allow list.", code="not_in_allowlist")]})
    return _remove_allowed(project, actor, rows)


def _remove_allowed(project, actor: str, rows: dict[int, tuple[str, str]]) -> dict:
    AllowlistEntry.objects.filter(project=project, pk__in=list(rows)).delete()
    total = AllowlistEntry.objects.filter(project=project).count()
    audit.record(project, actor, "allowlist_entries_removed", project, after={
        "removed": sorted(f"{kind}: {value}" for kind, value in rows.values()), "total": total})
    return {"removed": len(rows), "total": total}
