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


def test_kid_has_no_spread_to_report_when_its_subsets_hold_every_image_of_both_sides(tmp_path):
    """The demo's 20-image run reported kid_std 1e-06: 100 subsets of all 20 images on each side are one draw."""
    from atelier_plugins.image.features import load_extractor, score
    from tests.support.tiny_features import build_tiny_feature_extractor

    extractor = load_extractor(build_tiny_feature_extractor(tmp_path / "features"))
    pictures = [saved(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)))
                for seed in range(7)]
    even = score(extractor, pictures[:3], pictures[3:6])
    assert even.kid_mean is not None and even.kid_subset_size == 3
    assert even.kid_std is None and "same figure" in even.reasons["kid_std"]
    # four references, one case failed: subsets of 3 drawn from 4 references differ, so their spread is reported
    uneven = score(extractor, pictures[:4], pictures[4:7] + [None])
    assert uneven.kid_subset_size == 3 and isinstance(uneven.kid_std, float) and "kid_std" not in uneven.reasons
