"""Image features for evaluation, and the scores computed on them: FID, KID and each case's similarity.

The feature extractor is any Hugging Face vision model in a local directory that ``transformers.AutoModel`` loads
(a CLIP vision model, DINOv2, a ResNet, ViT...; safetensors only), with its ``AutoImageProcessor`` when the directory
has one (``preprocessor_config.json``). One vector per image: the model's pooled output (``pooler_output``, or
``image_embeds``), else the mean of its last hidden state over positions. The Inception network torchmetrics uses
by default cannot be downloaded here (and needs torchvision, which breaks torch 2.13's imports), so FID and KID
are torchmetrics' own, given this extractor as their ``feature`` module: figures comparable between runs scored with
the same extractor, not with published Inception FIDs.

Small sets: FID needs two images a side (a covariance), KID's subset size cannot exceed the images of either side
(it is the smaller count, at most 1,000); below that a score is None with the reason. With few images both are
noisy: compare runs of one set, not numbers across sets.

Model code: torch and transformers are imported inside the functions, never by a web process.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: KID's subsets: torchmetrics' default count; their size is the smaller side, at most this
KID_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000
#: KID draws its subsets at random: seeded, a run scores the same twice
KID_SEED = 0
#: images through the extractor at once
BATCH = 32

_PICKLE_ENDINGS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class FeatureExtractorError(RuntimeError):
    """The extractor directory cannot be used; the message says what to set or fix."""


def check_extractor_dir(model_dir: Path) -> Path:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FeatureExtractorError(
            f"No image feature extractor at {model_dir}: set ATELIER_EVALUATION_IMAGE_FEATURES to a local directory "
            "of a Hugging Face vision model (config.json and safetensors weights), or run `manage.py prepare_demo` "
            "for the demo's.")
    pickled = sorted(p.name for p in model_dir.iterdir() if p.name.endswith(_PICKLE_ENDINGS))
    if pickled:
        raise FeatureExtractorError(f"{model_dir} holds pickle-format weights ({', '.join(pickled)}): Atelier loads "
                                    "safetensors only.")
    return model_dir


def _extractor_class():
    import torch

    class ImageFeatureExtractor(torch.nn.Module):
        """Pixel values (the model's processor's output) in, one feature vector per image out: torchmetrics'
        ``feature`` module. ``num_features`` tells torchmetrics the width without a trial image."""

        def __init__(self, model, processor, image_size: int, num_features: int) -> None:
            super().__init__()
            self.model = model
            self.processor = processor
            self.image_size = image_size
            self.num_features = num_features

        def forward(self, pixel_values):
            output = self.model(pixel_values=pixel_values)
            pooled = None
            for name in ("image_embeds", "pooler_output"):
                pooled = getattr(output, name, None)
                if pooled is not None:
                    break
            if pooled is None:
                hidden = output.last_hidden_state
                pooled = hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
            return pooled.reshape(pooled.shape[0], -1).float()

        def pixel_values(self, images: Sequence[Any]):
            """PIL images (any size) as the model's input batch."""
            import numpy as np

            rgb = [as_rgb(image) for image in images]
            if self.processor is not None:
                return self.processor(images=rgb, return_tensors="pt")["pixel_values"]
            # No processor: resized to the model's size, scaled to [0, 1]
            arrays = [np.asarray(image.resize((self.image_size, self.image_size)), dtype=np.float32) / 255.0
                      for image in rgb]
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    return ImageFeatureExtractor


