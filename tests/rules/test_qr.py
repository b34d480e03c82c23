"""``qr``: barcodes in pictures, decoded and matched; pictures that cannot be examined are flagged.

Every picture is generated here (segno draws the QR codes, Pillow the rest): no binary fixtures.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import segno
import zxingcpp
from PIL import Image, ImageDraw

import rules.types.qr as qr_module
from rules import Match, RulesError, RuleSet, load_file, load_text
from rules.media import Media, media_refs
from rules.types.qr import read_codes, read_once
from tests.rules.helpers import elem, msg, rule, ruleset, text
from worker.tim.models import Message

BAD_URL = "https://pay.scam-example.com/r?id=8812"
INNOCENT_URL = "https://www.example.org/menu?table=12"
BLOCK = ruleset(rule("qr", "scam-qr", block=["scam-example.com"]))


# --- pictures -------------------------------------------------------------------------------------------


def background(width: int, height: int, seed: int) -> Image.Image:
    """A picture with some structure: a colour gradient and a dozen ellipses."""
    r = random.Random(seed)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    tint_x = np.array([r.random(), r.random(), r.random()])
    tint_y = np.array([r.random(), r.random(), r.random()])
    image = Image.fromarray(((x * tint_x + y * tint_y) * 200 + 30).clip(0, 255).astype("uint8"))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = r.randrange(width), r.randrange(height)
        x1, y1 = x0 + r.randrange(10, width // 3 + 11), y0 + r.randrange(10, height // 3 + 11)
        draw.ellipse((x0, y0, x1, y1), fill=(r.randrange(256), r.randrange(256), r.randrange(256)))
    return image


def qr_code(payload: str, side: int) -> Image.Image:
    """A QR code (error correction M, 4-module quiet zone) ``side`` pixels wide."""
    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=10, border=4)
    code = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return code.resize((side, side), Image.Resampling.BILINEAR)


def qr_scene(payload: str, side: int, angle: int = 0, seed: int = 0) -> Image.Image:
    """A QR code ``side`` pixels wide on a background 1.6 x 1.4 its size, turned by ``angle`` degrees (a
    multiple of 90 turns the whole picture, as a phone would; others tilt the code on the background)."""
    code = qr_code(payload, side)
    if angle % 90:
        code = code.rotate(angle, expand=True, fillcolor=(255, 255, 255), resample=Image.Resampling.BILINEAR)
    width, height = int(code.width * 1.6), int(code.height * 1.4)
    image = background(width, height, seed)
    image.paste(code, ((width - code.width) // 2, (height - code.height) // 2))
    return image.rotate(angle, expand=True) if angle % 90 == 0 and angle else image


def gaussian_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Grey Gaussian noise of standard deviation ``sigma`` added to every pixel."""
    noise = np.random.default_rng(seed).normal(0, sigma, (image.height, image.width, 1))
    return Image.fromarray((np.asarray(image).astype(float) + noise).clip(0, 255).astype("uint8"))


