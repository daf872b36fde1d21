"""The safety-check contract: pluggable screens for inputs and outputs, with no Django inside.

Every check scores the categories of one internal taxonomy and says why (evidence: which
characters of a text, which region of an image). The platform turns scores into a decision
with the project's thresholds; a check never decides on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, Field


class Category(StrEnum):
    SEXUAL = "sexual"
    SEXUAL_MINORS = "sexual/minors"
    HATE = "hate"
    HARASSMENT = "harassment"
    VIOLENCE = "violence"
    SELF_HARM = "self-harm"
    ILLICIT = "illicit"
    PERSONAL_DATA = "personal_data"
    PROMPT_INJECTION = "prompt_injection"
    SPAM = "spam"  # spam or off-brand
    CUSTOM = "custom"  # a project's own blocklist terms


#: Our categories in the OpenAI moderation API's names (None: it has no such category).
OPENAI_MODERATION: dict[Category, str | None] = {
    Category.SEXUAL: "sexual",
    Category.SEXUAL_MINORS: "sexual/minors",
    Category.HATE: "hate",
    Category.HARASSMENT: "harassment",
    Category.VIOLENCE: "violence",
    Category.SELF_HARM: "self-harm",
    Category.ILLICIT: "illicit",
    Category.PERSONAL_DATA: None,
    Category.PROMPT_INJECTION: None,
    Category.SPAM: None,
    Category.CUSTOM: None,
}

#: Our categories in the MLCommons AILuminate hazard taxonomy (v1.0 hazard codes).
MLCOMMONS_HAZARDS: dict[Category, str | None] = {
    Category.SEXUAL: "S12 Sexual Content",
    Category.SEXUAL_MINORS: "S4 Child Sexual Exploitation",
    Category.HATE: "S10 Hate",
    Category.HARASSMENT: "S10 Hate",
    Category.VIOLENCE: "S1 Violent Crimes",
    Category.SELF_HARM: "S11 Suicide & Self-Harm",
    Category.ILLICIT: "S2 Non-Violent Crimes",
    Category.PERSONAL_DATA: "S7 Privacy",
    Category.PROMPT_INJECTION: None,
    Category.SPAM: None,
    Category.CUSTOM: None,
}


class Target(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True)
class Evidence:
    """Why a score is high: a span of the text (character offsets into the text as given), or
    an image region (x, y, width, height in pixels)."""

    start: int | None = None
    end: int | None = None
    excerpt: str = ""
    region: tuple[int, int, int, int] | None = None
    detail: str = ""


@dataclass(frozen=True)
class Finding:
    category: Category
    score: float  # 0..1
    check: str  # the check's id
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class PublishedContact:
    """A contact value the project publishes itself (its support address, phone line, contact page): not
    personal data when it appears in a text. ``value`` is in the form it is compared in: an e-mail address
    lower-cased, a phone number in E.164 (``+18005550142``), a URL with its scheme and host lower-cased."""

    kind: str  # "email", "phone" or "url"
    value: str


@dataclass
class ScreenContext:
    """Per-project data a check may use: blocklist terms, the allow list, masking, language hints."""

    blocklist: Sequence["BlocklistTerm"] = ()
    options: dict[str, Any] = field(default_factory=dict)
    #: Words and phrases the project allows (normalised as the blocklist's terms are): a check that scores
    #: words must not count them against a text, and must still score the rest of it. Never a reason to
    #: drop a blocklist hit: the blocklist check ignores this.
    allowed_terms: Sequence[str] = ()
    #: Contact values the project publishes itself, which a personal-data check must not report.
    published_contacts: Sequence[PublishedContact] = ()


class RefusedValue(ValueError):
    """A value a check refuses to work with (a blocklist term, an allow-list entry): ``str(error)`` says why in
    English, as the API shows it; ``code`` is a stable word for the reason, namespaced with the check's id
    (``blocklist.regex_nests_quantifiers``), and ``params`` the values its message names, by which the dashboard
    says it in its reader's language (a plain ``ValueError`` keeps its English there)."""

    def __init__(self, message: str, *, code: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class BlocklistTerm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(min_length=1, max_length=500)
    is_regex: bool = False
    category: Category = Category.CUSTOM


class SafetyCheckManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    version: str
    name: str
    targets: frozenset[Target]
    modalities: frozenset[str] = frozenset({"text"})  # "text" and/or "image"
    categories: frozenset[Category]


class SafetyCheck(ABC):
    """Base class of safety checks. ``load`` once per process; ``check_texts`` for a batch."""

    manifest: ClassVar[SafetyCheckManifest]

    def load(self, device: str = "cpu") -> None:  # noqa: B027 - optional hook
        """Load models or compile data once."""

    def check_texts(self, texts: Sequence[str], context: ScreenContext) -> list[list[Finding]]:
        """One list of findings per text (empty: nothing found)."""
        return [[] for _ in texts]

    def check_images(self, images: Sequence[bytes], context: ScreenContext) -> list[list[Finding]]:
        """One list of findings per image (PNG/JPEG bytes)."""
        return [[] for _ in images]

    def validate_blocklist_term(self, term: BlocklistTerm) -> None:  # noqa: B027 - optional hook
        """Raise ValueError (saying why; ``RefusedValue`` to give the reason a code) for a term this check could
        not match safely; called when a project saves its blocklist, so that a bad term never reaches screening."""


class SafetyCheckBase(SafetyCheck, ABC):
    """Convenience: text checks implement ``check_text`` for one text."""

    @abstractmethod
    def check_text(self, text: str, context: ScreenContext) -> list[Finding]: ...

    def check_texts(self, texts: Sequence[str], context: ScreenContext) -> list[list[Finding]]:
        return [self.check_text(text, context) for text in texts]
