"""A project's quotas in a member's words: the refusal an editor meets when one is used up, and the figures the
usage page shows.

The quota service (``atelier_platform.usage.quotas``) speaks to API callers: an English message, an ISO reset time
and machine-readable details. On the dashboard that read as a dump (``resets_at: 2026-12-06T00:00:00+00:00``) in
English whatever the page's language, and did not say whom to ask; here it is one sentence with the reset time as
the page writes times, how long that is from now, and what to do.
"""

from __future__ import annotations

import datetime

from django.utils import dateformat, timezone
from django.utils.dateparse import parse_datetime
from django.utils.timesince import timeuntil
from django.utils.translation import gettext as _

from atelier_frontend.formats import number


def when(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """``moment`` as the dashboard writes times, in UTC (the quotas' days and months are UTC's), and how far off:
    "Dec 6, 00:00 UTC (in 8 hours, 4 minutes)"."""
    if moment is None:
        return "–"
    now = now or timezone.now()
    moment = moment.astimezone(datetime.timezone.utc)
    shown = _("%(time)s UTC") % {"time": dateformat.format(moment, _("M j, H:i"))}
    if moment <= now:
        return shown
    return _("%(time)s (in %(wait)s)") % {"time": shown, "wait": timeuntil(moment, now)}


def refusal(details: dict) -> str:
    """What an editor is told when a quota refuses their submission (``QuotaExceeded.details``)."""
    resets_at = parse_datetime(str(details.get("resets_at") or ""))
    values = {"limit": number(details.get("limit")), "used": number(details.get("used")), "resets": when(resets_at)}
    if details.get("quota") == "compute_seconds_per_month":
        text = _("This project's compute quota for this month is used up (%(used)s s of %(limit)s s). Nothing more "
                 "can be submitted until %(resets)s, when it starts again.") % values
    else:
        text = _("This project's job quota for today is used up (%(used)s of %(limit)s jobs since 00:00 UTC). "
                 "Nothing more can be submitted until %(resets)s, when it starts again.") % values
    # who can change it: owners see the quotas on the usage page; the operator grants them (Django admin)
    return f"{text} {_('Your request was not submitted: ask a project owner if it cannot wait.')}"


def rows(status: dict) -> list[dict]:
    """The usage page's quota figures, from ``quota_status``: each quota's name, its use in words with units, and
    when it starts again (also for an unlimited one, whose count still resets)."""
    jobs, compute = status["jobs_per_day"], status["compute_seconds_per_month"]
    return [
        {"key": "jobs_per_day", "name": _("Jobs today (UTC day)"), "limit": jobs["limit"], "used": jobs["used"],
         "remaining": jobs["remaining"], "used_up": jobs["limit"] is not None and not jobs["remaining"],
         "use": (_("%(used)s of %(limit)s") % {"used": number(jobs["used"]), "limit": number(jobs["limit"])})
         if jobs["limit"] is not None else _("%(used)s (no limit)") % {"used": number(jobs["used"])},
         "left": _("%(n)s left") % {"n": number(jobs["remaining"])} if jobs["limit"] is not None else "",
         "resets": when(jobs["resets_at"])},
        {"key": "compute_seconds_per_month", "name": _("Compute this month (UTC)"), "limit": compute["limit"],
         "used": compute["used"], "remaining": compute["remaining"],
         "used_up": compute["limit"] is not None and not compute["remaining"],
         "use": (_("%(used)s s of %(limit)s s") % {"used": number(compute["used"]), "limit": number(compute["limit"])})
         if compute["limit"] is not None else _("%(used)s s (no limit)") % {"used": number(compute["used"])},
         "left": _("%(n)s s left") % {"n": number(compute["remaining"])} if compute["limit"] is not None else "",
         "resets": when(compute["resets_at"])},
    ]
