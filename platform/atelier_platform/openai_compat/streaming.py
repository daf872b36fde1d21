"""``stream: true``: server-sent events in OpenAI's formats, chat completion chunks and Responses events.

Generation runs on a worker, so a stream cannot follow it token by token; it opens at once (the assistant
role; ``response.created`` and ``response.in_progress``), sends a comment every ``KEEPALIVE_S`` while the
job runs (so proxies keep the connection), then, once the job is done, the answer's text in pieces and the
closing events (``finish_reason`` and the ``atelier`` block, an optional usage chunk and ``data: [DONE]``;
``response.completed`` or ``response.incomplete``). The review rule is the one of the plain answer: a reply
that is not final is never streamed; the notice is streamed in its place. An error after the stream has
opened is an event whose data holds ``{"error": {...}}``, which the official client raises as ``APIError``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable, Iterator

from atelier_platform.jobs.models import Job
from atelier_platform.openai_compat import responses, services
from atelier_platform.openai_compat.errors import OpenAIError, error_body
from atelier_platform.openai_compat.schemas import ChatCompletionChunk, ChunkChoice, ChunkDelta

logger = logging.getLogger("atelier.openai")

KEEPALIVE_S = 5.0
DONE = "data: [DONE]\n\n"


def event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _chunk(chunk: ChatCompletionChunk) -> str:
    data = chunk.model_dump(mode="json")
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    if data["atelier"] is None:
        del data["atelier"]
    return event(data)


def job_stream(job_id, *, opening: Callable[[], Iterable[str]], answer: Callable[[Job], Iterable[str]],
               error: Callable[[dict[str, Any]], str], closing: str = "", timeout_s: float, replayable: bool,
               client_timeout_s: float | None = None, background_response: str | None = None) -> Iterator[str]:
    """The events of a call that waits for its job: ``opening``, keep-alives while the job runs, ``answer(job)``
    once it finished; an OpenAIError on the way (the wait running out included) as ``error(body)``; then ``closing``.
    ``background_response``: the id of the ``background: true`` response streamed, which the wait running out tells
    its client to poll.

    ``client_timeout_s``: the caller's read timeout, when its client says. Keep-alives then come three times
    within it (the job's row is looked at about once a second, which can delay one), else a client with a
    timeout under ``KEEPALIVE_S`` gives up on the stream while its job still runs."""
    keepalive_s = KEEPALIVE_S if client_timeout_s is None else min(KEEPALIVE_S, client_timeout_s / 3)
    try:
        yield from opening()
        last_sent = time.monotonic()
        job = None
        for job in services.watch_job(job_id, timeout_s):
            if job is None and time.monotonic() - last_sent >= keepalive_s:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
        if job is None:
            raise services.still_running(job_id, timeout_s, replayable=replayable, response_id=background_response)
        yield from answer(job)
    except OpenAIError as failure:
        yield error(failure.body())
    except Exception:  # the status line (200) is sent already: say so in the stream, never cut it short silently
        logger.exception("stream of job %s failed", job_id)
        yield error(error_body(500, f"The stream of job {job_id} failed; the error has been logged. "
                                    f"The job's result is at {services.job_url(job_id)}.", code="internal_error"))
    if closing:
        yield closing


def text_pieces(text: str, final: bool) -> list[str]:
    """A reply streams in pieces, as a model's would; a notice in its place streams whole."""
    return services.stream_pieces(text) if final else [text]


def chat_events(job_id, created: int, model: str, *, include_usage: bool, **waiting) -> Iterator[str]:
    """``waiting``: ``job_stream``'s ``timeout_s``, ``replayable`` and ``client_timeout_s``."""
    completion_id = services.completion_id(job_id)

    def chunk(**fields) -> str:
        return _chunk(ChatCompletionChunk(id=completion_id, created=created, model=model, **fields))

    def answer(job: Job) -> Iterator[str]:
        completion = services.chat_completion(job, model)
        choice = completion.choices[0]
        for piece in text_pieces(choice.message.content or "", completion.atelier.final):
            yield chunk(choices=[ChunkChoice(delta=ChunkDelta(content=piece))])
        yield chunk(choices=[ChunkChoice(delta=ChunkDelta(), finish_reason=choice.finish_reason)], atelier=completion.atelier)
        if include_usage:
            yield chunk(choices=[], usage=completion.usage)

    return job_stream(job_id, opening=lambda: [chunk(choices=[ChunkChoice(delta=ChunkDelta(role="assistant", content=""))])],
                      answer=answer, error=event, closing=DONE, **waiting)


class ResponseEvents:
    """Responses API events, each named (``event:``) and numbered (``sequence_number``) in the order sent."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields) -> str:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\n{event(data)}"

    def error(self, body: dict[str, Any]) -> str:
        """OpenAI's ``error`` event: the fields of its documented shape, and the ``error`` object its service
        sends, on which the official client raises (with the details: the job's id and URL)."""
        error = body["error"]
        return self("error", code=error["code"], message=error["message"], param=error["param"], error=error)


def response_events(job: Job, **waiting) -> Iterator[str]:
    """``waiting``: ``job_stream``'s ``timeout_s``, ``replayable`` and ``client_timeout_s``."""
    send = ResponseEvents()

    def opening() -> list[str]:
        started = responses.response_shell(job, "in_progress").model_dump(mode="json")
        return [send("response.created", response=started), send("response.in_progress", response=started)]

    def answer(finished: Job) -> Iterator[str]:
        response = responses.created_response(finished)
        message = response.output[0]
        where = {"item_id": message.id, "output_index": 0}
        yield send("response.output_item.added", output_index=0,
                   item=message.model_copy(update={"status": "in_progress", "content": []}).model_dump(mode="json"))
        part = message.content[0]
        yield send("response.content_part.added", **where, content_index=0,
                   part=part.model_copy(update={"text": ""}).model_dump(mode="json"))
        for piece in text_pieces(part.text, response.atelier.final):
            yield send("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
        yield send("response.output_text.done", **where, content_index=0, text=part.text, logprobs=[])
        yield send("response.content_part.done", **where, content_index=0, part=part.model_dump(mode="json"))
        yield send("response.output_item.done", output_index=0, item=message.model_dump(mode="json"))
        yield send("response.completed" if response.status == "completed" else "response.incomplete",
                   response=response.model_dump(mode="json"))

    return job_stream(job.pk, opening=opening, answer=answer, error=send.error,
                      background_response=responses.response_id(job.pk) if job.background else None, **waiting)
