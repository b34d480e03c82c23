"""``image_hash``: pictures near a known one, by PDQ perceptual hash (Meta's, as hash-sharing programmes use).

Parameters:

* ``hashes``: PDQ hashes, 64 hex digits each, optionally followed by a label: ``"f8f8f0ce...9b22 scam-qr-1"``.
* ``hashes_file``: file(s) of the same, one a line, relative to the rule file::

      # known scam flyers (lines starting with # are comments)
      f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22  flyer 2024-05 # a trailing comment
      e2d4d6e4b2...                                                     (no label: the hash's first 16 digits)

  A line is the hash, then optionally whitespace and a label (up to a `` #`` that starts a comment).
* ``threshold``: the largest Hamming distance (of 256 bits) that is a match; default 31, PDQ's own.
* ``min_quality``: PDQ's quality (0-100) below which a picture's hash is not compared; default 50. Flat or
  nearly flat pictures (one colour: quality 0; a smooth gradient: 44; the tests' nearly flat poster: 45)
  have hashes that say little and collide with each other's. Such a picture is not compared (no match).

Each picture of :func:`rules.media.media_refs` (images, video thumbnails, image files) is hashed once per
scan call, whatever the number of rules, and compared with every list at once (XOR and popcount in numpy:
see ``rules/README.md`` for the speed). A picture shorter than 512 pixels on its longer side (a chat
thumbnail) is first enlarged to 1000 (bicubic): PDQ's own downsampling filter depends on the picture's size,
and the hashes of 264-pixel thumbnails measured up to 20 bits (median 12) from their originals', against up
to 10 (median 5) once enlarged (32 generated pictures). A larger picture is shrunk to 1500 pixels first: at
most 2 bits from the full-size hash of a 12-megapixel picture, and 3.8x less time than at 2048.

A match names the nearest entry: ``evidence`` ``pdq <hash> distance <d> to <label>``, ``normalized`` the
entry's hash, ``element_path`` the picture's URL field. A picture that could not be examined gives one match
per rule with action ``flag`` and evidence ``not examined: <reason>``, as in ``qr``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pdqhash  # type: ignore[import-untyped]
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.api import CompileContext, Matcher, Window
from rules.media import Media
from rules.model import Match, RuleSpec
from rules.types._lists import entries
from rules.types._media import decoded, not_examined, picture, refs_by_message
from rules.view import Batch

#: Pictures whose longer side is under this are enlarged before hashing ...
SMALL_SIDE: Final = 512
#: ... to this longer side. (Not 1024: PDQ's filter runs 2.8x slower on rows of 1024 pixels, 24 ms against
#: 8.6 ms for 1000, measured; a power-of-two row length defeats the CPU cache.)
ENLARGED_SIDE: Final = 1000
#: Longer side a picture is shrunk to before hashing (PDQ takes 24 ms at 1500 x 1125, 89 ms at 2048 x 1536).
MAX_SIDE: Final = 1500
HASH_BITS: Final = 256
HASH_BYTES: Final = HASH_BITS // 8

_ENTRY = re.compile(r"\s*(?P<hash>[0-9a-fA-F]{64})(?P<rest>\s.*)?", re.DOTALL)
_COMMENT = re.compile(r"(?:^|\s)#")
_POPCOUNT: Final = np.array([bin(n).count("1") for n in range(256)], dtype=np.uint8)
_HAS_BITWISE_COUNT: Final = hasattr(np, "bitwise_count")


class ImageHashParams(BaseModel):
    """Parameters of an ``image_hash`` rule."""

    model_config = ConfigDict(extra="forbid")

    hashes: list[str] = Field(
        default_factory=list, description="PDQ hashes (64 hex digits), each optionally followed by a label."
    )
    hashes_file: str | list[str] | None = Field(
        default=None, description="File(s) of PDQ hashes, one a line ('HASH [label]'); '#' comments."
    )
    threshold: int = Field(
        default=31, ge=0, le=HASH_BITS, description="Largest Hamming distance (of 256 bits) that matches."
    )
    min_quality: int = Field(
        default=50, ge=0, le=100, description="PDQ quality under which a picture's hash is not compared."
    )

    @model_validator(mode="after")
    def _has_hashes(self) -> ImageHashParams:
        if not self.hashes and not self.hashes_file:
            raise ValueError("give hashes or hashes_file")
        return self


def parse_entry(line: str) -> tuple[bytes, str] | None:
    """``(hash, label)`` of a hash list line (``HASH [label] [# comment]``); None if it is not one. The label
    defaults to the hash's first 16 hex digits."""
    found = _ENTRY.fullmatch(line)
    if found is None:
        return None
    digits = found["hash"].lower()
    label = _COMMENT.split(found["rest"] or "", maxsplit=1)[0].strip()
    return bytes.fromhex(digits), label or digits[:16]


def pdq(image: Image.Image) -> tuple[bytes, int]:
    """``(hash, quality)``: the PDQ hash of a picture (32 bytes, in the order of its usual hex form) and
    PDQ's quality (0-100), after the resizing described in the module's documentation.

    PDQ hashes luminance only (0.299 R + 0.587 G + 0.114 B, as Pillow's ``L`` mode), so the picture is
    resized in ``L``: a third of the work of resizing in RGB.
    """
    if image.mode != "L":
        image = image.convert("L")
    longest = max(image.size)
    if longest < SMALL_SIDE:
        scale = ENLARGED_SIDE / longest
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    elif longest > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    grey = np.asarray(image)
    bits, quality = pdqhash.compute(np.repeat(grey[:, :, None], 3, axis=2))  # it takes RGB arrays only
    # pdqhash returns bit k of the C++ Hash256 (word k >> 4, bit k & 15) at index 255 - k: most significant
    # bit of word 15 first, which is the order of the hex form ("%04hx" of w[15] down to w[0]).
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes(), int(quality)


class HashIndex:
    """Hashes (32 bytes each) and the distances of a query to all of them at once.

    Brute force, column by column: the hashes are kept as four arrays of 64-bit words (word ``j`` of every
    hash in one contiguous array), so a query is four XORs and four popcounts over contiguous memory.
    Measured on one core (``python -m tests.bench media``): about 35 µs a query among 10,000 hashes (7x
    faster than the same popcount over an ``(n, 4)`` array summed along rows, 15x faster than a Python
    loop), 0.3 ms among 100,000. Hashing the picture costs 12 ms or more, so a BK-tree or a multi-index is
    not worth its upkeep.
    """

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.size = len(hashes)
        rows = np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(self.size, HASH_BYTES // 8)
        self._columns = [np.ascontiguousarray(rows[:, j]) for j in range(HASH_BYTES // 8)]
        self._bytes = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(self.size, HASH_BYTES)

    def distances(self, query: bytes) -> npt.NDArray[np.uint16]:
        """The Hamming distance from ``query`` to every hash, in order."""
        if not _HAS_BITWISE_COUNT:  # numpy < 2.0: a byte table, about 20x slower
            table: npt.NDArray[np.uint16] = _POPCOUNT[self._bytes ^ np.frombuffer(query, np.uint8)].sum(
                axis=1, dtype=np.uint16
            )
            return table
        words = np.frombuffer(query, dtype=np.uint64)
        counts = [
            np.bitwise_count(np.bitwise_xor(column, word))
            for column, word in zip(self._columns, words, strict=True)
        ]
        # uint8 counts of 64 bits each; their sum needs 9 bits (a distance of 256 must not wrap to 0).
        total: npt.NDArray[np.uint16] = np.add(counts[0], counts[1], dtype=np.uint16)
        for count in counts[2:]:
            total += count
        return total


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: int
    digest: bytes
    label: str


class ImageHashType:
    """The ``image_hash`` rule type."""

    name = "image_hash"
    params = ImageHashParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """One index of every hash of every image_hash rule of the rule set."""
        found: list[_Entry] = []
        for r, rule in enumerate(rules):
            params = rule.params_as(ImageHashParams)
            lines = entries(context, rule, params.hashes, params.hashes_file, "hashes_file")
            for k, line in enumerate(lines):
                entry = parse_entry(line)
                if entry is None:
                    loc: tuple[str | int, ...] = ("hashes", k) if k < len(params.hashes) else ("hashes_file",)
                    context.report(rule, f"{line!r} is not a PDQ hash (64 hex digits, then a label)", *loc)
                    continue
                found.append(_Entry(r, *entry))
        return ImageHashMatcher(rules, found)


class ImageHashMatcher:
    """Every image_hash rule of a rule set: each picture is hashed once and compared with every list."""

    #: Tells :attr:`rules.engine.RuleSet.wants_media` that scans should be given the pictures' bytes.
    wants_media = True

    def __init__(self, rules: Sequence[RuleSpec], entries: Sequence[_Entry]) -> None:
        self.rules = tuple(rules)
        params = [r.params_as(ImageHashParams) for r in rules]
        self._entries = tuple(entries)
        self._index = HashIndex([e.digest for e in entries])
        self._owner = np.array([e.rule for e in entries], dtype=np.int64)
        self._row_threshold = np.array([params[e.rule].threshold for e in entries], dtype=np.int64)
        self._min_quality = tuple(p.min_quality for p in params)

    def window(self) -> Window | None:
        """No window: each message stands alone."""
        return None

    def hash(self, media: Media | None) -> tuple[bytes, int] | str:
        """``(PDQ hash, quality)`` of a picture, or why it could not be examined."""
        return self.hash_of(picture(media))

    @staticmethod
    def hash_of(image: Image.Image | str) -> tuple[bytes, int] | str:
        """``(PDQ hash, quality)`` of a decoded picture (or the reason it could not be decoded, handed on)."""
        return image if isinstance(image, str) else pdq(image)

    def nearest(self, digest: bytes) -> dict[int, tuple[int, int]]:
        """``rule index -> (distance, entry index)``: each rule's nearest entry within its threshold."""
        if not self._entries:
            return {}
        distances = self._index.distances(digest)
        best: dict[int, tuple[int, int]] = {}
        for i in np.flatnonzero(distances <= self._row_threshold).tolist():
            rule, distance = int(self._owner[i]), int(distances[i])
            if rule not in best or distance < best[rule][0]:
                best[rule] = (distance, i)
        return best

    def scan(self, batch: Batch) -> Iterable[Match]:
        """The matches in the pictures of a batch (each distinct picture hashed once)."""
        out: list[Match] = []
        hashed: dict[str, tuple[bytes, int, dict[int, tuple[int, int]]] | str] = {}
        for msg_key, ref, wanted in refs_by_message(batch, self.rules):
            result = hashed.get(ref.uuid)
            if result is None:
                found = self.hash_of(decoded(batch, ref.uuid))
                result = hashed[ref.uuid] = (
                    found if isinstance(found, str) else (*found, self.nearest(found[0]))
                )
            if isinstance(result, str):
                out.extend(not_examined(self.rules[n], msg_key, ref, result) for n in wanted)
                continue
            digest, quality, nearest = result
            for n in wanted:
                if n not in nearest or quality < self._min_quality[n]:
                    continue
                distance, i = nearest[n]
                entry = self._entries[i]
                text = f"pdq {digest.hex()} distance {distance} to {entry.label}"
                out.append(self.rules[n].match(msg_key, ref.element_path, text, entry.digest.hex()))
        return out
