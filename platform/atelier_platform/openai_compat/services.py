"""OpenAI requests as Atelier jobs, and finished jobs as OpenAI answers.

A request becomes a ``JobRequest`` for the ``chatbot`` or ``image`` plugin and goes through
``submit_job`` like any other job (plugin validation, input screening, idempotency, audit). The
view then waits for the job row to finish (``ATELIER_OPENAI_WAIT_S``) and answers from it.

The review rule: only outputs whose review state is in ``DELIVERABLE_REVIEW_STATES`` (approved,
or released after screening) are put in an answer. Otherwise:

- chat: a normal ``chat.completion`` whose message says the reply is pending review (or was
  withheld) and names the job, with ``atelier.final`` false and ``finish_reason`` ``stop``
  (pending) or ``content_filter`` (rejected or blocked);
- images: ``data`` holds only deliverable images; ``atelier.withheld`` counts the rest and
  ``atelier.notice`` says where to fetch them once approved.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from annotated_types import Ge, Le, MultipleOf

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.services import enabled_plugin_ids, installed_plugin
from atelier_platform.config import get_config
from atelier_platform.jobs import waiting
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.jobs.models import (
    DELIVERABLE_REVIEW_STATES,
    Job,
    JobStatus,
    Output,
    OutputFile,
    ReviewState,
    prefetch_outputs_with_files,
)
from atelier_platform.jobs.submission import JobRequest, Submission, submit_job
from atelier_platform.openai_compat.errors import OpenAIError, from_job_service
from atelier_platform.openai_compat.schemas import (
    AtelierChatInfo,
    AtelierImagesInfo,
    AtelierModelInfo,
    AtelierOutputState,
    ChatChoice,
    ChatCompletion,
    ChatMessageOut,
    CompletionUsage,
    CreateChatCompletion,
    CreateImage,
    ImageData,
    ImagesResponse,
    KnowledgeSource,
    OpenAIModelList,
    OpenAIModelObject,
)

CHAT_MODEL = "chatbot"
IMAGE_MODEL = "image"
#: model id -> the endpoint that serves it
ENDPOINTS = {CHAT_MODEL: "/v1/chat/completions", IMAGE_MODEL: "/v1/images/generations"}


def wait_seconds() -> float:
    return get_config().openai_wait_s


def answer_within(client_timeout_s: float | None) -> float:
    """How long a call waits for its job before answering: ``wait_seconds()``, or less when the caller
    said it gives up sooner (the official clients send their read timeout).

    A client that times out first retries (the official one twice, by default) without an
    Idempotency-Key, each try submitting the job again, then fails without the job's id. Answered
    shortly before it gives up, it gets the 504 that names the job and says whether to retry. The
    margin (a tenth, at least a second, at most half) covers the answer's own way back."""
    configured = wait_seconds()
    if client_timeout_s is None:
        return configured
    margin = min(max(1.0, client_timeout_s / 10), client_timeout_s / 2)
    return min(configured, client_timeout_s - margin)


def job_url(job_id) -> str:
    return f"/api/v1/jobs/{job_id}/"


def unix(moment) -> int:
    return int(moment.timestamp())


# --- models -------------------------------------------------------------------------------------
def available_models(project: Project) -> list[OpenAIModelObject]:
    """The project's enabled, installed plugins that an OpenAI endpoint serves."""
    enabled = enabled_plugin_ids(project)
    settings = {s.plugin_id: s for s in ProjectPlugin.objects.filter(project=project, plugin_id__in=list(ENDPOINTS))
                .select_related("model_version")}
    models = []
    for model_id, endpoint in ENDPOINTS.items():
        plugin = installed_plugin(model_id)
        if plugin is None or model_id not in enabled:
            continue
        pinned = settings[model_id].usable_model_version if model_id in settings else None
        manifest = plugin.manifest
        models.append(OpenAIModelObject(
            id=model_id,
            created=unix(pinned.created_at if pinned else project.created_at),
            atelier=AtelierModelInfo(plugin_version=manifest.version, name=manifest.name, modality=manifest.modality.value,
                                     endpoint=endpoint, model_version=pinned.version if pinned else "default"),
        ))
    return models


def model_list(project: Project) -> OpenAIModelList:
    return OpenAIModelList(data=available_models(project))


