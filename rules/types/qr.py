"""``qr``: QR codes and other barcodes in the pictures of a message, decoded and matched.

Parameters (any of them; a code matches when one of them does):

* ``block`` / ``block_file``, ``allow`` / ``allow_file``: domains in the decoded text, with exactly the
  ``links`` rule's semantics and code (subdomains blocked too, the most specific entry wins, obfuscations and
  IDN undone): a QR code of ``https://pay.bad.example/x`` matches ``block: [bad.example]``.
* ``keywords`` / ``keywords_file``: substrings of the decoded text, compared in the light normalized form
  (case, width, invisible characters and homoglyphs do not matter): ``weixin://``, ``t.me/``, ``加群``.
* ``any: true``: every code matches (a "no QR codes" policy). Mind ``formats``: with all of them, a photo of a
  product's EAN barcode matches too.
* ``formats``: the barcode formats read, by zxing-cpp's names (``QRCode``, ``MicroQRCode``, ``RMQRCode``,
  ``DataMatrix``, ``Aztec``, ``PDF417``, ``EAN13``, ``Code128``, ...); default all. Reading only QR codes is
  about 3x faster on pictures without a code (see ``rules/README.md``).

The pictures are those of :func:`rules.media.media_refs` (images, video thumbnails, image files; not inside
forwarded messages), read from the bytes the scan was given (``Scanner.feed_many(..., media=...)``). Each
picture is read once per scan call, whatever the number of rules: in greyscale (shrunk to 2048 pixels if
larger), and, when nothing is found, once more smoothed (a 3x3 box blur, which recovers codes under noise)
and, if small (under 400 pixels on its longer side), enlarged to twice its size first (which recovers codes
with modules under 2 pixels). The second reading takes 2.5x the time on a picture without a code, and reads
88-100% instead of 62-65% of the benchmark's noisy codes 100-200 pixels wide (``rules/README.md``).

A match's ``element_path`` is the picture's URL field (``MsgBody[0].MsgContent.ImageInfoArray[1].URL``); its
``evidence`` is the decoded text and the picture (``https://pay.bad.example/x in image <uuid>``); its
``normalized`` is the blocked domain, the keyword, or the code's format (``any``). A picture that could not
be examined (no bytes given, fetch refused, not a picture, too large) gives one match per rule with action
``flag`` whatever the rule's action (a human looks; nothing is recalled) and evidence
``not examined: <reason>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import zxingcpp
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules import normalize
from rules.api import CompileContext, Matcher, Window
from rules.media import Media, MediaRef
from rules.model import EVIDENCE_LIMIT, Match, RuleSpec, bound
from rules.phrases import automaton
from rules.types._lists import entries
from rules.types._media import decoded, not_examined, picture, refs_by_message
from rules.types.links import LinksMatcher, LinksParams, LinksType
from rules.view import Batch

#: Pictures whose longer side is under this are enlarged to twice their size for the second reading.
SMALL_SIDE: Final = 400
#: Longest decoded text quoted in evidence, in characters (the picture's UUID follows it).
PAYLOAD_LIMIT: Final = 150


class QrParams(BaseModel):
    """Parameters of a ``qr`` rule."""

    model_config = ConfigDict(extra="forbid")

    block: list[str] = Field(
        default_factory=list, description="Blocked domains in decoded codes (their subdomains too)."
    )
    block_file: str | list[str] | None = Field(default=None, description="File(s) of blocked domains.")
    allow: list[str] = Field(
        default_factory=list, description="Domains never reported (most specific entry wins)."
    )
    allow_file: str | list[str] | None = Field(default=None, description="File(s) of allowed domains.")
    keywords: list[str] = Field(
        default_factory=list, description="Substrings of decoded codes (light-normalized, any case)."
    )
    keywords_file: str | list[str] | None = Field(default=None, description="File(s) of keywords.")
    any: bool = Field(default=False, description="Every decoded code matches.")
    formats: list[str] = Field(
        default_factory=list,
        description="Barcode formats read (zxing-cpp names: QRCode, DataMatrix, EAN13, ...); default all.",
    )

    @model_validator(mode="after")
    def _has_something_to_match(self) -> QrParams:
        if not (self.any or self.block or self.block_file or self.keywords or self.keywords_file):
            raise ValueError("give block, block_file, keywords, keywords_file or any: true")
        if (self.allow or self.allow_file) and not (self.block or self.block_file):
            raise ValueError("allow and allow_file only make exceptions to block or block_file")
        return self


@dataclass(frozen=True, slots=True)
class Code:
    """One decoded barcode."""

    text: str
    kind: zxingcpp.BarcodeFormat

    @property
    def format(self) -> str:
        """The format's name, as rules write it: ``QRCode``, ``EAN13``, ..."""
        return self.kind.name


