"""A chat plugin for the dashboard's chat tests: the platform's conversational shape
(``messages`` and ``conversation_id``), a reply that counts the turns, and a cited source."""

from __future__ import annotations

from typing import Literal

from atelier_sdk import Manifest, Modality, OutputItem, Plugin, ResourceClass, editable
from pydantic import BaseModel, ConfigDict, Field


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=2000)


class ChatInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[Turn] = Field(min_length=1)
    conversation_id: str | None = None


class ChatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(BaseModel):
    source_id: str
    chunk_id: str
    title: str
    score: float


class ChatOutput(BaseModel):
    reply: str = editable()
    sources: list[Source]


class TurnCounter(Plugin):
    manifest = Manifest(
        id="turn_counter", version="1.0.0", name="Turn counter", description="Test chat plugin.",
        modality=Modality.TEXT, resource_class=ResourceClass.CPU, max_batch_size=4, time_limit_s=60, max_attempts=1,
    )
    Input = ChatInput
    Params = ChatParams
    Output = ChatOutput

    def load(self, device, model_dir):
        pass

    def generate(self, batch, context):
        results = []
        for request in batch:
            users = [m.content for m in request.input.messages if m.role == "user"]
            reply = f"Turn {len(users)}: you said {users[-1]!r}."
            source = Source(source_id="faq/returns", chunk_id="returns-1", title="Returns policy", score=0.87)
            results.append([OutputItem(ChatOutput(reply=reply, sources=[source]))])
        return results
