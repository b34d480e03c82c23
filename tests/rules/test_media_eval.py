"""Pictures from untrusted bytes (``rules.images``) and ``rules eval --media-dir``."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rules.cli import add_rules_commands, media_file_names, read_media
from rules.images import decode_image
from rules.media import MediaRef
from rules.types.image_hash import pdq
from rules.types.qr import read_codes
from tests.rules.test_image_hash import poster
from tests.rules.test_qr import BAD_URL, INNOCENT_URL, encode, png_bomb, qr_code, qr_scene

# --- decoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_the_five_formats_decode(fmt: str) -> None:
    image = decode_image(encode(Image.new("RGB", (120, 80), (200, 30, 30)), fmt))
    assert not isinstance(image, str)
    assert (image.mode, image.size) == ("RGB", (120, 80))


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "PCX", "TGA"])
def test_other_formats_are_refused_unparsed(fmt: str) -> None:
    assert (
        decode_image(encode(Image.new("RGB", (32, 32)), fmt)) == "not a picture in PNG, JPEG, GIF, WEBP, BMP"
    )


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    started = time.perf_counter()
    reason = decode_image(png_bomb())
    assert isinstance(reason, str)
    assert reason.startswith("refused: decompression bomb")
    assert time.perf_counter() - started < 0.5  # 400 megapixels announced, none decoded


def test_pictures_over_max_pixels_are_refused_without_decoding() -> None:
    data = encode(Image.new("RGB", (1000, 1000)), "PNG")
    assert decode_image(data, max_pixels=999_999) == "refused: 1000x1000 pixels (limit 999999)"
    assert not isinstance(decode_image(data, max_pixels=1_000_000), str)


def test_pillows_own_guard_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    over_twice = encode(Image.new("RGB", (150, 150)), "PNG")  # 22,500 > 2 x 10,000: DecompressionBombError
    over = encode(Image.new("RGB", (120, 100)), "PNG")  # 12,000: DecompressionBombWarning
    reason = decode_image(over_twice, max_pixels=10**9)
    assert isinstance(reason, str)
    assert reason.startswith("refused: decompression bomb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under pytest: the warning raises, and is caught
        reason = decode_image(over, max_pixels=10**9)
        assert isinstance(reason, str)
        assert reason.startswith("refused: decompression bomb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in production: the warning is logged; the size check refuses
        assert decode_image(over, max_pixels=10**9) == "refused: 120x100 pixels (limit 10000)"


def test_no_global_state_is_changed() -> None:
    before = Image.MAX_IMAGE_PIXELS
    decode_image(png_bomb())
    decode_image(encode(Image.new("RGB", (10, 10))))
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a picture in"),
        (encode(Image.new("RGB", (400, 400)))[:300], "undecodable: OSError"),
    ],
)
def test_broken_files_give_a_reason(data: bytes, reason: str) -> None:
    found = decode_image(data)
    assert isinstance(found, str)
    assert found.startswith(reason)


def test_too_many_bytes_are_refused() -> None:
    assert decode_image(b"\xff" * 2000, max_bytes=1000) == "refused: 2000 bytes (limit 1000)"


def test_transparent_parts_are_laid_on_white() -> None:
    # A black QR code on a transparent background: black on black unless laid on white.
    code = qr_code(BAD_URL, 200).convert("L")
    rgba = Image.new("RGBA", code.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(code, lambda v: 255 - v))
    data = encode(rgba, "PNG")
    grey = decode_image(data, "L")
    assert not isinstance(grey, str)
    assert grey.getpixel((0, 0)) == 255
    assert [c.text for c in read_codes(grey)] == [BAD_URL]
    assert read_codes(Image.open(io.BytesIO(data)).convert("L")) == []  # what a plain conversion gives
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 255, 255, 255])
    found = decode_image(encode(palette, "PNG", transparency=0))
    assert not isinstance(found, str)
    assert found.getpixel((0, 0)) == (255, 255, 255)


def test_animations_give_their_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    for fmt, extra in (("GIF", {}), ("WEBP", {"lossless": True})):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **extra)
        found = decode_image(buf.getvalue())
        assert not isinstance(found, str)
        assert found.getpixel((0, 0)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    found = decode_image(encode(image, exif=exif))
    assert not isinstance(found, str)
    assert found.size == (100, 200)


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    ramp = Image.fromarray(np.linspace(0, 65535, 256 * 16).astype("uint16").reshape(16, 256))
    found = decode_image(encode(ramp, "PNG"), "L")
    assert not isinstance(found, str)
    pixels = np.asarray(found)
    assert pixels.min() == 0
    assert pixels.max() == 255
    assert 100 < pixels.mean() < 155


def test_max_side_shrinks_large_jpegs() -> None:
    found = decode_image(encode(poster(0, 3000, 2000)), max_side=1000)
    assert not isinstance(found, str)
    assert found.size == (1000, 667)


# --- rules eval --media-dir -----------------------------------------------------------------------------

RULES = f"""\
rulesets:
  default:
    rules:
      - id: scam-qr
        type: qr
        action: recall
        block: [scam-example.com]
      - id: known-pictures
        type: image_hash
        action: recall
        hashes: ["{{poster}} poster zero"]
  text:
    rules:
      - id: spam
        type: keywords
        action: recall
        words: [{BAD_URL.split("//")[1].split("/")[0]}]
