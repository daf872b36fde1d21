"""Plugins the tests register (through ATELIER_EXTRA_PLUGINS or a registry fixture).

``ReverseText`` does real, checkable work (reverses and counts text), can be told to sleep in
small cancellable steps, and to fail in each way a plugin can fail. When
ATELIER_TEST_RUN_LOG is set, every ``generate`` call appends the job id to that file, so that
a test can count how often a job's work really ran.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from atelier_sdk import (
    Artifact,
    Manifest,
    Modality,
    OutputItem,
    Plugin,
    PluginError,
    ResourceClass,
    TransientPluginError,
    editable,
)
from pydantic import BaseModel, ConfigDict, Field


class ReverseInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    copies: int = Field(default=1, ge=1, le=5)
    sleep_s: float = Field(default=0, ge=0, le=60)
    fail: Literal["none", "transient", "permanent", "crash", "transient_once"] = "none"
    with_file: bool = False
    # like a plugin whose own ``except Exception`` (around a retrieval, say) catches whatever the sleep
    # raises, Celery's soft time limit included, and reports a retryable error instead
    catch_everything: bool = False


class ReverseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uppercase: bool = False


class ReverseOutput(BaseModel):
    text: str = editable()
    characters: int


class ReverseText(Plugin):
    manifest = Manifest(
        id="reverse_text",
        version="1.0.0",
        name="Reverse text",
        description="Test plugin: reverses its input.",
        modality=Modality.TEXT,
        resource_class=ResourceClass.CPU,
        max_batch_size=8,
        time_limit_s=60,
        max_attempts=3,
    )
    Input = ReverseInput
    Params = ReverseParams
    Output = ReverseOutput

    def load(self, device, model_dir):
        self.device = device

    def generate(self, batch, context):
        results = []
        for request in batch:
            log = os.environ.get("ATELIER_TEST_RUN_LOG")
            if log:
                with open(log, "a") as handle:
                    handle.write(f"{request.job_id}\n")
            data = request.input
            try:
                self._sleep(request, context)
            except Exception as error:
                if not data.catch_everything:
                    raise
                results.append(TransientPluginError(f"Gave up: {type(error).__name__}", code="gave_up"))
                continue
            if data.fail == "transient":
                results.append(TransientPluginError("The model server is busy."))
                continue
            if data.fail == "transient_once" and not _seen_before(request.job_id):
                results.append(TransientPluginError("Busy the first time."))
                continue
            if data.fail == "permanent":
                results.append(PluginError("This text cannot be reversed.", code="invalid_input"))
                continue
            if data.fail == "crash":
                raise ZeroDivisionError("division by zero in the model")
            text = data.text[::-1]
            if request.params.uppercase:
                text = text.upper()
            artifacts = [Artifact(name="reversed.txt", media_type="text/plain", data=text.encode())] if data.with_file else []
            results.append([
                OutputItem(ReverseOutput(text=text, characters=len(text)), artifacts=list(artifacts)) for _ in range(data.copies)
            ])
        return results

    @staticmethod
    def _sleep(request, context) -> None:
        steps = max(1, int(request.input.sleep_s / 0.1))
        for step in range(steps if request.input.sleep_s else 0):
            context.raise_if_cancelled(request.job_id)
            time.sleep(0.1)
            context.report_progress(request.job_id, (step + 1) / steps, step=step + 1)


_SEEN: set[str] = set()


def _seen_before(job_id: str) -> bool:
    seen = job_id in _SEEN
    _SEEN.add(job_id)
    return seen


class GpuEcho(ReverseText):
    """The same work declared as a GPU plugin, to check routing by resource class."""

    manifest = ReverseText.manifest.model_copy(update={"id": "gpu_reverse", "resource_class": ResourceClass.GPU})


class QuickLimit(ReverseText):
    """The same work with a 2-second time limit, to see the limit enforced."""

    manifest = ReverseText.manifest.model_copy(update={"id": "quick_limit", "time_limit_s": 2})


class ModelDirProbe(ReverseText):
    """Needs a model directory; answers with the name of the one it was loaded from."""

    manifest = ReverseText.manifest.model_copy(update={"id": "model_probe", "default_model_dir": "probe/default"})

    def load(self, device, model_dir):
        self.model_dir = model_dir

    def generate(self, batch, context):
        return [[OutputItem(ReverseOutput(text=self.model_dir.name, characters=0))] for _ in batch]


class NotAPlugin:
    """Registered by a test to check that a class breaking the contract is reported, not loaded."""


class BadManifest(ReverseText):
    manifest = {"id": "Bad Id!", "version": "one", "name": "", "modality": "text", "resource_class": "tpu"}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class EchoChatInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1, max_length=50)
    conversation_id: str | None = None
    top_k: int = Field(default=2, ge=1, le=8)


class EchoChatOutput(BaseModel):
    reply: str = editable()
    turns: int
    sources: list[dict]


class EchoChat(Plugin):
    """A conversational test plugin: answers with what it was told and what it retrieved."""

    manifest = Manifest(
        id="echo_chat", version="1.0.0", name="Echo chat", modality=Modality.TEXT,
        resource_class=ResourceClass.CPU, max_batch_size=4, time_limit_s=60,
    )
    Input = EchoChatInput
    Output = EchoChatOutput

    def generate(self, batch, context):
        results = []
        for request in batch:
            question = request.input.messages[-1].content
            passages = context.retrieve(request.job_id, question, request.input.top_k)
            reply = f"you said: {question}" + (f" | {passages[0].text}" if passages else "")
            sources = [{"source_id": p.source_id, "chunk_id": p.chunk_id, "score": p.score} for p in passages]
            results.append([OutputItem(EchoChatOutput(reply=reply, turns=len(request.input.messages), sources=sources))])
        return results


class BatchProbeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=200)
    size: int = Field(default=1, ge=1, le=4, description="stands for a shape that cannot be mixed in one batch")
    fail: Literal["none", "item", "raise", "transient"] = "none"
    oom_above: int | None = Field(default=None, ge=0, le=64, description="raise out-of-memory in calls larger than this")
    sleep_s: float = Field(default=0, ge=0, le=30)


class BatchProbeOutput(BaseModel):
    text: str
    batch: list[str]


class BatchProbe(Plugin):
    """Shows which jobs shared its ``generate`` call, and fails in the ways a batch can fail.

    Every call is appended (job ids, one line) to ATELIER_TEST_BATCH_LOG when that is set.
    """

    manifest = Manifest(
        id="batch_probe", version="1.0.0", name="Batch probe", description="Test plugin: reports its batches.",
        modality=Modality.TEXT, resource_class=ResourceClass.GPU, max_batch_size=8, time_limit_s=120, max_attempts=2,
    )
    Input = BatchProbeInput
    Output = BatchProbeOutput

    @classmethod
    def batch_key(cls, input, params):
        return (input.size,)

    def generate(self, batch, context):
        ids = [request.job_id for request in batch]
        log = os.environ.get("ATELIER_TEST_BATCH_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(" ".join(ids) + "\n")
        limit = min((r.input.oom_above for r in batch if r.input.oom_above is not None), default=None)
        if limit is not None and len(batch) > limit:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(batch)} GiB")
        if any(r.input.fail == "raise" for r in batch):
            raise RuntimeError("a tensor of the wrong shape somewhere in the batch")
        slowest = max(r.input.sleep_s for r in batch)
        for _ in range(int(slowest / 0.1)):
            time.sleep(0.1)
            for request in batch:
                context.report_progress(request.job_id, 0.5, step=1)
        results = []
        for request in batch:
            if request.input.fail == "item":
                results.append(PluginError("This item cannot be done.", code="invalid_input"))
            elif request.input.fail == "transient":
                results.append(TransientPluginError("The device is busy.", code="transient_error"))
            else:
                # "~" comes back as NUL, a character a sampling model may emit and PostgreSQL cannot store
                text = request.input.text.upper().replace("~", "\x00")
                results.append([OutputItem(BatchProbeOutput(text=text, batch=ids))])
        return results
