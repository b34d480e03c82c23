"""What the media rule types (``qr``, ``image_hash``) share: which pictures of a batch a rule looks at,
each picture decoded once per batch, and the "not examined" record of a picture that could not be."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from PIL import Image

from rules.images import decode_image
from rules.media import Media, MediaRef, media_refs
from rules.model import Match, RuleSpec
from rules.view import Batch

#: The element type each kind of picture comes from (what a rule's ``elements`` names).
ELEMENT_OF_KIND: Final[Mapping[str, str]] = {
    "image": "TIMImageElem",
    "video_thumbnail": "TIMVideoFileElem",
    "file": "TIMFileElem",
}
#: Longer side a picture is decoded to (a QR code that fills a tenth of it still has modules of several
#: pixels; ``image_hash`` shrinks further, to what PDQ needs).
DECODE_MAX_SIDE: Final = 2048


def refs_by_message(batch: Batch, rules: Sequence[RuleSpec]) -> Iterable[tuple[str, MediaRef, list[int]]]:
    """``(msg_key, picture, indexes of the rules that look at it)`` for every picture of the batch that the
    scan was given (as bytes, or as the reason there are none). A picture the scan was not given at all is
    not this scan's to examine (the worker fetches only what could be recalled: the suspect's pictures)."""
    if not batch.media or not batch.elements_of(ELEMENT_OF_KIND.values()):
        return
    for message in batch.messages:
        for ref in media_refs(message.body):
            if ref.uuid not in batch.media:
                continue
            element_type = ELEMENT_OF_KIND[ref.kind]
            wanted = [n for n, rule in enumerate(rules) if rule.selector.accepts_element(element_type)]
            if wanted:
                yield message.msg_key, ref, wanted


def media_reason(media: Media | None) -> str:
    """Why a picture has no bytes to examine."""
    if media is None:
        return "no media given for it"
    return media.reason or "no bytes"


def picture(media: Media | None) -> Image.Image | str:
    """A picture given to a scan, decoded in greyscale (all the built-in media rules read), at most
    :data:`DECODE_MAX_SIDE` on its longer side; or why it cannot be examined."""
    if media is None or media.data is None:
        return media_reason(media)
    return decode_image(media.data, "L", max_side=DECODE_MAX_SIDE)


def decoded(batch: Batch, uuid: str) -> Image.Image | str:
    """:func:`picture` of the batch's picture ``uuid``, decoded once for every media rule of the scan (the
    rules must not change it in place)."""
    found = batch.decoded.get(uuid)
    if found is None:
        found = batch.decoded[uuid] = picture(batch.media.get(uuid))
    return found


def not_examined(rule: RuleSpec, msg_key: str, ref: MediaRef, reason: str) -> Match:
    """The match of a picture ``rule`` could not look at: action ``flag``, whatever the rule's."""
    match = rule.match(msg_key, ref.element_path, f"not examined: {reason}", "not examined")
    return dataclasses.replace(match, action="flag")
