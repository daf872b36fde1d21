from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from atelier_platform.accounts.roles import Role

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and inner hyphens.",
)


class Project(models.Model):
    """The tenant: every job, key and setting belongs to exactly one project."""

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user_and_project")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


#: The most requests per minute a key may be given: the largest number its column holds (PostgreSQL's integer). With
#: no server limit (ATELIER_RATE_LIMIT_PER_MINUTE=0) nothing else bounds it, and a larger one failed the insert (500).
MAX_KEY_RATE_LIMIT_PER_MINUTE = 2_147_483_647


class ApiKey(models.Model):
    """A machine credential of one project. Only a hash of the secret is stored.

    The key reads ``atl_<prefix>_<secret>``; the prefix is stored in clear to find the row and to
    let people recognise a key in lists, the secret is 256 random bits, so a plain SHA-256 is a
    sound hash for it (slow password hashes guard low-entropy secrets, which this is not).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="refused from this moment on; empty: never")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="requests per minute for this key; empty: ATELIER_RATE_LIMIT_PER_MINUTE; 0: none"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="api_key_project_newest")]

    @property
    def is_active(self) -> bool:
        """Usable now: neither revoked nor expired."""
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def __str__(self) -> str:
        return f"atl_{self.prefix}_… ({self.project})"


class Invitation(models.Model):
    """An owner's invitation of someone, by e-mail address, to join a project with a role.

    Like an API key's secret, the link's token (256 random bits) is shown once and only its SHA-256 is stored.
    An invitation is open until it is accepted (once), revoked, replaced by a newer one to the same address (which
    revokes it), or past ``expires_at``; ``accounts.invitations`` does all of that.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=20, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="invitations_sent")
    # an invitation made through the API with a key (which has no user): it stands while the key works, as a
    # member's stands while they own the project. Keys are never deleted (revoked rows stay), so SET_NULL is the
    # deleted-sender case ``invited_by`` has too.
    invited_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="invitations_sent")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="invitations_accepted")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # one open invitation per address and project: inviting it again revokes the earlier one first, and
            # two owners inviting the same address at once cannot leave two links that both work
            models.UniqueConstraint(models.F("project"), Lower("email"), name="one_open_invitation_per_email",
                                    condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True)),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="invitation_project_newest")]

    @property
    def is_open(self) -> bool:
        """Neither accepted nor revoked (it may still have expired)."""
        return self.accepted_at is None and self.revoked_at is None

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.project} as {self.role}"
