"""The image plugin: schemas, sizes, seeds across batches, progress, cancellation, PNG provenance.

A tiny Stable Diffusion pipeline with random weights is built once per module (see
``tests.support.tiny_diffusion``); the demo model is not needed, except for one short check that
its recipe saves a directory the plugin loads.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
from atelier_sdk import (
    GenerationRequest, JobCancelled, NoParams, OutputItem, PluginError, Regeneration, RunContext, validate_plugin_class,
)
from PIL import Image
from pydantic import ValidationError

from atelier_plugins.image import is_labelled_ai_generated, read_png_metadata
from atelier_plugins.image.plugin import ImageInput, ImageOutput, ImagePlugin, PromptTruncation
from atelier_plugins.image.png import DIGITAL_SOURCE_TYPE, XMP_KEY
from tests.support.tiny_diffusion import TINY_NATIVE_SIZE, TINY_SIZE_MULTIPLE, build_tiny_sd_pipeline

STEPS = 3  # enough steps for a stochastic scheduler to matter, few enough to stay fast


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def image_plugin(tiny_model_dir):
    plugin = ImagePlugin()
    plugin.load("cpu", tiny_model_dir)
    yield plugin
    plugin.unload()


def request(job_id, prompt="a red cat on a mat", *, job_seed=0, **fields):
    fields.setdefault("steps", STEPS)
    return GenerationRequest(job_id=job_id, input=ImageInput(prompt=prompt, **fields), params=NoParams(), seed=job_seed)


def make_context(progress=None, cancelled=()):
    def on_progress(job_id, fraction, detail):
        if progress is not None:
            progress.append((job_id, fraction, detail))

    return RunContext("cpu", on_progress=on_progress, is_cancelled=lambda job_id: job_id in cancelled)


def primary(item: OutputItem):
    return next(artifact for artifact in item.artifacts if artifact.role == "primary")


def pixels(item: OutputItem) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(primary(item).data)).convert("RGB"))


# --- schemas and manifest ---------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"width": 100},  # not a multiple of 8
    {"height": 36},
    {"width": 24},  # below the minimum
    {"height": 1032},  # above the maximum
    {"count": 5},
    {"count": 0},
    {"steps": 0},
    {"steps": 101},
    {"guidance": 20.5},
    {"guidance": -1},
    {"seed": -1},
    {"seed": 2**31},
    {"prompt": ""},
    {"prompt": "   "},
    {"prompt": "x" * 1001},
    {"negative_prompt": "x" * 1001},
    {"style": "oil painting"},  # unknown fields are refused, not ignored
])
def test_input_outside_its_limits_is_refused(fields):
    data = {"prompt": "a lighthouse at dusk", **fields}
    with pytest.raises(ValidationError):
        ImageInput.model_validate(data)


def test_a_negative_prompt_with_guidance_that_would_ignore_it_is_refused():
    # Classifier-free guidance is what applies a negative prompt; at 1 or less the pipeline drops it.
    with pytest.raises(ValidationError, match="negative prompt needs guidance above 1"):
        ImageInput(prompt="a lighthouse at dusk", negative_prompt="blurry", guidance=1.0)
    assert ImageInput(prompt="a lighthouse at dusk", guidance=1.0).guidance == 1.0
    assert ImageInput(prompt="a lighthouse at dusk", negative_prompt="blurry", guidance=1.5).guidance == 1.5


def test_input_defaults_leave_the_size_to_the_model():
    data = ImageInput(prompt="a lighthouse at dusk")
    assert (data.width, data.height, data.steps, data.guidance, data.seed, data.count, data.negative_prompt) == (
        None, None, 25, 7.5, None, 1, ""
    )
    schema = ImagePlugin.input_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]


def test_manifest_declares_a_gpu_image_plugin_with_the_demo_model():
    plugin_class = validate_plugin_class(ImagePlugin)
    manifest = plugin_class.manifest
    assert (manifest.id, manifest.version, manifest.modality, manifest.resource_class) == ("image", "1.0.0", "image", "gpu")
    assert (manifest.max_batch_size, manifest.time_limit_s, manifest.default_model_dir) == (4, 600, "demo/image-digits")
    assert ImagePlugin.output_schema()["properties"]["label"]["const"] == "AI-generated"


def test_importing_the_plugin_module_does_not_import_torch_or_diffusers():
    code = (
        "import sys, atelier_plugins.image.plugin, atelier_plugins.image; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"imported at module level: {done.stdout.strip()} {done.stderr[-500:]}"


# --- loading ----------------------------------------------------------------------------------


def test_load_without_a_model_directory_says_what_to_do():
    with pytest.raises(PluginError) as raised:
        ImagePlugin().load("cpu", None)
    assert raised.value.code == "model_missing"
    assert "model directory" in raised.value.message and "prepare_demo" in raised.value.message


def test_load_of_a_directory_that_is_no_pipeline_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"not a model")
    with pytest.raises(PluginError) as raised:
        ImagePlugin().load("cpu", tmp_path)
    assert "model_index.json" in raised.value.message
    with pytest.raises(PluginError):
        ImagePlugin().load("cpu", tmp_path / "missing")


def test_an_image_to_image_checkpoint_loads_as_text_to_image(tiny_model_dir, tmp_path):
    import json

    from diffusers import StableDiffusionImg2ImgPipeline

    img2img = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_model_dir, local_files_only=True)
    img2img.save_pretrained(tmp_path / "img2img", safe_serialization=True)
    # A checkpoint whose index does not mention a safety checker at all loads too.
    index_path = tmp_path / "img2img" / "model_index.json"
    index = json.loads(index_path.read_text())
    for name in ("safety_checker", "feature_extractor", "requires_safety_checker"):
        index.pop(name, None)
    index_path.write_text(json.dumps(index))
    plugin = ImagePlugin()
    plugin.load("cpu", tmp_path / "img2img")
    assert type(plugin.model.pipeline).__name__ == "StableDiffusionPipeline"
    (items,) = plugin.generate([request("from-img2img", seed=1, width=32, height=32)], make_context())
    assert pixels(items[0]).shape == (32, 32, 3)


def test_generate_before_load_fails_clearly():
    with pytest.raises(PluginError) as raised:
        ImagePlugin().generate([request("j")], make_context())
    assert raised.value.code == "model_missing"


def test_model_version_names_the_directory_and_changes_with_the_weights(image_plugin, tiny_model_dir, tmp_path):
    from atelier_plugins.image.pipeline import model_version

    assert image_plugin.model.version == model_version(tiny_model_dir)
    assert image_plugin.model.version.startswith("tiny-sd-")
    copy = shutil.copytree(tiny_model_dir, tmp_path / "tiny-sd")
    (copy / "README.md").write_text("notes next to the model do not change it")
    assert model_version(copy) == image_plugin.model.version
    weights = next((copy / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: retrained weights
    weights.write_bytes(bytes(data))
    assert model_version(copy) != image_plugin.model.version


# --- generation -------------------------------------------------------------------------------


def test_images_have_the_asked_size_and_the_native_size_by_default(image_plugin):
    sized, native = image_plugin.generate(
        [request("sized", width=32, height=48, seed=1), request("native", seed=1)], make_context()
    )
    assert pixels(sized[0]).shape == (48, 32, 3)
    assert (sized[0].content.width, sized[0].content.height) == (32, 48)
    assert pixels(native[0]).shape == (TINY_NATIVE_SIZE, TINY_NATIVE_SIZE, 3)
    assert (native[0].content.width, native[0].content.height) == (TINY_NATIVE_SIZE, TINY_NATIVE_SIZE)


def test_count_gives_one_output_per_image_each_with_png_and_thumbnail(image_plugin):
    (items,) = image_plugin.generate([request("four", seed=100, count=3, width=320, height=64)], make_context())
    assert len(items) == 3
    for index, item in enumerate(items):
        assert isinstance(item.content, ImageOutput)
        assert (item.content.index, item.content.seed, item.content.steps) == (index, 100 + index, STEPS)
        assert item.content.label == "AI-generated"
        roles = {artifact.role: artifact for artifact in item.artifacts}
        assert set(roles) == {"primary", "thumbnail"}
        assert roles["primary"].name == f"image-{index}.png"
        assert {artifact.media_type for artifact in item.artifacts} == {"image/png"}
        assert Image.open(io.BytesIO(roles["primary"].data)).size == (320, 64)
        thumbnail = Image.open(io.BytesIO(roles["thumbnail"].data))
        assert max(thumbnail.size) == 256 and thumbnail.size[1] in (51, 52)  # aspect ratio kept
    assert not np.array_equal(pixels(items[0]), pixels(items[1]))


def test_png_files_carry_generation_metadata_and_the_ai_label(image_plugin):
    prompt = "an old house by the sea"
    (items,) = image_plugin.generate([request("meta", prompt, seed=77, guidance=5.0)], make_context())
    item = items[0]
    for artifact in item.artifacts:
        metadata = read_png_metadata(artifact.data)
        assert metadata["ai_generated"] == "true"
        assert metadata["generator"] == "Atelier"
        assert metadata["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest() == item.content.prompt_sha256
        assert (metadata["seed"], metadata["steps"], float(metadata["guidance"])) == ("77", str(STEPS), 5.0)
        assert metadata["model_version"] == item.content.model_version == image_plugin.model.version
        assert DIGITAL_SOURCE_TYPE in metadata[XMP_KEY]
        assert is_labelled_ai_generated(metadata)
        assert prompt.encode() not in artifact.data  # only its hash travels with the file
        # An independent reader (Pillow) finds the same chunks.
        assert Image.open(io.BytesIO(artifact.data)).text["ai_generated"] == "true"


def test_png_provenance_tells_images_made_with_and_without_a_negative_prompt_apart(image_plugin):
    plain, negative = image_plugin.generate(
        [request("plain", seed=8), request("negative", seed=8, negative_prompt="a blue dog")], make_context()
    )
    assert not np.array_equal(pixels(plain[0]), pixels(negative[0]))
    plain_metadata, negative_metadata = (read_png_metadata(primary(items[0]).data) for items in (plain, negative))
    assert "negative_prompt_sha256" not in plain_metadata and plain[0].content.negative_prompt_sha256 is None
    digest = hashlib.sha256(b"a blue dog").hexdigest()
    assert negative_metadata["negative_prompt_sha256"] == negative[0].content.negative_prompt_sha256 == digest
    assert Image.open(io.BytesIO(primary(negative[0]).data)).text["negative_prompt_sha256"] == digest
    assert b"a blue dog" not in primary(negative[0]).data  # only its hash travels with the file


def test_read_png_metadata_refuses_damaged_files(image_plugin):
    (items,) = image_plugin.generate([request("damaged", seed=3)], make_context())
    data = bytearray(primary(items[0]).data)
    with pytest.raises(ValueError):
        read_png_metadata(b"GIF89a" + bytes(data[6:]))
    position = data.index(b"tEXt") + 6
    data[position] ^= 0x01  # a changed character of a text chunk: its CRC no longer matches
    with pytest.raises(ValueError, match="CRC"):
        read_png_metadata(bytes(data))


#: 13 tokens for the tiny model's tokenizer, which reads 12 with its start and end tokens: 10 words.
LONG_PROMPT = "A red cat on a mat by the sea, Seven green apples"
READ_PART = "A red cat on a mat by the sea,"


def test_a_prompt_longer_than_the_model_reads_says_which_words_the_image_ignored(image_plugin):
    long, short = image_plugin.generate([request("long", LONG_PROMPT, seed=6), request("short", READ_PART, seed=6)],
                                        make_context())
    assert long[0].content.prompt_truncated == PromptTruncation(tokens=15, limit=12, dropped="Seven green apples")
    assert short[0].content.prompt_truncated is None and long[0].content.negative_prompt_truncated is None
    # What it says was dropped is exactly what the model ignored: the read part alone draws the same image.
    assert np.array_equal(pixels(long[0]), pixels(short[0]))
    assert read_png_metadata(primary(long[0]).data)["prompt_tokens_read"] == "12 of 15"
    assert "prompt_tokens_read" not in read_png_metadata(primary(short[0]).data)
    assert b"green apples" not in primary(long[0]).data  # the file still carries only the prompt's hash


def test_a_negative_prompt_longer_than_the_model_reads_is_reported_too(image_plugin):
    (items,) = image_plugin.generate([request("negative", seed=6, negative_prompt=LONG_PROMPT)], make_context())
    assert items[0].content.prompt_truncated is None
    expected = PromptTruncation(tokens=15, limit=12, dropped="Seven green apples")
    assert items[0].content.negative_prompt_truncated == expected
    assert read_png_metadata(primary(items[0]).data)["negative_prompt_tokens_read"] == "12 of 15"


def test_a_tokenizer_without_character_offsets_reports_the_dropped_tokens_as_it_spells_them(image_plugin, monkeypatch):
    from atelier_plugins.image import pipeline

    monkeypatch.setattr(pipeline, "_has_offsets", lambda tokenizer: False)  # a tokenizer without offsets
    (items,) = image_plugin.generate([request("slow", LONG_PROMPT, seed=6)], make_context())
    assert items[0].content.prompt_truncated == PromptTruncation(tokens=15, limit=12, dropped="seven green apples")


def test_same_seed_gives_identical_pixels_alone_and_inside_a_mixed_batch(image_plugin):
    (alone,) = image_plugin.generate([request("alone", "a red cat on a mat", seed=11)], make_context())
    batched = image_plugin.generate(
        [
            request("dog", "a blue dog in the park", seed=5, count=2),
            request("apples", "seven green apples", seed=11, negative_prompt="blurry"),
            request("again", "a red cat on a mat", seed=11),
            request("other-steps", "a red cat on a mat", seed=11, steps=STEPS + 1),
        ],
        make_context(),
    )
    dogs, apples, again, other_steps = batched
    assert np.array_equal(pixels(alone[0]), pixels(again[0]))
    assert not np.array_equal(pixels(alone[0]), pixels(apples[0]))  # same seed, other prompt
    assert not np.array_equal(pixels(alone[0]), pixels(other_steps[0]))  # same seed, other steps
    assert not np.array_equal(pixels(dogs[0]), pixels(dogs[1]))
    assert other_steps[0].content.steps == STEPS + 1


def test_a_job_without_a_seed_uses_the_job_seed(image_plugin):
    from_job, explicit = image_plugin.generate(
        [request("from-job", job_seed=42, count=2), request("explicit", job_seed=9, seed=43)], make_context()
    )
    assert [item.content.seed for item in from_job] == [42, 43]
    assert np.array_equal(pixels(from_job[1]), pixels(explicit[0]))


@pytest.mark.parametrize("guidance", [7.5, 1.0])  # with classifier-free guidance (two passes an image) and without
def test_an_image_is_the_same_to_the_last_bit_whatever_shares_its_batch(image_plugin, guidance):
    """MKL picks its matrix kernel by the number of rows, and the kernels round differently: on some CPUs
    an image rendered beside others differed by a pixel level from the same image alone."""
    (alone,) = image_plugin.generate([request("alone", seed=901, guidance=guidance)], make_context())
    for company in (1, 2, 3):
        batch = [request(f"other-{n}", prompt="a blue dog", seed=40 + n, guidance=guidance) for n in range(company)]
        *_, same = image_plugin.generate([*batch, request("same", seed=901, guidance=guidance)], make_context())
        assert np.array_equal(pixels(alone[0]), pixels(same[0])), f"differs beside {company} other image(s)"
    (first_of_two,) = image_plugin.generate([request("two", seed=900, count=2, guidance=guidance)], make_context())
    assert np.array_equal(pixels(alone[0]), pixels(first_of_two[1]))


def test_a_regeneration_draws_new_images_even_when_the_input_names_a_seed(image_plugin):
    (rejected,) = image_plugin.generate([request("first", job_seed=5, seed=3, count=2)], make_context())
    # What the platform sends for "regenerate": the same input, a new job seed, the reviewer's note.
    again = GenerationRequest(job_id="again", input=ImageInput(prompt="a red cat on a mat", steps=STEPS, seed=3, count=2),
                              params=NoParams(), seed=900, regeneration=Regeneration(note="warmer colours"))
    (regenerated,) = image_plugin.generate([again], make_context())
    for old, new in zip(rejected, regenerated):
        assert not np.array_equal(pixels(old), pixels(new))
    assert [item.content.seed for item in regenerated] == [900, 901]
    assert read_png_metadata(primary(regenerated[1]).data)["seed"] == "901"
    # Each new image is made again from the seed it reports.
    (remade,) = image_plugin.generate([request("remade", seed=901)], make_context())
    assert np.array_equal(pixels(remade[0]), pixels(regenerated[1]))


def test_different_seeds_give_different_images(image_plugin):
    first, second = image_plugin.generate([request("s1", seed=1), request("s2", seed=2)], make_context())
    assert not np.array_equal(pixels(first[0]), pixels(second[0]))
    assert pixels(first[0]).std() > 1  # a real picture, not a flat colour


def test_negative_prompt_changes_the_image(image_plugin):
    plain, negative = image_plugin.generate(
        [request("plain", seed=8), request("negative", seed=8, negative_prompt="a blue dog")], make_context()
    )
    assert not np.array_equal(pixels(plain[0]), pixels(negative[0]))


def test_progress_is_reported_for_each_denoising_step(image_plugin):
    progress = []
    image_plugin.generate([request("watched", seed=4, count=2), request("other", seed=9)], make_context(progress))
    watched = [(fraction, detail) for job_id, fraction, detail in progress if job_id == "watched"]
    steps_seen = [detail["step"] for fraction, detail in watched[:-1]]
    assert steps_seen == list(range(1, STEPS + 1))
    fractions = [fraction for fraction, _ in watched]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 1 and fractions[-1] == 1.0
    assert any(job_id == "other" for job_id, _, _ in progress)


def test_a_size_the_model_cannot_make_fails_that_item_only(image_plugin):
    odd = 2 * TINY_SIZE_MULTIPLE + 8  # 40: a multiple of 8, so valid input, but not of this model's 16
    refused, made = image_plugin.generate(
        [request("odd", width=odd, height=32, seed=1), request("fine", width=32, height=32, seed=1)], make_context()
    )
    assert isinstance(refused, PluginError) and refused.code == "invalid_input"
    assert str(TINY_SIZE_MULTIPLE) in refused.message
    assert pixels(made[0]).shape == (32, 32, 3)


#: What PyTorch's CPU allocator raises when an allocation fails (it has no dedicated exception).
CPU_OUT_OF_MEMORY = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
)


class MemoryBoundPipeline:
    """The loaded pipeline on a device that holds at most ``pixels`` pixels of images per call."""

    def __init__(self, pipeline, pixels):
        self.pipeline, self.pixels = pipeline, pixels

    def __call__(self, **arguments):
        if arguments["width"] * arguments["height"] * len(arguments["prompt"]) > self.pixels:
            raise RuntimeError(CPU_OUT_OF_MEMORY)
        return self.pipeline(**arguments)

    def __getattr__(self, name):
        return getattr(self.pipeline, name)


def test_running_out_of_cpu_memory_splits_the_call_then_fails_only_the_image_that_cannot_fit(image_plugin, monkeypatch):
    monkeypatch.setattr(image_plugin.model, "pipeline", MemoryBoundPipeline(image_plugin.model.pipeline, 64 * 64))
    pair, too_large, small = image_plugin.generate(
        [request("pair", seed=1, width=64, height=64, count=2), request("too-large", seed=2, width=96, height=96),
         request("small", seed=3, width=32, height=32)],
        make_context(),
    )
    assert [pixels(item).shape for item in pair] == [(64, 64, 3)] * 2  # one image a call fits
    assert isinstance(too_large, PluginError) and too_large.code == "out_of_memory"
    assert "96x96" in too_large.message and "smaller size" in too_large.message
    assert pixels(small[0]).shape == (32, 32, 3)


def test_a_job_cancelled_while_it_runs_stops_and_the_others_finish(image_plugin):
    cancelled = set()
    steps_of_doomed = []

    def on_progress(job_id, fraction, detail):
        if job_id == "doomed":
            steps_of_doomed.append(detail["step"])
            cancelled.add("doomed")  # cancelled during its first step

    context = RunContext("cpu", on_progress=on_progress, is_cancelled=lambda job_id: job_id in cancelled)
    doomed, kept = image_plugin.generate(
        [request("doomed", seed=1, steps=10), request("kept", seed=2, width=32, height=32, steps=10)], context
    )
    assert isinstance(doomed, PluginError) and doomed.code == "cancelled"
    assert steps_of_doomed == [1]
    assert isinstance(kept[0], OutputItem)

    cancelled.clear()
    steps_of_doomed.clear()
    with pytest.raises(JobCancelled):
        image_plugin.generate([request("doomed", seed=1, steps=10)], context)
    assert steps_of_doomed == [1]  # stopped after the step in which it was cancelled


# --- the demo model's recipe ------------------------------------------------------------------


def test_demo_recipe_saves_a_pipeline_the_plugin_loads(tmp_path):
    from atelier_plugins.image.demo import NATIVE_SIZE, prepare_demo_model

    reports = []
    target = tmp_path / "image-digits"
    figures = prepare_demo_model(
        target, lambda step, total, message: reports.append((step, total)),
        unet_steps=2, unet_batch=8, vae_steps=2, vae_batch=4, threads=1,
    )
    assert figures["parameters"]["unet"] > 0 and figures["bytes_on_disk"] < 5_000_000
    assert reports[-1][0] == reports[-1][1]
    assert (target / "model_index.json").is_file() and not list(target.rglob("*.bin"))
    plugin = ImagePlugin()
    plugin.load("cpu", target)
    (items,) = plugin.generate([request("digit", "a handwritten digit 7", seed=1, steps=2)], make_context())
    assert pixels(items[0]).shape == (NATIVE_SIZE, NATIVE_SIZE, 3)