"""


def image_item(key: str, uuid: str) -> dict[str, Any]:
    infos = [
        {"Type": 1, "Size": 90000, "Width": 1200, "Height": 900, "URL": f"https://cos.example/{uuid}/1"},
        {"Type": 3, "Size": 9000, "Width": 264, "Height": 198, "URL": f"https://cos.example/{uuid}/3"},
    ]
    body = [
        {"MsgType": "TIMImageElem", "MsgContent": {"UUID": uuid, "ImageFormat": 1, "ImageInfoArray": infos}}
    ]
    return {"MsgKey": key, "From_Account": "u1", "MsgTimeStamp": 100, "MsgBody": body}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A rule file, a message file of four images, and a media directory holding three of them."""
    digest = pdq(poster(0))[0].hex()
    (tmp_path / "rules.yaml").write_text(RULES.replace("{poster}", digest), encoding="utf-8")
    items = [image_item(f"k{n}", uuid) for n, uuid in enumerate(["qr-bad", "qr-fine", "poster", "missing"])]
    items.append(image_item("k4", "../../etc/passwd"))
    (tmp_path / "messages.json").write_text(json.dumps(items), encoding="utf-8")
    media = tmp_path / "media"
    media.mkdir()
    (media / "qr-bad#3").write_bytes(encode(qr_scene(BAD_URL, 180)))  # named as media_refs spells it
    (media / "qr-fine").write_bytes(encode(qr_scene(INNOCENT_URL, 180)))  # or by the element's UUID
    (media / "poster").write_bytes(encode(poster(0).resize((264, 198)), quality=80))
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, str]], str]:
    parser = argparse.ArgumentParser(prog="recall-worker")
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("order", ["options first", "options last"])
def test_eval_reads_pictures_from_the_media_dir(
    order: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(workspace / "rules.yaml"), str(workspace / "messages.json")]
    media = ["--media-dir", str(workspace / "media")]
    argv = ["rules", "eval", files[0], *media, files[1]] if order == "options first" else [
        "rules", "eval", files[0], files[1], *media
    ]  # fmt: skip
    code, matches, err = run(argv, capsys)
    assert code == 0
    assert err == ""
    found = [(m["msg_key"], m["rule_id"], m["action"], m["evidence"]) for m in matches]
    assert found[0] == ("k0", "scam-qr", "recall", f"{BAD_URL} in image qr-bad#3")
    assert found[1][:3] == ("k2", "known-pictures", "recall")
    assert found[1][3].startswith("pdq ")
    assert found[1][3].endswith(" to poster zero")
    assert found[2:] == [
        ("k3", "scam-qr", "flag", "not examined: no file missing#3 or missing"),
        ("k3", "known-pictures", "flag", "not examined: no file missing#3 or missing"),
        ("k4", "scam-qr", "flag", "not examined: no file name for '../../etc/passwd#3'"),
        ("k4", "known-pictures", "flag", "not examined: no file name for '../../etc/passwd#3'"),
    ]


def test_eval_without_media_dir_flags_every_picture(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, matches, err = run(
        ["rules", "eval", str(workspace / "rules.yaml"), str(workspace / "messages.json")], capsys
    )
    assert code == 0
    assert "give --media-dir DIR" in err
    assert {(m["action"], m["evidence"]) for m in matches} == {("flag", "not examined: no --media-dir given")}
    assert len(matches) == 10


def test_eval_of_a_text_rule_set_ignores_the_media_dir(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "rules",
        "eval",
        str(workspace / "rules.yaml"),
        "--ruleset",
        "text",
        "--media-dir",
        str(workspace / "media"),
    ]
    assert run([*argv, str(workspace / "messages.json")], capsys)[:3] == (0, [], "")


def test_eval_refuses_a_media_dir_that_is_not_one(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["rules", "eval", str(workspace / "rules.yaml"), "--media-dir", str(workspace / "nowhere")]
    code, _, err = run([*argv, str(workspace / "messages.json")], capsys)
    assert code == 2
    assert "not a directory" in err


def test_eval_as_a_command(workspace: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rules.cli", "rules", "eval", str(workspace / "rules.yaml"),
         "--media-dir", str(workspace / "media"), str(workspace / "messages.json")],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert [json.loads(line)["msg_key"] for line in result.stdout.splitlines()][:2] == ["k0", "k2"]


@pytest.mark.parametrize(
    ("uuid", "names"),
    [
        ("abc#3", ["abc#3", "abc"]),
        ("abc", ["abc"]),  # a video's ThumbUUID has no suffix
        ("#3", ["#3"]),
        ("a/b#3", []),
        ("..#3", ["..#3"]),
        ("..", []),
        ("x\0y#1", []),
    ],
)
def test_media_file_names(uuid: str, names: list[str]) -> None:
    assert media_file_names(MediaRef(uuid, "u", "image", "p")) == names


def test_read_media_refuses_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\0" * 2000)
    found = read_media(tmp_path, [MediaRef("big#3", "u", "image", "p")], max_bytes=1000)
    assert found["big#3"].data is None
    assert found["big#3"].reason == "refused: big is 2000 bytes (limit 1000)"
