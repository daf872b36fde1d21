"""Every API endpoint, enumerated from the URLconf, and one object of each kind to point its ids at.

The permissions matrix and the cross-project isolation tests both start from ``api_endpoints()``,
so an endpoint added to the URLconf without a row in their tables fails them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid
from datetime import timedelta

from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from atelier_platform.accounts import invitations
from atelier_platform.accounts.models import Membership
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceImage, ReferenceSet
from atelier_platform.exports.models import Export
from atelier_platform.jobs.models import Job
from atelier_platform.knowledge.models import KnowledgeChunk, KnowledgeDocument
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.api.helpers import build_job, build_output
from tests.factories import UserFactory

PREFIXES = ("api/v1/", "v1/")
_n = itertools.count()


def _template(route: str) -> str:
    """``api/v1/^jobs/(?P<pk>[^/.]+)/$`` and ``v1/models/<str:model_id>`` -> ``/api/v1/jobs/{pk}/``, ``/v1/models/{model_id}``."""
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return "/" + route


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def api_endpoints() -> set[tuple[str, str]]:
    """(METHOD, path template) of every view under /api/v1/ and /v1/.

    DRF's format-suffix twins (``/jobs.json``) are the same views and are left out, and so is the
    function that answers unknown /v1/ paths with OpenAI's 404.
    """
    found = set()
    for route, callback in _walk(get_resolver().url_patterns):
        if not route.startswith(PREFIXES) or "(?P<format>" in route:
            continue
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view_class is None:
            continue
        actions = getattr(callback, "actions", None)
        # HEAD and OPTIONS follow GET and the view (DRF adds "head" to a viewset's actions once it served a GET).
        if actions:
            methods = set(actions) - {"head", "options"}
        else:
            methods = {m for m in view_class.http_method_names if m not in ("options", "head") and hasattr(view_class, m)}
        found |= {(method.upper(), _template(route)) for method in methods}
    return found


def make_objects(project) -> dict:
    """One of every kind of object an API path names by id, in ``project``."""
    export = _an_export(project)  # before the key made below
    job = build_job(project)
    output = build_output(job, image=True)
    review_job = build_job(project)
    review = ReviewItem.objects.create(output=build_output(review_job), project=project)
    document = KnowledgeDocument.objects.create(project=project, source_id=f"doc/{next(_n)}", title="T", content="c",
                                                content_sha256="0" * 64)
    KnowledgeChunk.objects.create(document=document, index=0, text="c", embedding=b"")
    conversation = Conversation.objects.create(project=project, plugin_id="chatbot")
    ConversationMessage.objects.create(conversation=conversation, index=0, role="user", content="Where is my parcel?",
                                       job=job)
    # a chatbot job is a response of the OpenAI-compatible Responses API (resp_<its id without dashes>)
    chat_job = build_job(project, plugin="chatbot")
    Job.objects.filter(pk=chat_job.pk).update(input={"messages": [{"role": "user", "content": "Where is my parcel?"}],
                                                     "conversation_id": str(conversation.pk)})
    build_output(chat_job, content={"reply": "On its way.", "sources": [], "finish_reason": "stop",
                                    "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    endpoint = WebhookEndpoint.objects.create(project=project, url=f"https://example.com/{next(_n)}", secret="whsec_x")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=uuid.uuid4().hex,
                                              payload={}, max_attempts=3)
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), duration_ms=5, status_code=500)
    reference_set = ReferenceSet.objects.create(
        project=project, plugin_id="chatbot", name=f"set {next(_n)}",
        cases=[{"input": {"messages": [{"role": "user", "content": "Where is my parcel?"}]}, "params": {},
                "reference": "On its way."}])
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot", cases_total=1)
    # two ended runs of the set, which compare (``/compare/?to=``)
    scored_runs = [EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id="chatbot", cases_total=1, cases_done=1,
        status="succeeded", finished_at=timezone.now(), metrics={"chrf": chrf, "bleu": chrf / 2},
        results=[{"index": 0, "job_id": str(job.pk), "status": "succeeded", "output": "On its way.",
                  "reference": "On its way.", "chrf": chrf, "error": None}]) for chrf in (60.0, 70.0)]
    schedule = EvaluationSchedule.objects.create(project=project, reference_set=reference_set, interval_hours=24,
                                                 max_drop={"chrf": 1.5}, next_run_at=timezone.now())
    member = Membership.objects.create(project=project, user=UserFactory(), role="viewer")
    invitation = invitations.invite(project, "user:0", email=f"invited{next(_n)}@example.com", role="viewer").invitation
    picture = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes  # served as stored: it need not decode
    reference_image = ReferenceImage(reference_set=reference_set, sha256=hashlib.sha256(picture).hexdigest(),
                                     media_type="image/png", width=1, height=1, size=len(picture))
    reference_image.file.save("reference.png", ContentFile(picture), save=True)
    return {
        "job": job, "chat_job": chat_job, "output": output, "file": output.files.get(role="primary"), "review": review,
        "document": document, "conversation": conversation, "endpoint": endpoint, "delivery": delivery,
        "api_key": issue_api_key(project, scopes=["jobs:read"], name=f"target{next(_n)}").api_key,
        "reference_set": reference_set, "run": run, "scored_run": scored_runs[0], "baseline_run": scored_runs[1],
        "member": member, "invitation": invitation,
        "reference_image": reference_image, "schedule": schedule,
        "export": export,
    }


def _an_export(project) -> Export:
    """An export asked for by the project's newest API key (the isolation test's control finds it with that key),
    or by a member no caller is: every caller but its requester is told it does not exist."""
    from atelier_platform.accounts.models import ApiKey

    newest = ApiKey.objects.filter(project=project).order_by("-created_at", "-pk").first()
    export = Export(project=project, kind="library", format="csv", requested_by_key=newest,
                    requested_by_user=None if newest else UserFactory(), status="succeeded", rows_done=1,
                    finished_at=timezone.now(), expires_at=timezone.now() + timedelta(hours=1))
    export.file.save(f"export-{next(_n)}.csv", ContentFile(b"output_id\n1\n"), save=True)  # downloaded as it is
    return export


# Which object each path's ids name. A path with an id and no entry here fails the tests.
PATH_IDS = {
    "/api/v1/jobs/{pk}/": lambda o: {"pk": o["job"].pk},
    "/api/v1/jobs/{pk}/cancel/": lambda o: {"pk": o["job"].pk},
    "/api/v1/outputs/{pk}/": lambda o: {"pk": o["output"].pk},
    "/api/v1/outputs/{output_id}/files/{file_id}/": lambda o: {"output_id": o["output"].pk, "file_id": o["file"].pk},
    "/api/v1/reviews/{pk}/": lambda o: {"pk": o["review"].pk},
    "/api/v1/reviews/{pk}/claim/": lambda o: {"pk": o["review"].pk},
    "/api/v1/reviews/{pk}/decision/": lambda o: {"pk": o["review"].pk},
    "/api/v1/reviews/{pk}/release/": lambda o: {"pk": o["review"].pk},
    "/api/v1/reviews/{pk}/renew/": lambda o: {"pk": o["review"].pk},
    "/api/v1/knowledge/documents/{pk}/": lambda o: {"pk": o["document"].pk},
    "/api/v1/knowledge/documents/{pk}/reindex/": lambda o: {"pk": o["document"].pk},
    "/api/v1/conversations/{pk}/": lambda o: {"pk": o["conversation"].pk},
    "/api/v1/conversations/{conversation_id}/messages/": lambda o: {"conversation_id": o["conversation"].pk},
    "/api/v1/webhooks/{pk}/": lambda o: {"pk": o["endpoint"].pk},
    "/api/v1/webhooks/{pk}/rotate-secret/": lambda o: {"pk": o["endpoint"].pk},
    "/api/v1/webhooks/{pk}/test/": lambda o: {"pk": o["endpoint"].pk},
    "/api/v1/webhooks/{endpoint_id}/deliveries/": lambda o: {"endpoint_id": o["endpoint"].pk},
    "/api/v1/webhooks/{endpoint_id}/deliveries/{pk}/": lambda o: {"endpoint_id": o["endpoint"].pk, "pk": o["delivery"].pk},
    "/api/v1/webhooks/{endpoint_id}/deliveries/{pk}/retry/":
        lambda o: {"endpoint_id": o["endpoint"].pk, "pk": o["delivery"].pk},
    "/api/v1/api-keys/{pk}/": lambda o: {"pk": o["api_key"].pk},
    "/api/v1/api-keys/{pk}/revoke/": lambda o: {"pk": o["api_key"].pk},
    "/api/v1/members/{pk}/": lambda o: {"pk": o["member"].pk},
    "/api/v1/invitations/{pk}/": lambda o: {"pk": o["invitation"].pk},
    "/api/v1/invitations/{pk}/revoke/": lambda o: {"pk": o["invitation"].pk},
    "/api/v1/evaluation/reference-sets/{pk}/": lambda o: {"pk": o["reference_set"].pk},
    "/api/v1/evaluation/reference-sets/{pk}/images/{sha256}/":
        lambda o: {"pk": o["reference_set"].pk, "sha256": o["reference_image"].sha256},
    "/api/v1/evaluation/runs/{pk}/": lambda o: {"pk": o["run"].pk},
    "/api/v1/evaluation/runs/{pk}/cancel/": lambda o: {"pk": o["run"].pk},
    "/api/v1/evaluation/runs/{pk}/compare/": lambda o: {"pk": o["scored_run"].pk},
    "/api/v1/evaluation/schedules/{pk}/": lambda o: {"pk": o["schedule"].pk},
    "/api/v1/exports/{pk}/": lambda o: {"pk": o["export"].pk},
    "/api/v1/exports/{pk}/download/": lambda o: {"pk": o["export"].pk},
    "/api/v1/exports/{pk}/cancel/": lambda o: {"pk": o["export"].pk},
    "/v1/models/{model_id}": lambda o: {"model_id": "chatbot"},
    "/v1/responses/{response_id}": lambda o: {"response_id": f"resp_{o['chat_job'].pk.hex}"},
    "/v1/responses/{response_id}/input_items": lambda o: {"response_id": f"resp_{o['chat_job'].pk.hex}"},
    "/v1/responses/{response_id}/cancel": lambda o: {"response_id": f"resp_{o['chat_job'].pk.hex}"},
    # a plugin's id names installed software, the same in every project: each project reads and changes its own
    # settings of it (tests/api/test_plugin_settings.py), so it is no other project's object
    "/api/v1/plugins/{plugin_id}/settings/": lambda o: {"plugin_id": "reverse_text"},
}


#: The query an endpoint needs beside its path's ids, for a call that gets past its checks
QUERIES = {
    "/api/v1/evaluation/runs/{pk}/compare/": lambda o: f"?to={o['baseline_run'].pk}",
}


def url_for(template: str, objects: dict) -> str:
    if "{" not in template:
        return template
    query = QUERIES[template](objects) if template in QUERIES else ""
    return template.format(**PATH_IDS[template](objects)) + query
