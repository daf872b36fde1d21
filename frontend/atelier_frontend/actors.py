"""Who did it and what they did, in words a project admin reads: the audit log, a job's timeline and
review decisions store actors as ids (``user:12``, ``key:ab12cd34ef56``, ``screening``) and actions
as codes (``review_approve``), which is what an export or a script wants and not what a person does."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from atelier_frontend.texts import WORDS
from atelier_platform.accounts.models import ApiKey
from atelier_platform.instants import parse_instant


def action_words(action: str) -> str:
    """``review_approve`` as "review approve", translated where the dashboard knows the words."""
    words = action.replace("_", " ")
    return str(WORDS.get(words, words))


def actor_names(project, actors: Iterable[str]) -> dict[str, str]:
    """Each of ``actors`` with the name to show for it: a member's username, an API key's name and
    prefix (keys of ``project`` only: an id from another project stays as it is), the system's parts
    by what they are. Two queries whatever the number of actors."""
    actors = {actor for actor in actors if actor}
    user_ids = {actor.removeprefix("user:") for actor in actors if actor.startswith("user:")}
    prefixes = {actor.removeprefix("key:") for actor in actors if actor.startswith("key:")}
    usernames = dict(get_user_model().objects.filter(pk__in={int(i) for i in user_ids if i.isdigit()})
                     .values_list("pk", "username"))
    key_names = dict(ApiKey.objects.filter(project=project, prefix__in=prefixes).values_list("prefix", "name"))
    names = {}
    for actor in actors:
        kind, _sep, ident = actor.partition(":")
        if kind == "user" and ident.isdigit() and int(ident) in usernames:
            names[actor] = usernames[int(ident)]
        elif kind == "key" and ident in key_names:
            key = f"atl_{ident}_…"
            names[actor] = _("API key %(name)s (%(key)s)") % {"name": key_names[ident], "key": key} if key_names[ident] \
                else _("API key %(key)s") % {"key": key}
        elif actor == "screening":
            names[actor] = _("automatic screening")
        elif actor == "retention":  # jobs.erasure.RETENTION_ACTOR
            names[actor] = _("the project's content retention")
        elif kind == "system":
            names[actor] = _("Atelier (%(part)s)") % {"part": ident} if ident else _("Atelier")
        else:
            names[actor] = actor  # a deleted user or key: its id is all there is
    return names


def change_words(before, after, limit: int = 160) -> str:
    """What an event changed, from its ``before`` and ``after``: "user: carol · role: viewer → reviewer" (a member's
    role changed), the values of what was added or removed. The object's id alone ("membership 5") did not say
    which member left. An instant (a ``…_at`` value such as an invitation's ``expires_at`` or a lease's
    ``lease_expires_at``, stored as ISO 8601) is shown as the page shows its other times: in the page's time zone,
    "Dec 12, 19:30" (its year too when it is not this one); the exports keep the stored value."""
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    parts = []
    keys = [*before, *(k for k in after if k not in before)]
    # what stayed the same says which thing it was (the member), so it comes first; then what changed
    keys.sort(key=lambda k: not (k in before and k in after and before[k] == after[k]))
    for key in keys:
        old, new = before.get(key), after.get(key)
        if old in (None, "", [], {}) and new in (None, "", [], {}):
            continue  # a decision without a comment: nothing to read
        if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
            if old != new:
                parts.append(str(key))  # a nested change (thresholds, lists): named, its values in the export
        elif key in before and key in after and old != new:
            parts.append(f"{key}: {_shown(old, key)} → {_shown(new, key)}")
        else:
            parts.append(f"{key}: {_shown(new if key in after else old, key)}")
    text = " · ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value, key: str = "") -> str:
    if value is None or value == "":
        return "–"
    if isinstance(key, str) and key.endswith("_at") and isinstance(value, str):
        moment = parse_instant(value)
        if moment is not None:
            return _instant(moment)
    return str(value)


def _instant(moment) -> str:
    """``moment`` in the page's time zone, as the audit log's and the settings page's other times are shown."""
    local = timezone.localtime(moment)
    same_year = local.year == timezone.localtime().year
    return formats.date_format(local, _("M j, H:i") if same_year else _("M j, Y, H:i"))