def read_codes(image: Image.Image, formats: zxingcpp.BarcodeFormats | None = None) -> list[Code]:
    """The barcodes in a greyscale picture (``formats``: all when None), read as described in the module's
    documentation: as it is, then smoothed (and enlarged if small) when nothing was found."""
    found = read_once(image, formats)
    if not found:
        second = image
        if max(image.size) < SMALL_SIDE:
            second = image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC)
        found = read_once(second.filter(ImageFilter.BoxBlur(1)), formats)
    return found


def read_once(image: Image.Image, formats: zxingcpp.BarcodeFormats | None = None) -> list[Code]:
    """The barcodes zxing-cpp reads in a picture as it is (its own rotations, downscaling and inversion
    included), each distinct code once."""
    results = zxingcpp.read_barcodes(image) if formats is None else zxingcpp.read_barcodes(image, formats)
    out: list[Code] = []
    for barcode in results:
        code = Code(barcode.text, barcode.format)
        if code not in out:
            out.append(code)
    return out


def formats_of(names: Sequence[str]) -> zxingcpp.BarcodeFormats:
    """zxing-cpp's formats of these names (raises ``ValueError`` for an unknown one)."""
    return zxingcpp.barcode_formats_from_str(",".join(names))


def evidence(payload: str, ref: MediaRef) -> str:
    """``<payload, bounded> in image <uuid>``."""
    suffix = f" in image {ref.uuid}"
    return bound(payload, max(20, min(PAYLOAD_LIMIT, EVIDENCE_LIMIT - len(suffix)))) + suffix


@dataclass(frozen=True)
class _Rule:
    spec: RuleSpec
    formats: frozenset[zxingcpp.BarcodeFormat] | None  # None: all
    any: bool


class QrType:
    """The ``qr`` rule type."""

    name = "qr"
    params = QrParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """One domain matcher (the ``links`` type's) and one keyword automaton for every qr rule."""
        compiled: list[_Rule] = []
        link_specs: list[RuleSpec] = []
        link_owner: list[int] = []
        keywords: dict[str, list[int]] = {}
        names: set[str] | None = set()  # the formats some rule reads; None: all
        for r, rule in enumerate(rules):
            params = rule.params_as(QrParams)
            formats: frozenset[zxingcpp.BarcodeFormat] | None = None
            if params.formats:
                chosen: set[zxingcpp.BarcodeFormat] = set()
                for k, name in enumerate(params.formats):
                    try:
                        chosen.update(zxingcpp.barcode_formats_list(formats_of([name])))
                    except ValueError:
                        context.report(
                            rule, f"{name!r} is not a barcode format zxing-cpp knows", "formats", k
                        )
                        continue
                    if names is not None:
                        names.add(name)
                formats = frozenset(chosen)
            else:
                names = None
            compiled.append(_Rule(rule, formats, params.any))
            if params.block or params.block_file:
                # The links rule type reads, checks and compiles the domains (its problems carry this
                # rule's id and lines); its matcher's find() is then run over the decoded text.
                links = LinksParams(
                    block=params.block,
                    block_file=params.block_file,
                    allow=params.allow,
                    allow_file=params.allow_file,
                )
                link_specs.append(dataclasses.replace(rule, type="links", params=links))
                link_owner.append(r)
            words = entries(context, rule, params.keywords, params.keywords_file, "keywords_file")
            for k, word in enumerate(words):
                light = normalize.light(word).strip()
                if not light:
                    loc: tuple[str | int, ...] = (
                        ("keywords", k) if k < len(params.keywords) else ("keywords_file",)
                    )
                    context.report(rule, f"keyword {word!r} is empty once normalized", *loc)
                    continue
                keywords.setdefault(light, []).append(r)
        links_matcher: LinksMatcher | None = None
        if link_specs:
            found = LinksType().compile(link_specs, context)
            if not isinstance(found, LinksMatcher):  # pragma: no cover - the links type's own matcher
                raise TypeError(f"the links rule type compiled to {type(found).__name__}")
            links_matcher = found
        read = formats_of(sorted(names)) if names else None
        return QrMatcher(compiled, links_matcher, link_owner, keywords, read)


