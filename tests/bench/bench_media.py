"""The media rules (``qr``, ``image_hash``): speed on one core, QR reading rates, PDQ against pHash.

Everything is generated from fixed seeds (the pictures of ``tests/rules/test_qr.py`` and
``tests/rules/test_image_hash.py``, plus "natural" ones: 1/f noise under shapes and text). The process is
pinned to one core while it runs (``os.sched_setaffinity``), as the figures are per core.

* Speed, in pictures per second, from the JPEG bytes to the result (decoding included): the ``qr`` reading
  against Pillow decoding the same bytes alone; PDQ hashing against pHash (``imagehash``) of the same picture;
  a lookup in a list of 10,000 (and 100,000) hashes against the same in a Python loop and in numpy over rows.
* QR reading rate by code size: the share of pictures read over 4 angles and 10 noise/quality variants, with
  the second reading (smoothed, enlarged if small) against the first alone.
* PDQ against pHash: for each edit (re-encoding, resizing, crops) the share of pictures matched at each
  hash's usual threshold (PDQ 31 of 256 bits, pHash 10 of 64), and the false matches among different
  pictures. A fuller table (dHash, wider thresholds, worst distances) goes to stderr.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from rules.images import decode_image
from rules.media import Media
from rules.types import qr as qr_type
from rules.types.image_hash import HashIndex, pdq
from tests.bench import Row
from tests.rules.helpers import rule, ruleset
from tests.rules.test_image_hash import EDITS as TESTED_EDITS
from tests.rules.test_image_hash import crop_corner, poster
from tests.rules.test_qr import BAD_URL, background, encode, gaussian_noise, qr_scene, salt_and_pepper

BENCH = "media"
PDQ_THRESHOLD = 31
PHASH_THRESHOLD = 10
LISTED = 40  # pictures whose hashes are listed (half posters, half "natural")
DIFFERENT = 150  # other pictures, each compared with every listed one


@contextmanager
def one_core() -> Iterator[int | None]:
    """Run on one core (the last this process may use) and restore the affinity afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    core = max(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


def rate(action: Callable[[], object], items: int, repeats: int = 3, min_seconds: float = 0.3) -> float:
    """Items per second of ``action`` (which handles ``items`` items), the best of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        rounds, started = 0, time.perf_counter()
        while True:
            action()
            rounds += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / rounds)
    return items / best


def natural(seed: int, width: int = 800, height: int = 600) -> Image.Image:
    """Colour 1/f noise (the spectrum of photographs) blended with a poster."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    falloff = (fx**2 + fy**2) ** 0.9
    falloff[0, 0] = 1
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=(height, width)) + 1j * rng.normal(size=(height, width))) / falloff
        layer = np.real(np.fft.ifft2(spectrum))
        channels.append((layer - layer.min()) / (layer.max() - layer.min()) * 255)
    noise = Image.fromarray(np.stack(channels, -1).astype("uint8"))
    return Image.blend(noise, poster(seed + 5000, width, height), 0.5)


# --- speed ----------------------------------------------------------------------------------------------


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _qr_matcher(formats: Sequence[str] = ()) -> qr_type.QrMatcher:
    params: dict[str, Any] = {"formats": list(formats)} if formats else {}
    matcher = ruleset(rule("qr", "q", block=["scam-example.com"], **params)).matchers[0]
    assert isinstance(matcher, qr_type.QrMatcher)
    return matcher


