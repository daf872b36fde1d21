"""Writing copy for recommended items with a causal chat LM, and never passing a rule violation on.

Every (job, item, variant) is a ``CopySlot``. All open slots of a batch go to the LM together,
one batched ``generate`` call per round. A draft with a banned word, an invented number or no
useful text is regenerated with another seed (up to ``max_regenerations`` times); what is still
wrong after that is repaired by editing (``checks.repair_copy``); when nothing acceptable
remains, a template sentence built only from the item's facts is used, itself checked too.

The LM is anything with ``CausalChatLM.generate``'s interface: ``generate(items, callback=None,
should_stop=None)`` taking mappings of ``messages, max_new_tokens, temperature, top_p, seed,
stop`` and returning objects with ``text`` and ``finish_reason``. This module imports no torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from atelier_plugins.recommender_copy.checks import (
    ItemFacts,
    find_banned_words,
    find_unsupported_numbers,
    enforce_length,
    is_useful,
    repair_copy,
    split_sentences,
    violations,
)
from atelier_plugins.recommender_copy.schemas import MAX_SEED, CatalogueItem, CopyVariant

#: Drafts regenerated with a fresh seed before a broken draft is repaired by editing.
MAX_REGENERATIONS = 2
#: Temperature of a regeneration when the job asked for greedy decoding (temperature 0): of a draft
#: that broke a rule, or of a whole job a reviewer sent back, which greedy decoding would write again.
REGENERATION_TEMPERATURE = 0.7
#: Nucleus sampling mass for copy: cuts the long tail of unlikely tokens, keeps variety.
TOP_P = 0.95
#: A batch larger than this goes to the LM in several calls, to bound device memory.
MAX_PROMPTS_PER_CALL = 256
#: How many banned words are spelled out in the prompt (all of them are enforced afterwards).
BANNED_WORDS_IN_PROMPT = 60
#: Progress is written to the job's database row: report at most this often (in tokens) per job.
PROGRESS_EVERY_TOKENS = 32
#: The shopper's interests are quoted in the prompt up to this many characters.
INTERESTS_IN_PROMPT = 400
#: A reviewer's note on copy they sent back is quoted in the prompt up to this many characters.
REVIEWER_NOTE_IN_PROMPT = 400
FINISH_CANCELLED = "cancelled"  # CausalChatLM's finish_reason for an item that was stopped

TONES = {
    "en": {
        "friendly": "warm and friendly, like a helpful shop assistant",
        "premium": "refined, calm and understated, for a premium brand",
        "playful": "light, playful and cheerful",
        "concise": "brief and to the point, one short sentence",
    },
    "zh": {
        "friendly": "亲切友好，像一位热心的店员",
        "premium": "精致、从容、低调，符合高端品牌",
        "playful": "轻松活泼、有趣",
        "concise": "简洁明了，一句话",
    },
}

# Each variant takes a different angle, so variants differ even when decoding is greedy.
ANGLES = {
    "en": [
        "what it is made of and how it feels",
        "how it fits into the shopper's everyday life",
        "the one detail that makes it special",
        "why it suits this shopper's interests",
        "a short, simple invitation to take a look",
    ],
    "zh": [
        "它的材质和手感",
        "它如何融入顾客的日常生活",
        "让它与众不同的一个细节",
        "它为什么适合这位顾客的兴趣",
        "一句简短自然的邀请",
    ],
}

_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CNY": "¥", "JPY": "¥"}


class ChatLM(Protocol):
    def generate(self, items, callback=None, should_stop=None) -> list: ...


@dataclass(frozen=True)
class CopySpec:
    """What one job asks of its copy (shared by all its slots)."""

    tone: str
    language: str
    brand_voice: str
    banned_words: tuple[str, ...]
    max_chars: int
    temperature: float
    seed: int
    interests: str = ""
    variants: int = 1
    regeneration: bool = False  # another try at copy a reviewer sent back
    reviewer_note: str = ""  # what the reviewer asked for, when they said


@dataclass
class CopySlot:
    """One copy variant of one recommended item of one job, and what happened to it."""

    job: int  # the job's position in the batch
    item: CatalogueItem
    variant: int
    spec: CopySpec
    facts: ItemFacts = field(init=False)
    drafts: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    result: CopyVariant | None = None
    cancelled: bool = False
    failure: str | None = None  # why no acceptable copy exists for this item at all

    def __post_init__(self) -> None:
        self.facts = item_facts(self.item)

    @property
    def open(self) -> bool:
        return self.result is None and not self.cancelled and self.failure is None


def item_facts(item: CatalogueItem) -> ItemFacts:
    return ItemFacts.from_item(
        title=item.title, description=item.description, tags=item.tags, attributes=item.attributes,
        price=item.price, currency=item.currency,
    )


def derive_seed(seed: int, item_id: str, variant: int, attempt: int) -> int:
    """The seed of one draft: the job's seed offset by item, variant and attempt.

    Hashing (rather than adding small offsets) keeps the seeds of different items, variants and
    attempts from colliding, and depends on the item's id, not its rank, so an item's copy is the
    same whatever else was recommended with it.
    """
    digest = hashlib.blake2b(f"{item_id}\x00{variant}\x00{attempt}".encode(), digest_size=8).digest()
    return (seed + int.from_bytes(digest, "big")) % (MAX_SEED + 1)


def format_price(price: float | None, currency: str | None, language: str) -> str:
    if price is None:
        return ""
    amount = f"{price:.0f}" if float(price).is_integer() else f"{price:.2f}"
    if language == "zh" and currency in (None, "CNY"):
        return f"{amount}元"
    symbol = _CURRENCY_SYMBOLS.get(currency or "")
    if symbol:
        return f"{symbol}{amount}"
    return f"{amount} {currency}" if currency else amount


def item_fact_lines(item: CatalogueItem, language: str) -> list[str]:
    labels = {
        "en": ("Product", "Description", "Tags", "Price"),
        "zh": ("产品", "描述", "标签", "价格"),
    }[language]
    lines = [f"{labels[0]}: {item.title}"]
    if item.description.strip():
        lines.append(f"{labels[1]}: {item.description.strip()}")
    if item.tags:
        lines.append(f"{labels[2]}: {', '.join(item.tags)}")
    if item.price is not None:
        lines.append(f"{labels[3]}: {format_price(item.price, item.currency, language)}")
    lines.extend(f"{name}: {value}" for name, value in item.attributes.items() if value.strip())
    return lines


def build_messages(slot: CopySlot) -> list[dict[str, str]]:
    """The chat the LM continues: rules in the system message, the item's facts in the user turn."""
    spec = slot.spec
    banned = list(spec.banned_words[:BANNED_WORDS_IN_PROMPT])
    interests = spec.interests.strip()[:INTERESTS_IN_PROMPT]
    note = " ".join(spec.reviewer_note.split())[:REVIEWER_NOTE_IN_PROMPT]
    angle = ANGLES[spec.language][slot.variant % len(ANGLES[spec.language])]
    if spec.language == "zh":
        system = [
            "你为网店撰写简短的个性化商品文案。",
            f"品牌语气：{spec.brand_voice.strip()}" if spec.brand_voice.strip() else "",
            f"语气：{TONES['zh'][spec.tone]}。",
            "用简体中文写作。只使用下面给出的商品信息：不要编造价格、折扣、百分比、数字、保修或奖项。",
            f"不要使用这些词：{'、'.join(banned)}。" if banned else "",
            f"最多 {spec.max_chars} 个字符，一到两句话。只回复文案本身。",
            ("审核人员退回了之前的文案，请换一种写法。" + (f"审核意见：{note}" if note else "")) if spec.regeneration else "",
        ]
        user = [*item_fact_lines(slot.item, "zh")]
        if interests:
            user.append(f"顾客的兴趣：{interests}")
        user.append(f"角度：{angle}。请写第 {slot.variant + 1} 个版本（共 {spec.variants} 个）。")
    else:
        system = [
            "You write short, personalised product copy for an online shop.",
            f"Brand voice: {spec.brand_voice.strip()}" if spec.brand_voice.strip() else "",
            f"Tone: {TONES['en'][spec.tone]}.",
            "Write in English. Use only the product facts given below: never invent prices, discounts, "
            "percentages, numbers, guarantees or awards.",
            f"Never use these words: {', '.join(banned)}." if banned else "",
            f"At most {spec.max_chars} characters, one or two sentences. Reply with the copy only.",
            ("A reviewer sent back earlier copy: write it differently." + (f" The reviewer's note: {note}" if note else ""))
            if spec.regeneration else "",
        ]
        user = [*item_fact_lines(slot.item, "en")]
        if interests:
            user.append(f"The shopper's interests: {interests}")
        user.append(f"Angle: {angle}. Write variant {slot.variant + 1} of {spec.variants}.")
    return [
        {"role": "system", "content": "\n".join(line for line in system if line)},
        {"role": "user", "content": "\n".join(user)},
    ]


