"""The customer-service chatbot plugin: answers grounded in the project's knowledge base.

For each conversation the latest user message is the retrieval query; the passages found are
inlined into a system prompt that tells the model to answer from them, and the whole batch is
generated together by ``CausalChatLM`` (any local causal LM with a chat template).

This module is imported by the web process to publish the schemas: it must not import torch or
transformers at module level (``load`` and ``generate`` do).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal, Sequence

from atelier_sdk import (
    GenerationRequest,
    ItemResult,
    Manifest,
    Modality,
    OutputItem,
    Passage,
    Plugin,
    PluginError,
    Regeneration,
    ResourceClass,
    RunContext,
    editable,
    input_error,
    require_model_dir,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SEED = 2**31 - 1

#: Progress is written to the job's database row: report at most this often (in tokens) per job.
PROGRESS_EVERY_TOKENS = 16

INSTRUCTIONS_WITH_PASSAGES = (
    "You are the customer-service assistant of the shop. Answer the customer's last message "
    "using only the passages below, quoting the sentence that answers it. If the passages do "
    "not answer it, say that you do not know."
)
INSTRUCTIONS_WITHOUT_PASSAGES = (
    "You are the customer-service assistant of the shop. Answer the customer's last message "
    "briefly and politely."
)

#: A regeneration of a reply asked for greedily (temperature 0, the default) samples at this temperature,
#: seeded by its job: greedy decoding would hand the reviewer back the reply they sent back, word for word.
REGENERATION_TEMPERATURE = 0.7
#: How the reviewer's note reaches the model, in the system message.
REVIEWER_NOTE = "A reviewer sent back an earlier reply to this conversation. Write a better one; the reviewer's note: {note}"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=8000)


class ChatbotInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(
        min_length=1, max_length=50, description="The conversation so far, oldest first; the last one is the user's."
    )
    conversation_id: str | None = Field(
        default=None, description="Continue this stored conversation (a UUID); the platform keeps the thread."
    )
    use_knowledge: bool = Field(default=True, description="Answer from the project's knowledge base.")
    top_k: int = Field(default=3, ge=1, le=8, description="How many knowledge-base passages to retrieve.")

    @field_validator("messages")
    @classmethod
    def _last_message_is_users(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages and messages[-1].role != "user":
            raise input_error(
                "chatbot.last_message_not_user",
                "the last message must have role 'user' (the one to answer), not '{role}'",
                role=messages[-1].role,
            )
        return messages

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id_is_uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise input_error("chatbot.conversation_id_not_uuid",
                              "conversation_id must be a UUID such as 3f2b9c1e-8d4a-4c1b-9e2f-6a7b8c9d0e1f") from None


class ChatbotParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=128, ge=1, le=512, description="Longest reply, in tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 answers greedily (deterministic).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Same seed, same reply.")
    stop: list[str] = Field(
        default_factory=list, max_length=4, description="The reply ends before the first of these strings."
    )

    @field_validator("stop")
    @classmethod
    def _stop_strings_have_sane_length(cls, stop: list[str]) -> list[str]:
        for value in stop:
            if not 1 <= len(value) <= 32:
                raise input_error("chatbot.stop_string_length",
                                  "each stop string must be {min_length} to {max_length} characters long",
                                  min_length=1, max_length=32)
        return stop


class Source(BaseModel):
    source_id: str
    chunk_id: str
    title: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ChatbotOutput(BaseModel):
    # A reviewer may rewrite the reply; the rest records the run (what was retrieved, the tokens billed,
    # why decoding stopped, the thread it belongs to) and stays as the plugin wrote it.
    reply: str = editable(description="The answer. The one field a reviewer may change.")
    sources: list[Source]
    usage: Usage
    finish_reason: Literal["stop", "length"]
    conversation_id: str | None = None


def latest_user_message(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def build_system_prompt(passages: Sequence[Passage], extra_instructions: Sequence[str] = ()) -> str:
    """The system message: how to answer, the numbered passages (title, then text), and the caller's own instructions."""
    if passages:
        parts = [INSTRUCTIONS_WITH_PASSAGES]
        parts.extend(f"[{n}] {p.title}\n{p.text}" for n, p in enumerate(passages, start=1))
    else:
        parts = [INSTRUCTIONS_WITHOUT_PASSAGES]
    parts.extend(text for text in extra_instructions if text.strip())
    return "\n\n".join(parts)


def build_prompt(messages: Sequence[ChatMessage], passages: Sequence[Passage],
                 regeneration: Regeneration | None = None) -> list[dict[str, str]]:
    """The chat messages the model is given: one system message first, then the conversation.

    System messages of the conversation are folded into that first system message, because many
    chat templates accept a system message only at the start; so is a reviewer's note on a regeneration.
    """
    own_instructions = [m.content for m in messages if m.role == "system"]
    if regeneration is not None and regeneration.note.strip():
        own_instructions.append(REVIEWER_NOTE.format(note=regeneration.note.strip()))
    conversation = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    return [{"role": "system", "content": build_system_prompt(passages, own_instructions)}, *conversation]