def speed_rows() -> list[Row]:
    """Pictures per second for the qr reading and PDQ hashing, and lookups per second in a hash list."""
    rows: list[Row] = []
    every = _qr_matcher()
    qr_only = _qr_matcher(["QRCode"])
    pictures = {
        "264x198 thumbnail with a code": encode(qr_scene(BAD_URL, 140).resize((264, 198)), quality=80),
        "720x960 with a code": encode(qr_scene(BAD_URL, 400).resize((720, 960)), quality=85),
        "720x960 without a code": encode(natural(1, 720, 960), quality=85),
        "3000x4000 photo without a code": encode(natural(2, 750, 1000).resize((3000, 4000)), quality=85),
    }
    for name, data in pictures.items():
        media = Media("x", data)
        decoded = rate(lambda data=data: _decode(data), 1)
        found = every.read(media)
        assert isinstance(found, list)
        assert ("without" in name) == (not found), (name, found)
        for label, matcher in (("all formats", every), ("formats [QRCode]", qr_only)):
            read = rate(lambda m=media, matcher=matcher: matcher.read(m), 1)
            rows.append(
                Row(BENCH, f"qr read, {label}: {name}", read, "pictures/s", decoded, "Pillow decode alone")
            )
    # What the second reading costs where it runs: on every picture without a code.
    grey = decode_image(pictures["720x960 without a code"], "L")
    assert not isinstance(grey, str)
    both, first = rate(lambda: qr_type.read_codes(grey), 1), rate(lambda: qr_type.read_once(grey), 1)
    figure = "qr both readings, 720x960 without a code (all formats)"
    rows.append(Row(BENCH, figure, both, "pictures/s", first, "first reading alone"))

    for name, data in {
        "264x198 thumbnail": encode(poster(0).resize((264, 198)), quality=80),
        "720x960": encode(natural(3, 720, 960), quality=85),
        "3000x4000 photo": encode(natural(4, 750, 1000).resize((3000, 4000)), quality=85),
    }.items():

        def hash_pdq(data: bytes = data) -> object:
            image = decode_image(data, "RGB", max_side=2048)
            assert not isinstance(image, str)
            return pdq(image)

        def hash_phash(data: bytes = data) -> object:
            return imagehash.phash(_decode(data))

        figure = f"PDQ hash (decode, resize, hash): {name}"
        rows.append(
            Row(BENCH, figure, rate(hash_pdq, 1), "pictures/s", rate(hash_phash, 1), "decode + pHash")
        )

    rng = np.random.default_rng(7)
    for count in (10_000, 100_000):
        rows.extend(lookup_rows([bytes(row) for row in rng.integers(0, 256, (count, 32), dtype=np.uint8)]))
    return rows


def lookup_rows(hashes: Sequence[bytes]) -> list[Row]:
    """Lookups per second in a list of ``hashes``: the rule's index against two simpler ways."""
    count = len(hashes)
    index = HashIndex(hashes)
    query = hashes[count // 2]
    assert int(index.distances(query).min()) == 0
    by_rows = np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(count, 4)
    words = np.frombuffer(query, dtype=np.uint64)
    as_ints = [int.from_bytes(h) for h in hashes]
    q = int.from_bytes(query)
    ours = rate(lambda: index.distances(query), 1)
    loop = rate(lambda: [(h ^ q).bit_count() for h in as_ints], 1)
    numpy_rows = rate(lambda: np.bitwise_count(by_rows ^ words).sum(axis=1), 1)
    figure = f"hash list lookup, {count:,} hashes"
    return [
        Row(BENCH, figure, ours, "lookups/s", loop, "Python loop, int.bit_count"),
        Row(BENCH, figure, ours, "lookups/s", numpy_rows, "numpy popcount over (n, 4) rows"),
    ]


# --- QR reading rates -----------------------------------------------------------------------------------


def qr_variants(side: int) -> Iterator[bytes]:
    """40 pictures of one code size: 4 angles x (clean, Gaussian 20/40, salt and pepper 5/10%) x JPEG
    quality 90/20."""
    for angle in (0, 90, 12, 180):
        scene = qr_scene(BAD_URL, side, angle, seed=side + angle)
        for noise in range(5):
            seed = side * 10 + angle + noise
            noisy = [
                scene,
                gaussian_noise(scene, 20, seed),
                gaussian_noise(scene, 40, seed),
                salt_and_pepper(scene, 0.05, seed),
                salt_and_pepper(scene, 0.10, seed),
            ][noise]
            for quality in (90, 20):
                yield encode(noisy, quality=quality)


def qr_rate_rows() -> list[Row]:
    """The share of QR codes read, by size, with and without the second reading."""
    rows: list[Row] = []
    for side in (60, 80, 100, 150, 200, 400, 800):
        both = first = total = 0
        for data in qr_variants(side):
            grey = decode_image(data, "L", max_side=qr_type.MAX_SIDE)
            assert not isinstance(grey, str)
            total += 1
            first += any(code.text == BAD_URL for code in qr_type.read_once(grey))
            both += any(code.text == BAD_URL for code in qr_type.read_codes(grey))
        figure = f"QR codes read, {side} px wide (of {total})"
        rows.append(Row(BENCH, figure, 100 * both / total, "%", 100 * first / total, "first reading alone"))
    # False reads: codes found in pictures that hold none.
    false_reads = 0
    for seed in range(60):
        for picture in (natural(100 + seed, 720, 540), background(720, 540, 100 + seed), poster(100 + seed)):
            grey = decode_image(encode(picture), "L")
            assert not isinstance(grey, str)
            false_reads += len(qr_type.read_codes(grey))
    rows.append(Row(BENCH, "codes read in 180 pictures without one (all formats)", false_reads, "codes"))
    return rows


# --- PDQ against pHash ----------------------------------------------------------------------------------

#: The rule tests' edits, and two harsher ones the benchmark measures the hashes on as well.
EDITS: dict[str, Callable[[Image.Image], bytes]] = {
    **TESTED_EDITS,
    "jpeg 10": lambda image: encode(image, quality=10),
    "crop 5% from a corner": lambda image: encode(crop_corner(image, 0.05)),
}


def _bits(value: Any) -> bytes:
    """A hash as bytes (PDQ's already are; imagehash's boolean array packed)."""
    return value if isinstance(value, bytes) else np.packbits(value.hash.flatten()).tobytes()


def _distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a) ^ int.from_bytes(b)).bit_count()


