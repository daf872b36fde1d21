"""Dashboard views. Thin, like the API's: find the project, call a platform service, render.

Every page reads the database a fixed number of times whatever the data (lists are sliced,
relations selected or prefetched), which ``tests/frontend/test_pages.py::TestQueryCounts`` checks.
"""

from __future__ import annotations

from functools import lru_cache

from atelier_sdk import editable_paths
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from atelier_platform.accounts.roles import Capability
from atelier_platform.instants import in_utc, parse_instant
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.schema_texts import written_texts
from atelier_platform.catalog.services import enabled_plugin_ids
from atelier_platform.jobs.errors import InputBlocked, JobServiceError
from atelier_platform.jobs.models import WITHHELD_REVIEW_STATES, Job, JobPurpose, JobStatus, Output, ReviewState
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_platform.moderation.models import AuditEvent, ReviewItem, ReviewItemState
from atelier_platform.moderation.screening import IMAGE_TYPES, policy_for
from atelier_platform.usage.errors import QuotaExceeded

from atelier_frontend import job_errors, quota_words, schema_form
from atelier_frontend.actors import action_words, actor_names
from atelier_frontend.field_errors import shown_details
from atelier_frontend.job_states import with_review_state_counts
from atelier_frontend.labels import category_label, choice_labels, field_labels, plugin_words, reject_reason_label
from atelier_frontend.models import PromptTemplate
from atelier_frontend.projects import NAVIGATION, current, needs, switch
from atelier_frontend.rendering import flagged_categories, render_value, spans_of
from atelier_frontend.texts import js_text


def review_states_of_outputs() -> Prefetch:
    """What a succeeded job's status badge reads of its outputs (``job_states.badges``), for ``prefetch_related``."""
    return Prefetch("outputs", queryset=Output.objects.only("id", "job_id", "review_state"))


JOBS_PER_PAGE = 50
# Pages past this (50 million jobs in) show the empty end of the list: an unbounded page number overflows
# the database's OFFSET.
MAX_JOBS_PAGE = 1_000_000
RECENT_PROMPTS = 8
SECTIONS = {"create-plugin": "create", "job": "jobs", "chat-thread": "chat"}


def page(request, template: str, context: dict, status: int = 200):
    """Render with what every page's header needs: the project switcher and the role's navigation."""
    here = current(request)
    nav = [(name, label) for name, label, capability in NAVIGATION if here.can(capability)]
    url_name = request.resolver_match.url_name if request.resolver_match else ""
    section = SECTIONS.get(url_name, url_name)
    return render(request, template, {"here": here, "nav": nav, "section": section, "js_text": js_text(), **context},
                  status=status)


@login_required
def home(request):
    here = current(request)
    if here.can(Capability.JOBS_WRITE):
        return redirect("create")
    if here.can(Capability.REVIEWS_WRITE):
        return redirect("review")
    return redirect("jobs")


@login_required
@require_POST
def switch_project(request):
    slug = request.POST.get("project", "")
    if "\x00" in slug or not switch(request, slug):  # PostgreSQL refuses a NUL in a query parameter
        raise Http404("No such project among yours.")
    target = request.POST.get("next") or "/"
    # Django's own test, as its sign-in and language views make: a "next" of "/", a backslash and a host starts with
    # one "/" and still leads a browser (which reads a backslash as "/", and drops tabs) to another site.
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts=None) and target.startswith("/")
    return redirect(target if safe else "/")


# --- create ----------------------------------------------------------------------------------------

def _plugin_info(plugin) -> dict:
    manifest = plugin.manifest
    return {"id": manifest.id, "name": plugin_words(manifest.name), "description": plugin_words(manifest.description),
            "version": manifest.version,
            "modality": manifest.modality.value, "input_schema": plugin.input_schema(), "params_schema": plugin.params_schema()}


def _enabled_plugins(project) -> list[dict]:
    enabled = enabled_plugin_ids(project)
    return [_plugin_info(p) for p in get_registry().available() if p.manifest.id in enabled]


@needs(Capability.JOBS_WRITE)
def create_index(request, here):
    return page(request, "atelier_frontend/create_index.html", {"plugins": _enabled_plugins(here.project)})


