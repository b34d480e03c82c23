"""Messages as the rules see them: a batch's fields and elements, and their normalized forms, made once.

Scanning is done a batch of messages at a time (a page of history; one message for ``Scanner.feed``): the
fields of every message are walked in one go (:func:`rules.page.walk_page`), the text of the fields a rule
looks at is joined and normalized once (:class:`Joined`, shared by every rule type that looks at the same
fields), and each automaton runs once over all of it, which keeps Python's per-call overhead out of the
per-message cost.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from rules import normalize
from rules.media import Media
from rules.page import Page, Spec, field_of, walk, walk_page
from rules.walk import Element, TextField
from worker.tim.models import Message

_SENTINEL_BYTE = normalize.SENTINEL.encode()


class FieldFilter(Hashable, Protocol):
    """Anything that says which fields to look at (e.g. :class:`rules.model.Selector`)."""

    @property
    def textual_only(self) -> bool:
        """True when the filter accepts exactly the text-bearing fields (a fast path)."""
        ...

    def accepts(self, item: TextField) -> bool:
        """True when ``item`` is looked at (only its ``element_type``, ``field`` and ``textual`` matter)."""
        ...


class MessageView:
    """One message prepared for scanning: its string fields and its elements, at every depth."""

    __slots__ = ("_types", "elements", "fields", "message")

    def __init__(
        self,
        message: Message,
        fields: Sequence[TextField] | None = None,
        elements: Sequence[Element] | None = None,
    ) -> None:
        self.message = message
        if fields is None or elements is None:
            fields, elements = walk(message)
        self.fields: tuple[TextField, ...] = tuple(fields)
        self.elements: tuple[Element, ...] = tuple(elements)
        self._types: frozenset[str] | None = None

    @property
    def msg_key(self) -> str:
        """The message's key."""
        return self.message.msg_key

    def has_element(self, element_type: str) -> bool:
        """True when the message holds an element of this type, at any depth."""
        if self._types is None:
            self._types = frozenset(e.element_type for e in self.elements)
        return element_type in self._types


class Joined:
    """The light forms of some fields of a batch, joined by ``normalize.SENTINEL``.

    Field ``i`` is ``texts[i]``, of message ``owners[i]`` of the batch (:meth:`field` builds it whole). A hit
    in the compact form is traced back to its field with :meth:`fields_of_compact`. Everything is computed
    on first use and kept.
    """

    __slots__ = ("_compact", "_fields", "_light", "_light_bytes", "_lights", "_pieces", "_specs",
                 "owners", "raw", "starts", "texts")  # fmt: skip

    def __init__(
        self, texts: Sequence[str], owners: Sequence[int], specs: Sequence[Spec], starts: Sequence[int]
    ) -> None:
        self.texts = texts
        self.owners = owners
        #: Message ``n``'s fields are ``starts[n]`` to ``starts[n + 1]`` (excluded).
        self.starts = starts
        self._specs = specs
        self.raw = normalize.join_fields(texts)
        self._light_bytes, self._compact = normalize.light_and_compact(self.raw)
        self._light: str | None = None
        self._pieces: list[bytes] | None = None
        self._lights: dict[int, str] = {}
        self._fields: list[TextField] | None = None

    def field(self, index: int) -> TextField:
        """Field ``index``."""
        return field_of(self._specs[index], self.texts[index])

    def specs(self) -> Sequence[Spec]:
        """Where each field is (``(prefix, template)``: see :mod:`rules.page`)."""
        return self._specs

    @property
    def fields(self) -> list[TextField]:
        """Every field, built whole (prefer :attr:`texts` and :meth:`field`)."""
        if self._fields is None:
            self._fields = [self.field(i) for i in range(len(self.texts))]
        return self._fields

    @property
    def light(self) -> str:
        """The light form of ``raw`` (``normalize.light_joined``)."""
        if self._light is None:
            self._light = self._light_bytes.decode()
        return self._light

    def light_bytes(self) -> bytes:
        """``light`` encoded as UTF-8."""
        return self._light_bytes

    def compact(self) -> bytes:
        """The UTF-8 light form with every separator removed (field sentinels kept)."""
        return self._compact

    def light_pieces(self) -> list[bytes]:
        """The UTF-8 light form of each field."""
        if self._pieces is None:
            self._pieces = self._light_bytes.split(_SENTINEL_BYTE) if self.texts else []
        return self._pieces

    def field_light(self, index: int) -> str:
        """The light form of field ``index``."""
        found = self._lights.get(index)
        if found is None:
            # The field's own light form is its piece of the joined one, and cheaper than splitting that.
            found = self._lights[index] = normalize.light(self.texts[index])
        return found

    def fields_of_compact(self, offsets: Iterable[int]) -> list[int]:
        """Indexes of the fields holding these byte offsets of :meth:`compact`, ascending, each once."""
        return fields_at(self.compact(), offsets)


