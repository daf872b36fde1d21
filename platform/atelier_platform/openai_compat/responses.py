"""OpenAI's Responses API over chatbot jobs: ``POST /v1/responses``, ``GET /v1/responses/{id}`` and its input items.

A response is a chatbot job: its id is ``resp_<the job's id without dashes>``, whichever endpoint submitted
the job, and every answer about it is built from the job row alone (so creating and retrieving give the same
object, and a reply a reviewer approves later is in the next retrieval). The request is mapped as chat
completions map theirs (``services.chat_job``) and shares their review rule (``services.chat_reply``): a
reply that may not be delivered is never in ``output``, the notice is, with ``atelier.final`` false.

``previous_response_id`` continues that response's Atelier conversation: the job's input is the stored
thread (with the replies that may be delivered) and the new turns. Threads are linear: two requests naming
the same previous response both continue the one thread (OpenAI would fork it).

``metadata`` is kept with the job (``Job.metadata``) and ``background: true`` marks it (``Job.background``): such a
call answers at once with the queued response, its caller polls ``GET /v1/responses/{id}``, and only such a
response is cancelled by ``POST /v1/responses/{id}/cancel`` (``cancel_response``), as OpenAI's background mode.
"""

from __future__ import annotations

import dataclasses
import re
import uuid

from atelier_platform.accounts.models import Project
from atelier_platform.conversations.services import first_system_turn
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.errors import JobAlreadyFinished
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus
from atelier_platform.openai_compat.errors import OpenAIError
from atelier_platform.openai_compat.schemas import (
    AtelierResponseInfo,
    CreateResponse,
    IncompleteDetails,
    InputText,
    OutputText,
    ResponseErrorInfo,
    ResponseInputItemList,
    ResponseInputMessage,
    ResponseObject,
    ResponseOutputMessage,
    ResponseUsage,
)
from atelier_platform.openai_compat.services import (
    CHAT_MODEL,
    ChatReply,
    PreparedJob,
    chat_info,
    chat_job,
    chat_reply,
    job_erased,
    job_error,
    message_text,
    unix,
    unsupported,
)

RESPONSE_ID = re.compile(r"resp_([0-9a-f]{32})")
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
#: input content parts the chatbot reads (an assistant turn sent back holds output_text)
TEXT_PARTS = ("input_text", "output_text")
#: job statuses that leave a response without a reply, as OpenAI names them
UNFINISHED = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "in_progress"}


def response_id(job_id) -> str:
    return f"resp_{uuid.UUID(str(job_id)).hex}"


def message_id(output_id) -> str:
    return f"msg_{uuid.UUID(str(output_id)).hex}"


def find_response(project: Project, value: str) -> Job | None:
    """The project's chatbot job a response id names; None for any other id (malformed, another project's)."""
    match = RESPONSE_ID.fullmatch(value)
    if not match:
        return None
    return Job.objects.filter(project=project, pk=uuid.UUID(match[1]), plugin_id=CHAT_MODEL,
                              purpose=JobPurpose.REQUEST).first()


def response_not_found(value: str) -> OpenAIError:
    return OpenAIError(404, f"No response with id {value!r} in this project (ids look like resp_ and 32 hex digits).",
                       code="response_not_found")


