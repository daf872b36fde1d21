"""Projects, members and API keys: creation, lookup and revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership, Project
from atelier_platform.accounts.roles import DEFAULT_API_KEY_SCOPES, ROLE_CAPABILITIES, Capability, Role
from atelier_platform.prepared_reads import PreparedRead

KEY_PREFIX = "atl"
#: last_used_at is refreshed at most this often, so that a busy key does not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: The furthest ahead a key's expiry may be set: one further off (year 9999) is a slip, not a plan, and a key
#: meant to last for ever is made without an expiry.
MAX_KEY_LIFETIME = timedelta(days=3650)
#: The longest name a key may have (its column's length)
KEY_NAME_MAX_LENGTH = ApiKey._meta.get_field("name").max_length


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key: ``raw`` is shown once and never stored."""

    api_key: ApiKey
    raw: str


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_project(slug: str, name: str | None = None) -> Project:
    project = Project(slug=slug, name=name or slug)
    project.full_clean()
    project.save()
    from atelier_platform.catalog.services import enable_installed_plugins

    enable_installed_plugins(project)
    return project


def add_member(project: Project, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError("Unknown role %(role)r; use one of %(roles)s.", code="unknown_role",
                              params={"role": role, "roles": ", ".join(Role.values)})
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def projects_left_without_owner(user_ids) -> dict[str, list[str]]:
    """The projects with no active owner but those among ``user_ids`` (deleting or deactivating those users would
    leave nobody to manage the project's keys, members and policies: an inactive owner cannot sign in), by slug,
    with those owners' usernames. The projects' owner rows are locked until the transaction ends, as a demotion
    locks them: call it in the transaction that deletes, so that no other owner leaves meanwhile."""
    leaving = set(user_ids)
    owned = Membership.objects.filter(user__in=leaving, role=Role.OWNER).values("project")
    # of=self: the owner rows only, not the projects and users joined for their names
    owners = list(Membership.objects.select_for_update(of=("self",)).filter(project__in=owned, role=Role.OWNER)
                  .values_list("project__slug", "user_id", "user__username", "user__is_active")
                  .order_by("project__slug", "user__username"))
    staying = {slug for slug, user_id, _name, active in owners if active and user_id not in leaving}
    left: dict[str, list[str]] = {}
    for slug, user_id, username, _active in owners:
        if user_id not in leaving:
            continue
        if slug not in staying:
            left.setdefault(slug, []).append(username)
    return left


#: Why an empty list of scopes is refused (the API's serializer adds how to get the default).
NO_SCOPES = f"A key needs at least one scope; any of: {', '.join(Capability.values)}."


def normalise_scopes(scopes: list[str] | tuple[str, ...] | None) -> list[str]:
    """The key's scopes, sorted; None (not said) is the default. An empty list is refused rather than read as
    "not said": a caller who asked for no scope must not get a key that may read and submit jobs."""
    if scopes is not None and not scopes:
        raise ValidationError(NO_SCOPES, code="no_scopes", params={"scopes": ", ".join(Capability.values)})
    chosen = list(DEFAULT_API_KEY_SCOPES if scopes is None else scopes)
    unknown = sorted(set(chosen) - set(Capability.values))
    if unknown:
        raise ValidationError("Unknown scope(s): %(unknown)s. Valid scopes: %(scopes)s.", code="unknown_scopes",
                              params={"unknown": ", ".join(unknown), "scopes": ", ".join(Capability.values)})
    return sorted(set(chosen))


def check_expiry(expires_at: datetime | None, now: datetime | None = None) -> datetime | None:
    """``expires_at`` (aware, in UTC: ``instants``) if it lies ahead and within ``MAX_KEY_LIFETIME``; None: never."""
    if expires_at is None:
        return None
    now = now or timezone.now()
    if expires_at <= now:
        raise ValidationError("The expiry %(when)s has already passed; give a time to come, or none for a key that "
                              "does not expire.", code="expiry_in_past", params={"when": expires_at.isoformat()})
    latest = now + MAX_KEY_LIFETIME
    if expires_at > latest:
        raise ValidationError("The expiry %(when)s is more than %(days)s days away (at most %(latest)s); leave it out "
                              "for a key that does not expire.", code="expiry_too_far",
                              params={"when": expires_at.isoformat(), "days": MAX_KEY_LIFETIME.days,
                                      "latest": latest.replace(microsecond=0).isoformat()})
    return expires_at


@transaction.atomic
def issue_api_key(project: Project, *, scopes=None, name: str = "", created_by=None,
                  rate_limit_per_minute: int | None = None, expires_at: datetime | None = None) -> IssuedApiKey:
    expires_at = check_expiry(expires_at)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        project=project,
        name=name,
        prefix=prefix,
        secret_hash=_hash_secret(secret),
        scopes=normalise_scopes(scopes),
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, raw=f"{KEY_PREFIX}_{prefix}_{secret}")


class ScopeNotGrantable(PermissionError):
    """A caller asked for a key with scopes it does not hold itself."""

    code = "scope_not_grantable"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"You cannot grant scopes you do not hold: {', '.join(missing)}.")
        self.missing = missing


