"""Batched chat generation with any local Hugging Face causal LM that has a chat template.

The decoding loop is written here, on the model's forward pass with a KV cache, rather than
with ``model.generate``, because the platform needs things ``generate`` does not give per item
in one batch: each item its own seed, temperature, top-p, stop strings and token limit; items
that finish or are cancelled leave the batch while the others go on; and an item's output must
not depend on which other items shared its batch.

How batch independence is kept:
- prompts are LEFT padded and masked, with position ids counted from each item's first real
  token, so a padded row computes what the same prompt computes alone;
- every sampled item draws from its own ``torch.Generator`` seeded with its seed, and draws the
  same amount of noise at every step (one exponential variate per vocabulary entry: the
  "exponential race" form of categorical sampling), so its random stream never depends on the
  batch; greedy items draw nothing.

Shared prompt prefix: the items of a batch often begin alike (the same system prompt, the same
knowledge passages). The tokens they all begin with are run through the model once, as one row,
and their KV cache is copied to every row; each row's prefill then runs only on what follows. On
the chatbot's prompts (a 60-token system prompt, 90 to 115 tokens in all) that halves the prefill,
which is most of a CPU batch's work. A row computes the same attention over the same keys either
way; only the order of floating-point sums differs, as it does with padding.

Import this module only where torch may be imported (workers, not the web process).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from atelier_sdk import PluginError

#: A model without a usable position limit in its config is treated as having this many positions.
FALLBACK_MAX_POSITIONS = 2048
#: A prefix shared by every item of a batch is run once when it is at least this long; a shorter one
#: saves less than the extra forward pass costs.
MIN_SHARED_PREFIX_TOKENS = 16

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"

#: What a tokenizer's decode writes for bytes that are no complete UTF-8 character.
REPLACEMENT_CHARACTER = "\ufffd"
#: A UTF-8 character is at most 4 bytes: what is left of one cut off is at most 3.
MAX_PARTIAL_CHARACTER_BYTES = 3


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to continue. ``temperature`` 0 means greedy decoding."""

    messages: Sequence[Mapping[str, str]]
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class ChatCompletion:
    """The reply to one ``ChatRequest``.

    ``completion_tokens`` counts the tokens the model produced for this item up to the one that
    finished it (an end-of-sequence token or the token that completed a stop string is counted;
    nothing after it is). ``finish_reason`` is "stop" (end of sequence or a stop string),
    "length" (``max_new_tokens`` reached) or "cancelled" (``should_stop`` said so).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


ProgressCallback = Callable[[int, int], None]
StopCheck = Callable[[int], bool]
FinishedCallback = Callable[[list[tuple[int, "ChatCompletion"]]], None]


def inference_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs that support it, fp16 on older ones, float32 on CPU (where half precision is slow)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def attention_kernels(device: str) -> contextlib.AbstractContextManager:
    """The scaled-dot-product attention kernels decoding may use: on CUDA, any but cuDNN's.

    cuDNN's attention (which PyTorch prefers for bf16 on recent GPUs) builds an execution plan for
    every new shape it meets, and decoding meets new shapes all the time: the keys grow by one at
    every step, and every batch brings its own prompt lengths and size. On an H200 (torch 2.11) a
    batch of 5 new prompts then took 4.7 s instead of 0.36 s, and one new prompt up to 3.1 s
    instead of 0.24 s (bench/gpu/probe.py --only cold). Flash and memory-efficient attention need
    no plans; PyTorch picks among them and the math kernel per call."""
    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class CausalChatLM:
    """A causal LM and its tokenizer, loaded once, generating replies for batches of chats."""

    def __init__(self, model_dir: Path | str, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.device = device
        if not self.model_dir.is_dir():
            raise PluginError(f"Model directory {self.model_dir} does not exist.", code="model_missing")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        if not getattr(self.tokenizer, "chat_template", None):
            raise PluginError(
                f"The tokenizer in {self.model_dir} has no chat template; use an instruct/chat model "
                "or set tokenizer.chat_template and save it again.",
                code="model_error",
            )
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, local_files_only=True, use_safetensors=True, dtype=inference_dtype(device)
        ).to(device)
        self.model.eval()
        self.max_positions = self._max_positions()
        self.eos_token_ids = self._eos_token_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (min(self.eos_token_ids) if self.eos_token_ids else 0)
        accepted = inspect.signature(self.model.forward).parameters
        # Asking for the last position's logits only saves a (batch x prompt x vocab) tensor at prefill.
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        # transformers 5 renamed ``past_key_values`` to ``cache``; accept models written either way.
        self._cache_argument = "cache" if "cache" in accepted else "past_key_values"
        self.replacement_token_ids = _replacement_character_ids(self.tokenizer)

    def memory_bytes(self) -> int:
        """Bytes of the model's parameters and buffers as loaded (in the dtype chosen for the device)."""
        return module_bytes([self.model])

    # -- prompts ---------------------------------------------------------------------------

    def render(self, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool = True) -> str:
        """The prompt text the chat template makes of ``messages``."""
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=generation_prompt
        )

    def _encode(self, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool = True) -> list[int]:
        # The template already writes any special tokens it wants (BOS, turn markers).
        text = self.render(messages, generation_prompt=generation_prompt)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> tuple[list[int], int]:
        """Prompt token ids that fit ``max_positions - max_new_tokens``, and the usable ``max_new_tokens``.

        A prompt that is too long loses its oldest turns first (the system message is kept); if
        the system message and the last turn alone are still too long, tokens are cut from the
        left of what follows the system message, which keeps its instructions and the end of the
        conversation the model must answer.
        """
        max_new = max(1, min(int(max_new_tokens), self.max_positions - 1))
        budget = self.max_positions - max_new
        messages = [dict(m) for m in messages]
        system = messages[:1] if messages and messages[0].get("role") == "system" else []
        turns = messages[len(system):]
        ids = self._encode(system + turns)
        while len(ids) > budget and len(turns) > 1:
            turns = turns[1:]
            # Start on a user turn: many chat templates reject a conversation that opens with the assistant.
            while len(turns) > 1 and turns[0].get("role") != "user":
                turns = turns[1:]
            ids = self._encode(system + turns)
        if len(ids) > budget:
            head = _common_prefix_length(ids, self._encode(system, generation_prompt=False)) if system else 0
            head = min(head, budget // 2)
            ids = ids[:head] + ids[len(ids) - (budget - head):]
        return ids, max_new

    # -- generation ------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        items: Sequence[ChatRequest | Mapping],
        callback: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        on_finished: FinishedCallback | None = None,
    ) -> list[ChatCompletion]:
        """Continue every chat of ``items`` in one batch; one ``ChatCompletion`` per item, in order.

        ``callback(item_index, tokens_so_far)`` is called after each decoding step for every item
        still running; ``should_stop(item_index)`` is asked before each step, and an item it
        answers True for leaves the batch with finish_reason "cancelled". ``on_finished([(item_index,
        completion), ...])`` is called with the items done at a step, together, as soon as that step
        is, while longer ones go on: its caller hands a short reply over without waiting for the
        longest, and the replies that end together over at once.
        """
        requests = [item if isinstance(item, ChatRequest) else ChatRequest(**item) for item in items]
        if not requests:
            return []
        prompts: list[list[int]] = []
        limits: list[int] = []
        for request in requests:
            ids, max_new = self.encode_chat(request.messages, request.max_new_tokens)
            prompts.append(ids)
            limits.append(max_new)

        states = [
            _ItemState(request, len(ids), limit, replacement_token_ids=self.replacement_token_ids)
            for request, ids, limit in zip(requests, prompts, limits)
        ]
        cancelled = []
        for index, state in enumerate(states):
            if state.request.temperature > 0:
                state.generator = torch.Generator(device=self.device).manual_seed(int(state.request.seed))
            if should_stop is not None and should_stop(index):
                state.finish(FINISH_CANCELLED)
                cancelled.append((index, state.completion(self.tokenizer)))
        if cancelled and on_finished is not None:
            on_finished(cancelled)

        rows = [i for i, s in enumerate(states) if not s.done]  # batch row -> item index
        if rows:
            with attention_kernels(self.device):
                self._decode(states, rows, [prompts[i] for i in rows], callback, should_stop, on_finished)
        return [s.completion(self.tokenizer) for s in states]

    def _decode(self, states, rows, prompts, callback, should_stop, on_finished=None) -> None:
        device = self.device
        extra = dict(self._last_logits_only)
        shared, cache = self._prefill_shared_prefix(prompts)
        prompts = [ids[shared:] for ids in prompts]
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), shared + width), dtype=torch.long)
        attention[:, :shared] = 1
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, shared + width - len(ids):] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        # Positions count from each row's first real token, so padding does not shift them.
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, shared:]

        if cache is not None:
            extra[self._cache_argument] = cache
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, **extra)
        cache = self._cache_of(out)
        logits = out.logits[:, -1, :]
        next_position = positions[:, -1:] + 1

        while rows:
            tokens = []
            # Greedy rows share one argmax over the batch (one op instead of one per row).
            greedy = logits.argmax(dim=-1).tolist()
            for row, index in enumerate(rows):
                state = states[index]
                token = greedy[row] if state.request.temperature <= 0 else self._choose(logits[row], state)
                tokens.append(token)
                state.accept(token, self.tokenizer, self.eos_token_ids)
                if callback is not None:
                    callback(index, len(state.tokens))
            if should_stop is not None:
                for index in rows:
                    if not states[index].done and should_stop(index):
                        states[index].finish(FINISH_CANCELLED)
            if on_finished is not None:
                finished = [(index, states[index].completion(self.tokenizer)) for index in rows if states[index].done]
                if finished:
                    on_finished(finished)

            keep = [row for row, index in enumerate(rows) if not states[index].done]
            if not keep:
                break
            step_ids = torch.tensor([[tokens[row]] for row in keep], dtype=torch.long, device=device)
            if len(keep) < len(rows):
                # Finished items leave the batch: the rest need not pay for them.
                selected = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(selected)
                attention = attention[selected]
                next_position = next_position[selected]
                rows = [rows[row] for row in keep]
            attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
            out = self.model(
                input_ids=step_ids, attention_mask=attention, position_ids=next_position,
                use_cache=True, **{self._cache_argument: cache},
            )
            cache = self._cache_of(out)
            logits = out.logits[:, -1, :]
            next_position = next_position + 1

    def _prefill_shared_prefix(self, prompts: list[list[int]]):
        """Run the tokens every prompt begins with once, as one row, and give each row a copy of their KV
        cache: (how many tokens, the cache), or (0, None) when nothing worth sharing. Every row keeps at
        least its last prompt token, whose logits choose its first new token."""
        if len(prompts) < 2:
            return 0, None
        shared = min(len(ids) for ids in prompts) - 1
        for ids in prompts[1:]:
            shared = min(shared, _common_prefix_length(prompts[0], ids))
        if shared < MIN_SHARED_PREFIX_TOKENS:
            return 0, None
        prefix = torch.tensor([prompts[0][:shared]], dtype=torch.long, device=self.device)
        out = self.model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, **self._last_logits_only)
        cache = self._cache_of(out)
        cache.batch_repeat_interleave(len(prompts))
        return shared, cache

    @staticmethod
    def _cache_of(out):
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def _choose(self, logits: torch.Tensor, state: "_ItemState") -> int:
        request = state.request
        logits = logits.float()
        if request.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / request.temperature, dim=-1)
        if request.top_p < 1.0:
            ordered, order = torch.sort(probs, descending=True)
            before = torch.cumsum(ordered, dim=-1) - ordered
            # Keep the smallest set of most likely tokens whose mass reaches top_p (always the first).
            dropped = order[before >= request.top_p]
            probs = probs.clone()
            probs[dropped] = 0.0
        # argmax(p / E) with E ~ Exp(1) i.i.d. samples exactly from p, and always draws |V| variates,
        # so the item's random stream does not depend on anything but its own steps.
        noise = torch.empty_like(probs).exponential_(generator=state.generator)
        return int(torch.argmax(probs / noise))

    # -- model facts -----------------------------------------------------------------------

    def _max_positions(self) -> int:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 1:
                return value
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 1 < tokenizer_limit < 1_000_000:
            return tokenizer_limit
        return FALLBACK_MAX_POSITIONS

    def _eos_token_ids(self) -> set[int]:
        found: set[int] = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                found.add(value)
            elif isinstance(value, (list, tuple)):
                found.update(int(v) for v in value)
        return found