# --- the request -----------------------------------------------------------------------------------------
def _refuse_what_cannot_be_honoured(body: CreateResponse) -> None:
    if body.n not in (None, 1):
        raise OpenAIError(400, f"n={body.n} is not supported: a response holds one reply; send separate requests for more.",
                          code="unsupported_value", param="n")
    if body.tools:
        raise unsupported("tools", "tools are not supported: the chatbot cannot call tools. Leave tools out.")
    if body.tool_choice not in (None, "none", "auto"):
        raise OpenAIError(400, "tool_choice can only be none or auto: the chatbot has no tools to call.",
                          code="unsupported_value", param="tool_choice")
    if body.reasoning and any(value is not None for value in body.reasoning.values()):
        raise unsupported("reasoning", "reasoning is not supported: the chatbot is no reasoning model. Leave reasoning out.")
    text_format = (body.text or {}).get("format")
    if text_format is not None and (not isinstance(text_format, dict) or text_format.get("type") != "text"):
        raise OpenAIError(400, "Only text.format {\"type\": \"text\"} is supported: the chatbot writes plain text, not JSON.",
                          code="unsupported_value", param="text.format")
    long_key = next((key for key in body.metadata or {} if len(key) > 64), None)
    if long_key is not None:
        raise OpenAIError(400, f"metadata keys are at most 64 characters ({long_key[:64]!r}... is longer).",
                          code="invalid_value", param="metadata")
    # PostgreSQL cannot store the NUL character in JSON: refused here, in the caller's terms
    nul_key = next((key for key, value in (body.metadata or {}).items() if "\x00" in key or "\x00" in value), None)
    if nul_key is not None:
        param = "metadata" if "\x00" in nul_key else f"metadata.{nul_key}"
        raise OpenAIError(400, "metadata keys and values may not contain the NUL character (\\u0000).",
                          code="invalid_value", param=param)
    if body.store is False:
        raise OpenAIError(400, "store: false cannot be honoured: every job is kept for human review and the audit. "
                               "Leave store out or true.", code="unsupported_value", param="store")
    for name, what in (("include", "no extra output data is available"), ("top_logprobs", "logprobs are not available"),
                       ("prompt", "stored prompts are OpenAI's; send instructions and input"),
                       ("conversation", "continue with previous_response_id, or Atelier's conversation_id")):
        if getattr(body, name):
            raise unsupported(name, f"{name} is not supported: {what}. Leave {name} out.")


def _input_messages(body: CreateResponse) -> list[tuple[dict, str]]:
    """The input as chatbot messages, each with its place in the request (``input``, ``input.2``)."""
    if isinstance(body.input, str):
        return [({"role": "user", "content": body.input}, "input")]
    if not body.input:
        raise OpenAIError(400, "input holds no message: send at least the user's.", code="invalid_value", param="input")
    messages = []
    for index, item in enumerate(body.input):
        item_type = item.get("type", "message")
        if item_type != "message":
            raise unsupported(f"input.{index}.type", f"Only message items are supported (got type {item_type!r}): the "
                                                     "chatbot has no tools and does not reason.")
        role = item.get("role")
        if role not in ROLES:
            raise OpenAIError(400, f"input.{index}.role must be user, assistant, system or developer (got {role!r}).",
                              code="invalid_value", param=f"input.{index}.role")
        content = item.get("content")
        if not isinstance(content, str) and not (isinstance(content, list) and all(isinstance(p, dict) for p in content)):
            raise OpenAIError(400, f"input.{index}.content must be text or a list of content parts.",
                              code="invalid_value", param=f"input.{index}.content")
        text = message_text(f"input.{index}.content", content, TEXT_PARTS)
        messages.append(({"role": ROLES[role], "content": text}, f"input.{index}"))
    return messages


def _continued_conversation(project: Project, body: CreateResponse) -> str | None:
    """The conversation the request continues: its previous response's, or Atelier's ``conversation_id``."""
    if body.previous_response_id is None:
        return body.conversation_id
    previous = find_response(project, body.previous_response_id)
    if previous is None:
        raise OpenAIError(400, f"Previous response with id {body.previous_response_id!r} not found in this project.",
                          code="previous_response_not_found", param="previous_response_id")
    if previous.erased_at is not None:
        raise previous_response_erased(project, previous, body.previous_response_id)
    conversation_id = (previous.input or {}).get("conversation_id")
    if not conversation_id:
        raise OpenAIError(400, f"Response {body.previous_response_id} has no conversation to continue (its input was "
                               "blocked before it joined one): send the exchange in input instead.",
                          code="invalid_value", param="previous_response_id")
    if body.conversation_id is not None and _same_id(body.conversation_id) != conversation_id:
        raise OpenAIError(400, "conversation_id names another conversation than previous_response_id continues: send one of them.",
                          code="invalid_value", param="conversation_id")
    return conversation_id