def _key_view(api_key: ApiKey) -> dict:
    return {"prefix": api_key.prefix, "name": api_key.name, "scopes": api_key.scopes,
            "rate_limit_per_minute": api_key.rate_limit_per_minute,
            "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None}


@transaction.atomic
def create_api_key(project: Project, actor: str, *, granted_by: frozenset[str] | set[str], scopes=None, name: str = "",
                   created_by=None, rate_limit_per_minute: int | None = None,
                   expires_at: datetime | None = None) -> IssuedApiKey:
    """A key made through the API: its scopes must be among the caller's own (``granted_by``); audited."""
    from atelier_platform.moderation import audit

    chosen = normalise_scopes(scopes)
    missing = sorted(set(chosen) - set(granted_by))
    if missing:
        raise ScopeNotGrantable(missing)
    issued = issue_api_key(project, scopes=chosen, name=name, created_by=created_by,
                           rate_limit_per_minute=rate_limit_per_minute, expires_at=expires_at)
    audit.record(project, actor, "api_key_created", issued.api_key, after=_key_view(issued.api_key))
    return issued


def parse_raw_key(raw: str) -> tuple[str, str] | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    if len(parts[1]) > 16 or not parts[1].isalnum() or not parts[1].isascii():
        return None  # not a prefix we issue (and a NUL byte must never reach the database)
    return parts[1], parts[2]


#: The key by its prefix with its project and ``project_related`` rows, one prepared read per tuple
_KEY_READS: dict[tuple[str, ...], PreparedRead] = {}


def _key_read(project_related: tuple[str, ...]) -> PreparedRead:
    read = _KEY_READS.get(project_related)
    if read is None:
        related = ["project", *(f"project__{name}" for name in project_related)]
        # The prefix is unique: no ordering to compile or sort by (``first()`` would add one).
        read = _KEY_READS[project_related] = PreparedRead(
            lambda prefix: ApiKey.objects.select_related(*related).filter(prefix=prefix).order_by()[:1],
            prefix=ApiKey._meta.get_field("prefix"),
        )
    return read


class ApiKeyExpired(Exception):
    """The key's secret is right but its time is up. Raised only once the whole secret matched: whoever learns
    the expiry holds the key already, and a guess at a prefix (another project's key) learns nothing."""

    def __init__(self, api_key: ApiKey) -> None:
        super().__init__(f"The API key atl_{api_key.prefix}_… expired at {api_key.expires_at.isoformat()}.")
        self.api_key = api_key
        self.expires_at = api_key.expires_at


def authenticate_api_key(raw: str, *, project_related: tuple[str, ...] = ()) -> ApiKey | None:
    """The active key for ``raw``, or None (unknown or revoked); ``ApiKeyExpired`` for the right secret of a key
    past its expiry. Constant-time comparison of the secret's hash. ``project_related``: one-to-one rows of the
    project to read in the same query."""
    parsed = parse_raw_key(raw)
    if parsed is None:
        return None
    prefix, secret = parsed
    api_key = _key_read(tuple(project_related)).first(prefix=prefix)
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _hash_secret(secret)):
        return None
    if api_key.revoked_at is not None:
        return None
    now = timezone.now()
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise ApiKeyExpired(api_key)
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def with_maker_membership(keys):
    """``keys`` with ``maker_is_member`` read in the same query: whether each key's creator is still a member."""
    from django.db.models import Exists, OuterRef

    return keys.annotate(maker_is_member=Exists(
        Membership.objects.filter(project=OuterRef("project_id"), user=OuterRef("created_by_id"))))


def maker_is_member(api_key: ApiKey) -> bool | None:
    """Whether the member who made ``api_key`` is still in its project; None where no member made it (another
    key, manage.py, or a deleted user). A departed maker's key keeps working: it is shown, not revoked."""
    if api_key.created_by_id is None:
        return None
    known = getattr(api_key, "maker_is_member", None)
    if known is not None:
        return known
    return Membership.objects.filter(project_id=api_key.project_id, user_id=api_key.created_by_id).exists()


def rename_api_key(api_key: ApiKey, name: str, actor: str) -> ApiKey:
    """Give the key another name (a label in lists and the audit log: what the key may do is unchanged); audited.
    The same name again changes nothing and records nothing."""
    name = (name or "").strip()
    if len(name) > KEY_NAME_MAX_LENGTH:
        raise ValidationError("A key's name has at most %(limit)s characters (this one has %(length)s).",
                              code="key_name_too_long", params={"limit": KEY_NAME_MAX_LENGTH, "length": len(name)})
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.name != name:
            from atelier_platform.moderation import audit

            before = {"prefix": locked.prefix, "name": locked.name}
            ApiKey.objects.filter(pk=api_key.pk).update(name=name)
            audit.record(api_key.project, actor, "api_key_renamed", api_key, before=before,
                         after={"prefix": locked.prefix, "name": name})
    api_key.name = name
    return api_key


def revoke_api_key(api_key: ApiKey, actor: str | None = None) -> ApiKey:
    """Revoke at once: the next request with the key gets 401. Revoking twice changes nothing.
    With ``actor`` (revocations through the API) the revocation is audited. The open invitations made with the key
    are revoked with it (audited too): an invitation grants its role with its sender's authority, and only while
    the sender holds it."""
    from atelier_platform.accounts import invitations

    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        api_key.refresh_from_db(fields=["revoked_at"])
        if revoked and actor is not None:
            from atelier_platform.moderation import audit

            audit.record(api_key.project, actor, "api_key_revoked", api_key, before=_key_view(api_key))
        if revoked:
            # (no actor: a revocation from a shell, which names no one)
            invitations.revoke_sent_by_key(api_key, actor or "operator")
    return api_key


def capabilities_of(user: AbstractBaseUser, project: Project) -> frozenset[str]:
    membership = Membership.objects.filter(project=project, user=user).only("role").first()
    if membership is None:
        return frozenset()
    return ROLE_CAPABILITIES[membership.role]