HASHES: dict[str, Callable[[Image.Image], bytes]] = {
    "PDQ": lambda image: pdq(image)[0],
    "pHash": lambda image: _bits(imagehash.phash(image)),
    "dHash": lambda image: _bits(imagehash.dhash(image)),
}
THRESHOLDS = {"PDQ": (31, 47, 63), "pHash": (6, 8, 10, 12), "dHash": (6, 8, 10, 12)}


def robustness_rows() -> list[Row]:
    """Matches after each edit and among different pictures, PDQ (at 31) against pHash (at 10)."""
    listed = [poster(seed) for seed in range(LISTED // 2)] + [natural(seed) for seed in range(LISTED // 2)]
    # As the rule does: pictures of PDQ quality under 50 are not compared.
    listed = [image for image in listed if pdq(image)[1] >= 50]
    others = [poster(1000 + s) for s in range(DIFFERENT // 2)] + [
        natural(1000 + s) for s in range(DIFFERENT // 2)
    ]
    decoded = {}
    for edit, apply in EDITS.items():
        decoded[edit] = []
        for image in listed:
            found = decode_image(apply(image))
            assert not isinstance(found, str)
            decoded[edit].append(found)
    table: list[str] = [f"{len(listed)} listed pictures (PDQ quality >= 50), {len(others)} different ones"]
    rows: list[Row] = []
    for name, hasher in HASHES.items():
        originals = [hasher(image) for image in listed]
        for edit, images in decoded.items():
            distances = [
                _distance(hasher(image), original) for image, original in zip(images, originals, strict=True)
            ]
            shares = "  ".join(
                f"<={t}: {100 * sum(d <= t for d in distances) / len(distances):3.0f}%"
                for t in THRESHOLDS[name]
            )
            table.append(
                f"{name:5} {edit:30} worst {max(distances):3d}  median {np.median(distances):5.1f}  {shares}"
            )
        nearest = [_distance(hasher(other), original) for other in others for original in originals]
        shares = "  ".join(f"<={t}: {sum(d <= t for d in nearest)}" for t in THRESHOLDS[name])
        table.append(
            f"{name:5} {'different pictures':30} nearest {min(nearest)}  1st percentile "
            f"{np.percentile(nearest, 1):.0f}  of {len(nearest)} pairs, false matches {shares}"
        )
    print("\n".join(table), file=sys.stderr)

    pdq_listed = [pdq(image)[0] for image in listed]
    phash_listed = [_bits(imagehash.phash(image)) for image in listed]
    for edit, images in decoded.items():
        pdq_share = sum(
            _distance(pdq(i)[0], h) <= PDQ_THRESHOLD for i, h in zip(images, pdq_listed, strict=True)
        )
        phash_share = sum(
            _distance(_bits(imagehash.phash(i)), h) <= PHASH_THRESHOLD
            for i, h in zip(images, phash_listed, strict=True)
        )
        figure = f"matched after {edit} (PDQ <= 31 vs pHash <= 10)"
        share, baseline = 100 * pdq_share / len(images), 100 * phash_share / len(images)
        rows.append(Row(BENCH, figure, share, "%", baseline, "pHash"))
    pdq_nearest = min(_distance(pdq(o)[0], h) for o in others for h in pdq_listed)
    phash_nearest = min(_distance(_bits(imagehash.phash(o)), h) for o in others for h in phash_listed)
    figure = "nearest different picture / threshold (PDQ 31 vs pHash 10)"
    rows.append(
        Row(BENCH, figure, pdq_nearest / PDQ_THRESHOLD, "x", phash_nearest / PHASH_THRESHOLD, "pHash")
    )
    return rows


def run() -> list[Row]:
    """Every figure, on one core."""
    with one_core():
        return [*speed_rows(), *qr_rate_rows(), *robustness_rows()]
