"""Walk a message's elements, naming each string field by its path in the API's own JSON.

Paths look like ``MsgBody[1].MsgContent.Text``; inside a forwarded message (``TIMRelayElem``) the walk goes
on into ``MsgBody[0].MsgContent.MsgList[2].MsgBody[0].MsgContent.Text``. ``CloudCustomData`` (of the message
and of each forwarded one) is reported as a field of the pseudo element type ``CloudCustomData``.

Custom payloads often carry JSON whose strings are escaped (``"\\u8d4c\\u535a"``); when a JSON field holds
such escapes, its decoded strings are reported as well, as ``<path>#/json/pointer``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeGuard

import orjson

from worker.tim.models import Message

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

#: Every element type the walker knows; others are walked generically (all string fields count as text).
KNOWN_ELEMENT_TYPES: Final = frozenset(TEXT_FIELDS)


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


# Building the tuples directly skips the generated __new__ (and its argument handling): this runs for every
# field of every message.
_tuple = tuple.__new__


_CACHED = 16
_TOP_PATHS = [(f"MsgBody[{i}]", f"MsgBody[{i}].MsgContent.Text") for i in range(_CACHED)]


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)


def walk(message: Message) -> Walk:
    """All string fields and elements of ``message``."""
    fields: list[TextField] = []
    elements: list[Element] = []
    _walk_body(message.body, "", 0, fields, elements)
    if message.cloud_custom_data:
        _add(
            fields,
            CLOUD_CUSTOM_DATA,
            CLOUD_CUSTOM_DATA,
            CLOUD_CUSTOM_DATA,
            message.cloud_custom_data,
            textual=True,
        )
    return _tuple(Walk, (tuple(fields), tuple(elements)))


def _walk_body(
    body: Sequence[Mapping[str, Any]],
    prefix: str,
    depth: int,
    fields: list[TextField],
    elements: list[Element],
) -> None:
    for i, element in enumerate(body):
        if not _is_mapping(element):
            continue
        kind = element.get("MsgType")
        content = element.get("MsgContent")
        if type(kind) is not str or not _is_mapping(content):
            continue
        if not prefix and i < _CACHED:
            path, text_path = _TOP_PATHS[i]
        else:
            path = f"{prefix}MsgBody[{i}]"
            text_path = path + ".MsgContent.Text"
        elements.append(_tuple(Element, (path, kind, content, depth)))
        if kind == "TIMTextElem":  # by far the commonest: no loop, no lookups
            text = content.get("Text")
            if type(text) is str and text:
                fields.append(_tuple(TextField, (text_path, kind, "Text", text, True)))
            continue
        _walk_content(content, path + ".MsgContent.", kind, depth, fields=fields, elements=elements)


def _walk_content(
    content: Mapping[str, Any],
    base: str,
    kind: str,
    depth: int,
    *,
    fields: list[TextField],
    elements: list[Element],
) -> None:
    known = TEXT_FIELDS.get(kind)
    if known is None:
        _walk_unknown(content, base, kind, fields)
        return
    for name in known:
        value = content.get(name)
        if type(value) is str and value:
            _add(fields, base + name, kind, name, value, textual=True)
    for name in OTHER_FIELDS.get(kind, ()):
        value = content.get(name)
        if type(value) is str and value:
            _add(fields, base + name, kind, name, value, textual=False)
    if kind == "TIMImageElem":
        _walk_images(content, base, fields)
    elif kind == "TIMRelayElem":
        _walk_relay(content, base, depth, fields, elements)


def _walk_images(content: Mapping[str, Any], base: str, fields: list[TextField]) -> None:
    infos = content.get("ImageInfoArray")
    if not isinstance(infos, list):
        return
    for j, info in enumerate(infos):
        if _is_mapping(info) and isinstance(info.get("URL"), str) and info["URL"]:
            _add(fields, f"{base}ImageInfoArray[{j}].URL", "TIMImageElem", "URL", info["URL"], textual=False)


def _walk_relay(
    content: Mapping[str, Any], base: str, depth: int, fields: list[TextField], elements: list[Element]
) -> None:
    abstracts = content.get("AbstractList")
    if isinstance(abstracts, list):
        for j, line in enumerate(abstracts):
            if isinstance(line, str) and line:
                _add(fields, f"{base}AbstractList[{j}]", "TIMRelayElem", "AbstractList", line, textual=True)
    items = content.get("MsgList")
    if not isinstance(items, list) or depth + 1 > MAX_DEPTH:
        return
    for j, item in enumerate(items):
        if not _is_mapping(item):
            continue
        prefix = f"{base}MsgList[{j}]."
        body = item.get("MsgBody")
        if isinstance(body, list):
            _walk_body(body, prefix, depth + 1, fields, elements)
        ccd = item.get("CloudCustomData")
        if isinstance(ccd, str) and ccd:
            _add(fields, prefix + CLOUD_CUSTOM_DATA, CLOUD_CUSTOM_DATA, CLOUD_CUSTOM_DATA, ccd, textual=True)


def _walk_unknown(content: Mapping[str, Any], base: str, kind: str, fields: list[TextField]) -> None:
    # An element type this code does not know yet: every string in it might be shown to users.
    for name, value in content.items():
        if isinstance(value, str) and value:
            _add(fields, base + name, kind, name, value, textual=True)
        elif isinstance(value, list):
            for j, item in enumerate(value):
                if isinstance(item, str) and item:
                    _add(fields, f"{base}{name}[{j}]", kind, name, item, textual=True)


def _add(fields: list[TextField], path: str, kind: str, name: str, text: str, *, textual: bool) -> None:
    fields.append(_tuple(TextField, (path, kind, name, text, textual)))
    if name in JSON_FIELDS and "\\" in text:
        for pointer, leaf in escaped_leaves(text):
            fields.append(_tuple(TextField, (f"{path}#{pointer}", kind, name, leaf, textual)))


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
