"""The emulator's media store over HTTP: ``POST /_emulator/media`` answers a ``TIMImageElem`` whose three
renditions (original, large <= 720 px, thumbnail <= 198 px on the longer side) are served at their URLs,
byte for byte as described; what is no picture is refused, what was never stored is not found, and a reset
forgets everything."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from worker.emulator.server import EmulatorThread

LARGE_SIDE = 720
THUMBNAIL_SIDE = 198
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True, slots=True)
class Picture:
    """A generated picture as a client would upload it."""

    name: str
    image_format: str  # PNG or JPEG
    width: int
    height: int
    mode: str = "RGB"

    def encode(self) -> bytes:
        image = Image.new(self.mode, (self.width, self.height), _colour(self.mode, 40))
        draw = ImageDraw.Draw(image)
        # Shapes and a gradient band, so the renditions are real pictures and not a flat colour.
        for x in range(0, self.width, max(1, self.width // 16)):
            draw.line([(x, 0), (self.width - x, self.height)], fill=_colour(self.mode, x % 256), width=3)
        draw.ellipse(
            [self.width // 4, self.height // 4, 3 * self.width // 4, 3 * self.height // 4],
            fill=_colour(self.mode, 200),
        )
        out = io.BytesIO()
        options: dict[str, Any] = {"quality": 90} if self.image_format == "JPEG" else {}
        image.save(out, format=self.image_format, **options)
        return out.getvalue()


def _colour(mode: str, value: int) -> Any:
    if mode == "L":
        return value
    if mode == "RGBA":
        return (value, 255 - value, value // 2, 180)
    return (value, 255 - value, value // 2)


PICTURES = [
    Picture("png landscape", "PNG", 1200, 800),
    Picture("png portrait with alpha", "PNG", 500, 1000, "RGBA"),
    Picture("png between thumbnail and large", "PNG", 400, 300),
    Picture("jpeg photo", "JPEG", 2000, 1500),
    Picture("jpeg square greyscale", "JPEG", 800, 800, "L"),
    Picture("jpeg tall strip", "JPEG", 300, 1600),
    Picture("jpeg smaller than a thumbnail", "JPEG", 150, 100),
]


def upload(emulator: EmulatorThread, data: bytes) -> httpx.Response:
    return httpx.post(f"{emulator.url}/_emulator/media", content=data)


def uploaded(emulator: EmulatorThread, data: bytes) -> dict[str, Any]:
    answer = upload(emulator, data)
    assert answer.status_code == 200, answer.text
    element: dict[str, Any] = answer.json()
    return element


def renditions(element: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {info["Type"]: info for info in element["MsgContent"]["ImageInfoArray"]}


def bounded(width: int, height: int, side: int) -> tuple[float, float]:
    """The size of ``width`` x ``height`` scaled down (never up) to at most ``side`` on its longer side."""
    scale = min(1.0, side / max(width, height))
    return width * scale, height * scale


@pytest.mark.parametrize("picture", PICTURES, ids=lambda p: p.name)
def test_an_upload_is_described_as_three_renditions_within_their_bounds(
    emulator: EmulatorThread, picture: Picture
) -> None:
    data = picture.encode()
    element = uploaded(emulator, data)
    assert element["MsgType"] == "TIMImageElem"
    content = element["MsgContent"]
    assert set(content) == {"UUID", "ImageFormat", "ImageInfoArray"}
    assert isinstance(content["UUID"], str)
    assert content["UUID"]
    infos = content["ImageInfoArray"]
    assert [info["Type"] for info in infos] == [1, 2, 3]
    for info in infos:
        assert set(info) == {"Type", "Size", "Width", "Height", "URL"}
        assert info["URL"] == f"{emulator.url}/_emulator/media/{content['UUID']}/{info['Type']}"

    by_type = renditions(element)
    original = by_type[1]
    assert (original["Width"], original["Height"], original["Size"]) == (
        picture.width,
        picture.height,
        len(data),
    )
    for kind, side in ((2, LARGE_SIDE), (3, THUMBNAIL_SIDE)):
        info = by_type[kind]
        assert max(info["Width"], info["Height"]) <= side
        # scaled down keeping the aspect ratio (to within Pillow's rounding), never enlarged
        want_w, want_h = bounded(picture.width, picture.height, side)
        assert abs(info["Width"] - want_w) <= 1
        assert abs(info["Height"] - want_h) <= 1
        assert max(info["Width"], info["Height"]) == min(side, max(picture.width, picture.height))
    assert by_type[3]["Width"] <= by_type[2]["Width"] <= original["Width"]
    assert by_type[3]["Height"] <= by_type[2]["Height"] <= original["Height"]


@pytest.mark.parametrize("picture", PICTURES, ids=lambda p: p.name)
def test_every_rendition_url_serves_what_the_element_describes(
    emulator: EmulatorThread, picture: Picture
) -> None:
    data = picture.encode()
    element = uploaded(emulator, data)
    for kind, info in renditions(element).items():
        served = httpx.get(info["URL"])
        assert served.status_code == 200, (kind, served.text)
        assert served.headers["content-type"] == CONTENT_TYPES[picture.image_format]
        assert int(served.headers["content-length"]) == info["Size"]
        assert len(served.content) == info["Size"]
        if kind == 1:
            assert served.content == data  # the original, as uploaded, byte for byte
        decoded = Image.open(io.BytesIO(served.content))
        decoded.load()
        assert decoded.format == picture.image_format
        assert decoded.size == (info["Width"], info["Height"])


def test_pictures_are_kept_apart(emulator: EmulatorThread) -> None:
    first, second = PICTURES[0].encode(), PICTURES[3].encode()
    a, b = uploaded(emulator, first), uploaded(emulator, second)
    assert a["MsgContent"]["UUID"] != b["MsgContent"]["UUID"]
    assert httpx.get(renditions(a)[1]["URL"]).content == first
    assert httpx.get(renditions(b)[1]["URL"]).content == second


@pytest.mark.parametrize(("image_format", "number"), [("JPEG", 1), ("PNG", 3)])
def test_image_format_is_numbered_as_the_chat_api_documents(
    emulator: EmulatorThread, image_format: str, number: int
) -> None:
    picture = Picture(image_format, image_format, 320, 240)
    assert uploaded(emulator, picture.encode())["MsgContent"]["ImageFormat"] == number


def _truncated_png() -> bytes:
    data = PICTURES[0].encode()
    return data[: len(data) // 3]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello, this is not a picture",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,  # a PNG signature and nothing readable after it
        _truncated_png(),
    ],
    ids=["empty", "text", "pdf", "png signature only", "truncated png"],
)
def test_what_is_no_picture_is_refused(emulator: EmulatorThread, body: bytes) -> None:
    answer = upload(emulator, body)
    assert answer.status_code == 400
    assert answer.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/_emulator/media/{uuid}/0",
        "/_emulator/media/{uuid}/4",
        "/_emulator/media/{uuid}/large",
        "/_emulator/media/{uuid}/-1",
        "/_emulator/media/0123456789abcdef0123456789abcdef/1",
        "/_emulator/media/{uuid}x/1",
    ],
)
def test_an_unknown_picture_or_rendition_is_not_found(emulator: EmulatorThread, path: str) -> None:
    uuid = uploaded(emulator, PICTURES[2].encode())["MsgContent"]["UUID"]
    answer = httpx.get(emulator.url + path.format(uuid=uuid))
    assert answer.status_code == 404
    assert answer.json() == {"error": "no such media"}


def test_a_reset_forgets_the_pictures(emulator: EmulatorThread) -> None:
    element = uploaded(emulator, PICTURES[3].encode())
    urls = [info["URL"] for info in element["MsgContent"]["ImageInfoArray"]]
    assert all(httpx.get(url).status_code == 200 for url in urls)
    httpx.post(f"{emulator.url}/_emulator/reset").raise_for_status()
    assert [httpx.get(url).status_code for url in urls] == [404, 404, 404]
    # and the store works again afterwards
    again = uploaded(emulator, PICTURES[3].encode())
    assert httpx.get(renditions(again)[1]["URL"]).status_code == 200
