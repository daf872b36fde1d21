"""The evaluation's image features: what the extractor is given of a reference image, whatever its kind."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from atelier_plugins.image.features import as_rgb, open_image


def saved(image, kind="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def test_a_16_bit_greyscale_png_is_scaled_not_clipped_to_white():
    """Pillow's conversion clipped every value over 255: a 16-bit reference was scored as a white page."""
    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)
    image = open_image(saved(Image.fromarray(ramp)))
    assert image.mode.startswith("I")
    pixels = np.asarray(as_rgb(image))
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    assert list(pixels[..., 0].ravel()) == [value // 256 for value in ramp.ravel()]


def test_other_kinds_convert_as_pillow_converts_them():
    for image, kind in [(Image.new("CMYK", (4, 4), (0, 255, 0, 0)), "JPEG"), (Image.new("LA", (1, 1), (200, 255)), "PNG"),
                        (Image.new("P", (4, 4), 3), "PNG"), (Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")]:
        opened = open_image(saved(image, kind))
        assert np.array_equal(np.asarray(as_rgb(opened)), np.asarray(opened.convert("RGB")))