def previous_response_erased(project: Project, previous: Job, value: str) -> OpenAIError:
    """``previous_response_id`` names a response whose content was erased (``jobs.erasure``): there is no reply left
    to continue after, and the caller who erased it should not build on it. Its thread, where it still stands (only
    this job was erased), goes on from a later response or by its ``conversation_id``."""
    from atelier_platform.conversations.models import ConversationMessage

    conversation_id = (ConversationMessage.objects.filter(conversation__project=project, job=previous)
                       .values_list("conversation_id", flat=True).first())
    then = (f"continue its conversation from a later response, or with conversation_id {conversation_id}"
            if conversation_id else "start a new conversation")
    return OpenAIError(400, f"Response {value} was erased ({previous.erased_at.isoformat()}): it cannot be continued; "
                            f"{then}.", code="previous_response_erased", param="previous_response_id",
                       details={"erased_at": previous.erased_at.isoformat(),
                                "conversation_id": str(conversation_id) if conversation_id else None})


def _same_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def prepare_response(project: Project, body: CreateResponse) -> PreparedJob:
    """The chatbot job of a request. A thread keeps one system message (``conversations.services``: the first),
    so ``instructions`` and the input's system and developer messages are joined into one, first; a continued
    conversation keeps the one it has, and other instructions are refused rather than dropped."""
    _refuse_what_cannot_be_honoured(body)
    conversation_id = _continued_conversation(project, body)
    messages = _input_messages(body)
    system = [(body.instructions, "instructions")] if body.instructions else []
    system += [(message["content"], param) for message, param in messages if message["role"] == "system"]
    turns = [(message, param) for message, param in messages if message["role"] != "system"]
    instructions = "\n\n".join(text for text, _ in system)
    if instructions and conversation_id:
        kept = first_system_turn(project, conversation_id)
        if kept is not None and kept != instructions:
            raise OpenAIError(400, "This conversation keeps the instructions of its first turn, and these differ: send "
                                   "the same instructions (or none), or start a new conversation for new ones.",
                              code="unsupported_value", param=system[0][1])
        if kept is not None:
            system = []  # in the thread already: not stored twice
    if system:
        turns.insert(0, ({"role": "system", "content": instructions}, system[0][1]))
    names = {"input.messages": "input"}
    for index, (_, param) in enumerate(turns):
        names[f"input.messages.{index}"] = param
        if param in ("input", "instructions"):  # text, not an item: its content is itself
            names[f"input.messages.{index}.content"] = param
    if body.previous_response_id is not None:
        names["input.conversation_id"] = "previous_response_id"
    prepared = chat_job(body, [message for message, _ in turns], names, tokens=("max_output_tokens", body.max_output_tokens),
                        conversation_id=conversation_id)
    prepared.request = dataclasses.replace(prepared.request, metadata=dict(body.metadata or {}),
                                           background=bool(body.background))
    return prepared


# --- the answer --------------------------------------------------------------------------------------------
def created_response(job: Job) -> ResponseObject:
    """The answer to ``POST /v1/responses`` once its job finished: a job without a reply is an error (as for chat)."""
    if job.status != JobStatus.SUCCEEDED:
        raise job_error(job)
    return response_object(job)


