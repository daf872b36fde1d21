"""The demo's image feature extractor for evaluation: a small ResNet trained here on scikit-learn's digits.

FID and KID need a vision model's features, and none can be downloaded here (the Inception weights included), so
``prepare_demo_model`` trains one in seconds: a two-stage ResNet (transformers' ``ResNetModel``) with a linear head
that learns to tell the ten digits apart, from the same 32x32 renderings of the digits the demo image model draws
(``demo.latent_to_image``), with noise and shifts added. The head is dropped; what is saved is a standard
transformers model directory (``config.json``, ``model.safetensors``) with its image processor
(``preprocessor_config.json``), which ``features.load_extractor`` loads as it would a CLIP or DINOv2 vision model.
Its pooled output (64 numbers) places images of one digit together: what FID, KID and each case's similarity need
to tell a good "7" from a bad one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

Progress = Callable[[int, int, str], None]

DEFAULTS = {"seed": 0, "steps": 300, "batch": 64, "threads": 2}
IMAGE_SIZE = 32


def build_extractor(*, hidden_sizes=(32, 64), embedding_size: int = 16):
    from transformers import ResNetConfig, ResNetModel

    return ResNetModel(ResNetConfig(
        num_channels=3, embedding_size=embedding_size, hidden_sizes=list(hidden_sizes), depths=[1, 1],
        layer_type="basic", downsample_in_first_stage=False, image_size=IMAGE_SIZE,
    ))


def build_processor():
    from transformers import ViTImageProcessor

    # every image resized to 32x32 (the demo model's size), scaled to [-1, 1] as the training images are
    return ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True, do_normalize=True,
                             image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=2)


def prepare_demo_model(target_dir: Path, progress: Progress | None = None, **options) -> dict:
    """Train the digits feature extractor and save it into ``target_dir``; returns figures (accuracy on a held-out
    quarter, seconds, size)."""
    import torch

    from atelier_plugins.image.demo import digit_latents, latent_to_image, training_settings

    settings = training_settings(DEFAULTS, options)
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings["threads"])
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            generator = torch.Generator().manual_seed(settings["seed"])
            latents, labels = digit_latents()
            images = latent_to_image(latents)  # (N, 3, 32, 32) in [-1, 1], as the demo model draws them
            order = torch.randperm(len(images), generator=generator)
            held = order[: len(order) // 4]
            train = order[len(order) // 4:]
            model = build_extractor()
            head = torch.nn.Linear(model.config.hidden_sizes[-1], 10)
            parameters = [*model.parameters(), *head.parameters()]
            optimizer = torch.optim.AdamW(parameters, lr=3e-3, weight_decay=1e-4)
            model.train()
            for step in range(settings["steps"]):
                rows = train[torch.randint(0, len(train), (settings["batch"],), generator=generator)]
                batch = images[rows]
                # a generated digit is never a clean copy: noise and a shift of a pixel or two
                batch = batch + 0.2 * torch.randn(batch.shape, generator=generator)
                shift = [int(v) for v in torch.randint(-2, 3, (2,), generator=generator)]
                batch = torch.roll(batch, shifts=shift, dims=(2, 3)).clamp(-1, 1)
                pooled = model(pixel_values=batch).pooler_output.flatten(1)
                loss = torch.nn.functional.cross_entropy(head(pooled), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if progress is not None and ((step + 1) % 20 == 0 or step + 1 == settings["steps"]):
                    progress(step + 1, settings["steps"] + 1, f"feature extractor step {step + 1}, loss {loss.item():.3f}")
            model.eval()
            with torch.no_grad():
                predicted = head(model(pixel_values=images[held]).pooler_output.flatten(1)).argmax(dim=1)
                accuracy = float((predicted == labels[held]).float().mean())
            model.save_pretrained(target_dir, safe_serialization=True)
            build_processor().save_pretrained(target_dir)
    finally:
        torch.set_num_threads(threads_before)
    figures = {
        "held_out_accuracy": round(accuracy, 3),
        "parameters": sum(p.numel() for p in model.parameters()),
        "features": model.config.hidden_sizes[-1],
        "settings": settings,
        "seconds": round(time.monotonic() - started, 1),
    }
    (target_dir / "README.md").write_text(
        "# Atelier demo image feature extractor\n\nA small ResNet trained by `atelier_plugins.image.demo_features` to "
        "tell scikit-learn's digits apart (32x32 renderings, as the demo image model draws them); its pooled output "
        "is the feature vector evaluation runs compute FID, KID and each case's similarity on. It knows nothing "
        f"but digits.\n\nHeld-out accuracy: {figures['held_out_accuracy']}.\n", encoding="utf-8")
    if progress is not None:
        progress(settings["steps"] + 1, settings["steps"] + 1, "saved")
    return figures


def demo_reference_cases(per_digit: int = 2) -> list[dict]:
    """An image reference set of the digits for the demo project: for each digit, prompts as the demo image model
    understands them and a real digit of scikit-learn's data set (rendered at 32x32 as the model draws) to expect,
    as base64 PNGs (the API's form)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from atelier_plugins.image.demo import DIGIT_WORDS, digit_latents, latent_to_image

    latents, labels = digit_latents()
    cases = []
    for digit in range(10):
        rows = (labels == digit).nonzero().flatten()[:per_digit]
        pictures = ((latent_to_image(latents[rows]).permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).round()
        for number, picture in enumerate(pictures.clip(0, 255).astype(np.uint8)):
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, format="PNG")
            prompt = f"a handwritten digit {digit}" if number % 2 == 0 else f"the number {DIGIT_WORDS[digit]}"
            cases.append({"input": {"prompt": prompt}, "params": {},
                          "reference": base64.b64encode(buffer.getvalue()).decode("ascii")})
    return cases
