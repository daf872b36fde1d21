"""The nudity check: loads NudeNet's bundled ONNX model offline; plain images give no finding."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from atelier_sdk.safety import ScreenContext
from PIL import Image

from atelier_plugins.safety.nudity import NudityCheck


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def check():
    # Any attempt to open a network connection during load fails the test: the model must be local.
    original = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError("the nudity check tried to use the network")

    socket.socket.connect = refuse
    try:
        loaded = NudityCheck()
        loaded.load()
        loaded.load()  # idempotent
    finally:
        socket.socket.connect = original
    return loaded


def test_plain_generated_images_have_no_finding(check):
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    images = [
        encoded(Image.new("RGB", (256, 256), (30, 120, 200)), "PNG"),
        encoded(Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1)), "JPEG"),
        encoded(Image.fromarray(ramp, mode="L"), "PNG"),
        encoded(Image.new("RGBA", (64, 48), (255, 255, 255, 0)), "PNG"),
    ]
    assert check.check_images(images, ScreenContext()) == [[], [], [], []]


def test_bytes_that_are_not_an_image_are_refused_clearly(check):
    with pytest.raises(ValueError, match="not a readable PNG or JPEG"):
        check.check_images([b"definitely not an image"], ScreenContext())
