"""Reference images of image sets: read from what a caller sent, checked, and stored as generated files are.

A case of the ``image`` plugin expects one image: the API takes it as base64 (PNG or JPEG; a ``data:`` URL too), the
dashboard from a ZIP (``uploads``). Each is decoded and opened with Pillow here, before anything is saved: a real
PNG or JPEG, within ``MAX_IMAGE_BYTES`` and ``MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb guard is not
relied on: the size is read from the header first). The set's cases keep only what names the image
(``{"image": sha256, "media_type", "width", "height"}``); its bytes go to media storage (``ReferenceImage``), one
file per distinct image of a set.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile

#: the largest reference image taken, once decoded
MAX_IMAGE_BYTES = 8 * 1024 * 1024
#: width times height (4096 x 4096): a small file may claim a huge picture
MAX_IMAGE_PIXELS = 4096 * 4096
#: the most pixels the new images of one request (a set created, changed, uploaded) hold together: each is decoded
#: in the web request to check it (about 16 ns a pixel on a 2-core host: 256 Mpx, e.g. 250 images of 1024 x 1024,
#: is about 4 s), and 500 distinct 4096 x 4096 images held one for two minutes. Images a set holds already are not
#: decoded again, so a larger set grows in several changes.
MAX_SET_PIXELS = 256 * 1024 * 1024
FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg")}

_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|jpg));base64,", re.IGNORECASE)


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    media_type: str
    extension: str
    width: int
    height: int

    def reference(self) -> dict[str, Any]:
        """What a case stores of it."""
        return {"image": self.sha256, "media_type": self.media_type, "width": self.width, "height": self.height}


class BadImage(ValueError):
    """Not an image a set takes; ``reason`` a stable code, ``params`` its values (for the dashboard's words)."""

    def __init__(self, message: str, reason: str, **params: Any) -> None:
        super().__init__(message)
        self.message, self.reason, self.params = message, reason, params


def decode_base64(text: Any) -> bytes:
    """The bytes of a base64 image (a ``data:image/png;base64,`` prefix allowed)."""
    if not isinstance(text, str) or not text.strip():
        raise BadImage("The expected image, as base64 (PNG or JPEG; a data: URL too).", "not_base64")
    text = text.strip()
    found = _DATA_URL.match(text)
    if found:
        text = text[found.end():]
    elif text.startswith("data:"):
        raise BadImage("A data: URL of a PNG or JPEG image (data:image/png;base64,...).", "not_an_image")
    if len(text) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise BadImage(f"The image is larger than {MAX_IMAGE_BYTES // 2**20} MiB.", "too_large",
                       limit_mib=MAX_IMAGE_BYTES // 2**20)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("Not valid base64.", "not_base64") from None


class PixelBudget:
    """The pixels one request's new images may still decode (``MAX_SET_PIXELS``)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_SET_PIXELS if limit is None else limit
        self.used = 0

    def take(self, pixels: int) -> None:
        if self.used + pixels > self.limit:
            raise BadImage(f"The new images of this request hold more than {self.limit:,} pixels together: send fewer "
                           "or smaller images at a time (a set's images already stored are not counted again).",
                           "set_too_many_pixels", limit=self.limit)
        self.used += pixels


def check_image(data: bytes, budget: PixelBudget | None = None) -> CheckedImage:
    """``data`` as a reference image, or ``BadImage`` saying why not; its pixels are taken from ``budget`` before
    they are decoded."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage(f"The image is larger than {MAX_IMAGE_BYTES // 2**20} MiB.", "too_large",
                       limit_mib=MAX_IMAGE_BYTES // 2**20)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind, (width, height) = image.format, image.size
            if kind not in FORMATS:
                raise BadImage(f"A PNG or JPEG image, not {kind or 'this format'}.", "not_an_image")
            if width * height > MAX_IMAGE_PIXELS:
                raise BadImage(f"The image has {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} in all.",
                               "too_many_pixels", width=width, height=height, limit=MAX_IMAGE_PIXELS)
            if budget is not None:
                budget.take(width * height)
            image.load()  # the pixels decode: not a truncated or corrupt file
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise BadImage("Not a PNG or JPEG image that can be read.", "not_an_image") from None
    media_type, extension = FORMATS[kind]
    return CheckedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), media_type=media_type,
                        extension=extension, width=width, height=height)


def referenced_shas(cases: list[dict[str, Any]]) -> set[str]:
    return {case["reference"]["image"] for case in cases
            if isinstance(case.get("reference"), dict) and case["reference"].get("image")}


def store_images(reference_set, images: list[CheckedImage]) -> None:
    """Save the set's images not stored yet (one file per content), in the transaction that saves its cases, inside
    ``files_removed_unless_committed``."""
    from atelier_platform.evaluation.models import ReferenceImage

    stored = set(reference_set.images.values_list("sha256", flat=True))
    for image in images:
        if image.sha256 in stored:
            continue
        row = ReferenceImage(reference_set=reference_set, sha256=image.sha256, media_type=image.media_type,
                             width=image.width, height=image.height, size=len(image.data))
        row.file.save(f"reference.{image.extension}", ContentFile(image.data), save=False)
        saved = _saved_files.get()
        if saved is not None:
            saved.append((row.file.storage, row.file.name))
        row.save()
        stored.add(image.sha256)


#: files saved by ``store_images`` within ``files_removed_unless_committed`` (per thread: web threads store at once)
_saved_files: contextvars.ContextVar[list | None] = contextvars.ContextVar("reference_files_saved", default=None)


class files_removed_unless_committed:
    """Around the transaction that stores a set's images: when it does not commit, the files saved for it are
    named by no row, and are removed (as ``jobs.lifecycle`` does for outputs' files)."""

    def __enter__(self):
        self._saved: list = []
        self._token = _saved_files.set(self._saved)
        return self

    def __exit__(self, kind, error, traceback):
        _saved_files.reset(self._token)
        saved = self._saved
        if kind is not None:
            for storage, name in saved:
                try:
                    storage.delete(name)
                except Exception:  # noqa: BLE001 - best effort: the error that got here is the one to raise
                    pass
        return False


def prune_images(reference_set, keep: set[str]) -> int:
    """Delete the set's images that no case of it and no run of it going names (their files on commit)."""
    deleted, _ = reference_set.images.exclude(sha256__in=keep).delete()
    return deleted
