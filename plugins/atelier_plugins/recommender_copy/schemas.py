"""Input, params and output of ``recommender_copy``: their JSON Schemas are the public contract."""

from __future__ import annotations

from typing import Annotated, Literal

from atelier_sdk import editable, input_error
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SEED = 2**31 - 1

ItemRef = Annotated[str, Field(min_length=1, max_length=200, description="an item id or title")]
Tag = Annotated[str, Field(min_length=1, max_length=40)]
AttributeName = Annotated[str, Field(min_length=1, max_length=40)]
AttributeValue = Annotated[str, Field(max_length=200)]
BannedWord = Annotated[str, Field(min_length=1, max_length=50)]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interests: str = Field(default="", max_length=2000, description="what the shopper likes, in their words")
    recent_items: list[ItemRef] = Field(
        default_factory=list,
        max_length=50,
        description="ids or titles of items recently bought or viewed: they shape the profile and are not recommended again",
    )


class CatalogueItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, max_length=20, description="facts such as material, colour, dimensions"
    )

    @field_validator("id", "title")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise input_error("recommender_copy.blank", "must not be blank")
        return value


class RecommenderInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: Profile = Field(default_factory=Profile)
    items: list[CatalogueItem] = Field(min_length=1, max_length=200, description="candidate items to rank")
    count: int = Field(default=3, ge=1, le=10, description="how many items to recommend")
    variants: int = Field(default=2, ge=1, le=5, description="copy variants per recommended item")
    tone: Literal["friendly", "premium", "playful", "concise"] = "friendly"
    language: Literal["en", "zh"] = "en"

    @model_validator(mode="after")
    def _item_ids_are_unique(self) -> "RecommenderInput":
        seen: set[str] = set()
        duplicates = sorted({item.id for item in self.items if item.id in seen or seen.add(item.id)})
        if duplicates:
            raise input_error("recommender_copy.duplicate_item_ids", "item ids must be unique; repeated: {ids}",
                              ids=", ".join(duplicates[:10]))
        return self


class RecommenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brand_voice: str = Field(default="", max_length=1000, description="how the brand speaks; given to the copywriter")
    banned_words: list[BannedWord] = Field(
        default_factory=list,
        max_length=500,
        description="never in the copy: case-insensitive, whole words for Latin scripts with their inflections "
        "(cheap: cheaper, cheapest; guarantee: guaranteed; for words of 4 letters or more), substrings for CJK",
    )
    max_chars: int = Field(default=220, ge=20, le=1000, description="longest copy text, in characters")
    diversity: float = Field(
        default=0.3, ge=0, le=1,
        description="0 ranks by relevance only; higher values avoid near-duplicate items (above 0, an item "
        "identical to one already recommended comes only after all the others)",
    )
    temperature: float = Field(default=0.8, ge=0, le=2)
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED,
        description="same seed, same copy; overrides the job's seed, except in a regeneration from the review queue",
    )


class CopyVariant(BaseModel):
    # A reviewer may rewrite the copy; the ranking (rank, item, score), the profile summary and how each
    # variant was made (repaired, issues_fixed, source, attempts) record the run and stay as written.
    text: str = editable(description="The copy. The one field of an output a reviewer may change.")
    repaired: bool = Field(description="the model's first draft broke a rule and was regenerated or edited")
    issues_fixed: list[str] = Field(default_factory=list, description="what was wrong and how it was fixed")
    source: Literal["model", "edited", "template"] = Field(
        default="model",
        description="model: the model's text as written; edited: the model's text after rule-based edits; "
        "template: built from the item's facts because no model text was acceptable",
    )
    attempts: int = Field(default=1, ge=0, description="drafts the model wrote for this variant")


class Recommendation(BaseModel):
    # The public field is "copy", which would shadow BaseModel.copy(); keep a safe attribute name
    # and publish, validate and serialise under the alias.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    rank: int = Field(ge=1)
    item_id: str
    title: str
    score: float = Field(
        description="relevance to the profile: embedding cosine blended with word overlap (higher is better)"
    )
    copy_variants: list[CopyVariant] = Field(alias="copy", description="copy variants for this item")


class RecommenderOutput(BaseModel):
    recommendations: list[Recommendation]
    profile_summary: str | None = None