def find_model(project: Project, model_id: str) -> OpenAIModelObject:
    for model in available_models(project):
        if model.id == model_id:
            return model
    raise model_not_found(project, model_id)


def model_not_found(project: Project, model_id: str, *, param: str | None = None) -> OpenAIError:
    names = ", ".join(m.id for m in available_models(project)) or "none (a project owner can enable the chatbot and image plugins)"
    return OpenAIError(404, f"The model {model_id!r} does not exist or this project cannot use it. Models here: {names}.",
                       code="model_not_found", param=param)


def require_model(project: Project, model_id: str, expected: str) -> None:
    """``model_id`` must be ``expected`` and usable by the project (404 otherwise, as OpenAI answers)."""
    if model_id == expected and any(m.id == expected for m in available_models(project)):
        return
    if model_id in ENDPOINTS and model_id != expected and installed_plugin(model_id) is not None:
        raise OpenAIError(400, f"The model {model_id!r} is served by {ENDPOINTS[model_id]}, not here; use {expected!r}.",
                          code="model_not_supported", param="model")
    raise model_not_found(project, model_id, param="model")


# --- submission ---------------------------------------------------------------------------------------
@dataclass
class PreparedJob:
    request: JobRequest
    #: job-service field paths (``params.max_new_tokens``) -> the caller's field names (``max_tokens``)
    names: dict[str, str] = field(default_factory=dict)


def submit(project: Project, prepared: PreparedJob, *, access, idempotency_key: str | None, endpoint: str) -> Submission:
    """``endpoint``: the scope of ``idempotency_key`` (``submission.CHAT_COMPLETIONS_SCOPE``, ...)."""
    try:
        return submit_job(project, prepared.request, submitted_by=access.user, api_key=access.api_key,
                          idempotency_key=idempotency_key, idempotency_scope=endpoint)
    except JobServiceError as error:
        raise from_job_service(error, prepared.names) from None


def unsupported(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, code="unsupported_parameter", param=param)


def message_text(param: str, content, part_types: tuple[str, ...] = ("text",)) -> str | None:
    """A message's content as the chatbot reads it: the text, or its text parts joined by new lines.
    ``param``: the content's place in the request, named in a refusal of a part that is not text."""
    if content is None or isinstance(content, str):
        return content
    texts = []
    for part_index, part in enumerate(content):
        if part.get("type") not in part_types:
            allowed = " or ".join(part_types)
            raise unsupported(f"{param}.{part_index}",
                              f"Only text content parts ({allowed}) are supported (got type {part.get('type')!r}); "
                              "the chatbot reads text.")
        if not isinstance(part.get("text"), str):
            raise OpenAIError(400, f"{param}.{part_index}.text must be a string.", code="invalid_value",
                              param=f"{param}.{part_index}.text")
        texts.append(part["text"])
    return "\n".join(texts)


def prepare_chat(body: CreateChatCompletion) -> PreparedJob:
    if body.n not in (None, 1):
        raise OpenAIError(400, f"n={body.n} is not supported: this endpoint makes one choice per request; "
                               "send separate requests (with different seeds) for more.", code="unsupported_value", param="n")
    if body.tools or body.functions:
        name = "tools" if body.tools else "functions"
        raise unsupported(name, f"{name} are not supported: the chatbot cannot call tools. Leave {name} out.")
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise unsupported("response_format", "Only response_format {\"type\": \"text\"} is supported.")
    if body.logprobs or body.top_logprobs:
        name = "logprobs" if body.logprobs else "top_logprobs"
        raise unsupported(name, f"logprobs are not available; leave {name} out (or {'false' if body.logprobs else '0'}).")
    if body.logit_bias:
        raise unsupported("logit_bias", "logit_bias is not supported: the chatbot's tokens are not OpenAI's. Leave logit_bias out.")
    text_only = "The chatbot answers in text only: leave audio out and modalities out or [\"text\"]."
    if body.audio is not None:
        raise unsupported("audio", text_only)
    if any(modality != "text" for modality in body.modalities or ()):
        raise OpenAIError(400, text_only, code="unsupported_value", param="modalities")

    messages = []
    for index, message in enumerate(body.messages):
        if message.role in ("tool", "function"):
            raise unsupported(f"messages.{index}.role", f"Messages of role {message.role!r} are not supported: the chatbot has no tools.")
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message_text(f"messages.{index}.content", message.content) or ""})

    tokens_name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    stop = {"stop": [body.stop] if isinstance(body.stop, str) else body.stop} if body.stop is not None else {}
    return chat_job(body, messages, {"input.messages": "messages"}, tokens=(tokens_name, tokens), params=stop)