#: Pillow's modes of a 16-bit greyscale PNG (and of older Pillows' reading of it)
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def as_rgb(image):
    """``image`` as 8-bit RGB. A 16-bit greyscale picture is scaled to 8 bits first: Pillow's own conversion clips
    every value over 255, and such a reference was scored as a white page."""
    if image.mode in _WIDE_GREY:
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def load_extractor(model_dir: Path, device: str = "cpu"):
    """The extractor module of ``model_dir``, in eval mode on ``device``."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    model_dir = check_extractor_dir(model_dir)
    try:
        model = AutoModel.from_pretrained(model_dir, use_safetensors=True)
    except Exception as error:
        raise FeatureExtractorError(f"The image feature extractor at {model_dir} does not load with transformers' "
                                    f"AutoModel: {type(error).__name__}: {error}") from error
    processor = None
    if (model_dir / "preprocessor_config.json").is_file():
        processor = AutoImageProcessor.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    size = config.get("image_size") or (config.get("vision_config") or {}).get("image_size") or 224
    model.eval().to(device)
    extractor = _extractor_class()(model, processor, int(size), 0)
    with torch.no_grad():
        probe = extractor.pixel_values([_blank()]).to(device)
        extractor.num_features = int(extractor(probe).shape[-1])
    return extractor


def _blank():
    from PIL import Image

    return Image.new("RGB", (32, 32), "white")


def open_image(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass
class ImageScores:
    fid: float | None
    kid_mean: float | None
    kid_std: float | None
    #: why FID or KID is None (too few images)
    reasons: dict[str, str] = field(default_factory=dict)
    #: per pair (generated, reference): cosine similarity of their features, None where no generated image
    similarities: list[float | None] = field(default_factory=list)
    kid_subset_size: int | None = None
    num_features: int = 0


def _features(extractor, images: Sequence[Any]):
    import torch

    device = next(extractor.parameters()).device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            chunks.append(extractor(extractor.pixel_values(images[start:start + BATCH]).to(device)).cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, extractor.num_features)


def score(extractor, references: Sequence[bytes], generated: Sequence[bytes | None]) -> ImageScores:
    """FID and KID between the generated images (the ``None`` of failed cases left out) and every reference, and
    each pair's cosine similarity (``references[i]`` against ``generated[i]``)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    reference_images = [open_image(data) for data in references]
    generated_images = [open_image(data) if data is not None else None for data in generated]
    made = [image for image in generated_images if image is not None]
    reference_features = _features(extractor, reference_images)
    made_features = _features(extractor, made)
    similarities: list[float | None] = []
    made_index = 0
    for position, image in enumerate(generated_images):
        if image is None:
            similarities.append(None)
            continue
        similarity = torch.nn.functional.cosine_similarity(made_features[made_index], reference_features[position], dim=0)
        similarities.append(round(float(similarity), 4))
        made_index += 1
    scores = ImageScores(fid=None, kid_mean=None, kid_std=None, similarities=similarities,
                         num_features=extractor.num_features)
    real_pixels = extractor.pixel_values(reference_images) if reference_images else None
    fake_pixels = extractor.pixel_values(made) if made else None
    smaller = min(len(reference_images), len(made))
    if smaller < 2:
        reason = (f"FID and KID need at least 2 images on each side; {len(made)} generated, {len(reference_images)} "
                  "references.")
        scores.reasons = {"fid": reason, "kid": reason}
        return scores
    device = next(extractor.parameters()).device
    with torch.no_grad():
        # normalize=True: our module takes the processor's float pixels as they are (torchmetrics scales only the
        # input of its own Inception network)
        fid = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True).to(device)
        fid.update(real_pixels.to(device), real=True)
        fid.update(fake_pixels.to(device), real=False)
        scores.fid = round(float(fid.compute()), 4)
        subset = min(smaller, KID_MAX_SUBSET_SIZE)
        with warnings.catch_warnings():  # "saves all features in a buffer": at most 500 cases a side here
            warnings.simplefilter("ignore", UserWarning)
            kid = KernelInceptionDistance(feature=extractor, normalize=True, subsets=KID_SUBSETS,
                                          subset_size=subset).to(device)
        kid.update(real_pixels.to(device), real=True)
        kid.update(fake_pixels.to(device), real=False)
        with torch.random.fork_rng(devices=[]):  # its subsets are drawn at random: the same draw every time
            torch.manual_seed(KID_SEED)
            mean, std = kid.compute()
        scores.kid_mean, scores.kid_std, scores.kid_subset_size = round(float(mean), 6), round(float(std), 6), subset
        if subset == len(reference_images) == len(made):
            # every subset is then the whole of both sides: 100 draws of one figure, whose spread (0) says nothing of
            # the estimate's noise
            scores.kid_std = None
            scores.reasons["kid_std"] = (f"Each of KID's subsets holds all {subset} images of both sides, so they all "
                                         "give the same figure: no spread to measure with so few images.")
    return scores
