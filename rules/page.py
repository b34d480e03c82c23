"""The fields and elements of a whole page of messages, as parallel lists: what scanning works on.

:func:`walk_page` gives, for every message of a page, its fields and elements in walk order (each
message's elements depth first, then its ``CloudCustomData``), without an object per field. A field is its
text, the index of its message (its *owner*) and a *spec*: a path prefix (``""`` at the top level) and a
shared template (a :class:`TextField` without text, whose path is relative to the prefix), so that a plain
text message costs a few list appends. The :class:`TextField` itself is built only when a rule reports a
match in it. Text-bearing fields (what text rules look at by default) and the others (media URLs and
identifiers) are kept apart, so that the common selection needs no filtering; :meth:`Page.all_fields`
merges them back. :func:`walk` gives one message's fields and elements as whole objects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from rules.walk import (
    CLOUD_CUSTOM_DATA,
    JSON_FIELDS,
    MAX_DEPTH,
    OTHER_FIELDS,
    TEXT_FIELDS,
    Element,
    TextField,
    Walk,
    escaped_leaves,
)
from worker.tim.models import Message

#: Where a field is: a path prefix and a template (path relative to the prefix, element type, field name).
Spec = tuple[str, TextField]

#: An :class:`Element` as a plain tuple (building the NamedTuple costs three times as much).
ElementRow = tuple[str, str, Mapping[str, Any], int]

_tuple = tuple.__new__
_CACHED: Final = 16  # element indexes whose specs are computed once


def _spec(path: str, kind: str, name: str, textual: bool) -> Spec:
    return ("", _tuple(TextField, (path, kind, name, "", textual)))


def _element_fields(kind: str, i: int) -> tuple[tuple[str, Spec, bool], ...]:
    """``(field name, top-level spec, may hold JSON)`` of the named fields of element ``i`` of this type."""
    names = [(n, True) for n in TEXT_FIELDS[kind]] + [(n, False) for n in OTHER_FIELDS.get(kind, ())]
    return tuple(
        (name, _spec(f"MsgBody[{i}].MsgContent.{name}", kind, name, textual), name in JSON_FIELDS)
        for name, textual in names
    )


_FIELDS: Final = {kind: [_element_fields(kind, i) for i in range(_CACHED)] for kind in TEXT_FIELDS}
_PATHS: Final = [f"MsgBody[{i}]" for i in range(_CACHED)]
_TEXT0: Final = _FIELDS["TIMTextElem"][0][0][1]
_CCD: Final = _spec(CLOUD_CUSTOM_DATA, CLOUD_CUSTOM_DATA, CLOUD_CUSTOM_DATA, True)


@functools.cache
def _image_url(i: int, j: int) -> TextField:
    path = f"MsgBody[{i}].MsgContent.ImageInfoArray[{j}].URL"
    return _tuple(TextField, (path, "TIMImageElem", "URL", "", False))


@functools.cache
def _abstract(j: int) -> TextField:
    return _tuple(TextField, (f"AbstractList[{j}]", "TIMRelayElem", "AbstractList", "", True))


def field_of(spec: Spec, text: str) -> TextField:
    """The field at ``spec`` holding ``text``, as :func:`walk` gives it."""
    prefix, t = spec
    return _tuple(TextField, (prefix + t.path, t.element_type, t.field, text, t.textual))


class Page:
    """Every string field and element of some messages, in message order.

    ``keys``, ``senders``, ``times``: those of each message. ``texts[i]`` is text-bearing field ``i``, of
    message ``owners[i]``, at ``specs[i]`` (``starts[n]``: the first of message ``n``); the other fields are
    in the ``other_*`` lists, ``other_at[k]`` being the number of text-bearing fields walked before field
    ``k``. ``elements[k]`` is an element of message ``element_owners[k]``.
    """

    __slots__ = (
        "element_owners", "elements", "keys", "other_at", "other_owners", "other_specs", "other_texts",
        "owners", "senders", "specs", "starts", "texts", "times",
    )  # fmt: skip

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.senders: list[str] = []
        self.times: list[int] = []
        self.texts: list[str] = []
        self.starts: list[int] = []  # message n's text-bearing fields are texts[starts[n] : starts[n + 1]]
        self.owners: list[int] = []
        self.specs: list[Spec] = []
        self.other_texts: list[str] = []
        self.other_owners: list[int] = []
        self.other_specs: list[Spec] = []
        self.other_at: list[int] = []
        self.elements: list[ElementRow] = []
        self.element_owners: list[int] = []

    def all_fields(self) -> tuple[list[str], list[int], list[Spec]]:
        """``(texts, owners, specs)`` of every field, in walk order."""
        if not self.other_texts:
            return self.texts, self.owners, self.specs
        texts: list[str] = []
        owners: list[int] = []
        specs: list[Spec] = []
        start = 0
        for k, at in enumerate(self.other_at):
            texts += self.texts[start:at]
            owners += self.owners[start:at]
            specs += self.specs[start:at]
            texts.append(self.other_texts[k])
            owners.append(self.other_owners[k])
            specs.append(self.other_specs[k])
            start = at
        return texts + self.texts[start:], owners + self.owners[start:], specs + self.specs[start:]

    def element(self, index: int) -> Element:
        """Element ``index`` as :func:`walk` gives it."""
        return Element._make(self.elements[index])

    def _add(self, n: int, spec: Spec, text: str, json: bool) -> None:
        if spec[1].textual:
            self.texts.append(text)
            self.owners.append(n)
            self.specs.append(spec)
        else:
            self.other_texts.append(text)
            self.other_owners.append(n)
            self.other_specs.append(spec)
            self.other_at.append(len(self.texts))
        if json and "\\" in text:
            prefix, t = spec
            for pointer, leaf in escaped_leaves(text):
                leaf_template = _tuple(
                    TextField, (f"{t.path}#{pointer}", t.element_type, t.field, "", t.textual)
                )
                self._add(n, (prefix, leaf_template), leaf, False)

    def _body(self, n: int, body: Sequence[Any], prefix: str, depth: int) -> None:
        texts, owners, specs = self.texts, self.owners, self.specs
        for i, element in enumerate(body):
            if type(element) is not dict and not isinstance(element, Mapping):
                continue
            kind = element.get("MsgType")
            content = element.get("MsgContent")
            if type(kind) is not str or (type(content) is not dict and not isinstance(content, Mapping)):
                continue
            path = _PATHS[i] if i < _CACHED else f"MsgBody[{i}]"
            self.elements.append((prefix + path if prefix else path, kind, content, depth))
            self.element_owners.append(n)
            known = _FIELDS.get(kind)
            if known is None:
                self._unknown(n, content, f"{path}.MsgContent.", prefix, kind)
                continue
            for name, top, json in known[i] if i < _CACHED else _element_fields(kind, i):
                value = content.get(name)
                if type(value) is not str or not value:
                    continue
                spec = (prefix, top[1]) if prefix else top
                if (json and "\\" in value) or not spec[1].textual:
                    self._add(n, spec, value, json)
                else:  # _add, inlined: the commonest case
                    texts.append(value)
                    owners.append(n)
                    specs.append(spec)
            if kind == "TIMImageElem":
                self._images(n, content, i, prefix)
            elif kind == "TIMRelayElem":
                self._relay(n, content, f"{prefix}{path}.MsgContent.", depth)

    def _images(self, n: int, content: Mapping[str, Any], i: int, prefix: str) -> None:
        infos = content.get("ImageInfoArray")
        if not isinstance(infos, list):
            return
        for j, info in enumerate(infos):
            if type(info) is not dict and not isinstance(info, Mapping):
                continue
            url = info.get("URL")
            if isinstance(url, str) and url:
                self._add(n, (prefix, _image_url(i, j)), url, False)

    def _relay(self, n: int, content: Mapping[str, Any], base: str, depth: int) -> None:
        abstracts = content.get("AbstractList")
        if isinstance(abstracts, list):
            for j, line in enumerate(abstracts):
                if isinstance(line, str) and line:
                    self._add(n, (base, _abstract(j)), line, False)
        items = content.get("MsgList")
        if not isinstance(items, list) or depth + 1 > MAX_DEPTH:
            return
        for j, item in enumerate(items):
            if type(item) is not dict and not isinstance(item, Mapping):
                continue
            prefix = f"{base}MsgList[{j}]."
            body = item.get("MsgBody")
            if isinstance(body, list):
                self._body(n, body, prefix, depth + 1)
            ccd = item.get("CloudCustomData")
            if isinstance(ccd, str) and ccd:
                self._add(n, (prefix, _CCD[1]), ccd, True)

    def _unknown(self, n: int, content: Mapping[str, Any], base: str, prefix: str, kind: str) -> None:
        # An element type this code does not know yet: every string in it might be shown to users.
        for name, value in content.items():
            json = name in JSON_FIELDS
            if isinstance(value, str) and value:
                self._add(n, (prefix, _tuple(TextField, (base + name, kind, name, "", True))), value, json)
            elif isinstance(value, list):
                for j, item in enumerate(value):
                    if isinstance(item, str) and item:
                        template = _tuple(TextField, (f"{base}{name}[{j}]", kind, name, "", True))
                        self._add(n, (prefix, template), item, json)


def walk_page(messages: Sequence[Message]) -> Page:
    """The fields and elements of ``messages`` (see the module docstring)."""
    page = Page()
    _fill(page, messages)
    return page


def fill_python(page: Page, messages: Sequence[Message]) -> None:
    """Append the fields and elements of ``messages`` to ``page``: the walk, in pure Python.

    ``rules._speedups.fill`` is the same walk compiled; :func:`walk_page` uses it when it is built.
    """
    texts, owners, specs = page.texts, page.owners, page.specs
    elements, element_owners = page.elements, page.element_owners
    keys, senders, times, starts = page.keys, page.senders, page.times, page.starts
    for n, message in enumerate(messages):
        starts.append(len(texts))
        keys.append(message.msg_key)
        senders.append(message.from_account)
        times.append(message.timestamp)
        body = message.body
        # A lone text element without CloudCustomData: half of all chat messages, inlined.
        if len(body) == 1 and not message.cloud_custom_data:
            element = body[0]
            if type(element) is dict and element.get("MsgType") == "TIMTextElem":
                content = element.get("MsgContent")
                if type(content) is dict:
                    elements.append(("MsgBody[0]", "TIMTextElem", content, 0))
                    element_owners.append(n)
                    text = content.get("Text")
                    if type(text) is str and text:
                        texts.append(text)
                        owners.append(n)
                        specs.append(_TEXT0)
                    continue
        page._body(n, body, "", 0)
        if message.cloud_custom_data:
            page._add(n, _CCD, message.cloud_custom_data, True)
    starts.append(len(texts))


def walk(message: Message) -> Walk:
    """All string fields and elements of ``message``, each built whole (plugins and tests use it)."""
    page = walk_page((message,))
    texts, _, specs = page.all_fields()
    return Walk(tuple(map(field_of, specs, texts)), tuple(map(page.element, range(len(page.elements)))))


_fill: Callable[[Page, Sequence[Message]], None]
try:
    from rules._speedups import fill as _fill
except ImportError:  # not built (no C compiler where it was installed): the same walk, slower
    _fill = fill_python

#: True when :func:`walk_page` runs the compiled walk.
COMPILED: Final = _fill is not fill_python