def chat_job(body, messages: list[dict], names: dict[str, str], *, tokens: tuple[str, int | None],
             params: dict[str, Any] | None = None, conversation_id: str | None = None) -> PreparedJob:
    """A chatbot job of ``messages`` and the fields chat endpoints share: the sampling ones (``temperature``,
    ``top_p``, ``seed``), the longest reply (``tokens``: its name in the request and its value) and Atelier's
    own (``conversation_id``, unless given, ``use_knowledge``, ``top_k``, ``priority``). ``names``: as ``PreparedJob``'s."""
    input_data: dict[str, Any] = {"messages": messages}
    conversation_id = body.conversation_id if conversation_id is None else conversation_id
    if conversation_id is not None:
        input_data["conversation_id"] = conversation_id
    for name in ("use_knowledge", "top_k"):
        if getattr(body, name) is not None:
            input_data[name] = getattr(body, name)
    params = dict(params or {})
    tokens_name, max_tokens = tokens
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
        names = {**names, "params.max_new_tokens": tokens_name}
    for name in ("temperature", "top_p", "seed"):
        if getattr(body, name) is not None:
            params[name] = getattr(body, name)
    return PreparedJob(JobRequest(CHAT_MODEL, input_data, params, priority=5 if body.priority is None else body.priority), names)


def _field_bounds(model, name: str) -> tuple[int, int, int]:
    """(minimum, maximum, multiple) of an int field of a plugin's pydantic Input."""
    low, high, step = 1, 1 << 31, 1
    for item in model.model_fields[name].metadata:
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, MultipleOf):
            step = item.multiple_of
    return low, high, step


SIZE_PATTERN = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size is None or size == "auto":
        return None, None
    plugin = installed_plugin(IMAGE_MODEL)
    low, high, step = _field_bounds(plugin.Input, "width") if plugin else (32, 1024, 8)
    rule = f"each side a multiple of {step} from {low} to {high}, e.g. 512x512, or 'auto' for the model's native size"
    match = SIZE_PATTERN.match(size)
    if not match:
        raise OpenAIError(400, f"size {size!r} is not WIDTHxHEIGHT: use {rule}.", code="invalid_value", param="size")
    width, height = int(match[1]), int(match[2])
    if not all(low <= side <= high and side % step == 0 for side in (width, height)):
        raise OpenAIError(400, f"size {size!r} is not supported: use {rule}.", code="invalid_value", param="size")
    return width, height


def prepare_images(body: CreateImage) -> PreparedJob:
    if body.output_format not in (None, "png"):
        raise unsupported("output_format", "Images are PNG files: leave output_format out or use png.")
    if body.background == "transparent":
        raise OpenAIError(400, "Images have an opaque background: leave background out or use auto or opaque.",
                          code="unsupported_value", param="background")
    if body.stream:
        # Ignored, it let the official client read the JSON answer as a stream of no events at all.
        raise unsupported("stream", "Image generation does not stream here: leave stream out or false; "
                                    "the answer comes when the job is done.")
    width, height = parse_size(body.size)
    input_data: dict[str, Any] = {"prompt": body.prompt}
    for name, value in (("width", width), ("height", height), ("count", body.n), ("negative_prompt", body.negative_prompt),
                        ("steps", body.steps), ("guidance", body.guidance), ("seed", body.seed)):
        if value is not None:
            input_data[name] = value
    names = {"input.width": "size", "input.height": "size", "input.count": "n"}
    return PreparedJob(JobRequest(IMAGE_MODEL, input_data, {}, priority=5 if body.priority is None else body.priority), names)


