"""Settings and URLconf of the web process under ``bench/api.py``: Atelier's own, plus one bare view.

``DJANGO_SETTINGS_MODULE=api_plain`` (with ``bench/`` on PYTHONPATH) for the bench's stack only; the
production URLconf never sees ``/bench/plain-jobs/``. The view is what a job submission costs with
nothing of Atelier's: parse the JSON, insert the same Job row, answer 201 with its id and status (no
authentication, validation, screening, quotas, idempotency or broker message).
"""

import json
import random

from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from atelier_platform.settings import *  # noqa: F401,F403

ROOT_URLCONF = "api_plain"

_project_ids: dict[str, int] = {}


@csrf_exempt
def plain_jobs(request):
    from atelier_platform.accounts.models import Project
    from atelier_platform.jobs.models import Job

    body = json.loads(request.body)
    slug = body["project"]
    if slug not in _project_ids:
        _project_ids[slug] = Project.objects.only("id").get(slug=slug).pk
    job = Job.objects.create(
        project_id=_project_ids[slug], plugin_id=body["plugin"], plugin_version="1.0.0", resource_class="cpu",
        input=body["input"], params=body.get("params") or {}, seed=random.getrandbits(31),
    )
    return JsonResponse({"id": str(job.pk), "status": job.status}, status=201)


def __getattr__(name: str):
    """``urlpatterns`` is built when the resolver first asks, after the apps are loaded (this module is
    the settings module too, imported before they are)."""
    if name == "urlpatterns":
        return [path("bench/plain-jobs/", plain_jobs), path("", include("atelier_platform.urls"))]
    raise AttributeError(name)


handler400 = "atelier_platform.api.errors.json_bad_request"
handler404 = "atelier_platform.api.errors.json_not_found"
handler500 = "atelier_platform.api.errors.json_server_error"
