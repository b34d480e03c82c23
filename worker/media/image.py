"""Is it a picture, and a safe one? Content sniffed from the bytes, dimensions checked before decoding.

The type a server declares is not trusted: the bytes must begin with the magic number of PNG, JPEG, GIF,
WEBP or BMP. The picture's dimensions are read from its header (by this module, then by Pillow, which
opens only the header and is restricted to the sniffed format) and a picture of more pixels than allowed
is refused as a decompression bomb before anything decodes it. Pillow's own guard
(``Image.MAX_IMAGE_PIXELS``: its ``DecompressionBombWarning`` and ``DecompressionBombError``) stays in force
as a second line.

Pure functions; no I/O.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from PIL import Image

#: Content type -> Pillow format name, for the formats handed on.
FORMATS: Final = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
}
#: Pillow's own limit when this module was loaded (about 89 million pixels), the default limit.
DEFAULT_MAX_PIXELS: Final = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE: Final = frozenset(range(0xD0, 0xDA)) | {0x01}


def sniff(data: bytes) -> str | None:
    """The image content type ``data`` begins with the magic number of, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM") and len(data) >= 26:
        return "image/bmp"
    return None


def describe(data: bytes) -> str:
    """A short guess at what ``data`` is when it is no image, for a refusal's reason."""
    if not data:
        return "empty body"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for found, name in (
        (b"<html" in head or b"<body" in head or head.startswith(b"<!doctype html"), "text/html"),
        (b"<svg" in head, "image/svg+xml"),
        (head.startswith(b"<"), "xml"),
        (head.startswith((b"{", b"[")), "json"),
        (head.startswith(b"%pdf"), "application/pdf"),
        (head.startswith(b"\x1f\x8b"), "gzip"),
        (head.startswith(b"pk\x03\x04"), "zip"),
    ):
        if found:
            return name
    return "unknown content"


def header_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """Width and height as the header of ``data`` (of the sniffed ``content_type``) declares them, or None
    when the header is cut short or malformed."""
    reader = _SIZE_READERS.get(content_type)
    if reader is None:
        return None
    try:
        return reader(data)
    except struct.error:
        return None


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    return int(values[0]), int(values[1])


def _png_size(data: bytes) -> tuple[int, int] | None:
    return _pair(struct.unpack(">II", data[16:24])) if data[12:16] == b"IHDR" else None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    return _pair(struct.unpack("<HH", data[6:10]))


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return _pair(struct.unpack("<HH", data[18:22]))
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        b = data[21:25]
        if len(b) < 4:
            return None
        return 1 + (b[0] | (b[1] & 0x3F) << 8), 1 + (b[1] >> 6 | b[2] << 2 | (b[3] & 0x0F) << 10)
    if chunk == b"VP8X":
        if len(data) < 30:
            return None
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF:
            return None
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            return None
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        (length,) = struct.unpack(">H", data[i : i + 2])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return int(width), int(height)
        if length < 2:
            return None
        i += length
    return None


_SIZE_READERS: Final[dict[str, Callable[[bytes], tuple[int, int] | None]]] = {
    "image/png": _png_size,
    "image/gif": _gif_size,
    "image/bmp": _bmp_size,
    "image/webp": _webp_size,
    "image/jpeg": _jpeg_size,
}


@dataclass(frozen=True, slots=True)
class Checked:
    """The verdict on one body: its content type and size when it may be handed on, else why not."""

    content_type: str = ""
    width: int = 0
    height: int = 0
    kind: str = ""  # when refused: "type", "unreadable" or "bomb"
    detail: str = ""  # when refused: e.g. "not an image (text/html)"

    @property
    def ok(self) -> bool:
        """True when the body is a picture that may be handed on."""
        return not self.kind


def _bomb(width: int, height: int) -> Checked:
    return Checked(kind="bomb", detail=f"decompression bomb ({width}×{height} pixels)")


def check_image(  # noqa: PLR0911 - one return per verdict
    data: bytes, declared: str = "", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Checked:
    """Whether ``data`` is a PNG, JPEG, GIF, WEBP or BMP picture of at most ``max_pixels`` pixels.

    ``declared`` (the Content-Type the server sent) only appears in a refusal's reason. The body's pixels
    are never decoded: its header gives the dimensions, then Pillow opens the header, restricted to the
    sniffed format, under its own bomb guard (its warning counts as a refusal, too)."""
    content_type = sniff(data)
    if content_type is None:
        served = declared.split(";", 1)[0].strip().lower()
        what = describe(data)
        extra = f", served as {served[:64]}" if served and served != what else ""
        return Checked(kind="type", detail=f"not an image ({what}{extra})")
    fmt = FORMATS[content_type]
    size = header_size(data, content_type)
    if size is None:
        return Checked(kind="unreadable", detail=f"unreadable image ({fmt} header)")
    if size[0] * size[1] > max_pixels:
        return _bomb(*size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _bomb(*size)
    except Exception:  # noqa: BLE001 - any parse failure of an untrusted header is a refusal, not a crash
        return Checked(kind="unreadable", detail=f"unreadable image ({fmt})")
    if width * height > max_pixels:
        return _bomb(width, height)
    if width <= 0 or height <= 0:
        return Checked(kind="unreadable", detail=f"unreadable image ({fmt}, {width}×{height})")
    return Checked(content_type, width, height)
