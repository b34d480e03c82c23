"""``element``: elements by type and attributes, at any depth of forwarding.

Parameters (any of them; an element matches when one of them does):

* ``file_extensions``: ``TIMFileElem`` whose ``FileName`` ends in one of these (``exe``, ``apk``). The name is
  normalized first, so full-width dots, invisible characters and right-to-left overrides
  (``invoice<U+202E>fdp.exe`` shows as ``invoiceexe.pdf``), trailing dots and spaces, and upper case do not
  hide the extension.
* ``urls``: image (``ImageInfoArray[].URL``), file and sound ``Url``, video ``VideoUrl`` / ``ThumbUrl``
  equal to one of these; an entry ending in ``*`` is a prefix. Scheme and host compare case-insensitively, the
  fragment is ignored.
* ``uuids``: image, file or sound ``UUID``, ``VideoUUID`` or ``ThumbUUID`` in this list (case-insensitive).
* ``face_indexes`` / ``face_data``: ``TIMFaceElem`` ``Index`` / ``Data``.
* ``location_keywords`` (with ``whole_word``): phrases in a ``TIMLocationElem``'s ``Desc``.

With none of them, every element of the rule's ``elements`` types matches (``elements: [TIMSoundElem]``
alone flags every voice message). ``elements`` also narrows the attribute checks to those types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from rules import normalize
from rules.api import CompileContext, Matcher, MessageMatcher
from rules.model import Match, RuleSpec
from rules.phrases import Phrase, PhraseIndex
from rules.view import Batch, MessageView
from rules.walk import Element

_URL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "TIMFileElem": ("Url",),
    "TIMSoundElem": ("Url",),
    "TIMVideoFileElem": ("VideoUrl", "ThumbUrl"),
}
_UUID_FIELDS: Mapping[str, tuple[str, ...]] = {
    "TIMImageElem": ("UUID",),
    "TIMFileElem": ("UUID",),
    "TIMSoundElem": ("UUID",),
    "TIMVideoFileElem": ("VideoUUID", "ThumbUUID"),
}


def canonical_url(url: str) -> str:
    """``url`` with scheme and host lower-cased, surrounding spaces and the fragment dropped."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def file_extension(name: str) -> str:
    """The extension a file name really has (light-normalized, trailing dots and spaces ignored)."""
    light = normalize.light(name).rstrip(" .")
    _, dot, extension = light.rpartition(".")
    return extension.strip() if dot else ""


class ElementParams(BaseModel):
    """Parameters of an ``element`` rule."""

    model_config = ConfigDict(extra="forbid")

    file_extensions: list[str] = Field(
        default_factory=list, description="File name extensions (exe, apk, ...)."
    )
    urls: list[str] = Field(
        default_factory=list, description="Image/file/sound/video URLs; a trailing * is a prefix."
    )
    uuids: list[str] = Field(default_factory=list, description="Image/file/sound/video UUIDs.")
    face_indexes: list[int] = Field(default_factory=list, description="TIMFaceElem Index values.")
    face_data: list[str] = Field(default_factory=list, description="TIMFaceElem Data values.")
    location_keywords: list[str] = Field(default_factory=list, description="Phrases in a location's Desc.")
    whole_word: bool = Field(
        default=True, description="Latin-script location keywords only match as whole words."
    )