def salt_and_pepper(image: Image.Image, fraction: float, seed: int) -> Image.Image:
    """``fraction`` of the pixels set to black or white."""
    pixels = np.asarray(image).copy()
    draw = np.random.default_rng(seed).random(pixels.shape[:2])
    pixels[draw < fraction / 2] = 0
    pixels[draw > 1 - fraction / 2] = 255
    return Image.fromarray(pixels)


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    """The picture's bytes in ``fmt`` (JPEG at quality 90 unless told)."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    image.save(buf, fmt, **options)
    return buf.getvalue()


# --- messages -------------------------------------------------------------------------------------------


def image_elem(uuid: str, width: int = 800, height: int = 600) -> dict[str, Any]:
    """A ``TIMImageElem`` with its three sizes; ``media_refs`` picks the thumbnail (``<uuid>#3``)."""

    def info(kind: int, scale: float) -> dict[str, Any]:
        w, h = int(width * scale), int(height * scale)
        return {
            "Type": kind,
            "Size": w * h // 10,
            "Width": w,
            "Height": h,
            "URL": f"https://cos.example/{uuid}/{kind}",
        }

    return elem("TIMImageElem", UUID=uuid, ImageFormat=1,
                ImageInfoArray=[info(1, 1.0), info(2, 0.75), info(3, 0.5)])  # fmt: skip


def video_elem(uuid: str) -> dict[str, Any]:
    """A ``TIMVideoFileElem`` whose thumbnail's UUID is ``<uuid>-thumb``."""
    return elem("TIMVideoFileElem", VideoUrl=f"https://cos.example/{uuid}.mp4", VideoUUID=uuid, VideoSize=9,
                VideoSecond=3, ThumbUrl=f"https://cos.example/{uuid}.jpg", ThumbUUID=f"{uuid}-thumb",
                ThumbWidth=400, ThumbHeight=300, ThumbSize=1000)  # fmt: skip


def picture_message(*pictures: bytes | None, key: str | None = None) -> tuple[Message, dict[str, Media]]:
    """A message of one image element per picture, and the media for them (``None``: not fetched)."""
    message = msg(*(image_elem(f"img-{n}") for n in range(len(pictures))), key=key)
    media: dict[str, Media] = {}
    for ref, data in zip(media_refs(message.body), pictures, strict=True):
        media[ref.uuid] = Media(ref.uuid, data, "" if data is not None else "refused: private address")
    return message, media


def scan_pictures(rules: RuleSet, *pictures: bytes | None) -> list[Match]:
    """The matches of ``rules`` over one message holding these pictures."""
    message, media = picture_message(*pictures)
    return rules.scanner().feed_many([message], media=media)


# --- decoding -------------------------------------------------------------------------------------------

NOISES = {
    "clean": lambda image, seed: encode(image),
    "gaussian 30 + jpeg 20": lambda image, seed: encode(gaussian_noise(image, 30, seed), quality=20),
    "salt and pepper 5%": lambda image, seed: encode(salt_and_pepper(image, 0.05, seed)),
}
CASES = [
    (side, angle, noise)
    for side in (100, 200, 400, 800)
    for angle in (0, 90, 180, 270, 12)
    for noise in NOISES
    if not (noise.startswith("salt") and side < 200)  # see rules/README.md for the rates at 100 pixels
]


@pytest.mark.parametrize(("side", "angle", "noise"), CASES)
def test_qr_codes_are_read_at_every_size_angle_and_noise(side: int, angle: int, noise: str) -> None:
    picture = NOISES[noise](qr_scene(BAD_URL, side, angle, seed=side + angle), side + angle)
    found = scan_pictures(BLOCK, picture)
    assert [(m.rule_id, m.action, m.normalized) for m in found] == [
        ("scam-qr", "recall", "pay.scam-example.com")
    ]
    assert found[0].evidence == f"{BAD_URL} in image img-0#3"
    assert found[0].element_path == "MsgBody[0].MsgContent.ImageInfoArray[2].URL"


def test_the_second_reading_recovers_codes_under_noise() -> None:
    # Salt and pepper at 10% hides this code from a plain reading; the box-blurred one finds it.
    image = Image.open(io.BytesIO(encode(salt_and_pepper(qr_scene(BAD_URL, 200, seed=1), 0.10, 1))))
    grey = image.convert("L")
    assert read_once(grey) == []
    assert [c.text for c in read_codes(grey)] == [BAD_URL]


def test_the_second_reading_enlarges_small_pictures() -> None:
    # A code 60 pixels wide (under 2 pixels a module) in a 96 x 84 picture: read once enlarged.
    grey = Image.open(io.BytesIO(encode(qr_scene(BAD_URL, 60, seed=3), quality=20))).convert("L")
    assert read_once(grey) == []
    assert [c.text for c in read_codes(grey)] == [BAD_URL]


def test_a_qr_code_of_an_innocent_url_does_not_match() -> None:
    assert scan_pictures(BLOCK, encode(qr_scene(INNOCENT_URL, 300))) == []


def test_pictures_without_codes_do_not_match_even_any() -> None:
    rules = ruleset(rule("qr", "no-codes", any=True))
    assert scan_pictures(rules, *(encode(background(640, 480, seed)) for seed in range(5))) == []


def test_any_matches_every_code_with_its_format() -> None:
    rules = ruleset(rule("qr", "no-codes", action="flag", any=True))
    found = scan_pictures(rules, encode(qr_scene(INNOCENT_URL, 300)))
    assert [(m.action, m.normalized, m.evidence) for m in found] == [
        ("flag", "QRCode", f"{INNOCENT_URL} in image img-0#3")
    ]


def ean13_picture() -> bytes:
    """A picture of an EAN-13 product barcode."""
    barcode = zxingcpp.create_barcode("4006381333931", zxingcpp.BarcodeFormat.EAN13)
    image = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(barcode, scale=3))).convert("RGB")
    return encode(image, "PNG")