# --- waiting -------------------------------------------------------------------------------------------
def take_wait_slot(project: Project) -> waiting.WaitSlot:
    """One of this web process's wait slots for a call of ``project``, taken before its job is submitted:
    a call that cannot wait cannot answer, and is refused with nothing submitted (no job left running
    for nobody). 503 when every slot of the process is taken (the server's capacity, whoever asks: OpenAI
    answers its own overload so), 429 when the project's own share is (the caller's count); both with
    Retry-After, and safe to retry, which the official clients do."""
    try:
        return waiting.take_wait_slot(project.pk, "openai")
    except waiting.NoWaitSlot as refusal:
        raise wait_slot_refusal(refusal) from None


def wait_slot_refusal(refusal: waiting.NoWaitSlot) -> OpenAIError:
    retry_s = waiting.WAIT_SLOT_RETRY_AFTER_S
    if refusal.project_share:
        return OpenAIError(
            429, f"This project already has {refusal.limit} requests waiting for their jobs on this server process, "
                 f"its most at once ({refusal.setting}={refusal.limit}). Nothing was submitted: retry in {retry_s} s, "
                 "or make fewer calls at once.",
            code="too_many_waiting_requests", details={"setting": refusal.setting, "limit": refusal.limit},
            retry=True, retry_after=retry_s)
    return OpenAIError(
        503, f"The server is busy: {refusal.limit} requests already wait for their jobs on this server process, its "
             f"most at once ({refusal.setting}={refusal.limit}, which keeps threads free for other requests). "
             f"Nothing was submitted: retry in {retry_s} s.",
        code="server_busy", details={"setting": refusal.setting, "limit": refusal.limit},
        retry=True, retry_after=retry_s, expected=True)


def watch_job(job_id, timeout_s: float) -> Iterator[Job | None]:
    """Yields None while the job runs, then the finished job (with its outputs and files) and stops;
    stops without a job when ``timeout_s`` runs out. Woken at once by the job's finish notice."""
    for finished in waiting.watch(job_id, timeout_s):
        if not finished:
            yield None
            continue
        job = Job.objects.filter(pk=job_id).first()
        if job is not None:
            yield prefetch_outputs_with_files(job)
        return


def wait_for_job(job_id, timeout_s: float) -> Job | None:
    finished = None
    for finished in watch_job(job_id, timeout_s):
        pass
    return finished


def still_running(job_id, timeout_s: float, *, replayable: bool, response_id: str | None = None) -> OpenAIError:
    """The job did not finish in time: a 504 naming it. The job goes on; a retry without the same
    Idempotency-Key would submit a second job, so the client is told to retry only with one.

    ``response_id``: a ``background: true`` response's (streamed: only a stream waits for one). It exists and goes on
    in the background, so it is followed by id, as every background response is, not by retrying the call."""
    if response_id is not None:
        return OpenAIError(504, f"Response {response_id} (job {job_id}) is still in progress after {timeout_s:g} s. It "
                                f"goes on in the background: poll GET /v1/responses/{response_id} until its status is no "
                                f"longer queued or in_progress (or retrieve it by its id later), or cancel it with "
                                f"POST /v1/responses/{response_id}/cancel.", code="job_still_running",
                           details={"job_id": str(job_id), "job_url": job_url(job_id), "response_id": response_id},
                           retry=False, expected=True)
    hint = ("Retrying with the same Idempotency-Key waits for this job again."
            if replayable else "Send an Idempotency-Key header to make a retry wait for the same job.")
    if timeout_s < wait_seconds():
        hint += (f" This answer came early, before your client's timeout would run out; "
                 f"with a longer timeout a call waits up to {wait_seconds():g} s.")
    return OpenAIError(504, f"Job {job_id} is still running after {timeout_s:g} s. It goes on: fetch its result from "
                            f"{job_url(job_id)} with the same key. {hint}",
                       code="job_still_running", details={"job_id": str(job_id), "job_url": job_url(job_id)}, retry=replayable,
                       expected=True)


def job_erased(job: Job) -> OpenAIError:
    """A job whose content was erased (``jobs.erasure``): a replay of its request has nothing left to answer with."""
    return OpenAIError(410, f"The content of job {job.pk} was erased ({job.erased_at.isoformat()}); it cannot be shown "
                            "again. Send the request anew.", code="job_erased",
                       details={"job_id": str(job.pk), "job_url": job_url(job.pk)}, retry=False)


