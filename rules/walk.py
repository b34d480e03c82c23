"""What the rules see of a message: its string fields, named by their path in the API's JSON; its elements.

The walk itself is :func:`rules.page.walk` (one message) and :func:`rules.page.walk_page` (a page).

Paths look like ``MsgBody[1].MsgContent.Text``; inside a forwarded message (``TIMRelayElem``) the walk goes
on into ``MsgBody[0].MsgContent.MsgList[2].MsgBody[0].MsgContent.Text``. ``CloudCustomData`` (of the message
and of each forwarded one) is reported as a field of the pseudo element type ``CloudCustomData``.

Custom payloads often carry JSON whose strings are escaped (``"\\u8d4c\\u535a"``); when a JSON field holds
such escapes, its decoded strings are reported as well, as ``<path>#/json/pointer``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

import orjson

#: Pseudo element type of ``CloudCustomData``.
CLOUD_CUSTOM_DATA: Final = "CloudCustomData"

#: Forwarded messages nest; deeper levels than this are not scanned (the API itself allows few).
MAX_DEPTH: Final = 8

# Per element type: the string fields a moderator thinks of as text, then the other string fields.
TEXT_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "TIMTextElem": ("Text",),
    "TIMLocationElem": ("Desc",),
    "TIMFaceElem": ("Data",),
    "TIMCustomElem": ("Data", "Desc", "Ext"),
    "TIMSoundElem": (),
    "TIMImageElem": (),
    "TIMFileElem": ("FileName",),
    "TIMVideoFileElem": (),
    "TIMRelayElem": ("Title", "CompatibleText"),
}
OTHER_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "TIMCustomElem": ("Sound",),
    "TIMSoundElem": ("Url", "UUID"),
    "TIMImageElem": ("UUID",),
    "TIMFileElem": ("Url", "UUID"),
    "TIMVideoFileElem": ("VideoUrl", "VideoUUID", "VideoFormat", "ThumbUrl", "ThumbUUID", "ThumbFormat"),
}
#: Fields that may hold JSON worth decoding.
JSON_FIELDS: Final = frozenset({"Data", "Desc", "Ext", CLOUD_CUSTOM_DATA})


class TextField(NamedTuple):
    """One string field of a message."""

    path: str  # e.g. "MsgBody[0].MsgContent.Text"
    element_type: str  # e.g. "TIMTextElem", or CLOUD_CUSTOM_DATA
    field: str  # e.g. "Text", "AbstractList", "URL"
    text: str
    textual: bool  # a text-bearing field (what text rules look at unless told otherwise)


class Element(NamedTuple):
    """One element of ``MsgBody``, at any depth of forwarding."""

    path: str  # e.g. "MsgBody[1]" or "MsgBody[0].MsgContent.MsgList[2].MsgBody[0]"
    element_type: str
    content: Mapping[str, Any]
    depth: int  # 0 for the message's own elements


class Walk(NamedTuple):
    """Everything the rules look at in one message."""

    fields: tuple[TextField, ...]
    elements: tuple[Element, ...]


def escaped_leaves(text: str) -> Iterator[tuple[str, str]]:
    """Strings of a JSON document that the raw text does not show as they are (escaped)."""
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[", '"')):
        return
    try:
        document = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return
    for pointer, leaf in json_strings(document):
        if leaf not in text:
            yield pointer, leaf


def json_strings(value: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every string (object keys excluded) of a decoded JSON document, with its JSON pointer."""
    stack: list[tuple[str, Any]] = [(pointer, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if item:
                yield where, item
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                stack.append((f"{where}/{escape_pointer(str(key))}", child))
        elif isinstance(item, list):
            for k in range(len(item) - 1, -1, -1):
                stack.append((f"{where}/{k}", item[k]))


def escape_pointer(token: str) -> str:
    """A JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")
