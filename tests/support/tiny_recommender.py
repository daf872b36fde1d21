"""Test helpers for ``recommender_copy``: a tiny real chat LM and a scripted stand-in.

``build_tiny_copy_lm`` trains a byte-level BPE tokenizer (the project's chat format) on shop
copy full of prices, percentages and banned words, and saves a randomly initialised GPT-2 with
safetensors. Its output is gibberish made of those tokens, which is what the repair paths need:
invented numbers and banned words turn up without being asked for.

``ScriptedChatLM`` has ``CausalChatLM.generate``'s interface and answers what a test tells it
to, so a test can make the model misbehave on purpose (always write a banned word, invent a
price) and check what reaches the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tests.support.tiny_lm import build_tiny_chat_lm

COPY_TEXTS = [
    "This cheap tent is a bargain: only $49 today, 20% off, with a guaranteed 3-year warranty.",
    "Hurry, the best ever throw is a must-have for cosy evenings, now 30% cheaper at $19.99.",
    "A soft merino wool throw in slate grey, woven in a fine herringbone pattern.",
    "Light oak, paper lamps and simple linen for a calm Japandi home.",
    "Handmade stoneware plates for dinner parties, fired twice for a glossy glaze.",
    "Sleep well under the stars in a two-person tent that packs small.",
    "这款羊毛毯柔软温暖，限时八折，只要99元，保证三年不变形。",
    "天然亚麻床品，透气舒适，适合四季使用。",
]


def build_tiny_copy_lm(target: Path, *, seed: int = 0, n_positions: int = 512) -> Path:
    return build_tiny_chat_lm(target, seed=seed, n_positions=n_positions, texts=COPY_TEXTS, vocab_size=500)


@dataclass(frozen=True)
class ScriptedCompletion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class ScriptedChatLM:
    """Answers each request with ``respond(request)``; records every ``generate`` call."""

    def __init__(self, respond: Callable[[Mapping], str]) -> None:
        self.respond = respond
        self.calls: list[list[Mapping]] = []

    def generate(self, items: Sequence[Mapping], callback=None, should_stop=None) -> list[ScriptedCompletion]:
        items = [dict(item) for item in items]
        self.calls.append(items)
        completions = []
        for index, item in enumerate(items):
            if should_stop is not None and should_stop(index):
                completions.append(ScriptedCompletion("", 0, 0, "cancelled"))
                continue
            text = self.respond(item)
            if callback is not None:
                callback(index, len(text.split()))
            prompt = sum(len(m["content"].split()) for m in item["messages"])
            completions.append(ScriptedCompletion(text, prompt, len(text.split()), "stop"))
        return completions

    @property
    def requests(self) -> list[Mapping]:
        return [item for call in self.calls for item in call]


def product_of(request: Mapping) -> str:
    """The product title a copy request is about (the "Product:" line of its prompt)."""
    for line in request["messages"][-1]["content"].splitlines():
        if line.startswith("Product: ") or line.startswith("产品: "):
            return line.split(": ", 1)[1]
    raise AssertionError("no product line in the prompt")


def variant_of(request: Mapping) -> int:
    """Which variant (1-based) a copy request asks for ("Write variant 2 of 3.")."""
    import re

    found = re.search(r"variant (\d+) of \d+|第 (\d+) 个版本", request["messages"][-1]["content"])
    if not found:
        raise AssertionError("no variant number in the prompt")
    return int(found.group(1) or found.group(2))