class _Compiled:
    """One element rule, ready to run."""

    def __init__(self, rule: RuleSpec, params: ElementParams) -> None:
        self.rule = rule
        self.extensions = frozenset(e.strip().lstrip(".").lower() for e in params.file_extensions)
        urls = [canonical_url(u) for u in params.urls]
        self.urls = frozenset(u for u in urls if not u.endswith("*"))
        self.url_prefixes = tuple(u[:-1] for u in urls if u.endswith("*"))
        self.uuids = frozenset(u.strip().lower() for u in params.uuids)
        self.face_indexes = frozenset(params.face_indexes)
        self.face_data = frozenset(params.face_data)
        self.location = (
            PhraseIndex([Phrase(k, 0, params.whole_word) for k in params.location_keywords])
            if params.location_keywords
            else None
        )
        self.any_attribute = bool(
            self.extensions or urls or self.uuids or self.face_indexes or self.face_data or self.location
        )
        kinds: set[str] = set()
        if self.extensions:
            kinds.add("TIMFileElem")
        if urls:
            kinds.update(_URL_FIELDS, ["TIMImageElem"])
        if self.uuids:
            kinds.update(_UUID_FIELDS)
        if self.face_indexes or self.face_data:
            kinds.add("TIMFaceElem")
        if self.location is not None:
            kinds.add("TIMLocationElem")
        if rule.selector.elements is not None:
            kinds = set(rule.selector.elements) if not self.any_attribute else kinds & rule.selector.elements
        #: The element types this rule can match.
        self.kinds = frozenset(kinds)

    def check(self, element: Element) -> Iterator[tuple[str, str, str]]:
        """``(element_path, evidence, normalized)`` of each reason ``element`` matches."""
        if not self.rule.selector.accepts_element(element.element_type):
            return
        if not self.any_attribute:
            yield element.path, element.element_type, element.element_type
            return
        yield from self._file(element)
        yield from self._media(element)
        yield from self._face(element)
        yield from self._location(element)

    def _file(self, element: Element) -> Iterator[tuple[str, str, str]]:
        name = element.content.get("FileName")
        if self.extensions and element.element_type == "TIMFileElem" and isinstance(name, str):
            extension = file_extension(name)
            if extension in self.extensions:
                yield f"{element.path}.MsgContent.FileName", name, extension

    def _media(self, element: Element) -> Iterator[tuple[str, str, str]]:
        if self.urls or self.url_prefixes:
            for path, url in _urls(element):
                canonical = canonical_url(url)
                if canonical in self.urls or canonical.startswith(self.url_prefixes):
                    yield path, url, canonical
        for name in _UUID_FIELDS.get(element.element_type, ()) if self.uuids else ():
            value = element.content.get(name)
            if isinstance(value, str) and value.strip().lower() in self.uuids:
                yield f"{element.path}.MsgContent.{name}", value, value.strip().lower()

    def _face(self, element: Element) -> Iterator[tuple[str, str, str]]:
        if element.element_type != "TIMFaceElem":
            return
        index, data = element.content.get("Index"), element.content.get("Data")
        if isinstance(index, int) and not isinstance(index, bool) and index in self.face_indexes:
            yield f"{element.path}.MsgContent.Index", str(index), str(index)
        if isinstance(data, str) and data in self.face_data:
            yield f"{element.path}.MsgContent.Data", data, data

    def _location(self, element: Element) -> Iterator[tuple[str, str, str]]:
        desc = element.content.get("Desc")
        if self.location is not None and element.element_type == "TIMLocationElem" and isinstance(desc, str):
            for hit in self.location.find(desc, limit=1):
                yield f"{element.path}.MsgContent.Desc", hit.evidence, hit.normalized


def _urls(element: Element) -> Iterator[tuple[str, str]]:
    content, base = element.content, f"{element.path}.MsgContent."
    for name in _URL_FIELDS.get(element.element_type, ()):
        value = content.get(name)
        if isinstance(value, str) and value:
            yield base + name, value
    if element.element_type == "TIMImageElem":
        infos: Any = content.get("ImageInfoArray")
        for j, info in enumerate(infos if isinstance(infos, list) else ()):
            if isinstance(info, Mapping) and isinstance(info.get("URL"), str):
                yield f"{base}ImageInfoArray[{j}].URL", info["URL"]


class ElementType:
    """The ``element`` rule type."""

    name = "element"
    params = ElementParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """Check that every rule says what to match."""
        compiled: list[_Compiled] = []
        for rule in rules:
            params = rule.params_as(ElementParams)
            item = _Compiled(rule, params)
            if not item.any_attribute and rule.selector.elements is None:
                context.report(rule, "give elements, or an attribute to match (file_extensions, urls, ...)")
                continue
            bad = [k for k, word in enumerate(params.location_keywords) if not normalize.full(word)]
            for k in bad:
                context.report(
                    rule, "location keyword has no letters or digits to match", "location_keywords", k
                )
            if not bad:
                compiled.append(item)
        return ElementMatcher(compiled)


class ElementMatcher(MessageMatcher):
    """Every element rule of a rule set."""

    def __init__(self, compiled: Sequence[_Compiled]) -> None:
        self.compiled = tuple(compiled)
        self.kinds = frozenset().union(*(c.kinds for c in compiled))

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Check every element of the types some rule can match against every rule."""
        out: list[Match] = []
        page = batch.page
        for k in batch.elements_of(self.kinds):
            msg_key = batch.msg_key(page.element_owners[k])
            out.extend(self._check(msg_key, page.element(k)))
        return out

    def scan_message(self, view: MessageView) -> Iterable[Match]:
        """Check every element of one message against every rule."""
        out: list[Match] = []
        for element in view.elements:
            if element.element_type in self.kinds:
                out.extend(self._check(view.msg_key, element))
        return out

    def _check(self, msg_key: str, element: Element) -> Iterator[Match]:
        for rule in self.compiled:
            for path, evidence, normalized in rule.check(element):
                yield rule.rule.match(msg_key, path, evidence, normalized)
