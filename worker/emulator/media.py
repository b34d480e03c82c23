"""The emulator's media store: pictures uploaded through the control surface, served back by URL.

The real service stores an image a client sends and describes it in the message as a ``TIMImageElem`` whose
``ImageInfoArray`` lists three renditions: the original (Type 1), a large one (Type 2, at most 720 pixels on
its longer side) and a thumbnail (Type 3, at most 198 pixels), each with its URL, size and dimensions. The
emulator does the same for what is uploaded to ``POST /_emulator/media`` and serves every rendition at
``GET /_emulator/media/{uuid}/{type}``, so that a worker's media fetcher can get the bytes over HTTP.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

LARGE_SIDE = 720
THUMBNAIL_SIDE = 198
#: Largest upload accepted, in bytes.
MAX_UPLOAD = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Stored:
    """One rendition of an uploaded picture."""

    data: bytes
    content_type: str
    width: int
    height: int


#: Pillow format -> (content type, ImageFormat code of the Chat API: JPG 1, GIF 2, PNG 3, BMP 4, other 255).
_FORMATS = {
    "JPEG": ("image/jpeg", 1),
    "GIF": ("image/gif", 2),
    "PNG": ("image/png", 3),
    "BMP": ("image/bmp", 4),
}


def _rendition(image: Image.Image, side: int, image_format: str) -> Stored:
    copy = image.copy()
    copy.thumbnail((side, side))
    out = io.BytesIO()
    if image_format == "JPEG" and copy.mode not in ("RGB", "L"):
        copy = copy.convert("RGB")
    copy.save(out, format=image_format)
    return Stored(out.getvalue(), _FORMATS[image_format][0], copy.width, copy.height)


class MediaStore:
    """Uploaded pictures by UUID, each in its three renditions."""

    def __init__(self) -> None:
        self._items: dict[str, dict[int, Stored]] = {}

    def reset(self) -> None:
        """Forget every picture."""
        self._items.clear()

    def upload(self, data: bytes, base_url: str) -> dict[str, Any]:
        """Store a picture; the ``MsgContent`` of a ``TIMImageElem`` showing it. ValueError: no picture."""
        if len(data) > MAX_UPLOAD:
            raise ValueError(f"larger than {MAX_UPLOAD} bytes")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bytes that are no picture
            raise ValueError(f"not a picture Pillow can read ({type(exc).__name__})") from None
        image_format = image.format if image.format in _FORMATS else "PNG"
        uuid = hashlib.sha256(data).hexdigest()[:32]
        original = Stored(data, _FORMATS[image_format][0], image.width, image.height)
        renditions = {
            1: original,
            2: _rendition(image, LARGE_SIDE, image_format),
            3: _rendition(image, THUMBNAIL_SIDE, image_format),
        }
        self._items[uuid] = renditions
        return {
            "UUID": uuid,
            "ImageFormat": _FORMATS[image_format][1],
            "ImageInfoArray": [
                {
                    "Type": kind,
                    "Size": len(stored.data),
                    "Width": stored.width,
                    "Height": stored.height,
                    "URL": f"{base_url}/_emulator/media/{uuid}/{kind}",
                }
                for kind, stored in renditions.items()
            ],
        }

    def get(self, uuid: str, kind: int) -> Stored | None:
        """One rendition, or None."""
        return self._items.get(uuid, {}).get(kind)