def test_other_barcodes_are_read_unless_formats_narrows() -> None:
    every_format = ruleset(rule("qr", "any-code", any=True))
    qr_only = ruleset(rule("qr", "any-qr", any=True, formats=["QRCode"]))
    found = scan_pictures(every_format, ean13_picture())
    assert [(m.normalized, m.evidence) for m in found] == [("EAN13", "4006381333931 in image img-0#3")]
    assert scan_pictures(qr_only, ean13_picture()) == []
    assert len(scan_pictures(qr_only, encode(qr_scene(INNOCENT_URL, 300)))) == 1


@pytest.mark.parametrize(
    ("payload", "keyword"),
    [
        ("WEIXIN://contacts/profile/scammer", "weixin://"),  # case
        ("扫码加群领红包", "加群"),  # Chinese
        ("ｔ．ｍｅ/joinchat/abc", "t.me/"),  # full width
        ("Free\u200bCrypto giveaway", "freecrypto"),  # invisible characters
    ],
)
def test_keywords_match_the_light_form_of_the_payload(payload: str, keyword: str) -> None:
    rules = ruleset(rule("qr", "kw", keywords=[keyword.upper()]))
    found = scan_pictures(rules, encode(qr_scene(payload, 300)))
    assert [(m.rule_id, m.normalized) for m in found] == [("kw", keyword)]
    assert found[0].evidence.startswith(payload)


@pytest.mark.parametrize(
    ("payload", "matched"),
    [
        ("https://pay.example.com/x", "pay.example.com"),
        ("https://docs.example.com/x", None),  # allowed: the most specific entry wins
        ("https://evil.docs.example.com/x", None),
        ("https://bad.docs.example.com/x", "bad.docs.example.com"),  # blocked again, more specifically
        ("see notexample.com", None),  # a domain must stand alone, as in links
        ("ｐａｙ．ｅｘａｍｐｌｅ．ｃｏｍ", "pay.example.com"),  # full width, undone as in links
        ("pay[.]example[.]com", "pay.example.com"),  # bracketed dots, undone as in links
    ],
)
def test_domains_follow_the_links_rule(payload: str, matched: str | None) -> None:
    rules = ruleset(
        rule("qr", "dom", block=["example.com", "bad.docs.example.com"], allow=["docs.example.com"])
    )
    found = scan_pictures(rules, encode(qr_scene(payload, 300)))
    assert [m.normalized for m in found] == ([matched] if matched else [])


def test_long_payloads_are_cut_but_the_picture_is_named() -> None:
    payload = "https://pay.scam-example.com/" + "x" * 400
    found = scan_pictures(BLOCK, encode(qr_scene(payload, 500)))
    assert len(found) == 1
    assert len(found[0].evidence) <= 200
    assert found[0].evidence.endswith("… in image img-0#3")


def test_video_thumbnails_and_element_selection() -> None:
    videos_only = ruleset(rule("qr", "v", block=["scam-example.com"], elements=["TIMVideoFileElem"]))
    message = msg(image_elem("img"), video_elem("vid"))
    picture = Media("", encode(qr_scene(BAD_URL, 300)))
    media = {"img#3": Media("img#3", picture.data), "vid-thumb": Media("vid-thumb", picture.data)}
    found = videos_only.scanner().feed_many([message], media=media)
    assert [(m.element_path, m.evidence) for m in found] == [
        ("MsgBody[1].MsgContent.ThumbUrl", f"{BAD_URL} in image vid-thumb")
    ]


def test_each_picture_is_decoded_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = qr_module.read_codes

    def counting(image: Image.Image, formats: zxingcpp.BarcodeFormats | None = None) -> list[qr_module.Code]:
        calls.append(1)
        return real(image, formats)

    monkeypatch.setattr(qr_module, "read_codes", counting)
    rules = ruleset(rule("qr", "a", block=["scam-example.com"]), rule("qr", "b", any=True, action="flag"))
    picture = encode(qr_scene(BAD_URL, 300))
    first, media = picture_message(picture)
    second = msg(image_elem("img-0"))  # the same picture forwarded again
    found = rules.scanner().feed_many([first, second], media=media)
    assert len(calls) == 1
    assert sorted((m.msg_key == first.msg_key, m.rule_id) for m in found) == [
        (False, "a"), (False, "b"), (True, "a"), (True, "b")
    ]  # fmt: skip


# --- pictures that cannot be examined -------------------------------------------------------------------

BOMB_SIDE = 20_000  # 400 megapixels announced in a PNG header of a few hundred bytes