def response_object(job: Job) -> ResponseObject:
    """The job as a response, in whatever state it is (``GET /v1/responses/{id}``); 410 ``job_erased`` once its
    content was erased, whatever state it ended in (a queued one erased ended cancelled). A running job asked to
    cancel is a cancelled response already: its worker stores nothing more, and the job ends cancelled."""
    if job.erased_at is not None:
        raise job_erased(job)
    if job.status in UNFINISHED:
        return response_shell(job, "cancelled" if job.cancel_requested_at is not None else UNFINISHED[job.status])
    if job.status == JobStatus.CANCELLED:
        return response_shell(job, "cancelled")
    if job.status != JobStatus.SUCCEEDED:
        error = job_error(job)
        code = "invalid_prompt" if error.code in ("input_blocked", "invalid_input") else "server_error"
        return response_shell(job, "failed", error=ResponseErrorInfo(code=code, message=error.message))
    reply = chat_reply(job)
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(reply.finish_reason)
    status = "incomplete" if incomplete else "completed"
    message = ResponseOutputMessage(id=message_id(reply.output.pk), status=status, content=[OutputText(text=reply.text)])
    return response_shell(
        job, status, reply=reply, output=[message],
        incomplete_details=IncompleteDetails(reason=incomplete) if incomplete else None,
        usage=ResponseUsage(input_tokens=reply.prompt_tokens, output_tokens=reply.completion_tokens,
                            total_tokens=reply.prompt_tokens + reply.completion_tokens),
    )


def response_shell(job: Job, status: str, *, reply: ChatReply | None = None, **fields) -> ResponseObject:
    """The response of ``job`` with ``status``, and no output unless ``fields`` give one."""
    params = job.params or {}
    finished = status not in ("queued", "in_progress") and job.finished_at is not None
    return ResponseObject(
        id=response_id(job.pk), created_at=unix(job.created_at), status=status, model=job.plugin_id,
        completed_at=unix(job.finished_at) if finished else None, output=fields.pop("output", []),
        temperature=params.get("temperature"), top_p=params.get("top_p"), max_output_tokens=params.get("max_new_tokens"),
        metadata=dict(job.metadata or {}), background=job.background, atelier=chat_info(job, reply, AtelierResponseInfo),
        **fields,
    )


def cancel_response(job: Job) -> ResponseObject:
    """``POST /v1/responses/{id}/cancel``, as OpenAI's: only a background response is cancelled; a queued job is
    cancelled at once, a running one asked to stop (``lifecycle.cancel_job``); either way the answer is the cancelled
    response. Cancelling it again answers the same; one that finished otherwise (completed, incomplete, failed)
    is a 400 naming how it ended, and left as it is."""
    if job.erased_at is not None:
        raise job_erased(job)
    rid = response_id(job.pk)
    if not job.background:
        raise OpenAIError(400, f"Response {rid} was not created with background: true, and only background responses "
                               f"can be cancelled (as OpenAI's). Its job can be: POST /api/v1/jobs/{job.pk}/cancel/.",
                          code="response_not_background", details={"job_id": str(job.pk)})
    try:
        lifecycle.cancel_job(job)
    except JobAlreadyFinished:
        pass  # it ended before (or while) this was asked: answered below as it ended
    response = response_object(Job.objects.get(pk=job.pk))
    if response.status != "cancelled":
        raise OpenAIError(400, f"Response {rid} already finished ({response.status}): there is nothing to cancel.",
                          code="response_finished", details={"job_id": str(job.pk), "status": response.status})
    return response


def input_items(job: Job, *, order: str, limit: int, after: str | None) -> ResponseInputItemList:
    """The messages the job's model read (its input: a continued thread's kept turns, then the new ones); 410
    ``job_erased`` once they were erased (an empty list would say the model read nothing)."""
    if job.erased_at is not None:
        raise job_erased(job)
    messages = [m for m in (job.input or {}).get("messages", []) if isinstance(m, dict)]
    items = [ResponseInputMessage(
        id=f"msg_{job.pk.hex}_{index}", role=message.get("role") if message.get("role") in ("user", "system", "assistant") else "user",
        content=[(OutputText if message.get("role") == "assistant" else InputText)(text=str(message.get("content", "")))],
    ) for index, message in enumerate(messages)]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise OpenAIError(400, f"after {after!r} is no input item of this response.", code="invalid_value", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return ResponseInputItemList(data=page, first_id=page[0].id if page else None, last_id=page[-1].id if page else None,
                                 has_more=len(items) > limit)
