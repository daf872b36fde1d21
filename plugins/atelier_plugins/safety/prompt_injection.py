"""The ``prompt_injection`` check: heuristics for attempts to override a model's instructions (English, Chinese).

Each signal has a strength (how rarely it appears in honest requests). The score combines the
strongest hit of each signal kind as independent evidence, ``1 - prod(1 - strength)``: one strong
signal ("ignore all previous instructions") is enough to pass 0.5, weak ones ("act as a ...")
stay below it alone and add up together. Phrases that merely mention instructions ("follow the
assembly instructions") match no signal, because every pattern needs the override verb and its
object together.

Base64 blobs are decoded and the decoded text is screened with the same signals, so an
instruction cannot hide in an encoding the model can read but a filter cannot.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Sequence

from atelier_sdk.safety import (
    Category,
    Evidence,
    Finding,
    SafetyCheckBase,
    SafetyCheckManifest,
    ScreenContext,
    Target,
)
from atelier_plugins.safety.normalise import normalise


@dataclass(frozen=True)
class Signal:
    kind: str
    strength: float
    pattern: re.Pattern


def _en(kind: str, strength: float, pattern: str) -> Signal:
    return Signal(kind, strength, re.compile(pattern, re.IGNORECASE))


_PREVIOUS = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+)*(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|existing|former)"
_RULES = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|messages|context|programming|constraints|guardrails)"
_CN_PREVIOUS = r"(?:之前|以前|先前|前面|上面|以上|上述|此前|所有|全部|原来|原有|系统)"
_CN_RULES = r"(?:指令|指示|规则|提示词?|设定|要求|命令|限制|约束|对话)"

SIGNALS: tuple[Signal, ...] = (
    # Override: the verb and "previous instructions" together, within a few words.
    _en("ignore_instructions", 0.9,
        rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon)\b[\s\w,']{{0,20}}?\b{_PREVIOUS}\s+(?:\w+\s+)?{_RULES}\b"),
    _en("ignore_instructions", 0.85,
        r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:(?:you\s+(?:were|have\s+been)\s+told)|(?:above|before|prior|previously))"),
    _en("ignore_instructions", 0.9,
        rf"(?:忽略|无视|忽视|忘记|忘掉|不要理会|不用理会|跳过|抛开|绕过)[^，。,.!?！？\n]{{0,8}}?{_CN_PREVIOUS}[^，。,.!?！？\n]{{0,8}}?{_CN_RULES}"),
    _en("new_instructions", 0.55, r"\b(?:new|updated|real|actual|true)\s+(?:system\s+)?instructions?\s*[:：]"),
    _en("new_instructions", 0.55, r"(?:新的?|真正的)(?:系统)?(?:指令|指示)\s*[:：]"),
    # Exfiltration of the hidden prompt.
    _en("reveal_system_prompt", 0.8,
        r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\b[\s\w,']{0,20}?\b(?:your|the)\s+(?:\w+\s+)?(?:system|initial|hidden|original|secret|developer|internal)\s+(?:prompt|instructions?|message|rules|configuration)"),
    _en("reveal_system_prompt", 0.8,
        r"(?:输出|显示|告诉我|透露|打印|重复|泄露|展示|说出|给我看)\s*(?:一下)?\s*(?:你|您)?(?:的)?\s*(?:系统提示词?|系统指令|初始指令|隐藏指令|内部指令|原始指令|system\s*prompt|预设)"),
    # Jailbreak personas and modes.
    _en("jailbreak_persona", 0.85,
        r"\b(?:you\s+are|you're|act\s+as|pretend\s+to\s+be|become|now\s+you\s+are|roleplay\s+as)\s+(?:now\s+)?(?:a\s+|an\s+|the\s+)?(?:DAN|STAN|DUDE|AIM|evil\s+(?:ai|assistant|bot)|unfiltered\s+(?:ai|assistant|model)|uncensored\s+(?:ai|assistant|model))\b"),
    _en("jailbreak_persona", 0.8, r"\bdo\s+anything\s+now\b"),
    _en("jailbreak_persona", 0.8, r"(?:你现在是|你是|扮演|假装你是|假装成)\s*(?:一个)?\s*(?:DAN|没有(?:任何)?限制的|不受(?:任何)?限制的|无限制的|邪恶的)"),
    _en("developer_mode", 0.75, r"\b(?:developer|god|jailbreak|dan|sudo|debug|unrestricted)\s+mode\b"),
    _en("developer_mode", 0.75, r"(?:开发者模式|越狱模式|上帝模式|无限制模式|调试模式)"),
    _en("jailbreak_word", 0.5, r"\bjailbr(?:ea|o)k(?:en|ing)?\b|越狱"),
    _en("no_limits", 0.5,
        r"\b(?:without|free\s+(?:of|from)|no|remove\s+(?:all|your|any)|ignore\s+(?:all|your|any))\s+(?:any\s+)?(?:restrictions|filters?|censorship|limitations|guidelines|content\s+polic(?:y|ies)|safety\s+(?:rules|guidelines|filters?)|ethical\s+(?:guidelines|constraints))\b"),
    _en("no_limits", 0.5, r"(?:不受|没有|无视|摆脱|解除)(?:任何)?(?:限制|约束|审查|过滤|道德|安全规则)"),
    # Persona requests: common and usually benign ("act as a translator"); weak alone.
    _en("role_play", 0.3,
        r"\b(?:act\s+as|pretend\s+(?:to\s+be|you\s+are)|you\s+are\s+now|from\s+now\s+on,?\s+you|roleplay\s+as|role-play\s+as|stay\s+in\s+character)\b"),
    _en("role_play", 0.3, r"(?:扮演|假装你是|从现在开始你是|从现在起你是|你现在是一个)"),
    # Forged turns and delimiters: text that pretends to be the system or a chat template. No two
    # whitespace runs sit side by side, and a line's start takes no line breaks: either let a run of
    # blanks be split every way between them, quadratic in its length (7 s for 20,000 spaces), or
    # worse for newlines, each of which is a line start.
    _en("delimiter_injection", 0.75,
        r"(?:^|\n)[^\S\n]*(?:(?:#{2,}|-{3,}|={3,}|\*{2,}|\[)\s*)?(?:system|assistant|developer)\s*(?:(?:\]|#{2,})\s*)?[:：]"),
    _en("delimiter_injection", 0.8, r"<\|(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|>|\[/?INST\]|<<\s*/?SYS\s*>>|</?(?:system|sys)>"),
    _en("delimiter_injection", 0.75, r"(?:^|\n)[^\S\n]*(?:(?:#{2,}|\[)\s*)?(?:系统|系统提示)\s*(?:\]\s*)?[:：]"),
    # Hidden markup carrying instructions a human reviewer does not see rendered.
    _en("hidden_markup", 0.7,
        r"(?s)<!--(?:(?!-->).){0,500}?\b(?:ignore|instruction|assistant|system|prompt|you\s+must|do\s+not\s+tell)\b(?:(?!-->).){0,500}?-->"),
    _en("hidden_markup", 0.7,
        r"<(?:div|span|p)[^>]{0,200}style\s*=\s*[\"'][^\"']{0,200}(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|opacity\s*:\s*0)[^>]{0,200}>"),
    _en("hidden_markup", 0.6, r"(?m)^[^\S\n]*\[//\]\s*:\s*#\s*\(.{0,300}\)"),
)

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_DECODE_REQUEST = re.compile(r"\b(?:decode|base64)\b[\s\S]{0,60}\b(?:follow|execute|obey|run|do\s+what)\b|(?:解码|base64)[\s\S]{0,30}(?:执行|照做|遵循)", re.IGNORECASE)
_ENCODED_INSTRUCTION = 0.8  # a base64 blob whose decoded text itself carries an injection signal
_ENCODED_TEXT = 0.25  # readable text hidden in base64, no signal inside: unusual, weakly suspicious
_DECODE_AND_OBEY = 0.5


@dataclass(frozen=True)
class InjectionHit:
    kind: str
    strength: float
    start: int
    end: int
    detail: str


def _decode_base64_text(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c.isspace() for c in decoded)
    letters = sum(c.isalpha() for c in decoded)
    if not decoded or printable / len(decoded) < 0.95 or letters / len(decoded) < 0.5:
        return None  # binary data (an image, a key): not text an LLM would be asked to read
    return decoded


def find_injection_signals(text: str, *, depth: int = 0) -> list[InjectionHit]:
    """Every signal in ``text``, in offsets of ``text``."""
    hits: list[InjectionHit] = []
    # Match on the normalised text too (full-width, zero-width and look-alike tricks), mapped back.
    view = normalise(text)
    targets = [(text, None)] if view.text == text else [(text, None), (view.text, view)]
    for target, mapping in targets:
        for signal in SIGNALS:
            for match in signal.pattern.finditer(target):
                if match.end() == match.start():
                    continue
                start, end = (match.start(), match.end()) if mapping is None else mapping.span(match.start(), match.end())
                hits.append(InjectionHit(signal.kind, signal.strength, start, end, signal.kind))
    if depth == 0:
        for match in _BASE64.finditer(text):
            decoded = _decode_base64_text(match.group())
            if decoded is None:
                continue
            inner = find_injection_signals(decoded, depth=1)
            if inner:
                kinds = ", ".join(sorted({hit.kind for hit in inner}))
                hits.append(InjectionHit("encoded_instruction", _ENCODED_INSTRUCTION, match.start(), match.end(), f"base64 text with {kinds}"))
            else:
                hits.append(InjectionHit("encoded_text", _ENCODED_TEXT, match.start(), match.end(), "base64-encoded text"))
        for match in _DECODE_REQUEST.finditer(text):
            hits.append(InjectionHit("decode_and_obey", _DECODE_AND_OBEY, match.start(), match.end(), "decode_and_obey"))
    return _dedupe(hits)


def _dedupe(hits: list[InjectionHit]) -> list[InjectionHit]:
    seen = set()
    unique = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.strength)):
        key = (hit.kind, hit.start, hit.end)
        if key not in seen:
            seen.add(key)
            unique.append(hit)
    return unique


def injection_score(hits: Sequence[InjectionHit]) -> float:
    """Noisy-OR over the strongest hit of each kind: independent signals add up, repeats do not."""
    strongest: dict[str, float] = {}
    for hit in hits:
        strongest[hit.kind] = max(strongest.get(hit.kind, 0.0), hit.strength)
    remaining = 1.0
    for strength in strongest.values():
        remaining *= 1.0 - strength
    return round(1.0 - remaining, 4)


class PromptInjectionCheck(SafetyCheckBase):
    """Attempts to override instructions, reveal the system prompt, or jailbreak, in user input."""

    manifest = SafetyCheckManifest(
        id="prompt_injection",
        version="1.0.0",
        name="Prompt injection heuristics (English, Chinese)",
        targets=frozenset({Target.INPUT}),
        modalities=frozenset({"text"}),
        categories=frozenset({Category.PROMPT_INJECTION}),
    )

    def check_text(self, text: str, context: ScreenContext) -> list[Finding]:
        hits = find_injection_signals(text)
        if not hits:
            return []
        evidence = tuple(
            Evidence(start=h.start, end=h.end, excerpt=text[h.start : h.end][:200], detail=f"{h.detail} ({h.strength:.2f})")
            for h in hits
        )
        return [Finding(category=Category.PROMPT_INJECTION, score=injection_score(hits), check=self.manifest.id, evidence=evidence)]


__all__ = ["PromptInjectionCheck", "SIGNALS", "find_injection_signals", "injection_score"]