def job_error(job: Job) -> OpenAIError:
    """A job that finished without outputs (failed, cancelled, blocked) as an OpenAI error; an erased one (a queued job
    the erasure cancelled, a failed one) as ``job_erased``, whatever it ended as."""
    if job.erased_at is not None:
        return job_erased(job)
    details = {"job_id": str(job.pk), "job_url": job_url(job.pk), "job_error": {"code": job.error_code, "message": job.error_message}}
    if job.status == JobStatus.BLOCKED:
        return OpenAIError(422, f"The input was blocked by the project's safety policy (job {job.pk}): {job.error_message}",
                           code="input_blocked", details=details)
    if job.status == JobStatus.CANCELLED:
        return OpenAIError(409, f"Job {job.pk} was cancelled before it finished.", code="job_cancelled", details=details, retry=False)
    if job.error_code == "invalid_input":
        return OpenAIError(400, f"The model refused the request (job {job.pk}): {job.error_message}", code="invalid_input",
                           details=details)
    return OpenAIError(502, f"Job {job.pk} failed: {job.error_message or 'no reason given'} ({job.error_code or 'error'}).",
                       code="job_failed", details=details, retry=False)


# --- chat answers ------------------------------------------------------------------------------------
def pending_notice(job_id) -> str:
    return (f"This reply is pending human review and cannot be shown yet (Atelier job {job_id}). "
            f"Fetch it from {job_url(job_id)} once a reviewer approves it: its output then shows \"final\": true.")


def withheld_notice(job_id, review_state: str) -> str:
    why = "a reviewer rejected it" if review_state == ReviewState.REJECTED else "the project's safety screening blocked it"
    return f"This reply was withheld: {why} (Atelier job {job_id})."


@dataclass
class ChatReply:
    """A finished chat job's answer as every endpoint gives it: the reply when it may be delivered, else the
    notice in its place (never the unreviewed text)."""

    output: Output
    text: str
    final: bool
    #: ``stop`` or ``length`` (the model's, when final), ``stop`` (pending review) or ``content_filter`` (withheld)
    finish_reason: str
    notice: str | None
    sources: list[KnowledgeSource]
    prompt_tokens: int
    completion_tokens: int


def chat_reply(job: Job) -> ChatReply:
    """The reply of a succeeded chat job (an OpenAIError for any other: ``job_error``; ``job_erased`` once its
    content was erased)."""
    if job.erased_at is not None:
        raise job_erased(job)
    if job.status != JobStatus.SUCCEEDED:
        raise job_error(job)
    outputs = sorted(job.outputs.all(), key=lambda o: o.index)
    if not outputs:
        raise OpenAIError(502, f"Job {job.pk} succeeded without a reply.", code="job_failed",
                          details={"job_id": str(job.pk)}, retry=False)
    output = outputs[0]
    content = output.content if isinstance(output.content, dict) else {}
    usage = content.get("usage") or {}
    final = output.review_state in DELIVERABLE_REVIEW_STATES
    if final:
        text, notice = content.get("reply", ""), None
        finish_reason = "length" if content.get("finish_reason") == "length" else "stop"
        sources = [KnowledgeSource(**{k: s[k] for k in ("source_id", "chunk_id", "title", "score")}) for s in content.get("sources", [])]
    else:
        notice = pending_notice(job.pk) if output.review_state == ReviewState.PENDING else withheld_notice(job.pk, output.review_state)
        text, sources = notice, []
        finish_reason = "stop" if output.review_state == ReviewState.PENDING else "content_filter"
    return ChatReply(output=output, text=text, final=final, finish_reason=finish_reason, notice=notice, sources=sources,
                     prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)))


def chat_info(job: Job, reply: ChatReply | None, info: type[AtelierChatInfo] = AtelierChatInfo) -> AtelierChatInfo:
    """The ``atelier`` object of an answer about a chat job (``reply`` None: the job has none yet)."""
    return info(job_id=str(job.pk), job_url=job_url(job.pk), status=job.status,
                review_state=reply.output.review_state if reply else None, final=bool(reply and reply.final),
                sources=reply.sources if reply else [], conversation_id=(job.input or {}).get("conversation_id"),
                notice=reply.notice if reply else None)


