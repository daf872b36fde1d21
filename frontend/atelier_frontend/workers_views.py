"""The workers page: every worker process with its state, device, memory and warm models, and the queues
they serve, for project owners (the same people ``GET /api/v1/workers/`` answers, and as much as it tells them:
operators, Django staff, see every field, owners what concerns their project; ``fleet.services.worker_summaries``).
Workers serve every project, so the queues are shown twice: the whole fleet's load, and this project's share of it."""

from __future__ import annotations

from django.shortcuts import render

from atelier_platform.accounts.roles import Capability
from atelier_platform.fleet.services import is_operator, queue_counts, worker_summaries

from atelier_frontend.projects import needs

#: How often the page asks for its live part again (milliseconds), about as often as workers report.
REFRESH_MS = 5000


@needs(Capability.ADMIN)
def workers_page(request, here):
    from atelier_frontend.views import page

    context = {
        "workers": worker_summaries(here.project, request.user), "operator": is_operator(request.user),
        "fleet_queues": queue_counts(), "project_queues": queue_counts(project=here.project),
        "project": here.project, "refresh_ms": REFRESH_MS,
    }
    if request.GET.get("part") == "live":  # what the page's script swaps in every REFRESH_MS
        return render(request, "atelier_frontend/_workers_live.html", context)
    return page(request, "atelier_frontend/workers.html", context)