class ChatbotPlugin(Plugin):
    manifest = Manifest(
        id="chatbot",
        version="1.0.0",
        name="Customer-service chatbot",
        description=(
            "Answers customers from the project's knowledge base: retrieves the closest passages, "
            "then generates a reply with a causal language model, citing its sources."
        ),
        modality=Modality.TEXT,
        resource_class=ResourceClass.GPU,
        # Decoding steps cost little more for 32 rows than for one on a GPU, and for small models
        # on a CPU; ATELIER_MAX_BATCH_SIZE caps it on workers where memory is short.
        max_batch_size=32,
        time_limit_s=300,
        default_model_dir="demo/chat-lm",
    )
    Input = ChatbotInput
    Params = ChatbotParams
    Output = ChatbotOutput

    lm = None

    def load(self, device: str, model_dir: Path | None) -> None:
        model_dir = require_model_dir(model_dir, "a causal LM with a chat template, in Hugging Face format")
        from atelier_plugins.text.generation import CausalChatLM

        self.lm = CausalChatLM(model_dir, device)

    def unload(self) -> None:
        self.lm = None

    def memory_bytes(self) -> int | None:
        # The weights as loaded: a bf16 checkpoint loaded as float32 on a CPU holds twice its files.
        return self.lm.memory_bytes() if self.lm is not None else 0

    def generate(self, batch: Sequence[GenerationRequest], context: RunContext) -> list[ItemResult]:
        if self.lm is None:
            raise PluginError("The chatbot model is not loaded; call load() first.", code="model_missing")
        from atelier_plugins.text.generation import FINISH_CANCELLED, ChatRequest

        results: list[ItemResult | None] = [None] * len(batch)
        pending: list[tuple[int, GenerationRequest, list[Passage]]] = []
        for position, request in enumerate(batch):
            if context.is_cancelled(request.job_id):
                results[position] = PluginError("Cancelled before it started.", code="cancelled")
                continue
            try:
                passages = self._passages(request, context)
            except PluginError as error:
                results[position] = error
                continue
            pending.append((position, request, passages))

        requests = [
            ChatRequest(
                messages=build_prompt(request.input.messages, passages, request.regeneration),
                max_new_tokens=request.params.max_new_tokens,
                temperature=request.params.temperature or (REGENERATION_TEMPERATURE if request.regeneration else 0.0),
                top_p=request.params.top_p,
                seed=request.seed,
                stop=tuple(request.params.stop),
            )
            for _, request, passages in pending
        ]
        reported: dict[int, int] = {}

        def on_tokens(item: int, tokens: int) -> None:
            request = pending[item][1]
            if tokens - reported.get(item, 0) >= PROGRESS_EVERY_TOKENS:
                reported[item] = tokens
                # the allowance too, for a person watching to read "37 of 64 tokens" (a reply may end sooner)
                context.report_progress(request.job_id, tokens / request.params.max_new_tokens, tokens=tokens,
                                        max_new_tokens=request.params.max_new_tokens)

        def result_of(item: int, completion) -> ItemResult:
            position, request, passages = pending[item]
            if completion.finish_reason == FINISH_CANCELLED:
                return PluginError("Cancelled while running.", code="cancelled")
            context.report_progress(request.job_id, 1.0, tokens=completion.completion_tokens,
                                    max_new_tokens=request.params.max_new_tokens)
            output = ChatbotOutput(
                reply=completion.text.strip(),
                sources=[Source(source_id=p.source_id, chunk_id=p.chunk_id, title=p.title, score=p.score) for p in passages],
                usage=Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens),
                finish_reason=completion.finish_reason,
                conversation_id=request.input.conversation_id,
            )
            return [OutputItem(output)]

        def deliver_early(finished) -> None:
            # Short replies are handed over while longer ones in the batch go on generating; the
            # replies that ended at the same step, together.
            for item, completion in finished:
                results[pending[item][0]] = result_of(item, completion)
            context.deliver_many({pending[item][1].job_id: results[pending[item][0]] for item, _ in finished})

        self.lm.generate(
            requests, callback=on_tokens, should_stop=lambda item: context.is_cancelled(pending[item][1].job_id),
            on_finished=deliver_early,
        )
        return results

    @staticmethod
    def _passages(request: GenerationRequest, context: RunContext) -> list[Passage]:
        data = request.input
        if not data.use_knowledge:
            return []
        query = latest_user_message(data.messages)
        try:
            return context.retrieve(request.job_id, query, data.top_k)[: data.top_k]
        except PluginError:
            raise
        except Exception as error:
            # A knowledge base that cannot be searched right now (index being rebuilt, database hiccup) may recover.
            from atelier_sdk import TransientPluginError

            raise TransientPluginError(f"Knowledge-base retrieval failed: {error}", code="retrieval_failed") from error
