"""The ``Prefer: wait`` request header (RFC 7240): answer once the job has finished, not at once.

``Prefer: wait=N`` on ``POST /jobs/`` or ``GET /jobs/{id}/`` holds the answer until the job finishes
or N seconds pass (1 to ``MAX_WAIT_S``; bare ``wait`` means ``MAX_WAIT_S``), then answers with the
job as it is; ``Preference-Applied: wait=N`` says the wait was honoured. A client gets its result in
one request instead of polling. Each waiting request holds one web thread for up to N seconds, so it
waits only with one of the process's wait slots (``waiting.take_wait_slot``, ``ATELIER_MAX_WAITING_REQUESTS``).
With none free the preference is ignored, as RFC 7240 lets a server do: the answer comes at once with the
job as it is, without ``Preference-Applied``, and the client polls (or asks to wait again) as it would
without the header.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError

from atelier_platform.jobs import waiting
from atelier_platform.jobs.models import FINISHED_STATUSES

PREFER_HEADER = "HTTP_PREFER"
APPLIED_HEADER = "Preference-Applied"
MAX_WAIT_S = 60


def requested_wait(request) -> int | None:
    """Seconds the client asks to wait, None without a ``wait`` preference; 400 for a malformed one.
    Other preferences in the header are ignored, as RFC 7240 asks."""
    header = request.META.get(PREFER_HEADER)
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return MAX_WAIT_S
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_WAIT_S:
            raise ValidationError({"Prefer": [f"wait takes whole seconds from 1 to {MAX_WAIT_S} (Prefer: wait=10); got {value!r}."]})
        return int(value)
    return None


def wait_if_asked(job, seconds: int | None, headers: dict[str, str]) -> bool:
    """Wait for the job when the client asked to and it has not finished yet; note the applied
    preference in ``headers``. True when it waited: the caller reads the job again. With no wait slot
    free it does not wait, and says nothing of the preference (the answer is the job as it is now)."""
    if seconds is None:
        return False
    if job.status in FINISHED_STATUSES:
        headers[APPLIED_HEADER] = f"wait={seconds}"  # nothing to wait for: the answer is the finished job
        return False
    try:
        slot = waiting.take_wait_slot(job.project_id, "prefer_wait")
    except waiting.NoWaitSlot:
        return False
    headers[APPLIED_HEADER] = f"wait={seconds}"
    with slot:
        waiting.wait_until_finished(job.pk, seconds)
    return True
