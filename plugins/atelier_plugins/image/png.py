"""PNG files with provenance: generation metadata and a machine-readable "AI-generated" label.

Every image the plugin writes carries, in PNG text chunks:

- ``ai_generated=true``, ``generator=Atelier`` and ``Software``: the plain label, readable by any
  PNG tool (``exiftool``, ``identify -verbose``, PIL's ``Image.text``);
- ``prompt_sha256``, ``seed``, ``steps``, ``guidance``, ``model_version`` (and the size), and
  ``negative_prompt_sha256`` when there was a negative prompt: enough to reproduce the image with the
  same model, without putting the prompts themselves into a file that may travel further than the
  prompts should; ``prompt_tokens_read`` (and ``negative_prompt_tokens_read``), such as "77 of 120",
  when the model's text encoder read only the start of the prompt;
- an XMP packet (iTXt ``XML:com.adobe.xmp``) that states the IPTC digital source type
  ``trainedAlgorithmicMedia``, the vocabulary that image libraries, stock sites and social
  networks read to recognise AI-generated images.

``read_png_metadata`` reads those chunks back with the standard library only (it checks CRCs and
decompresses zTXt/iTXt), so a caller can inspect a file without Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Mapping
from xml.sax.saxutils import escape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_KEY = "XML:com.adobe.xmp"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "Atelier"
AI_LABEL = "AI-generated"
THUMBNAIL_MAX_SIDE = 256


def build_xmp(metadata: Mapping[str, str]) -> str:
    """An XMP packet labelling the image as made by a trained model (IPTC DigitalSourceType)."""
    model_version = escape(metadata.get("model_version", ""))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f"   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>\n"
        f"   <xmp:CreatorTool>{GENERATOR} ({model_version})</xmp:CreatorTool>\n"
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{AI_LABEL} image</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    )


def provenance_chunks(
    *, prompt_sha256: str, seed: int, steps: int, guidance: float, model_version: str, width: int, height: int,
    negative_prompt_sha256: str | None = None, prompt_tokens_read: str | None = None,
    negative_prompt_tokens_read: str | None = None,
) -> dict[str, str]:
    """The text chunks every generated PNG carries (values are strings, as PNG text is).

    A negative prompt changes the pixels as much as the prompt does: without its hash, two
    different images would carry the same provenance and neither could be made again from it.
    ``prompt_tokens_read`` ("77 of 120"), given only when the model cut the prompt, tells that the
    image followed only the start of the prompt whose hash the file carries.
    """
    optional = {
        "negative_prompt_sha256": negative_prompt_sha256,
        "prompt_tokens_read": prompt_tokens_read,
        "negative_prompt_tokens_read": negative_prompt_tokens_read,
    }
    return {
        "ai_generated": "true",
        "label": AI_LABEL,
        "generator": GENERATOR,
        "Software": GENERATOR,
        "prompt_sha256": prompt_sha256,
        "seed": str(seed),
        "steps": str(steps),
        "guidance": repr(float(guidance)),
        "model_version": model_version,
        "width": str(width),
        "height": str(height),
        **{key: value for key, value in optional.items() if value},
    }


def encode_png(image, metadata: Mapping[str, str]) -> bytes:
    """``image`` (a PIL image) as PNG bytes with ``metadata`` in tEXt chunks and the XMP label in iTXt."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        if _is_latin1(value):
            info.add_text(key, value)
        else:  # tEXt is Latin-1 only; iTXt carries UTF-8
            info.add_itxt(key, value)
    info.add_itxt(XMP_KEY, build_xmp(metadata))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, optimize=False)
    return buffer.getvalue()


def thumbnail_of(image, max_side: int = THUMBNAIL_MAX_SIDE):
    """A copy no larger than ``max_side`` on its long side (small images are kept as they are)."""
    from PIL import Image

    thumbnail = image.copy()
    if max(thumbnail.size) > max_side:
        thumbnail.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return thumbnail


def read_png_metadata(data: bytes) -> dict[str, str]:
    """Every text chunk (tEXt, zTXt, iTXt) of a PNG file, keyword -> text.

    Raises ``ValueError`` when ``data`` is not a well-formed PNG (bad signature, truncated chunk,
    wrong CRC), so that a damaged file is not mistaken for an unlabelled one.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (the signature is missing)")
    texts: dict[str, str] = {}
    position = len(PNG_SIGNATURE)
    while position < len(data):
        if position + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body_end = position + 8 + length
        if body_end + 4 > len(data):
            raise ValueError(f"truncated PNG chunk {kind!r}")
        body = data[position + 8 : body_end]
        (crc,) = struct.unpack(">I", data[body_end : body_end + 4])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} has a wrong CRC")
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, _method = rest[0], rest[1]
            _language, _, rest = rest[2:].partition(b"\x00")
            _translated_key, _, value = rest.partition(b"\x00")
            texts[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode("utf-8")
        elif kind == b"IEND":
            break
        position = body_end + 4
    return texts


def is_labelled_ai_generated(metadata: Mapping[str, str]) -> bool:
    """True when the PNG text chunks carry both the plain label and the IPTC source type."""
    return metadata.get("ai_generated") == "true" and DIGITAL_SOURCE_TYPE in metadata.get(XMP_KEY, "")


def _is_latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
