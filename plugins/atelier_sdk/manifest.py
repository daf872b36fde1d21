"""What a plugin declares about itself."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ResourceClass(StrEnum):
    """Which worker pool runs the plugin: its jobs are routed to the queue of this name."""

    GPU = "gpu"
    CPU = "cpu"


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    RANKED_TEXT = "ranked_text"
    STRUCTURED = "structured"


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$", description="stable identifier used in the API")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([.+-][0-9A-Za-z.+-]+)?$", description="semantic version")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    modality: Modality
    resource_class: ResourceClass
    max_batch_size: int = Field(default=1, ge=1, le=1024)
    time_limit_s: int = Field(default=600, ge=1, le=86_400, description="a job running longer is stopped")
    max_attempts: int = Field(default=3, ge=1, le=20, description="runs of one job, retries included")
    default_model_dir: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$",
        description="model directory relative to the models root, used when a project pins none",
    )

