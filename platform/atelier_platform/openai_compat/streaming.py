"""``stream: true`` for chat completions: server-sent events in OpenAI's chunk format.

Generation runs on a worker, so the stream cannot follow it token by token; it opens at once with
the assistant role (and a comment every ``KEEPALIVE_S`` while the job runs, so proxies keep the
connection), then, once the job is done, sends the answer's content in pieces, a last chunk with
``finish_reason`` and the ``atelier`` block, an optional usage chunk (``stream_options.include_usage``)
and ``data: [DONE]``. The review rule is the one of the plain answer: a reply that is not final is
never streamed; the pending-review notice is streamed in its place. An error after the stream has
opened is an event ``data: {"error": {...}}``, which the official client raises as ``APIError``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator

from atelier_platform.openai_compat import services
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


def chat_events(job_id, created: int, model: str, *, include_usage: bool, timeout_s: float, replayable: bool,
                client_timeout_s: float | None = None) -> Iterator[str]:
    """``client_timeout_s``: the caller's read timeout, when its client says. Keep-alives then come three
    times within it (the job's row is looked at about once a second, which can delay one), else a client
    with a timeout under ``KEEPALIVE_S`` gives up on the stream while its job still runs."""
    completion_id = services.completion_id(job_id)
    keepalive_s = KEEPALIVE_S if client_timeout_s is None else min(KEEPALIVE_S, client_timeout_s / 3)

    def chunk(**fields) -> str:
        return _chunk(ChatCompletionChunk(id=completion_id, created=created, model=model, **fields))

    try:
        yield chunk(choices=[ChunkChoice(delta=ChunkDelta(role="assistant", content=""))])
        last_sent = time.monotonic()
        job = None
        for job in services.watch_job(job_id, timeout_s):
            if job is None and time.monotonic() - last_sent >= keepalive_s:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
        if job is None:
            raise services.still_running(job_id, timeout_s, replayable=replayable)
        completion = services.chat_completion(job, model)
        choice = completion.choices[0]
        # A reply streams in pieces, as a model's would; a notice in its place streams whole.
        text = choice.message.content or ""
        for piece in services.stream_pieces(text) if completion.atelier.final else [text]:
            yield chunk(choices=[ChunkChoice(delta=ChunkDelta(content=piece))])
        yield chunk(choices=[ChunkChoice(delta=ChunkDelta(), finish_reason=choice.finish_reason)], atelier=completion.atelier)
        if include_usage:
            yield chunk(choices=[], usage=completion.usage)
    except OpenAIError as error:
        yield event(error.body())
    except Exception:  # the status line (200) is sent already: say so in the stream, never cut it short silently
        logger.exception("chat completion stream of job %s failed", job_id)
        yield event(error_body(500, f"The stream of job {job_id} failed; the error has been logged. "
                                    f"The job's result is at {services.job_url(job_id)}.", code="internal_error"))
    yield DONE
