"""Loading any diffusers text-to-image pipeline directory, and running batches of images on it.

Imported by ``ImagePlugin.load`` only: it imports torch and diffusers at module level.

Reproducibility. Each image gets its own ``torch.Generator`` on the CPU, seeded with its own seed,
and the pipeline draws that image's starting noise (and any noise a stochastic scheduler adds)
from it alone. So an image depends on its prompt, settings and seed, not on which other images
shared its pipeline call or in which order; and CPU generators give the same noise whatever
device the model runs on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import MethodType
from typing import Any, Callable, Sequence

import torch
from atelier_sdk import PluginError

from atelier_plugins.text.generation import module_bytes

#: Component folders whose absence means "this model has no such part", not "this model is broken".
OPTIONAL_SAFETY_COMPONENTS = ("safety_checker", "feature_extractor")

#: Pipeline arguments that make a pipeline image-to-image (or inpainting, control) rather than text-to-image.
IMAGE_INPUTS = ("image", "mask_image", "control_image", "init_image")

#: One pipeline call renders at most this many pixels (eight 512x512 images): bigger groups are split,
#: which bounds device memory however a batch is composed.
PIXELS_PER_CALL = 8 * 512 * 512

#: transformers sets ``model_max_length`` to 1e30 when a tokenizer's files state no limit.
UNSTATED_TOKEN_LIMIT = 10**9

#: Configuration and weight files a model version is derived from, by suffix (component folders).
VERSIONED_SUFFIXES = (".json", ".txt", ".model", ".safetensors")
#: Of a weight file, the header (names, shapes, dtypes) and samples of this many bytes are hashed:
#: retrained weights change the samples, and hashing gigabytes on every load would not be acceptable.
WEIGHT_SAMPLE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ImageJob:
    """One image to render: which request and which of its images, with everything that shapes it."""

    request_index: int
    image_index: int
    job_id: str
    prompt: str
    negative_prompt: str
    seed: int


@dataclass
class RenderedImage:
    image: Any  # PIL.Image.Image
    safety_flagged: bool | None


@dataclass(frozen=True)
class TextCut:
    """The end of a prompt that the model does not read: its text encoders stop after ``limit`` tokens.

    ``tokens`` counts the whole text as the encoder that reads furthest tokenises it, its start and
    end tokens included (the figure the pipeline's own warning gives); ``dropped`` is the text
    after the last token read, as the user wrote it (it may begin inside a word the tokenizer split).
    """

    tokens: int
    limit: int
    dropped: str


@contextmanager
def quiet_progress_bars():
    """No loading or saving progress bars in worker logs; the caller's setting is restored after."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for module in (diffusers_logging, transformers_logging):
        if module.is_progress_bar_enabled():
            module.disable_progress_bar()
            restore.append(module)
    try:
        yield
    finally:
        for module in restore:
            module.enable_progress_bar()


def choose_dtype(device: str) -> torch.dtype:
    """Half precision on CUDA (bfloat16 where the GPU has it: no fp16 overflow), float32 elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def model_version(model_dir: Path) -> str:
    """The directory's name and a short hash of its configuration and weights.

    Hashes ``model_index.json`` and, in the component folders, every config, vocabulary and
    safetensors file (for weights: the header and samples from the start, middle and end). Files
    other tools leave at the top (READMEs, markers) do not change the version.
    """
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if not path.is_file():
            continue
        if len(relative.parts) == 1 and relative.name != "model_index.json":
            continue
        if path.suffix not in VERSIONED_SUFFIXES:
            continue
        digest.update(relative.as_posix().encode() + b"\x00")
        if path.suffix == ".safetensors":
            _hash_weights(path, digest)
        else:
            digest.update(path.read_bytes())
    return f"{model_dir.name}-{digest.hexdigest()[:12]}"


def _hash_weights(path: Path, digest) -> None:
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        digest.update(handle.read(min(header_length, size)))
        for offset in (0, size // 2, max(0, size - WEIGHT_SAMPLE_BYTES)):
            handle.seek(offset)
            digest.update(handle.read(WEIGHT_SAMPLE_BYTES))


def _read_model_index(model_dir: Path) -> dict:
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        raise PluginError(
            f"{model_dir} is not a diffusers pipeline directory (it has no model_index.json). Point the "
            "project's image model at a directory saved with `pipeline.save_pretrained(...)`, such as a "
            "Stable Diffusion checkpoint in diffusers format, or run `python manage.py prepare_demo`.",
            code="model_missing",
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PluginError(f"{index_path} cannot be read as JSON ({exc}); the model directory is damaged.",
                          code="model_error") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise PluginError(f"{index_path} names no pipeline class (_class_name); the model directory is damaged.",
                          code="model_error")
    return index


def _component_present(index: dict, model_dir: Path, name: str) -> bool:
    entry = index.get(name)
    declared = isinstance(entry, (list, tuple)) and len(entry) == 2 and all(entry)
    return declared and (model_dir / name).is_dir()


def _safety_overrides(index: dict, model_dir: Path) -> dict[str, Any]:
    """``None`` for the safety components the pipeline class expects but the directory lacks.

    Such a checkpoint was published without a safety checker; passing ``None`` loads it as it is
    instead of failing on the missing folder. A checker the directory has is always kept.
    """
    import diffusers

    pipeline_class = getattr(diffusers, str(index["_class_name"]), None)
    if pipeline_class is None:
        return {}
    accepted = inspect.signature(pipeline_class.__init__).parameters
    overrides: dict[str, Any] = {}
    for name in OPTIONAL_SAFETY_COMPONENTS:
        if name in accepted and not _component_present(index, model_dir, name):
            overrides[name] = None
    if "safety_checker" in overrides and "requires_safety_checker" in accepted:
        overrides["requires_safety_checker"] = False
    return overrides


def _text_readers(pipeline, call_parameters: set[str]) -> list[tuple[Any, int]]:
    """The pipeline's tokenizers, each with how many tokens (start and end tokens included) its encoder reads.

    A CLIP encoder reads its tokenizer's ``model_max_length`` (77 in Stable Diffusion). Pipelines
    whose call takes ``max_sequence_length`` (SD3, Flux, PixArt) cut their other encoder (T5) at
    that argument's default instead, which the plugin never overrides. A tokenizer that states no
    limit (transformers' "very large" placeholder) is taken to read everything.
    """
    max_sequence_length = None
    if "max_sequence_length" in call_parameters:
        default = inspect.signature(pipeline.__call__).parameters["max_sequence_length"].default
        max_sequence_length = default if isinstance(default, int) else None
    readers = []
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = getattr(pipeline, name, None)
        if tokenizer is None or not callable(tokenizer):
            continue
        limit = tokenizer.model_max_length
        if max_sequence_length is not None and "CLIP" not in type(tokenizer).__name__:
            limit = max_sequence_length
        if isinstance(limit, int) and limit < UNSTATED_TOKEN_LIMIT:
            readers.append((tokenizer, limit))
    return readers


def _has_offsets(tokenizer) -> bool:
    """Whether the tokenizer maps tokens back to characters (transformers' tokenizers-backed ones do)."""
    return bool(getattr(tokenizer, "is_fast", False))


def _needs_an_input_image(pipeline) -> bool:
    """True for image-to-image, inpainting and control pipelines: they take an image beside the prompt.

    Pipelines diffusers lists as text-to-image never do, even when they accept an optional image
    (IP-Adapter); any other pipeline that takes an ``image``-like argument is taken to need it.
    """
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    if type(pipeline) in set(AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values()):
        return False
    parameters = inspect.signature(pipeline.__call__).parameters
    return any(name in parameters for name in IMAGE_INPUTS)


class TextToImageModel:
    """A loaded diffusers text-to-image pipeline, its native size and what its ``__call__`` accepts."""

    def __init__(self, pipeline, model_dir: Path, device: str) -> None:
        self.pipeline = pipeline
        self.model_dir = model_dir
        self.device = device
        self.version = model_version(model_dir)
        self.call_parameters = set(inspect.signature(pipeline.__call__).parameters)
        self.vae_scale_factor = int(getattr(pipeline, "vae_scale_factor", None) or 8)
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        patch = getattr(getattr(denoiser, "config", None), "patch_size", None)
        # Latents are vae_scale_factor times smaller than the image, and transformer models cut them
        # into patches: the image size must be a multiple of both (and of 8, which every pipeline checks).
        step = self.vae_scale_factor * (patch if isinstance(patch, int) and patch > 0 else 1)
        self.size_multiple = step * 8 // math.gcd(step, 8)
        self.native_width, self.native_height = self._native_size(denoiser)
        self.text_readers = _text_readers(pipeline, self.call_parameters)

    @classmethod
    def load(cls, model_dir: Path, device: str) -> "TextToImageModel":
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        index = _read_model_index(model_dir)
        options = {"local_files_only": True, "use_safetensors": True, "dtype": choose_dtype(device)}
        try:
            with quiet_progress_bars():
                pipeline = DiffusionPipeline.from_pretrained(model_dir, **options, **_safety_overrides(index, model_dir))
        except (OSError, ValueError, EnvironmentError) as exc:
            raise PluginError(
                f"Cannot load the diffusers pipeline in {model_dir}: {exc}. The directory must hold a complete "
                "pipeline saved with safetensors weights (pickled .bin weights are not loaded).",
                code="model_error",
            ) from None
        if "prompt" not in inspect.signature(pipeline.__call__).parameters:
            raise PluginError(f"{type(pipeline).__name__} in {model_dir} does not take a text prompt.", code="model_error")
        if _needs_an_input_image(pipeline):
            # An image-to-image or inpainting checkpoint: the same weights often make a text-to-image
            # pipeline (Stable Diffusion does), which AutoPipelineForText2Image knows how to build.
            try:
                pipeline = AutoPipelineForText2Image.from_pipe(pipeline)
            except Exception:
                raise PluginError(
                    f"{type(pipeline).__name__} in {model_dir} needs an input image; the image plugin makes "
                    "images from text only. Choose a text-to-image model.",
                    code="model_error",
                ) from None
        pipeline.set_progress_bar_config(disable=True)
        pipeline.to(device)
        if torch.device(device).type == "cpu":
            _make_batch_invariant(pipeline)
        return cls(pipeline, model_dir, device)

    def _native_size(self, denoiser) -> tuple[int, int]:
        default = getattr(self.pipeline, "default_sample_size", None)
        if default is None:
            default = getattr(getattr(denoiser, "config", None), "sample_size", None)
        if isinstance(default, int):
            return default * self.vae_scale_factor, default * self.vae_scale_factor
        if isinstance(default, (list, tuple)) and len(default) == 2:
            return int(default[1]) * self.vae_scale_factor, int(default[0]) * self.vae_scale_factor
        return 512, 512  # the size of the original Stable Diffusion, when a model states none

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this model cannot render ``width`` x ``height``, or None when it can."""
        if width % self.size_multiple or height % self.size_multiple:
            return (
                f"This model makes images whose width and height are multiples of {self.size_multiple}; "
                f"{width}x{height} is not. Try {_nearest(width, self.size_multiple)}x"
                f"{_nearest(height, self.size_multiple)}."
            )
        return None

    def supports(self, argument: str) -> bool:
        return argument in self.call_parameters

    def text_cut(self, text: str) -> TextCut | None:
        """What of ``text`` no text encoder of this model reads, or None when one reads all of it.

        The pipeline truncates each encoder's tokens at its limit and only logs a warning (CLIP:
        77 tokens, the first and last of them its start and end tokens); the images then ignore
        the rest of the prompt. Of several encoders (SDXL's two CLIPs, SD3's CLIPs and T5), the
        one that reads furthest decides what is lost altogether.
        """
        furthest: TextCut | None = None
        for tokenizer, limit in self.text_readers:
            special = tokenizer.num_special_tokens_to_add(pair=False)
            room = limit - special
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=_has_offsets(tokenizer))
            ids = encoded["input_ids"]
            if len(ids) <= room:
                return None
            if "offset_mapping" in encoded:
                dropped = text[encoded["offset_mapping"][room][0]:]
            else:  # a tokenizer that cannot map tokens to characters: its own spelling of what it drops
                dropped = tokenizer.decode(ids[room:])
            dropped = dropped.strip()
            if furthest is None or len(dropped) < len(furthest.dropped):
                furthest = TextCut(tokens=len(ids) + special, limit=limit, dropped=dropped)
        return furthest

    def images_per_call(self, width: int, height: int) -> int:
        return max(1, PIXELS_PER_CALL // (width * height))

    def render(
        self,
        jobs: Sequence[ImageJob],
        *,
        width: int,
        height: int,
        steps: int,
        guidance: float,
        on_step: Callable[[int, int], None] | None = None,
    ) -> list[RenderedImage]:
        """Render ``jobs`` (same size and settings) in one pipeline call, one generator per image.

        Either every job has a negative prompt or none has: given negative prompts, the pipeline
        encodes "" for a job without one, which SDXL-type pipelines (force_zeros_for_empty_prompt)
        would otherwise replace by zeros, so mixing them would make an image depend on its batch.

        ``on_step(step, total_steps)`` runs after each denoising step (1-based); an exception it
        raises stops the call and propagates.
        """
        if len({bool(job.negative_prompt) for job in jobs}) > 1:
            raise RuntimeError("jobs with and without a negative prompt must be rendered in separate calls")
        arguments: dict[str, Any] = {
            "prompt": [job.prompt for job in jobs],
            "num_inference_steps": steps,
            "generator": [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs],
            "output_type": "pil",
        }
        if self.supports("width") and self.supports("height"):
            arguments.update(width=width, height=height)
        if self.supports("guidance_scale"):
            arguments["guidance_scale"] = guidance
        if self.supports("negative_prompt") and jobs and jobs[0].negative_prompt:
            arguments["negative_prompt"] = [job.negative_prompt for job in jobs]
        if on_step is not None and self.supports("callback_on_step_end"):
            def step_end(pipeline, index, timestep, tensors):
                total = getattr(pipeline, "num_timesteps", None) or steps
                on_step(index + 1, total)
                return {}

            arguments["callback_on_step_end"] = step_end
            if self.supports("callback_on_step_end_tensor_inputs"):
                arguments["callback_on_step_end_tensor_inputs"] = []
        with self._batch_invariant_kernels():
            result = self.pipeline(**arguments)
        flags = getattr(result, "nsfw_content_detected", None)
        return [
            RenderedImage(image=image.convert("RGB"), safety_flagged=None if flags is None else bool(flags[position]))
            for position, image in enumerate(result.images)
        ]

    def _batch_invariant_kernels(self):
        """On CPU, convolutions that give each image the same result whatever the batch size.

        oneDNN (mkldnn) picks a different convolution algorithm for a batch of one than for larger
        batches, and the two round differently: an image rendered alone would differ by a few
        pixel levels from the same image rendered in a batch. PyTorch's own convolution computes
        each image separately, so it does not. (``_make_batch_invariant`` does the same for the
        pipeline's matrix products and its image decoder, at load.) On CUDA, cuDNN's choice of
        algorithm is per shape too, and half precision rounds coarser: there the same seed gives
        the same image, but not always to the last bit across batch compositions.
        """
        if torch.device(self.device).type == "cpu":
            return _onednn_disabled()
        return nullcontext()

    def memory_bytes(self) -> int:
        """Bytes of the parameters and buffers of every module of the pipeline, as loaded."""
        modules = [c for c in self.pipeline.components.values() if isinstance(c, torch.nn.Module)]
        return module_bytes(modules)

    def unload(self) -> None:
        self.pipeline = None
        if torch.device(self.device).type == "cuda":
            torch.cuda.empty_cache()


def _make_batch_invariant(pipeline) -> None:
    """Make a CPU pipeline compute each image as it would alone, whatever else shares its call.

    MKL's matrix product picks its kernel by the number of rows, and the kernels round differently: the
    time embedding of an image in a batch of four differed in the last bit from the same image in a batch
    of two, and the pixels by one level in the end (seen on an AMD EPYC; the Intel machines used before
    happened to agree). So every linear layer multiplies one sample at a time, the same product an image
    alone gets (on a CPU a sample's product is large enough that the loop costs little), and the image
    decoder decodes one image at a time (diffusers' slicing; its group norms differed otherwise).
    """
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            for module in component.modules():
                if isinstance(module, torch.nn.Linear):
                    module.forward = MethodType(_linear_one_sample_at_a_time, module)
    decoder = getattr(pipeline, "vae", None)
    if decoder is not None and hasattr(decoder, "enable_slicing"):
        decoder.enable_slicing()


def _linear_one_sample_at_a_time(self: torch.nn.Linear, samples: torch.Tensor) -> torch.Tensor:
    if samples.dim() < 2 or samples.shape[0] < 2:
        return torch.nn.functional.linear(samples, self.weight, self.bias)
    return torch.cat([torch.nn.functional.linear(sample, self.weight, self.bias) for sample in samples.split(1)])


@contextmanager
def _onednn_disabled():
    # Set the flag itself: torch.backends.mkldnn.flags() also resets TF32 settings, with a warning each call.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def _nearest(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)