def png_bomb() -> bytes:
    """A PNG whose header announces 20,000 x 20,000 pixels (its data is a few bytes)."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    at = data.index(b"IHDR")
    fields = struct.pack(">II", BOMB_SIDE, BOMB_SIDE) + data[at + 12 : at + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
    return data[: at + 4] + fields + crc + data[at + 4 + 13 + 4 :]


@pytest.mark.parametrize(
    ("picture", "reason"),
    [
        (None, "refused: private address"),
        (b"", "empty file"),
        (b"%PDF-1.7 not a picture", "not a picture in PNG, JPEG, GIF, WEBP, BMP"),
        (encode(Image.new("RGB", (64, 64)), "TIFF"), "not a picture in PNG, JPEG, GIF, WEBP, BMP"),
        (encode(Image.new("RGB", (300, 300)))[:200], "undecodable: OSError"),
        (png_bomb(), "refused: decompression bomb"),
    ],
)
def test_pictures_not_examined_are_flagged_never_recalled(picture: bytes | None, reason: str) -> None:
    rules = ruleset(
        rule("qr", "a", block=["scam-example.com"]), rule("qr", "b", keywords=["x"], action="wipe")
    )
    found = scan_pictures(rules, picture)
    assert [(m.rule_id, m.action) for m in found] == [("a", "flag"), ("b", "flag")]  # once per rule
    for match in found:
        assert match.evidence.startswith(f"not examined: {reason}")
        assert match.element_path == "MsgBody[0].MsgContent.ImageInfoArray[2].URL"


def test_pictures_the_scan_was_not_given_are_not_its_to_examine() -> None:
    # the worker gives only the pictures it could recall (the suspect's); the others are left alone
    message = msg(text("scan this"), image_elem("img"))
    assert BLOCK.scanner().feed_many([message]) == []
    assert BLOCK.scanner().feed_many([message], media={"other#3": Media("other#3", None, "x")}) == []


def test_messages_without_pictures_cost_nothing_and_match_nothing() -> None:
    assert BLOCK.scanner().feed_many([msg(text(BAD_URL))]) == []


def test_media_rules_ask_for_media() -> None:
    assert BLOCK.wants_media
    assert not ruleset(rule("links", "l", block=["scam-example.com"])).wants_media


# --- rule files -----------------------------------------------------------------------------------------

RULE_FILE = """\
rulesets:
  default:
    rules:
      - id: scam-qr
        type: qr
        action: recall
        block: [scam-example.com, "not a domain"]
        keywords: [ok, "\u200b"]
        formats: [QRCode, Bogus]
        colour: red
"""


def test_rule_file_problems_are_reported_with_lines() -> None:
    with pytest.raises(RulesError) as caught:
        load_text(RULE_FILE)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (10, "rule 'scam-qr': colour: Extra inputs are not permitted")
    ]
    with pytest.raises(RulesError) as caught:
        load_text(RULE_FILE.replace("        colour: red\n", ""))
    assert sorted((p.line, p.message) for p in caught.value.problems) == [
        (7, "rule 'scam-qr': 'not a domain' is not a domain name"),
        (8, "rule 'scam-qr': keyword '\\u200b' is empty once normalized"),
        (9, "rule 'scam-qr': 'Bogus' is not a barcode format zxing-cpp knows"),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "give block, block_file, keywords, keywords_file or any: true"),
        ({"allow": ["a.example"], "keywords": ["x"]}, "allow and allow_file only make exceptions to block"),
        ({"any": "sometimes"}, "any: Input should be a valid boolean"),
    ],
)
def test_rule_parameters_are_checked(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        ruleset(rule("qr", "q", **params))


def test_list_files_are_read_relative_to_the_rule_file(tmp_path: Path) -> None:
    (tmp_path / "domains.txt").write_text("# scam domains\nscam-example.com\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("加群\n", encoding="utf-8")
    (tmp_path / "rules.yaml").write_text(
        "rulesets:\n  default:\n    rules:\n"
        "      - {id: q, type: qr, action: recall, block_file: domains.txt, keywords_file: words.txt}\n",
        encoding="utf-8",
    )
    book = load_file(tmp_path / "rules.yaml")
    assert tmp_path / "domains.txt" in book.sources
    found = scan_pictures(
        book.get("default"), encode(qr_scene(BAD_URL, 300)), encode(qr_scene("扫码加群", 300))
    )
    assert [m.normalized for m in found] == ["pay.scam-example.com", "加群"]
