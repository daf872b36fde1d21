"""The ``nudity`` check: NudeNet's detector (an ONNX model shipped inside the ``nudenet`` package) on output images.

The score is the highest confidence among the exposed-body classes; covered body parts, faces
and feet are detected by the model too but are not nudity. Evidence is one region per exposed
detection, with the class name and confidence in ``detail``. Nothing is downloaded: the model
file is part of the installed package and runs on onnxruntime's CPU provider.
"""

from __future__ import annotations

import io
import threading
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from atelier_sdk.safety import (
    Category,
    Evidence,
    Finding,
    SafetyCheck,
    SafetyCheckManifest,
    ScreenContext,
    Target,
)

#: NudeNet classes that are nudity (the *_COVERED classes, faces, feet and armpits are not).
EXPOSED_CLASSES = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
#: Weaker evidence: shown to reviewers, scored at a discount so it alone rarely crosses 0.5.
PARTIAL_CLASSES = {"MALE_BREAST_EXPOSED": 0.3, "BELLY_EXPOSED": 0.2}
#: Decoding guard: refuse images larger than this many pixels (decompression bombs).
MAX_PIXELS = 40_000_000


class NudityCheck(SafetyCheck):
    """Exposed nudity in generated images (category ``sexual``)."""

    manifest = SafetyCheckManifest(
        id="nudity",
        version="1.0.0",
        name="Nudity detector (NudeNet)",
        targets=frozenset({Target.OUTPUT}),
        modalities=frozenset({"image"}),
        categories=frozenset({Category.SEXUAL}),
    )

    def __init__(self) -> None:
        self._detector = None
        self._lock = threading.Lock()

    def load(self, device: str = "cpu") -> None:
        with self._lock:
            if self._detector is None:
                from nudenet import NudeDetector  # imports cv2 and onnxruntime: only when needed

                self._detector = NudeDetector()

    def check_images(self, images: Sequence[bytes], context: ScreenContext) -> list[list[Finding]]:
        self.load()
        return [self._check_one(image) for image in images]

    def _check_one(self, data: bytes) -> list[Finding]:
        pixels = _decode_bgr(data)
        detections = self._detector.detect(pixels)
        best = 0.0
        evidence = []
        for detection in sorted(detections, key=lambda d: -d["score"]):
            name = detection["class"]
            if name in EXPOSED_CLASSES:
                weight = 1.0
            elif name in PARTIAL_CLASSES:
                weight = PARTIAL_CLASSES[name]
            else:
                continue
            score = float(detection["score"]) * weight
            best = max(best, score)
            x, y, w, h = (int(v) for v in detection["box"])
            evidence.append(Evidence(region=(x, y, w, h), detail=f"{name} ({float(detection['score']):.2f})"))
        if not evidence:
            return []
        return [Finding(category=Category.SEXUAL, score=round(best, 4), check=self.manifest.id, evidence=tuple(evidence))]


def _decode_bgr(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> an 8-bit BGR array, as NudeNet's own file reader (cv2.imread) produces.

    Decoding with Pillow first gives one clear error for bytes that are not an image, applies
    EXIF orientation, flattens palettes/alpha/greyscale to RGB, and refuses decompression bombs.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"image of {image.width}x{image.height} pixels is larger than the {MAX_PIXELS}-pixel limit")
            image = ImageOps.exif_transpose(image).convert("RGB")
            rgb = np.asarray(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise ValueError(f"not a readable PNG or JPEG image: {exc}") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


__all__ = ["EXPOSED_CLASSES", "NudityCheck"]