class Batch:
    """Messages scanned together; rule types receive one per scan call.

    ``page`` holds every field and element of every message (:mod:`rules.page`); ``views`` the same per
    message, built on first use (for plugins: the built-in types work on ``page`` and :meth:`joined`).
    """

    __slots__ = ("_joined", "_kinds", "_present", "_views", "decoded", "media", "messages", "page")

    def __init__(self, messages: Sequence[Message], media: Mapping[str, Media] | None = None) -> None:
        self.messages = messages
        #: The pictures of these messages a media rule may examine, by :attr:`rules.media.MediaRef.uuid`
        #: (empty unless the scan was given media).
        self.media: Mapping[str, Media] = media or {}
        #: Pictures of ``media`` already decoded (or why they cannot be), by UUID: each media rule of the
        #: scan looks at the same decoded picture instead of decoding the bytes again
        #: (:func:`rules.types._media.decoded`).
        self.decoded: dict[str, Any] = {}
        self.page = walk_page(messages)
        self._joined: dict[Hashable, Joined] = {}
        self._views: tuple[MessageView, ...] | None = None
        self._kinds: list[str] | None = None  # the type of each element
        self._present: set[str] = set()

    @classmethod
    def of(cls, messages: Sequence[Message], media: Mapping[str, Media] | None = None) -> Batch:
        """A batch of these messages (and the media given for them)."""
        return cls(messages, media)

    @property
    def views(self) -> tuple[MessageView, ...]:
        """One view per message."""
        if self._views is None:
            self._views = tuple(_views(self.messages, self.page))
        return self._views

    def msg_key(self, index: int) -> str:
        """The key of message ``index``."""
        return self.page.keys[index]

    def elements_of(self, kinds: Collection[str]) -> list[int]:
        """Indexes (in ``page.elements``) of the elements of these types, in message order."""
        if self._kinds is None:
            self._kinds = [row[1] for row in self.page.elements]
            self._present = set(self._kinds)
        if self._present.isdisjoint(kinds):
            return []
        return [k for k, kind in enumerate(self._kinds) if kind in kinds]

    def joined(self, which: FieldFilter) -> Joined:
        """The joined light form of the fields ``which`` accepts, over every message (cached per filter)."""
        found = self._joined.get(which)
        if found is None:
            page = self.page
            if which.textual_only:
                found = Joined(page.texts, page.owners, page.specs, page.starts)
            else:
                texts, owners, specs = page.all_fields()
                keep = [i for i, spec in enumerate(specs) if which.accepts(spec[1])]
                owners = [owners[i] for i in keep]
                starts = [bisect.bisect_left(owners, n) for n in range(len(self.messages) + 1)]
                found = Joined([texts[i] for i in keep], owners, [specs[i] for i in keep], starts)
            self._joined[which] = found
        return found


def fields_at(joined: bytes, offsets: Iterable[int]) -> list[int]:
    """Indexes of the fields of ``joined`` (UTF-8, fields separated by the sentinel) holding these offsets.

    Ascending, each once.
    """
    found: list[int] = []
    field = pos = 0
    for offset in sorted(offsets):
        field += joined.count(_SENTINEL_BYTE, pos, offset)  # counted from the previous offset on
        pos = offset
        if not found or found[-1] != field:
            found.append(field)
    return found


def _views(messages: Sequence[Message], page: Page) -> list[MessageView]:
    texts, owners, specs = page.all_fields()
    fields: list[list[TextField]] = [[] for _ in messages]
    elements: list[list[Element]] = [[] for _ in messages]
    for text, owner, spec in zip(texts, owners, specs, strict=True):
        fields[owner].append(field_of(spec, text))
    for k, owner in enumerate(page.element_owners):
        elements[owner].append(page.element(k))
    return list(map(MessageView, messages, fields, elements))
