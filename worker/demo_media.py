"""The demo's pictures: a QR code leading to a blocked site, a known spam picture posted again at another
size and quality, and an innocent photo. Drawn here (no image files ship with the project), deterministic,
so the shipped hash list (``rules/examples/known-spam-images.txt``) holds the known picture's PDQ hash.
"""

from __future__ import annotations

import io
import random

import segno
from PIL import Image, ImageDraw

#: What the QR code in the spam picture encodes (its domain is on the shipped block list).
QR_PAYLOAD = "https://scam-example.com/vip-group?invite=7731"


def _picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A busy, structured picture (gradient, shapes) drawn from ``seed``: the same seed, the same picture."""
    draw_random = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size)
    top = tuple(draw_random.randrange(256) for _ in range(3))
    bottom = tuple(draw_random.randrange(256) for _ in range(3))
    pixels = ImageDraw.Draw(image)
    for y in range(height):
        mix = y / (height - 1)
        pixels.line(
            [(0, y), (width, y)],
            fill=tuple(round(a * (1 - mix) + b * mix) for a, b in zip(top, bottom, strict=True)),
        )
    for _ in range(14):
        x, y = draw_random.randrange(width), draw_random.randrange(height)
        r = draw_random.randrange(20, 120)
        colour = tuple(draw_random.randrange(256) for _ in range(3))
        if draw_random.random() < 0.5:
            pixels.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            pixels.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=colour)
    return image


def _encode(image: Image.Image, image_format: str, **options: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def known_spam_picture() -> Image.Image:
    """The promotional picture the moderators have seen before (its hash is on the list)."""
    return _picture(2024)


def reposted_spam_picture() -> bytes:
    """The known picture as the spammer posts it again: 75 % of the size, re-encoded as a lossy JPEG."""
    image = known_spam_picture()
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    return _encode(smaller, "JPEG", quality=70)


def qr_spam_picture() -> bytes:
    """A poster with a QR code to a blocked site on it."""
    poster = _picture(77, (600, 800))
    code = segno.make(QR_PAYLOAD, error="m")
    out = io.BytesIO()
    code.save(out, kind="png", scale=10, border=4)
    qr = Image.open(io.BytesIO(out.getvalue())).convert("RGB")
    poster.paste(qr, ((poster.width - qr.width) // 2, (poster.height - qr.height) // 2))
    return _encode(poster, "PNG")


def innocent_photo(seed: int = 9) -> bytes:
    """A holiday photo (as far as the rules are concerned): nothing to find in it."""
    return _encode(_picture(seed), "JPEG", quality=88)