class _ItemState:
    """What one item has produced so far, and whether it is finished."""

    def __init__(
        self, request: ChatRequest, prompt_tokens: int, max_new_tokens: int, *, replacement_token_ids: Sequence[int]
    ) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.replacement_token_ids = replacement_token_ids  # the model's, shared by every item
        self.tokens: list[int] = []
        self.text_tokens: list[int] = []  # without the end-of-sequence token
        self.text = ""
        self.cut_on_stop = False
        self.done = False
        self.finish_reason = FINISH_LENGTH
        self.generator: torch.Generator | None = None

    def finish(self, reason: str) -> None:
        self.done = True
        self.finish_reason = reason

    def accept(self, token: int, tokenizer, eos_token_ids: set[int]) -> None:
        self.tokens.append(token)
        if token in eos_token_ids:
            self.finish(FINISH_STOP)
            return
        self.text_tokens.append(token)
        stops = [s for s in self.request.stop if s]
        if stops:
            text = tokenizer.decode(self.text_tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            if cut >= 0:
                self.text = text[:cut]
                self.cut_on_stop = True
                self.finish(FINISH_STOP)
                return
        if len(self.tokens) >= self.max_new_tokens:
            self.finish(FINISH_LENGTH)

    def completion(self, tokenizer) -> ChatCompletion:
        if not self.cut_on_stop:
            self.text = tokenizer.decode(self.text_tokens, skip_special_tokens=True)
            if self.finish_reason in (FINISH_LENGTH, FINISH_CANCELLED) and self.text.endswith(REPLACEMENT_CHARACTER):
                self.text = self._without_a_cut_character(self.text, tokenizer)
        return ChatCompletion(self.text, self.prompt_tokens, len(self.tokens), self.finish_reason)

    def _without_a_cut_character(self, text: str, tokenizer) -> str:
        """``text`` less the U+FFFD its end has for the first bytes of a character the stop cut off.

        Decoding writes U+FFFD for such bytes (one for them all, or one per byte with sentencepiece's
        byte fallback: at most 3), as it writes a U+FFFD the model really produced; only the tokens
        tell them apart. So only the U+FFFD decoded from the tokens after the model's last whole
        U+FFFD (spelled as the tokenizer spells it) are dropped, and only at the end of the text.
        """
        tokens, spelled = self.text_tokens, list(self.replacement_token_ids)
        after_last_whole = 0
        if spelled:
            for end in range(len(tokens), len(spelled) - 1, -1):
                if tokens[end - len(spelled) : end] == spelled:
                    after_last_whole = end
                    break
        tail = tokenizer.decode(tokens[after_last_whole:], skip_special_tokens=True)
        cut = min(_trailing_replacements(text), _trailing_replacements(tail), MAX_PARTIAL_CHARACTER_BYTES)
        return text[: len(text) - cut]


def _trailing_replacements(text: str) -> int:
    return len(text) - len(text.rstrip(REPLACEMENT_CHARACTER))


def module_bytes(modules: Sequence[torch.nn.Module]) -> int:
    """Bytes held by the parameters and buffers of ``modules``, a tensor shared by several counted once."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def _replacement_character_ids(tokenizer) -> tuple[int, ...]:
    """The tokens the tokenizer spells U+FFFD with, without a leading word-boundary token
    (sentencepiece's "▁") that would not follow a character written mid-word."""
    ids = list(tokenizer(REPLACEMENT_CHARACTER, add_special_tokens=False)["input_ids"])
    while ids and not tokenizer.decode(ids[:1], skip_special_tokens=True).strip():
        ids = ids[1:]
    return tuple(ids) if tokenizer.decode(ids, skip_special_tokens=True).strip() == REPLACEMENT_CHARACTER else ()


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
