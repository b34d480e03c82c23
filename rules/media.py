"""Media in messages, for the rules that look at pictures (``qr``, ``image_hash``).

The engine never fetches anything: whoever runs a scan (the worker, ``rules eval --media-dir``) reads each
message's :func:`media_refs`, gets the bytes however it may, and hands them to the scan as :class:`Media`
by UUID (``Scanner.feed_many(messages, media=...)``). A media rule sees ``batch.media``: bytes it can
examine, or the reason they could not be had, which it records as a "not examined" match (action ``flag``:
never a recall) instead of failing.

Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

#: ``ImageInfoArray`` entry types: 1 original, 2 large, 3 thumbnail.
IMAGE_ORIGINAL: Final = 1
IMAGE_LARGE: Final = 2
IMAGE_THUMBNAIL: Final = 3
#: The shorter side an image entry needs to be worth examining (a QR code in a 198-pixel thumbnail is
#: often still readable; smaller ones rarely are).
DEFAULT_MIN_SIDE: Final = 198

MediaKind = Literal["image", "video_thumbnail", "file"]


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One picture a message holds, and where to get it."""

    uuid: str
    url: str
    kind: MediaKind
    element_path: str  # the URL's path in the message, e.g. "MsgBody[0].MsgContent.ImageInfoArray[2].URL"
    width: int = 0
    height: int = 0
    size: int = 0  # bytes, when the message says


@dataclass(frozen=True, slots=True)
class Media:
    """What a scan was given for one UUID: the bytes, or why there are none."""

    uuid: str
    data: bytes | None
    reason: str = ""  # when data is None: why it was not examined ("refused: private address", ...)
    content_type: str = ""

    @property
    def examined(self) -> bool:
        """True when there are bytes to look at."""
        return self.data is not None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def pick_image_entry(infos: Sequence[Mapping[str, Any]], min_side: int = DEFAULT_MIN_SIDE) -> int | None:
    """The index of the ``ImageInfoArray`` entry to examine: the smallest whose shorter side is at least
    ``min_side`` (thumbnails first), else the largest; None when no entry has a URL."""
    usable = [
        (j, info) for j, info in enumerate(infos) if isinstance(info, Mapping) and _str(info.get("URL"))
    ]
    if not usable:
        return None

    def side(info: Mapping[str, Any]) -> int:
        return min(_int(info.get("Width")), _int(info.get("Height")))

    def area(info: Mapping[str, Any]) -> int:
        width, height = _int(info.get("Width")), _int(info.get("Height"))
        if width and height:
            return width * height
        # no dimensions given: order by type, thumbnail smallest
        return {IMAGE_THUMBNAIL: 1, IMAGE_LARGE: 2, IMAGE_ORIGINAL: 3}.get(_int(info.get("Type")), 4)

    adequate = [(j, info) for j, info in usable if side(info) >= min_side or not side(info)]
    if adequate:
        return min(adequate, key=lambda item: area(item[1]))[0]
    return max(usable, key=lambda item: area(item[1]))[0]


def media_refs(body: Sequence[Mapping[str, Any]], min_side: int = DEFAULT_MIN_SIDE) -> list[MediaRef]:
    """The pictures of a message body (``MsgBody``): each image (one entry of its ``ImageInfoArray``), each
    video's thumbnail, and each file whose name says it is an image. Forwarded messages are not opened."""
    return list(_refs(body, min_side))


_IMAGE_FILE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")


def _refs(body: Sequence[Mapping[str, Any]], min_side: int) -> Iterator[MediaRef]:
    for i, element in enumerate(body):
        if not isinstance(element, Mapping):
            continue
        kind = element.get("MsgType")
        content = element.get("MsgContent")
        if not isinstance(content, Mapping):
            continue
        base = f"MsgBody[{i}].MsgContent"
        if kind == "TIMImageElem":
            infos = content.get("ImageInfoArray")
            if not isinstance(infos, list):
                continue
            j = pick_image_entry(infos, min_side)
            if j is None:
                continue
            info = infos[j]
            uuid = _str(content.get("UUID")) or f"{_str(info.get('URL'))}"
            yield MediaRef(
                f"{uuid}#{_int(info.get('Type'))}",
                _str(info.get("URL")),
                "image",
                f"{base}.ImageInfoArray[{j}].URL",
                _int(info.get("Width")),
                _int(info.get("Height")),
                _int(info.get("Size")),
            )
        elif kind == "TIMVideoFileElem" and _str(content.get("ThumbUrl")):
            uuid = _str(content.get("ThumbUUID")) or _str(content.get("ThumbUrl"))
            yield MediaRef(
                uuid,
                _str(content.get("ThumbUrl")),
                "video_thumbnail",
                f"{base}.ThumbUrl",
                _int(content.get("ThumbWidth")),
                _int(content.get("ThumbHeight")),
                _int(content.get("ThumbSize")),
            )
        elif kind == "TIMFileElem" and _str(content.get("FileName")).lower().endswith(_IMAGE_FILE_SUFFIXES):
            url = _str(content.get("Url"))
            if url:
                yield MediaRef(
                    _str(content.get("UUID")) or url,
                    url,
                    "file",
                    f"{base}.Url",
                    size=_int(content.get("FileSize")),
                )
