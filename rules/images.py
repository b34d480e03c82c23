"""Pictures from untrusted bytes, for the media rules (``qr``, ``image_hash``): decoded safely, or refused.

:func:`decode_image` turns the bytes of a chat picture into a Pillow image in one colour mode, or returns the
reason it will not (a string, which the rules report as "not examined: <reason>"). It never raises for bad
input, and it bounds the work an attacker can cause:

* only PNG, JPEG, GIF, WEBP and BMP are parsed (Pillow is not allowed to guess among its other formats);
* the size is checked from the header, before any pixel is decoded: more than ``max_pixels`` (and never more
  than Pillow's own ``Image.MAX_IMAGE_PIXELS`` guard, whose ``DecompressionBombError`` and
  ``DecompressionBombWarning`` are also caught) is refused;
* animated GIF and WEBP give their first frame only;
* a JPEG larger than ``max_side`` is decoded at a reduced scale (libjpeg's DCT scaling, ``Image.draft``:
  about half the decoding time of a 12-megapixel photo), then shrunk to ``max_side``.

Transparent pictures are laid on white first (a QR code drawn in black on a transparent background would
otherwise turn black on black), and EXIF orientation is applied, so that the picture is the one people see.

Pure: no I/O, no global state changed.
"""

from __future__ import annotations

import io
from typing import Final, Literal

from PIL import Image, ImageOps, UnidentifiedImageError

#: The formats parsed; anything else is refused without being looked at further.
FORMATS: Final = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
#: Largest picture decoded, in pixels: 50 megapixels (a 48 MP phone photo is 8000 x 6000). At 3 bytes a
#: pixel that is 150 MB while it is shrunk; the rules are normally given thumbnails (``rules.media``).
DEFAULT_MAX_PIXELS: Final = 50_000_000
#: Largest encoded picture accepted, in bytes.
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024

Mode = Literal["RGB", "L"]
_WHITE: Final = (255, 255, 255, 255)


def decode_image(
    data: bytes,
    mode: Mode = "RGB",
    *,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image | str:
    """The picture in ``data`` in ``mode`` (``RGB`` or ``L``), first frame, upright, at most ``max_side``
    pixels on its longer side when given; or why not, as a short reason ("not a picture ...", "refused:
    ...", "undecodable: ...")."""
    if not data:
        return "empty file"
    if len(data) > max_bytes:
        return f"refused: {len(data)} bytes (limit {max_bytes})"
    try:
        image = _open(data, max_pixels)
        if isinstance(image, str):
            return image
        if max_side is not None and image.format == "JPEG" and max(image.size) > max_side:
            image.draft("RGB" if mode == "RGB" else "L", (max_side, max_side))
        image.load()  # first frame only: GIF and WEBP frames are read on seek(), which is never called
        image = ImageOps.exif_transpose(image)
        image = _to_mode(image, mode)
        if max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"refused: decompression bomb ({exc})"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds (OSError, ValueError, SyntaxError, ...)
        return f"undecodable: {type(exc).__name__}: {exc}"
    return image


def _open(data: bytes, max_pixels: int) -> Image.Image | str:
    """The picture's header, parsed, if its format and size are acceptable."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        return f"not a picture in {', '.join(FORMATS)}"
    width, height = image.size
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if width <= 0 or height <= 0 or width * height > limit:
        image.close()
        return f"refused: {width}x{height} pixels (limit {limit})"
    return image


def _to_mode(image: Image.Image, mode: Mode) -> Image.Image:
    """``image`` in ``mode``, transparent parts laid on white."""
    if image.mode == mode:
        return image
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float greys: scale to 8 bits rather than clip (convert("L") clips at 255)
        image = image.convert("F").point(lambda v: v / 256)
    return image.convert(mode)