def chat_completion(job: Job, model: str) -> ChatCompletion:
    reply = chat_reply(job)
    return ChatCompletion(
        id=completion_id(job.pk),
        created=unix(job.created_at),
        model=model,
        choices=[ChatChoice(message=ChatMessageOut(content=reply.text), finish_reason=reply.finish_reason)],
        usage=CompletionUsage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                              total_tokens=reply.prompt_tokens + reply.completion_tokens),
        atelier=chat_info(job, reply),
    )


def completion_id(job_id) -> str:
    return f"chatcmpl-{str(job_id).replace('-', '')}"


#: stream pieces: a run of spaces then a word, at most this many characters
STREAM_PIECE_CHARS = 24
_PIECES = re.compile(r"\s*\S{1,%d}|\s+$" % STREAM_PIECE_CHARS)


def stream_pieces(text: str) -> list[str]:
    pieces = _PIECES.findall(text)
    return pieces if "".join(pieces) == text else [text]


# --- image answers -----------------------------------------------------------------------------------
def primary_file(output: Output) -> OutputFile:
    files = list(output.files.all())
    primary = next((f for f in files if f.role == "primary"), files[0] if files else None)
    if primary is None:
        raise OpenAIError(502, f"Output {output.pk} of job {output.job_id} has no image file.", code="file_missing", retry=False)
    return primary


def read_file(stored: OutputFile) -> bytes:
    """The bytes of a stored file, through Django's storage (local files or an object store)."""
    try:
        with stored.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise OpenAIError(502, f"The image of output {stored.output_id} is missing from storage.", code="file_missing",
                          retry=False) from None


def prompt_read(prompt: str, truncated: dict | None) -> str | None:
    """OpenAI's ``revised_prompt``: the prompt an image was made from, when that is not the prompt sent.

    A text encoder reads a fixed number of tokens (CLIP: 77); the image plugin reports the text after
    them (``prompt_truncated.dropped``, as written). What the image was made from is the prompt without
    it. None when the model read the whole prompt (OpenAI's "no revision"), and when the dropped text
    is not the prompt's end as written (a tokenizer without character offsets spells it its own way):
    the job's ``prompt_truncated`` still says what was lost."""
    if not truncated:
        return None
    dropped, sent = truncated.get("dropped") or "", prompt.rstrip()
    if not dropped or not sent.endswith(dropped):
        return None
    return sent[: len(sent) - len(dropped)].rstrip()


def images_response(job: Job, response_format: str, absolute_url) -> ImagesResponse:
    if job.erased_at is not None:
        raise job_erased(job)
    if job.status != JobStatus.SUCCEEDED:
        raise job_error(job)
    outputs = sorted(job.outputs.all(), key=lambda o: o.index)
    prompt = (job.input or {}).get("prompt", "")
    data, states = [], []
    for output in outputs:
        final = output.review_state in DELIVERABLE_REVIEW_STATES
        states.append(AtelierOutputState(output_id=str(output.pk), index=output.index, review_state=output.review_state, final=final))
        if not final:
            continue
        content = output.content if isinstance(output.content, dict) else {}
        described = {"output_id": str(output.pk), "seed": content.get("seed"),
                     "revised_prompt": prompt_read(prompt, content.get("prompt_truncated"))}
        primary = primary_file(output)
        if response_format == "b64_json":
            data.append(ImageData(b64_json=base64.b64encode(read_file(primary)).decode("ascii"), **described))
        else:
            data.append(ImageData(url=absolute_url(f"/api/v1/outputs/{output.pk}/files/{primary.pk}/"), **described))
    withheld = len(outputs) - len(data)
    notice = None
    if withheld:
        pending = sum(1 for s in states if s.review_state == ReviewState.PENDING)
        notice = (f"{withheld} of {len(outputs)} images are not included: {pending} waiting for human review, "
                  f"{withheld - pending} rejected or blocked. Fetch approved images from {job_url(job.pk)} "
                  f"(outputs with \"final\": true).")
    return ImagesResponse(
        created=unix(job.created_at), data=data,
        atelier=AtelierImagesInfo(job_id=str(job.pk), job_url=job_url(job.pk), status=job.status, outputs=states,
                                  withheld=withheld, notice=notice),
    )
