"""The text-to-image plugin: any diffusers text-to-image pipeline, PNGs labelled as AI-generated.

Input: a prompt (and a negative prompt), size, steps, guidance, seed and how many images. Each
image is one output with two files, the PNG and a thumbnail, both carrying the generation
metadata and the "AI-generated" label (see ``atelier_plugins.image.png``).

Batching: the images of every request in a batch that share size, steps and guidance, and either
all have a negative prompt or all have none, are rendered together, in as few pipeline calls as
memory allows, each image with its own random generator. Image ``i`` of a job uses seed
``job seed + i``, so a job gives the same pixels whether it ran alone or beside others, and any
single image can be made again from its reported seed. A regeneration (a reviewer sent the images
back) starts from its job's new seed, not from a seed the input names.

Long prompts. A text encoder reads a fixed number of tokens (CLIP: 77) and the pipeline drops the
rest with only a log line. Only the loaded model knows its tokenizer, so the input is not refused
at submission; instead each output names what was ignored (``prompt_truncated``: tokens, limit and
the dropped text; ``negative_prompt_truncated``) and its PNG carries ``prompt_tokens_read``.

This module is imported by the web process to publish the schemas: it must not import torch or
diffusers at module level (``load`` and ``generate`` do, through ``atelier_plugins.image.pipeline``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Literal, Sequence

from atelier_sdk import (
    Artifact,
    GenerationRequest,
    ItemResult,
    JobCancelled,
    Manifest,
    Modality,
    OutputItem,
    Plugin,
    PluginError,
    ResourceClass,
    RunContext,
    input_error,
    is_out_of_memory,
    require_model_dir,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from atelier_plugins.image.png import AI_LABEL, encode_png, provenance_chunks, thumbnail_of

MAX_SEED = 2**31 - 1
SEED_SPACE = 2**31

#: Progress reported while denoising runs up to this fraction; decoding and PNG encoding finish it.
DENOISING_SHARE = 0.95


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=1000, description="What the image should show.")
    negative_prompt: str = Field(
        default="", max_length=1000,
        description="What the image should not show (models that support it; needs guidance above 1).",
    )
    width: int | None = Field(
        default=None, ge=32, le=1024, multiple_of=8,
        description="Image width in pixels, a multiple of 8. Empty: the model's native size "
                    "(512 for Stable Diffusion 1.x, 1024 for SDXL, 32 for the demo digits model).",
    )
    height: int | None = Field(
        default=None, ge=32, le=1024, multiple_of=8,
        description="Image height in pixels, a multiple of 8. Empty: the model's native size.",
    )
    steps: int = Field(default=25, ge=1, le=100, description="Denoising steps: more is slower and often finer.")
    guidance: float = Field(
        default=7.5, ge=0.0, le=20.0,
        description="Classifier-free guidance scale: how closely to follow the prompt (1 or less turns it off).",
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED,
        description="Same seed, same images. Image i uses seed + i. Empty: the job's own seed. "
                    "A regeneration from the review queue draws new images from its job's own seed.",
    )
    count: int = Field(default=1, ge=1, le=4, description="How many images to make.")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_words(cls, prompt: str) -> str:
        if not prompt.strip():
            raise input_error("image.prompt_blank", "the prompt must say what to draw; it is only whitespace")
        return prompt

    @field_validator("guidance")
    @classmethod
    def _guidance_uses_the_negative_prompt(cls, guidance: float, info: ValidationInfo) -> float:
        # The negative prompt takes effect through classifier-free guidance, which a scale of 1 or
        # less turns off: the pipeline would drop it without a word and draw what it was asked not to.
        if guidance <= 1 and info.data.get("negative_prompt", "").strip():
            raise input_error(
                "image.negative_prompt_needs_guidance",
                "a negative prompt needs guidance above 1 (guidance 1 or less ignores it); "
                "raise guidance or leave negative_prompt empty",
            )
        return guidance


class PromptTruncation(BaseModel):
    """The end of a prompt the model did not read: its text encoder reads a fixed number of tokens."""

    tokens: int = Field(
        description="Tokens in the prompt as the model's tokenizer counts them, its start and end tokens included.",
    )
    limit: int = Field(description="Tokens the model's text encoder reads; the images ignore the rest.")
    dropped: str = Field(description="The text after the last token read, as written (it may begin inside a word).")


class ImageOutput(BaseModel):
    index: int = Field(description="Which of the job's images this is, from 0.")
    width: int
    height: int
    seed: int = Field(description="The seed of this image: submit it with count 1 to make this image again.")
    steps: int
    guidance: float
    prompt_sha256: str = Field(description="SHA-256 of the prompt (UTF-8), also written into the PNG.")
    negative_prompt_sha256: str | None = Field(
        default=None, description="SHA-256 of the negative prompt (UTF-8), also written into the PNG; null without one.",
    )
    model_version: str = Field(description="The model directory's name and a short hash of its configuration and weights.")
    prompt_truncated: PromptTruncation | None = Field(
        default=None,
        description="Null when the model read the whole prompt; otherwise how many tokens it read and the text it "
                    "ignored. Shorten the prompt (or move what matters to its start) to have all of it read.",
    )
    negative_prompt_truncated: PromptTruncation | None = Field(
        default=None, description="The same for the negative prompt; null without one or when it was read whole.",
    )
    label: Literal["AI-generated"] = AI_LABEL
    model_safety_flagged: bool | None = Field(
        default=None,
        description="True when the model's own safety checker replaced this image with a black one; "
                    "null when the model has no safety checker.",
    )


def job_seed_of(request: GenerationRequest) -> int:
    """The seed image 0 of a job starts from: the input's seed, or the job's own.

    A regeneration (a reviewer sent the images back) takes the job's new seed even when the input
    names one: the input's seed would draw the rejected images again, pixel for pixel.
    """
    data: ImageInput = request.input
    return data.seed if data.seed is not None and request.regeneration is None else request.seed


def image_seed(job_seed: int, index: int) -> int:
    """The seed of image ``index`` of a job: ``job seed + index``, wrapped to stay a valid input seed."""
    return (job_seed + index) % SEED_SPACE


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class _ChunkCancelled(Exception):
    """Every job of the images being rendered was cancelled: stop this pipeline call."""


class ImagePlugin(Plugin):
    manifest = Manifest(
        id="image",
        version="1.0.0",
        name="Text to image",
        description=(
            "Makes images from a text prompt with a diffusers text-to-image pipeline (Stable Diffusion "
            "or any compatible checkpoint). PNG files with a thumbnail, generation metadata and an "
            "embedded AI-generated label."
        ),
        modality=Modality.IMAGE,
        resource_class=ResourceClass.GPU,
        max_batch_size=4,
        time_limit_s=600,
        default_model_dir="demo/image-digits",
    )
    Input = ImageInput
    Output = ImageOutput

    model = None

    @classmethod
    def batch_key(cls, input: "ImageInput", params) -> tuple:
        # One pipeline call renders images of one size, step count and guidance scale.
        return (input.width, input.height, input.steps, input.guidance)

    def load(self, device: str, model_dir: Path | None) -> None:
        model_dir = require_model_dir(model_dir, "a diffusers text-to-image pipeline, such as a Stable Diffusion checkpoint")
        from atelier_plugins.image.pipeline import TextToImageModel

        self.model = TextToImageModel.load(model_dir, device)

    def unload(self) -> None:
        if self.model is not None:
            self.model.unload()
        self.model = None

    def memory_bytes(self) -> int | None:
        # What the pipeline's modules hold as loaded (in the dtype chosen for the device), which the
        # model files' size is not: the worker's model cache budgets with this figure.
        return self.model.memory_bytes() if self.model is not None else 0

    def generate(self, batch: Sequence[GenerationRequest], context: RunContext) -> list[ItemResult]:
        if self.model is None:
            raise PluginError("The image model is not loaded; call load() first.", code="model_missing")
        from atelier_plugins.image.pipeline import ImageJob

        model = self.model
        results: list[ItemResult | None] = [None] * len(batch)
        # One pipeline call per render group. Jobs with and without a negative prompt never share one:
        # a call that takes negative prompts gives "" to the jobs that have none, and an SDXL-type
        # pipeline (force_zeros_for_empty_prompt) encodes "" where it would otherwise use zeros, so
        # such a job's image would change with its batch-mates.
        groups: dict[tuple[int, int, int, float, bool], list[ImageJob]] = defaultdict(list)
        for position, request in enumerate(batch):
            data: ImageInput = request.input
            if context.is_cancelled(request.job_id):
                results[position] = _cancelled()
                continue
            width = data.width or model.native_width
            height = data.height or model.native_height
            problem = model.size_problem(width, height)
            if problem is None and data.negative_prompt and not model.supports("negative_prompt"):
                problem = "This model does not take a negative prompt; leave negative_prompt empty."
            if problem is not None:
                results[position] = PluginError(problem, code="invalid_input")
                continue
            job_seed = job_seed_of(request)
            for index in range(data.count):
                groups[(width, height, data.steps, data.guidance, bool(data.negative_prompt))].append(ImageJob(
                    request_index=position, image_index=index, job_id=request.job_id, prompt=data.prompt,
                    negative_prompt=data.negative_prompt, seed=image_seed(job_seed, index),
                ))

        rendered: dict[tuple[int, int], object] = {}
        failed: dict[int, PluginError] = {}
        cancelled: set[int] = set()
        done_steps: dict[int, float] = defaultdict(float)
        for (width, height, steps, guidance, _), jobs in groups.items():
            pending = list(jobs)
            per_call = model.images_per_call(width, height)
            while pending:
                pending = [job for job in pending if job.request_index not in failed and job.request_index not in cancelled]
                chunk, pending = pending[:per_call], pending[per_call:]
                if not chunk:
                    break
                try:
                    images = self._render_chunk(
                        chunk, batch, context, done_steps, width=width, height=height, steps=steps, guidance=guidance
                    )
                except _ChunkCancelled:
                    cancelled.update(job.request_index for job in chunk)
                    continue
                except _TooLarge as error:
                    if len(chunk) > 1 and per_call > 1:
                        per_call = max(1, len(chunk) // 2)  # out of device memory: retry in smaller calls
                        pending = chunk + pending
                        continue
                    for job in chunk:
                        failed[job.request_index] = PluginError(str(error), code="out_of_memory")
                    continue
                except ValueError as error:  # the pipeline refused these settings
                    for job in chunk:
                        failed[job.request_index] = PluginError(f"The model cannot make this image: {error}",
                                                                code="invalid_input")
                    continue
                for job, image in zip(chunk, images):
                    rendered[(job.request_index, job.image_index)] = image
                cancelled.update(job.request_index for job in chunk if context.is_cancelled(job.job_id))

        for position, request in enumerate(batch):
            if results[position] is not None:
                continue
            if position in cancelled or context.is_cancelled(request.job_id):
                results[position] = _cancelled()
            elif position in failed:
                results[position] = failed[position]
            else:
                results[position] = self._outputs(position, request, rendered, model)
                context.report_progress(request.job_id, 1.0, step=request.input.steps, steps=request.input.steps)
        if batch and all(isinstance(result, PluginError) and result.code == "cancelled" for result in results):
            raise JobCancelled(batch[0].job_id)
        return results

    def _render_chunk(self, chunk, batch, context: RunContext, done_steps, *, width, height, steps, guidance):
        """One pipeline call; reports each job's progress per step and stops when all its jobs are cancelled."""

        images_in_chunk: dict[int, int] = defaultdict(int)
        for job in chunk:
            images_in_chunk[job.request_index] += 1
        job_ids = {job.request_index: job.job_id for job in chunk}

        def on_step(step: int, total_steps: int) -> None:
            live = [index for index, job_id in job_ids.items() if not context.is_cancelled(job_id)]
            if not live:
                raise _ChunkCancelled()
            for index in live:
                request = batch[index]
                # A job's work is its images times its steps; this call advances it by one step of its
                # images here (a scheduler may take more timesteps than steps: count those instead).
                done_steps[index] += images_in_chunk[index] * steps / total_steps
                fraction = done_steps[index] / (request.input.count * steps)
                context.report_progress(job_ids[index], DENOISING_SHARE * fraction, step=step, steps=total_steps)

        progress_before = {index: done_steps[index] for index in images_in_chunk}
        try:
            return self.model.render(chunk, width=width, height=height, steps=steps, guidance=guidance, on_step=on_step)
        except (_ChunkCancelled, ValueError):
            raise
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                done_steps.update(progress_before)  # these images will be rendered again, in smaller calls
                _free_device_memory()
                raise _TooLarge(
                    f"{width}x{height} images do not fit in the device's memory; ask for a smaller size."
                ) from None
            raise

    @staticmethod
    def _outputs(position: int, request: GenerationRequest, rendered, model) -> list[OutputItem]:
        """The job's images as outputs: content, the labelled PNG and its labelled thumbnail."""
        data: ImageInput = request.input
        job_seed = job_seed_of(request)
        digest = prompt_sha256(data.prompt)
        negative_digest = prompt_sha256(data.negative_prompt) if data.negative_prompt else None
        # The pipeline cuts a prompt longer than its text encoder reads and only logs it: say so where
        # the submitter and the reviewer look, or an image that ignored half the prompt passes unexplained.
        cut = _truncation(model.text_cut(data.prompt))
        negative_cut = _truncation(model.text_cut(data.negative_prompt)) if data.negative_prompt else None
        items = []
        for index in range(data.count):
            picture = rendered[(position, index)]
            width, height = picture.image.size
            seed = image_seed(job_seed, index)
            content = ImageOutput(
                index=index, width=width, height=height, seed=seed, steps=data.steps, guidance=data.guidance,
                prompt_sha256=digest, negative_prompt_sha256=negative_digest, model_version=model.version,
                model_safety_flagged=picture.safety_flagged, prompt_truncated=cut,
                negative_prompt_truncated=negative_cut,
            )
            metadata = provenance_chunks(
                prompt_sha256=digest, seed=seed, steps=data.steps, guidance=data.guidance,
                model_version=model.version, width=width, height=height, negative_prompt_sha256=negative_digest,
                prompt_tokens_read=_tokens_read(cut), negative_prompt_tokens_read=_tokens_read(negative_cut),
            )
            items.append(OutputItem(content, artifacts=[
                Artifact(name=f"image-{index}.png", media_type="image/png",
                         data=encode_png(picture.image, metadata), role="primary"),
                Artifact(name=f"image-{index}-thumbnail.png", media_type="image/png",
                         data=encode_png(thumbnail_of(picture.image), metadata), role="thumbnail"),
            ]))
        return items


class _TooLarge(Exception):
    pass


def _truncation(cut) -> PromptTruncation | None:
    return None if cut is None else PromptTruncation(tokens=cut.tokens, limit=cut.limit, dropped=cut.dropped)


def _tokens_read(truncation: PromptTruncation | None) -> str | None:
    return None if truncation is None else f"{truncation.limit} of {truncation.tokens}"


def _cancelled() -> PluginError:
    return PluginError("The job was cancelled while it ran.", code="cancelled")


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