def max_new_tokens(spec: CopySpec) -> int:
    # Room for the whole allowance and a little more, so the model can finish its sentence
    # before the cut: about 4 characters a token in English, 1-2 tokens a character in Chinese.
    per_char = 2.0 if spec.language == "zh" else 1 / 3
    return max(16, min(512, int(spec.max_chars * per_char) + 24))


def chat_request(slot: CopySlot, attempt: int) -> dict:
    spec = slot.spec
    return {
        "messages": build_messages(slot),
        "max_new_tokens": max_new_tokens(spec),
        # Greedy decoding would write the same draft again whatever the seed: a draft written again,
        # or a job a reviewer sent back, samples.
        "temperature": spec.temperature if spec.temperature > 0 or (attempt == 0 and not spec.regeneration)
        else REGENERATION_TEMPERATURE,
        "top_p": TOP_P,
        "seed": derive_seed(spec.seed, slot.item.id, slot.variant, attempt),
        "stop": ("\n\n",),
    }


_LABEL = re.compile(r"^\s*(?:copy|variant\s*\d*|version\s*\d*|here(?:'s| is)[^:\n]{0,40}|文案|版本\s*\d*)\s*[:：]\s*", re.I)
_QUOTES = "\"'“”‘’「」『』"


def clean_draft(text: str) -> str:
    """The model's reply as copy: one paragraph, no label, quotes, markup or broken characters."""
    text = text.replace("\ufffd", "")  # half a multi-byte character, cut off by the token limit
    text = "".join(c for c in text if c.isprintable() or c in "\n ")
    text = text.strip().split("\n\n")[0]
    text = _LABEL.sub("", text)
    text = re.sub(r"[*_#`]+", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _normalised(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def template_texts(item: CatalogueItem, language: str) -> list[str]:
    """Sentences built only from the item's own facts, a different shape for each variant."""
    sentences = [s.strip() for s in split_sentences(item.description.strip()) if s.strip()]
    first = sentences[0] if sentences else ""
    second = sentences[1] if len(sentences) > 1 else ""
    price = format_price(item.price, item.currency, language)
    values = [v.strip() for v in item.attributes.values() if v.strip()][:3]
    tags = [t.strip() for t in item.tags if t.strip()][:4]
    title = item.title.strip()
    if language == "zh":
        shapes = [
            f"{title}：{first}" if first else f"{title}。",
            f"{first}{title}，{price}。" if first and price else "",
            f"{title}：{'，'.join(values)}。" if values else "",
            f"{title}，{'、'.join(tags)}。" if tags else "",
            f"{title}，{price}。{second or first}" if price else "",
        ]
    else:
        end = "" if title[-1:] in ".!?" else "."
        shapes = [
            f"{title}{end} {first}" if first else f"{title}{end}",
            f"{first} {title}, {price}." if first and price else "",
            f"{title}: {', '.join(values)}.{' ' + second if second else ''}" if values else "",
            f"{title}, for {', '.join(tags)}." if tags else "",
            f"{title}, {price}. {second or first}".strip() if price else "",
        ]
    unique: list[str] = []
    for shape in shapes:
        if shape and _normalised(shape) not in {_normalised(u) for u in unique}:
            unique.append(shape)
    return unique or [title]


class CopyWriter:
    """Drives the rounds of generation, checking and repair for every slot of a batch."""

    def __init__(
        self,
        lm: ChatLM,
        *,
        max_regenerations: int = MAX_REGENERATIONS,
        is_cancelled: Callable[[int], bool] | None = None,
        on_progress: Callable[[int, float, dict], None] | None = None,
    ) -> None:
        self.lm = lm
        self.max_regenerations = max_regenerations
        self.is_cancelled = is_cancelled or (lambda job: False)
        self.on_progress = on_progress or (lambda job, fraction, detail: None)
        self.lm_calls = 0
        self.slots: Sequence[CopySlot] = ()

    def write(self, slots: Sequence[CopySlot]) -> None:
        """Fill ``result`` of every slot (or mark it ``cancelled``)."""
        self.slots = slots
        for attempt in range(self.max_regenerations + 1):
            pending = [slot for slot in slots if slot.open]
            for slot in pending:
                if self.is_cancelled(slot.job):
                    slot.cancelled = True
            pending = [slot for slot in pending if slot.open]
            if not pending:
                break
            completions = self._generate(pending, attempt)
            for slot, completion in zip(pending, completions):
                if getattr(completion, "finish_reason", None) == FINISH_CANCELLED:
                    slot.cancelled = True
                    continue
                self._judge_draft(slot, clean_draft(completion.text), slots, attempt)
            self._report(slots, attempt)
        for slot in slots:
            if slot.open:
                self._repair_or_fall_back(slot, slots)
        self._report(slots, self.max_regenerations)

    # -- one round ---------------------------------------------------------------------------

    def _generate(self, pending: Sequence[CopySlot], attempt: int) -> list:
        completions: list = []
        for start in range(0, len(pending), MAX_PROMPTS_PER_CALL):
            chunk = pending[start : start + MAX_PROMPTS_PER_CALL]
            requests = [chat_request(slot, attempt) for slot in chunk]
            progress = _TokenProgress(self.slots, chunk, requests, self.on_progress, attempt)
            self.lm_calls += 1
            completions.extend(
                self.lm.generate(
                    requests,
                    callback=progress.on_tokens,
                    should_stop=lambda index, chunk=chunk: self.is_cancelled(chunk[index].job),
                )
            )
        return completions

    def _judge_draft(self, slot: CopySlot, draft: str, slots: Sequence[CopySlot], attempt: int) -> None:
        spec = slot.spec
        cut = enforce_length(draft, spec.max_chars)
        problems = [f"banned_word:{m.word}" for m in find_banned_words(cut, spec.banned_words)]
        problems += [f"unsupported_number:{m.text}" for m in find_unsupported_numbers(cut, slot.facts)]
        if not is_useful(cut):
            problems.append("empty")
        elif self._duplicates_sibling(slot, cut, slots):
            problems.append("duplicate_variant")
        if problems:
            slot.drafts.append(draft)
            slot.issues.extend(p for p in problems if p not in slot.issues)
            return
        issues = list(slot.issues)
        if attempt:
            issues.append(f"regenerated:{attempt}")
        if cut != draft:
            issues.append("too_long")
        slot.result = CopyVariant(
            text=cut,
            repaired=bool(issues),
            issues_fixed=issues,
            source="edited" if cut != draft else "model",
            attempts=attempt + 1,
        )

    # -- after the last round ------------------------------------------------------------------

    def _repair_or_fall_back(self, slot: CopySlot, slots: Sequence[CopySlot]) -> None:
        spec = slot.spec
        attempts = len(slot.drafts)
        # Repair the draft that needs the least editing.
        ranked = sorted(
            slot.drafts,
            key=lambda d: len(violations(d, banned_words=spec.banned_words, facts=slot.facts, max_chars=spec.max_chars)),
        )
        for draft in ranked:
            repaired = repair_copy(draft, banned_words=spec.banned_words, facts=slot.facts, max_chars=spec.max_chars)
            if repaired.acceptable and not self._duplicates_sibling(slot, repaired.text, slots):
                issues = list(dict.fromkeys(slot.issues + repaired.issues_fixed))
                slot.result = CopyVariant(
                    text=repaired.text, repaired=True, issues_fixed=issues, source="edited", attempts=attempts
                )
                return
        slot.result = self._template(slot, slots, attempts)
        if slot.result is None:
            slot.failure = (
                f"No copy for item {slot.item.id!r} passes the rules: even its title and description "
                "break them (banned words). Remove the item or change its title."
            )

    def _template(self, slot: CopySlot, slots: Sequence[CopySlot], attempts: int) -> CopyVariant | None:
        spec = slot.spec
        shapes = template_texts(slot.item, spec.language)
        # Start at this variant's own shape so that variants get different sentences.
        ordered = shapes[slot.variant % len(shapes) :] + shapes[: slot.variant % len(shapes)]
        fallback: CopyVariant | None = None
        for shape in ordered:
            repaired = repair_copy(
                shape, banned_words=spec.banned_words, facts=slot.facts, max_chars=spec.max_chars, require_useful=False
            )
            if not repaired.acceptable:
                continue
            issues = list(dict.fromkeys(slot.issues + ["template_fallback"] + repaired.issues_fixed))
            variant = CopyVariant(text=repaired.text, repaired=True, issues_fixed=issues, source="template", attempts=attempts)
            if not self._duplicates_sibling(slot, repaired.text, slots):
                return variant
            fallback = fallback or variant  # the item's data allows no other sentence
        return fallback

    @staticmethod
    def _duplicates_sibling(slot: CopySlot, text: str, slots: Sequence[CopySlot]) -> bool:
        mine = _normalised(text)
        return any(
            other is not slot and other.job == slot.job and other.item.id == slot.item.id
            and other.result is not None and _normalised(other.result.text) == mine
            for other in slots
        )

    def _report(self, slots: Sequence[CopySlot], attempt: int) -> None:
        by_job: dict[int, list[CopySlot]] = {}
        for slot in slots:
            by_job.setdefault(slot.job, []).append(slot)
        for job, own in by_job.items():
            done = sum(1 for slot in own if slot.result is not None)
            self.on_progress(job, done / len(own), {"copy_done": done, "copy_total": len(own), "round": attempt + 1})


class _TokenProgress:
    """Per-job share of copy written while the LM decodes: finished slots, plus the share of its
    token allowance each open slot has written.

    Progress lands in the job's database row, so a job reports at most once per
    ``PROGRESS_EVERY_TOKENS`` tokens written across its slots.
    """

    def __init__(self, all_slots, chunk: Sequence[CopySlot], requests: Sequence[dict], report, attempt: int) -> None:
        self.chunk = chunk
        self.limits = [request["max_new_tokens"] for request in requests]
        self.report = report
        self.attempt = attempt
        self.tokens = [0] * len(chunk)
        self.unreported: dict[int, int] = {}
        self.total: dict[int, int] = {}
        self.done: dict[int, int] = {}
        for slot in all_slots:
            self.total[slot.job] = self.total.get(slot.job, 0) + 1
            self.done[slot.job] = self.done.get(slot.job, 0) + (slot.result is not None)
        self.open: dict[int, list[int]] = {}
        for index, slot in enumerate(chunk):
            self.open.setdefault(slot.job, []).append(index)

    def on_tokens(self, index: int, tokens: int) -> None:
        job = self.chunk[index].job
        self.unreported[job] = self.unreported.get(job, 0) + max(0, tokens - self.tokens[index])
        self.tokens[index] = tokens
        if self.unreported[job] < PROGRESS_EVERY_TOKENS:
            return
        self.unreported[job] = 0
        written = sum(min(1.0, self.tokens[i] / self.limits[i]) for i in self.open[job])
        fraction = (self.done[job] + written) / self.total[job]
        self.report(job, fraction, {"round": self.attempt + 1, "tokens": sum(self.tokens[i] for i in self.open[job])})


def remaining_violations(slot: CopySlot) -> list[str]:
    """Last line of defence before output: what the slot's final text still breaks (nothing, normally)."""
    if slot.result is None:
        return ["missing"]
    problems = violations(
        slot.result.text, banned_words=slot.spec.banned_words, facts=slot.facts, max_chars=slot.spec.max_chars
    )
    # A template of a terse item ("Tent.") is short but true: usefulness is asked of model text only.
    return [p for p in problems if not (p == "empty" and slot.result.source == "template" and slot.result.text)]