class QrMatcher:
    """Every qr rule of a rule set: each picture is decoded once, then checked against every rule."""

    #: Tells :attr:`rules.engine.RuleSet.wants_media` that scans should be given the pictures' bytes.
    wants_media = True

    def __init__(
        self,
        rules: Sequence[_Rule],
        links: LinksMatcher | None,
        link_owner: Sequence[int],
        keywords: Mapping[str, Sequence[int]],
        formats: zxingcpp.BarcodeFormats | None,
    ) -> None:
        self.rules = tuple(rules)
        self.specs = tuple(r.spec for r in rules)
        self._links = links
        self._link_owner = tuple(link_owner)
        self._keywords = sorted(keywords)
        self._keyword_rules = [tuple(keywords[k]) for k in self._keywords]
        self._automaton = automaton(self._keywords) if self._keywords else None
        self._formats = formats

    def window(self) -> Window | None:
        """No window: each message stands alone."""
        return None

    def read(self, media: Media | None) -> list[Code] | str:
        """The codes in a picture, or why it could not be examined."""
        return self.codes(picture(media))

    def codes(self, image: Image.Image | str) -> list[Code] | str:
        """The codes in a decoded picture (or the reason it could not be decoded, handed on)."""
        return image if isinstance(image, str) else read_codes(image, self._formats)

    def scan(self, batch: Batch) -> Iterable[Match]:
        """The matches in the pictures of a batch (each distinct picture read once)."""
        out: list[Match] = []
        read: dict[str, list[Code] | str] = {}
        hits: dict[str, dict[int, list[str]]] = {}
        for msg_key, ref, wanted in refs_by_message(batch, self.specs):
            codes = read.get(ref.uuid)
            if codes is None:
                codes = read[ref.uuid] = self.codes(decoded(batch, ref.uuid))
            if isinstance(codes, str):
                out.extend(not_examined(self.specs[n], msg_key, ref, codes) for n in wanted)
                continue
            for code in codes:
                if code.text not in hits:
                    hits[code.text] = self.hits(code.text)
            for n in wanted:
                out.extend(self._check(n, msg_key, ref, codes, hits))
        return out

    def _check(
        self,
        n: int,
        msg_key: str,
        ref: MediaRef,
        codes: Sequence[Code],
        hits: Mapping[str, Mapping[int, list[str]]],
    ) -> Iterable[Match]:
        rule = self.rules[n]
        seen: set[str] = set()
        for code in codes:
            if rule.formats is not None and code.kind not in rule.formats:
                continue
            reasons = hits[code.text].get(n) or ([code.format] if rule.any else [])
            for normalized in reasons:
                if normalized not in seen:
                    seen.add(normalized)
                    yield rule.spec.match(msg_key, ref.element_path, evidence(code.text, ref), normalized)

    def hits(self, text: str) -> dict[int, list[str]]:
        """The blocked domains and keywords in a decoded text, by index of the rule they belong to."""
        light = normalize.light(text)
        found: dict[int, list[str]] = {}
        if self._links is not None:
            for index, host, _ in self._links.find(light):
                found.setdefault(self._link_owner[index], []).append(host)
        if self._automaton is not None:
            for index, _, _ in self._automaton.find_matches_as_indexes(light, overlapping=True):
                for n in self._keyword_rules[index]:
                    found.setdefault(n, []).append(self._keywords[index])
        return found