@needs(Capability.JOBS_WRITE)
def create_plugin(request, here, plugin_id: str):
    plugin = get_registry().get(plugin_id)
    if plugin is None or plugin_id not in enabled_plugin_ids(here.project):
        raise Http404("This plugin is not enabled for the project.")
    info = _plugin_info(plugin)
    fields = schema_form.fields_for(info)
    priority, form_errors, notice = "5", [], ""
    templates = PromptTemplate.objects.filter(project=here.project, plugin_id=plugin_id)
    if request.method == "POST" and request.POST.get("delete_template"):
        templates.filter(pk=schema_form.whole_number(request.POST["delete_template"])).delete()
        return redirect("create-plugin", plugin_id=plugin_id)
    if request.method == "POST":
        input_data, params, readable = schema_form.parse(fields, request.POST)
        priority = request.POST.get("priority", "5")
        if schema_form.whole_number(priority) not in range(10):
            form_errors.append(_("Priority: choose 0 to 9."))
            readable = False
        template_name = request.POST.get("template_name", "").strip()[:100]
        if "save_template" in request.POST:
            if not template_name:
                form_errors.append(_("Name the template to save it."))
            elif readable:
                PromptTemplate.objects.update_or_create(
                    project=here.project, plugin_id=plugin_id, name=template_name,
                    defaults={"input": input_data, "params": params, "priority": int(priority), "created_by": request.user})
                notice = _("Template “%(name)s” saved for everyone in this project.") % {"name": template_name}
            readable = False  # saving a template submits nothing
        if readable:
            try:
                submission = submit_job(
                    here.project, JobRequest(plugin_id=plugin_id, input=input_data, params=params, priority=int(priority)),
                    submitted_by=request.user,
                )
            except InputBlocked as exc:
                form_errors.append(_blocked(fields, exc.details or {}))
            except QuotaExceeded as exc:
                form_errors.append(quota_words.refusal(exc.details or {}))
            except JobServiceError as exc:
                unplaced = schema_form.attach_errors(fields, shown_details(exc))
                # the service's English summary only where the fields themselves do not say what is wrong
                everything_on_fields = exc.code == "validation_error" and exc.details and not unplaced
                form_errors.append(_("Correct the fields marked below.") if everything_on_fields else str(exc))
                form_errors.extend(unplaced)
            else:
                return redirect("job", job_id=submission.job.pk)
    elif request.GET.get("from"):
        earlier = Job.objects.filter(project=here.project, plugin_id=plugin_id, pk=_uuid_or_404(request.GET["from"])).first()
        if earlier is not None:
            schema_form.prefill(fields, earlier.input, earlier.params)
            priority = str(earlier.priority)
    elif request.GET.get("template"):
        template = templates.filter(pk=schema_form.whole_number(request.GET["template"])).first()
        if template is not None:
            schema_form.prefill(fields, template.input, template.params)
            priority = str(template.priority)
    recent = with_review_state_counts(
        # the member's own prompts: not the cases of an evaluation they started, nor those erased (nothing left to
        # show or reuse: the row was a blank link)
        Job.objects.filter(project=here.project, plugin_id=plugin_id, submitted_by=request.user,
                           purpose=JobPurpose.REQUEST, erased_at__isnull=True)
        .only("id", "input", "created_at", "status", "purpose", "erased_at")).order_by("-created_at")[:RECENT_PROMPTS]
    return page(request, "atelier_frontend/create_plugin.html", {
        "plugin": info, "fields": fields, "priority": priority, "priorities": range(10), "form_errors": form_errors,
        "recent": [(job, _summary(job.input, plugin_id=plugin_id)) for job in recent], "notice": notice,
        "templates": [(t, _summary(t.input, 80, plugin_id)) for t in templates.only("id", "name", "input")[:50]],
    }, status=400 if form_errors or any(f.errors for f in fields) else 200)


def _blocked(fields: list, details: dict) -> str:
    """What to tell an editor whose input screening blocked: a sentence naming the categories found, and the
    fields they were found in marked (rather than the service's ``categories: …`` and ``fields: input.text``)."""
    flagged = set(details.get("fields") or [])
    for field in fields:
        if any(name == field.name or name.startswith(f"{field.name}.") for name in flagged):
            field.errors.append(_("Blocked by screening: reword this."))
    return _("This request was blocked by the project's safety policy (%(categories)s): reword the fields marked "
             "below and submit again.") % {
        "categories": ", ".join(category_label(c) for c in details.get("categories") or []) or "–"}


def _summary(data, limit: int = 120, plugin_id: str | None = None) -> str:
    """The texts a person wrote in an input, to recognise a prompt in a list: with the plugin's input
    schema, not its fixed choices (a chat message's role) nor its ids (a conversation's UUID)."""
    plugin = get_registry().get(plugin_id) if plugin_id else None
    texts = written_texts(data, _input_schema_of(plugin) if plugin is not None else {})
    text = " · ".join(texts) or "(no text)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=64)
def _input_schema_of(plugin) -> dict:
    """An installed plugin's input JSON schema, built once per plugin class (a list summarises many jobs)."""
    return plugin.input_schema()


@lru_cache(maxsize=64)
def _schemas_of(plugin) -> tuple[dict, dict, dict]:
    """An installed plugin's input, params and output JSON schemas, built once per plugin class."""
    return plugin.input_schema(), plugin.params_schema(), plugin.output_schema()


def _labels_of(plugin_id: str) -> dict[str, tuple[dict, dict]]:
    """What to call a job's input, params and outputs (``"input"``, ``"params"``, ``"content"``), each as
    ``(fields, choices)``: the plugin's titles of its top-level fields (``labels.field_labels``) and its fixed choices
    (``labels.choice_labels``) in the page's language; none for a plugin no longer installed, whose fields and
    values show as they are."""
    plugin = get_registry().get(plugin_id)
    if plugin is None:
        return {"input": ({}, {}), "params": ({}, {}), "content": ({}, {})}
    input_schema, params_schema, output_schema = _schemas_of(plugin)
    return {root: (field_labels(schema), choice_labels(schema))
            for root, schema in (("input", input_schema), ("params", params_schema), ("content", output_schema))}


def _uuid_or_404(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise Http404("Not a job id.") from None


# --- jobs --------------------------------------------------------------------------------------------

#: Which jobs the list shows: the project's requests (the default: an evaluation run's hundreds of jobs are no
#: one's content and would push the editors' own work off the first page), an evaluation run's jobs, or both.
JOB_PURPOSES = ("request", "evaluation", "all")


def _job_filters(params) -> dict:
    status = params.get("status", "")
    purpose = params.get("purpose", "")
    return {"status": status if status in JobStatus.values else "", "plugin": _without_nul(params.get("plugin", "")),
            "q": _without_nul(params.get("q", "")).strip(),
            "purpose": purpose if purpose in JOB_PURPOSES else "request"}


def _without_nul(text: str) -> str:
    """No stored plugin id or input holds a NUL, and PostgreSQL refuses one in a query parameter."""
    return text.replace("\x00", "")


def _filtered_jobs(project, filters: dict):
    listed = Job.objects.filter(project=project)
    if filters["status"]:
        listed = listed.filter(status=filters["status"])
    if filters["plugin"]:
        listed = listed.filter(plugin_id=filters["plugin"])
    if filters.get("purpose", "request") != "all":
        listed = listed.filter(purpose=filters.get("purpose", "request"))
    if filters["q"]:
        listed = listed.filter(job_search(filters["q"]))
    return listed


def job_search(q: str) -> Q:
    """The jobs whose input or plugin holds ``q``: the input's own texts, case-folded (Job.search_text), not its JSON,
    which escapes quotes and, on SQLite, every letter outside ASCII ("café" and "退货" were never found), and whose keys
    matched too. On PostgreSQL each half reads its trigram index (jobs.search_indexes)."""
    return Q(search_text__contains=q.casefold()) | Q(plugin_id__icontains=q)


@needs(Capability.JOBS_READ)
def jobs(request, here):
    from django.utils import timezone

    filters = _job_filters(request.GET)
    listed = _filtered_jobs(here.project, filters)
    try:
        page_number = min(max(1, int(request.GET.get("page", "1"))), MAX_JOBS_PAGE)
    except ValueError:
        page_number = 1
    start = (page_number - 1) * JOBS_PER_PAGE
    rows = list(listed.select_related("submitted_by").prefetch_related(review_states_of_outputs())
                .order_by("-created_at", "-id")[start:start + JOBS_PER_PAGE + 1])
    has_next = len(rows) > JOBS_PER_PAGE
    rows = rows[:JOBS_PER_PAGE]
    # the first page shows jobs created after it loaded as they come (the poll asks for those since then)
    since = rows[0].created_at if rows else timezone.now()
    return page(request, "atelier_frontend/jobs.html", {
        "jobs": [(job, _summary(job.input, 90, job.plugin_id)) for job in rows], "statuses": JobStatus.choices,
        "plugins": sorted(p.manifest.id for p in get_registry().available()),
        "filters": filters, "page_number": page_number, "has_next": has_next,
        "live": page_number == 1, "since": since.isoformat(),
        # said under the list when evaluation jobs are left out of it, with the link that shows them
        "evaluation_hidden": filters["purpose"] == "request" and Job.objects.filter(
            project=here.project, purpose=JobPurpose.EVALUATION).exists(),
    })


NEW_JOBS_PER_POLL = 50


@needs(Capability.JOBS_READ)
def jobs_status(request, here):
    """Status and progress of the listed jobs (``?ids=a,b``): what the pages poll while work runs.

    With ``since`` (an ISO time) and the list's filters, also the jobs created after it that match,
    newest first, as table rows (``new``) for the list to prepend, and the time to ask from next."""
    import uuid

    from django.template.loader import render_to_string

    ids = []
    for raw in request.GET.get("ids", "").split(",")[:200]:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            continue
    rows = Job.objects.filter(project=here.project, pk__in=ids).only(
        "id", "status", "progress", "progress_detail", "error_code", "error_message", "finished_at", "purpose", "erased_at",
    ).prefetch_related(review_states_of_outputs()) if ids else []
    # html: the status cell as the pages render it (the review state of a finished job's outputs, a running
    # job's progress in words), for the pages to show as it is
    answer = {"jobs": [
        {"id": str(job.pk), "status": job.status, "progress": job.progress, "detail": job.progress_detail,
         "error": job.error_message or job.error_code, "finished": job.is_finished,
         "html": render_to_string("atelier_frontend/_status.html", {"job": job}, request=request)}
        for job in rows]}
    since = _since(request.GET.get("since", ""))
    if since is not None:
        filters = _job_filters(request.GET)
        new = list(_filtered_jobs(here.project, filters).filter(created_at__gt=since).select_related("submitted_by")
                   .prefetch_related(review_states_of_outputs()).order_by("-created_at", "-id")[:NEW_JOBS_PER_POLL])
        answer["new"] = [{"id": str(job.pk), "html": render_to_string(
            "atelier_frontend/_job_row.html", {"job": job, "summary": _summary(job.input, 90, job.plugin_id)}, request=request)}
            for job in new]
        answer["since"] = (new[0].created_at if new else since).isoformat()
    return JsonResponse(answer)


def _since(raw: str):
    """``since`` as an aware time in UTC (``instants.in_utc``), or None; a time beyond the years UTC can hold
    (0001-01-01 at +14:00) becomes the first or last time it can, which no job is created before or after."""
    import datetime

    from django.utils import timezone
    from django.utils.dateparse import parse_datetime

    try:
        since = parse_datetime(raw)
    except ValueError:
        return None
    if since is None:
        return None
    if timezone.is_naive(since):
        since = timezone.make_aware(since)
    converted = in_utc(since)
    if converted is None:
        edge = datetime.datetime.min if since.year == datetime.MINYEAR else datetime.datetime.max
        return edge.replace(tzinfo=datetime.timezone.utc)
    return converted


#: What the job page and chat say in place of an output's content that the jobs API withholds.
WITHHELD_NOTICES = {
    ReviewState.BLOCKED: gettext_lazy("Withheld: blocked by screening. Its content and files are not shown."),
    ReviewState.REJECTED: gettext_lazy("Withheld: rejected by a reviewer. Its content and files are not shown."),
}
WITHHELD_REPLY_NOTICES = {
    ReviewState.BLOCKED: gettext_lazy("This reply is withheld: blocked by screening."),
    ReviewState.REJECTED: gettext_lazy("This reply is withheld: rejected by a reviewer."),
}


def _what_an_edit_changed(decision, here) -> list[tuple[str, str]]:
    """An edit's changes as the lines of a diff of the output before and after, each with its kind ("removed",
    "added", "" for context), for those who review: what a reviewer edited out (a phone number, an insult) is for
    the people who may read the queue, not for every member who reads the job."""
    from atelier_platform.moderation.review import content_diff

    if decision.action != "edit" or decision.original_content is None or not here.can(Capability.REVIEWS_READ):
        return []
    lines = content_diff(decision.original_content, decision.edited_content).splitlines()[2:]  # not the file names
    kinds = {"-": "removed", "+": "added"}
    return [(kinds.get(line[:1], ""), line) for line in lines if not line.startswith("@@")]


@needs(Capability.JOBS_READ)
def job_detail(request, here, job_id):
    outputs = Output.objects.select_related("review").prefetch_related("files", "review__decisions")
    job = (Job.objects.filter(project=here.project, pk=job_id).select_related("submitted_by", "api_key")
           .prefetch_related(Prefetch("outputs", queryset=outputs)).first())
    if job is None:
        raise Http404("No such job in this project.")
    policy = policy_for(here.project)
    labels = _labels_of(job.plugin_id)
    shown = []
    for output in job.outputs.all():
        item = getattr(output, "review", None)
        # As the jobs API: a blocked or rejected output keeps its state and flags here, never its content or
        # files, whoever looks (reviewers read it in the review panel).
        withheld = output.review_state in WITHHELD_REVIEW_STATES
        # an erased job's outputs keep their state and flags; what is left of their content is the usage report's
        files = [] if withheld or job.erased_at else output.files.all()
        shown.append({
            "output": output,
            "withheld": (WITHHELD_NOTICES[output.review_state] if withheld
                         else _("Erased: its content and files are gone.") if job.erased_at else ""),
            "html": "" if withheld or job.erased_at else render_value(output.content, "content", spans_of(output.safety),
                                                                      *labels["content"]),
            "flags": flagged_categories(output.safety),
            "images": [f for f in files if f.media_type in IMAGE_TYPES and f.role != "thumbnail"],
            "thumbnails": {f.role: f for f in files},
            "other_files": [f for f in files if f.media_type not in IMAGE_TYPES],
            "item": item,
            "decisions": list(item.decisions.all()) if item else [],
            "needed": 2 if item and item.flagged and policy.second_review_for_flagged else 1,
        })
    # Each id with its object's type: review items and memberships both have small integer ids, and an id alone
    # put "member added" (an owner's action) on the timelines of jobs whose review items shared its number.
    about = (Q(object_type="job", object_id=str(job.pk))
             | Q(object_type="output", object_id__in=[str(o["output"].pk) for o in shown])
             | Q(object_type="reviewitem", object_id__in=[str(o["item"].pk) for o in shown if o["item"]]))
    events = list(AuditEvent.objects.filter(about, project=here.project).order_by("created_at", "id")[:200])
    decisions = [decision for shown_output in shown for decision in shown_output["decisions"]]
    names = actor_names(here.project, [e.actor for e in events] + [d.decided_by for d in decisions]
                        + ([f"key:{job.api_key.prefix}"] if job.api_key else []) + [job.erased_by])
    for decision in decisions:
        decision.who = names.get(decision.decided_by, decision.decided_by)
        decision.changes = _what_an_edit_changed(decision, here)
    submitter = (job.submitted_by.username if job.submitted_by
                 else names[f"key:{job.api_key.prefix}"] if job.api_key else "API")
    timeline = [(action_words("created"), job.created_at, submitter)]
    if job.started_at:
        # which worker (host:pid unless ATELIER_WORKER_NAME names it) is the operators' to see; an owner sees it by
        # the label the workers page gives it, and a project's other members learn when the job started, not where
        timeline.append((action_words("started"), job.started_at, _worker_shown(job.worker, request.user, here)))
    explanation = job_errors.explain(job.error_code) if job.error_code or job.error_message else None
    if job.finished_at:
        # why, in the reader's words; the error's code and English are on the page, folded away
        timeline.append((action_words(job.status), job.finished_at, explanation.what_happened if explanation else ""))
    timeline += [(action_words(e.action), e.created_at, names.get(e.actor, e.actor)) for e in events]
    timeline.sort(key=lambda row: row[1])
    evaluation_case = None
    if job.purpose == JobPurpose.EVALUATION:
        from atelier_platform.evaluation.models import EvaluationCase

        evaluation_case = EvaluationCase.objects.filter(job=job, run__project=here.project).first()
    return page(request, "atelier_frontend/job_detail.html", {
        "evaluation_case": evaluation_case,
        "notice": request.session.pop(JOB_NOTICE_SESSION, "") if request.method == "GET" else "",
        "erased_by": names.get(job.erased_by, job.erased_by) if job.erased_at else "",
        # a case of an evaluation run is erased with its run's set, not from here (the service refuses it too)
        "can_erase": here.can(Capability.CONTENT_ERASE) and not job.erased_at and evaluation_case is None,
        "job": job, "outputs": shown, "explanation": explanation, "can_submit": here.can(Capability.JOBS_WRITE),
        "input_html": render_value(job.input, "input", spans_of(job.input_screening), *labels["input"]),
        "input_flags": flagged_categories(job.input_screening), "timeline": timeline,
        "params_html": render_value(job.params, "params", {}, *labels["params"]), "can_cancel": here.can(Capability.JOBS_WRITE),
    })


def _worker_shown(worker: str, user, here) -> str:
    from atelier_platform.fleet.services import is_operator, worker_label

    if not worker:
        return ""
    if is_operator(user):
        return worker
    return worker_label(worker) if here.can(Capability.ADMIN) else ""


# --- chat --------------------------------------------------------------------------------------------------

def _chat_plugins(project) -> list:
    from atelier_platform.conversations.services import is_conversational

    enabled = enabled_plugin_ids(project)
    return [p for p in get_registry().available() if p.manifest.id in enabled and is_conversational(p)]


@needs(Capability.JOBS_WRITE)
def chat(request, here, conversation_id=None):
    """A chat thread with the project's chat plugin: each reply with its sources and review state."""
    from atelier_platform.conversations.models import Conversation

    plugins = _chat_plugins(here.project)
    conversation, rows, error, waiting, draft = None, [], "", None, ""
    if conversation_id is not None:
        conversation = Conversation.objects.filter(project=here.project, pk=conversation_id).first()
        if conversation is None:
            raise Http404("No such conversation in this project.")
    plugin_id = conversation.plugin_id if conversation else (plugins[0].manifest.id if plugins else None)
    if request.method == "POST" and plugin_id:
        text = request.POST.get("message", "").strip()
        if text:
            try:
                submission = submit_job(here.project, JobRequest(
                    plugin_id=plugin_id, priority=7, params={},
                    input={"messages": [{"role": "user", "content": text}],
                           **({"conversation_id": str(conversation.pk)} if conversation else {})}),
                    submitted_by=request.user)
            except InputBlocked as exc:
                # the categories in words, not the service's "categories: violence" and "fields: input.messages..."
                error = _("This message was blocked by the project's safety policy (%(categories)s): reword it and "
                          "send it again.") % {"categories": ", ".join(
                              category_label(c) for c in (exc.details or {}).get("categories") or []) or "–"}
                draft = text
            except QuotaExceeded as exc:
                error, draft = quota_words.refusal(exc.details or {}), text
            except JobServiceError as exc:
                summary = _("This message cannot be sent as it is:") if exc.code == "validation_error" else str(exc)
                error = " ".join([summary, *[f"{k}: {' '.join(v)}" for k, v in shown_details(exc).items()]])
                draft = text  # back in the box, to shorten or reword rather than type again
            else:
                return redirect("chat-thread", conversation_id=submission.job.input["conversation_id"])
    earlier, later = None, False
    if conversation is not None:
        rows, waiting, earlier, later = _chat_rows(conversation, request.GET.get("before"))
    recent = Conversation.objects.filter(project=here.project).order_by("-updated_at")[:15]
    return page(request, "atelier_frontend/chat.html", {
        "plugins": plugins, "plugin_id": plugin_id, "conversation": conversation, "rows": rows, "error": error,
        "waiting": waiting, "recent": recent, "draft": draft, "earlier": earlier, "later": later,
    }, status=400 if error else 200)


#: turns of a thread the chat page shows at once: a thread of thousands is a link per window, not one page
CHAT_TURNS_SHOWN = 50


def _chat_rows(conversation, before: str | None):
    """The rows of the thread's latest turns, or of those before the turn ``before`` (its id); the job still
    running; the id of the first turn shown when there are earlier ones; and whether there are later ones."""
    from django.db.models import Max

    from atelier_platform.conversations.services import latest_turns

    thread = conversation.messages.all()
    named = before is not None and before.isascii() and before.isdigit() and len(before) < 19
    anchor = thread.filter(pk=int(before)).first() if named else None  # gone (a reply that left): the latest turns
    messages, has_earlier = latest_turns(thread.select_related("job").prefetch_related("job__outputs"), CHAT_TURNS_SHOWN,
                                         before=anchor.index if anchor else None)
    # A job's reply, or its last turn, may lie outside the window: the thread says which, not the window.
    jobs = {m.job_id for m in messages if m.job_id}
    answered = set(thread.filter(role="assistant", job_id__in=jobs).values_list("job_id", flat=True))
    last_turns = set(thread.filter(role="user", job_id__in=jobs).values("job_id").annotate(last=Max("index"))
                     .values_list("last", flat=True))
    rows, waiting = [], None
    for message in messages:
        if message.job is not None and message.job.erased_at is not None:
            # its text is gone (``jobs.erasure``), and what is left of its job's outputs is no reply
            rows.append({"role": message.role, "text": _("This turn was erased."), "erased": True, "sources": [],
                         "state": "", "job": message.job})
            continue
        outputs = list(message.job.outputs.all()) if message.job else []
        first = outputs[0] if outputs else None
        content = first.content if first and isinstance(first.content, dict) else {}
        if message.role == "assistant":
            rows.append({"role": "assistant", "text": message.content, "sources": content.get("sources", []),
                         "state": first.review_state if first else "", "job": message.job})
        elif message.role == "user":
            rows.append({"role": "user", "text": message.content, "job": message.job})
            job = message.job
            if job is not None and job.pk not in answered and message.index in last_turns:
                if first is not None and first.review_state in WITHHELD_REVIEW_STATES:
                    # as /v1/chat/completions: a notice in place of a reply nobody may use, nor its sources
                    rows.append({"role": "assistant", "draft": True, "withheld": True,
                                 "text": WITHHELD_REPLY_NOTICES[first.review_state], "sources": [],
                                 "state": first.review_state, "job": job})
                elif first is not None:
                    rows.append({"role": "assistant", "draft": True, "text": content.get("reply", ""),
                                 "sources": content.get("sources", []), "state": first.review_state, "job": job})
                elif not job.is_finished:
                    waiting = job
                else:
                    # why, in the reader's words (the job's page has the technical details)
                    rows.append({"role": "assistant", "draft": True, "failed": True, "job": job,
                                 "text": job_errors.explain(job.error_code).what_happened})
    return rows, waiting, messages[0].pk if has_earlier else None, anchor is not None


# --- usage ----------------------------------------------------------------------------------------------

@needs(Capability.JOBS_READ)
def usage_page(request, here):
    from atelier_platform.usage.quotas import quota_status

    from atelier_frontend.usage import summary

    return page(request, "atelier_frontend/usage.html", {"usage": summary(here.project),
                                                         "quotas": quota_words.rows(quota_status(here.project))})


@needs(Capability.JOBS_WRITE)
@require_POST
def job_cancel(request, here, job_id):
    from atelier_platform.jobs import lifecycle

    job = Job.objects.filter(project=here.project, pk=job_id).first()
    if job is None:
        raise Http404("No such job in this project.")
    try:
        lifecycle.cancel_job(job)
    except JobServiceError:
        pass  # it finished meanwhile: the page shows how
    return redirect("job", job_id=job.pk)


#: what an owner's erasure did (or why it was refused), shown once on the job page the redirect leads to
JOB_NOTICE_SESSION = "atelier_job_notice"


@needs(Capability.CONTENT_ERASE)
@require_POST
def job_erase(request, here, job_id):
    """Erase the job's content for good (``jobs.erasure``, as ``DELETE /api/v1/jobs/{id}/``): the page then says so."""
    from atelier_platform.jobs import erasure

    job = Job.objects.filter(project=here.project, pk=job_id).only("id").first()
    if job is None:
        raise Http404("No such job in this project.")
    try:
        done = erasure.erase_jobs(here.project, [job.pk], f"user:{request.user.pk}")
    except erasure.JobStillRunning:
        request.session[JOB_NOTICE_SESSION] = _("Not erased: the job is running. Cancel it, and erase it once it has "
                                                "stopped.")
    except erasure.EvaluationJobKept:
        request.session[JOB_NOTICE_SESSION] = _("Not erased: this job answers a case of an evaluation run. Delete the "
                                                "run's reference set first.")
    else:
        others = len(done.erased) - 1
        request.session[JOB_NOTICE_SESSION] = (
            ngettext("Erased, with %(n)s regeneration of the same request.",
                     "Erased, with %(n)s regenerations of the same request.", others) % {"n": others}
            if others > 0 else _("Erased.") if done.erased else _("This job's content was erased already."))
    return redirect("job", job_id=job.pk)


# --- review --------------------------------------------------------------------------------------------

def _review_filters(params) -> dict[str, str]:
    """The queue's filters as the page takes them (``plugin``, ``flagged``: "true" or "false"), as the API's queue
    takes them too; anything else is no filter."""
    flagged = params.get("flagged", "")
    return {"plugin": params.get("plugin", "")[:100].replace("\x00", ""),
            "flagged": flagged if flagged in ("true", "false") else ""}


def _queue_filters(filters: dict[str, str]) -> dict:
    """The page's filters as the review service's queue takes them."""
    return {"plugin": filters["plugin"] or None, "flagged": {"true": True, "false": False}.get(filters["flagged"])}


#: The most items one click of the bulk button approves: each is a decision and an audit event of its own, and a
#: click that approves without looking is kept to a number a reviewer can take back by hand.
BULK_LIMIT = 100


def _bulk_words(n: int) -> dict[str, str]:
    """The bulk button's label and the question it asks, for ``n`` items: in the page as served, and in the queue's
    standing, which the page's script puts in as the count changes. Past ``BULK_LIMIT`` they say what one click
    approves and what it leaves (the button said "Approve all 150" and approved 100)."""
    if n > BULK_LIMIT:
        values = {"limit": BULK_LIMIT, "n": n, "rest": n - BULK_LIMIT}
        return {"label": ngettext("Approve %(limit)s of %(n)s unflagged item", "Approve %(limit)s of %(n)s unflagged items",
                                  n) % values,
                "confirm": ngettext("Approve the first %(limit)s of %(n)s unflagged item without looking at them? The "
                                    "other %(rest)s wait for the next click.",
                                    "Approve the first %(limit)s of %(n)s unflagged items without looking at them? The "
                                    "other %(rest)s wait for the next click.", n) % values}
    return {"label": ngettext("Approve %(n)s unflagged item", "Approve all %(n)s unflagged items", n) % {"n": n},
            "confirm": ngettext("Approve %(n)s unflagged item without looking at it?",
                                "Approve all %(n)s unflagged items without looking at them?", n) % {"n": n}}


def _reviewer(request):
    from atelier_platform.moderation import review as reviews

    return reviews.Reviewer(actor=f"user:{request.user.pk}", user_id=request.user.pk)


@needs(Capability.REVIEWS_WRITE)
def review(request, here):
    from urllib.parse import urlencode

    from django.utils import timezone

    from atelier_platform.moderation import review as reviews

    policy = policy_for(here.project)
    filters = _review_filters(request.GET)
    counted_at = timezone.now()
    # the bulk approval approves what the reviewer was told of: nothing that arrived after this count, and
    # only unflagged items (none when the queue shows the flagged ones only)
    bulk_count = 0 if filters["flagged"] == "true" else reviews.bulk_approvable(
        here.project, _reviewer(request), policy, plugin=filters["plugin"], counted_at=counted_at).count()
    # the plugins with items waiting (and the one filtered on, to be shown as chosen even with none left)
    plugins = set(ReviewItem.objects.filter(project=here.project, state=ReviewItemState.OPEN)
                  .values_list("output__job__plugin_id", flat=True).distinct())
    return page(request, "atelier_frontend/review.html", {
        "reasons": [(reason, reject_reason_label(reason)) for reason in policy.reasons], "policy": policy, "actor": f"user:{request.user.pk}",
        "filters": filters, "filter_query": urlencode({k: v for k, v in filters.items() if v}),
        "plugins": sorted(plugins | ({filters["plugin"]} if filters["plugin"] else set())),
        "bulk": _bulk_words(bulk_count) if bulk_count else None,
        "bulk_counted_at": counted_at,
    })


def _validation_error(field: str, message: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": {"code": "validation_error", "message": message, "details": {field: [detail]}}},
                        status=400)


COUNTED_AT_HELP = "An ISO 8601 time with its offset, as the queue page gives it."


@needs(Capability.REVIEWS_WRITE)
def review_standing(request, here):
    """Where the queue page stands, for its header and its bulk button to follow the decisions made (on the page and
    by others) and the items that arrive: the place of the item shown (``item``) in the filtered queue and how many
    items wait there, in words; with ``counted_at`` (the bulk button's), how many items the bulk approval still
    covers, with the button's words for that many."""
    from atelier_platform.moderation import review as reviews

    filters = _review_filters(request.GET)
    raw_item = request.GET.get("item", "")
    if raw_item and not (raw_item.isascii() and raw_item.isdigit() and len(raw_item) <= 18):
        return _validation_error("item", "Name the item shown by its id.", "A review item's id (digits).")
    position, pending = reviews.queue_position(here.project, int(raw_item) if raw_item else None,
                                               **_queue_filters(filters))
    if not pending:
        header = _("Queue empty")
    elif position is None:
        header = ngettext("%(n)s pending item", "%(n)s pending items", pending) % {"n": pending}
    else:
        header = ngettext("%(position)s of %(n)s pending item", "%(position)s of %(n)s pending items",
                          pending) % {"position": position, "n": pending}
    answer = {"position": position, "pending": pending, "header": header, "bulk": None}
    if "counted_at" in request.GET:
        counted_at = parse_instant(request.GET["counted_at"])
        if counted_at is None:
            return _validation_error("counted_at", "Say when the items were counted.", COUNTED_AT_HELP)
        count = 0 if filters["flagged"] == "true" else reviews.bulk_approvable(
            here.project, _reviewer(request), policy_for(here.project), plugin=filters["plugin"],
            counted_at=counted_at).count()
        answer["bulk"] = {"count": count, **_bulk_words(count)}
    return JsonResponse(answer)


@needs(Capability.REVIEWS_WRITE)
@require_POST
def review_bulk_approve(request, here):
    """Approve the unflagged pending items the page counted, ``BULK_LIMIT`` at most (never an audit sample: a person
    looks at those), each through the review service (a lease, a decision, an audit event), so the rules that hold
    for one hold for all. Answers how many were approved, passed over (taken or decided meanwhile) and are left of
    those counted, with a sentence saying so in the page's language."""
    from atelier_platform.moderation import review as reviews

    reviewer = _reviewer(request)
    # filtered as the queue page that asked (its filters in the query string): a reviewer of one plugin's items
    # approves that plugin's
    filters = _review_filters(request.GET)
    if filters["flagged"] == "true":
        return JsonResponse({"approved": 0, "passed": 0, "left": 0, "message": _bulk_said(0, 0)})
    # The reviewer confirmed "approve these N items" as the queue page counted them: items that arrived since (which
    # nobody has seen, and the count left out) wait for a look or the next bulk approval.
    counted_at = parse_instant(request.POST.get("counted_at", ""))
    if counted_at is None:
        return _validation_error("counted_at", "Say when the items were counted.", COUNTED_AT_HELP)
    approved, passed = 0, 0
    counted = reviews.bulk_approvable(here.project, reviewer, policy_for(here.project), plugin=filters["plugin"],
                                      counted_at=counted_at)
    for item in counted[:BULK_LIMIT]:
        try:
            reviews.decide(reviews.claim(item, reviewer), reviewer, action="approve")
        except reviews.ReviewError:
            passed += 1  # taken or decided meanwhile, or already approved by this reviewer
        else:
            approved += 1
    left = counted.count()  # of those the page counted, what the next click would approve
    return JsonResponse({"approved": approved, "passed": passed, "left": left, "message": _bulk_said(approved, left)})


def _bulk_said(approved: int, left: int) -> str:
    """What a click of the bulk button did, for the queue page to say: how many it approved, and how many of
    those counted are left for the next click."""
    said = ngettext("Approved without review: %(n)s item.", "Approved without review: %(n)s items.", approved) % {
        "n": approved}
    if left:
        said += " " + ngettext("%(n)s more unflagged item is left: press the button again to approve it.",
                               "%(n)s more unflagged items are left: press the button again to approve them.",
                               left) % {"n": left}
    return said


@needs(Capability.REVIEWS_WRITE)
def review_panel(request, here, item_id: int):
    """One review item as HTML, for the queue screen to show (it claims and decides through the API). Only for
    those who decide reviews, as the queue page: it shows rejected and blocked outputs, which the job page withholds."""
    item = (ReviewItem.objects.filter(project=here.project, pk=item_id)
            .select_related("output__job__submitted_by").prefetch_related("output__files", "decisions").first())
    if item is None:
        raise Http404("No such review item in this project.")
    output, job = item.output, item.output.job
    policy = policy_for(here.project)
    files = list(output.files.all())
    decisions = list(item.decisions.all())
    names = actor_names(here.project, [*(decision.decided_by for decision in decisions), *(item.approvals or [])])
    for decision in decisions:
        decision.who = names.get(decision.decided_by, decision.decided_by)
    approvers = [{"actor": actor, "who": names.get(actor, actor)} for actor in item.approvals or []]
    plugin = get_registry().get(job.plugin_id)
    labels = _labels_of(job.plugin_id)
    return render(request, "atelier_frontend/review_panel.html", {
        "item": item, "output": output, "job": job, "policy": policy,
        # what the editor may change (the review service refuses the rest); none without the plugin
        "editable": editable_paths(plugin.Output) if plugin is not None else [],
        "needed": 2 if item.flagged and policy.second_review_for_flagged else 1,
        "input_html": render_value(job.input, "input", spans_of(job.input_screening), *labels["input"]),
        "output_html": render_value(output.content, "content", spans_of(output.safety), *labels["content"]),
        "flags": sorted(set(flagged_categories(output.safety)) | set(item.categories or [])),
        "not_checked_by": sorted(set((output.safety or {}).get("not_checked_by", []))
                                 | set((job.input_screening or {}).get("not_checked_by", []))),
        "images": [f for f in files if f.media_type in IMAGE_TYPES and f.role != "thumbnail"],
        "decisions": decisions, "here": current(request),
        "approvers": approvers,
        # the self-approval notice only while an approval is still possible: not on a decided item
        "own_job": (item.state == ReviewItemState.OPEN and job.submitted_by_id == request.user.pk
                    and policy.forbid_self_approval),
    })
