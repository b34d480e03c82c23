"""``links``: URLs and bare domains in any text field and any media URL, against a domain block list.

Parameters: ``block`` / ``block_file`` (domains; each also blocks its subdomains), ``allow`` /
``allow_file`` (domains never reported; the most specific entry wins, so ``allow: [docs.example.com]``
carves an exception out of ``block: [example.com]``, and ``block: [bad.example.com]`` stays blocked under
``allow: [example.com]``).

What a rule reads: unless its ``fields`` say otherwise, every text-bearing field (custom elements' ``Data``,
``Desc`` and ``Ext`` included, JSON or not) *and* the media URLs (:data:`URL_FIELDS`: an image's
``ImageInfoArray[].URL``, a file's or sound's ``Url``, a video's ``VideoUrl`` and ``ThumbUrl``), at any depth
of forwarding. ``fields: [Text]`` reads ``Text`` only; ``elements`` narrows both.

Obfuscations undone before matching: full-width and ideographic dots (``ｂａｄ．ｅｘａｍｐｌｅ``,
``bad。example``), bracketed dots (``bad[.]example``, ``bad(.)example``, ``bad{dot}example``,
``bad[点]example``, ``bad[點]example``), a spelled-out `` dot `` (or ``点``, ``點``) between spaces, mangled
schemes (``hxxp://``: the scheme is not needed to find a domain), zero-width characters and homoglyphs
inside the name (by the light normalization), upper case, and IDN: a domain is found written in Unicode or
in punycode (``xn--``) whichever way the block list gives it, and punycode in text is decoded so that a
look-alike written in punycode is caught too.

A domain must stand alone: ``notbad.example`` and ``bad.example.org`` are not ``bad.example`` (but
``www.bad.example`` is). Domains ending in CJK characters are matched without a right boundary, as Chinese is
written without spaces. Domains are compared in the script they are written in: ``賭場.example`` (Traditional)
is another domain than ``赌场.example``, unlike keywords, which fold Traditional Chinese to Simplified.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules import normalize
from rules.api import CompileContext, Matcher, MessageMatcher
from rules.model import AnyOf, Match, RuleSpec, Selector, union
from rules.phrases import automaton, bytes_automaton
from rules.types._lists import entries
from rules.view import Batch, Joined
from rules.walk import TextField

# These run over user text with Python's re: each is written to take linear time (a leading run of spaces
# only starts where the run does, so a long run is not rescanned from each of its positions).
_BRACKETED_DOT = re.compile(r"(?<!\s)\s*[\[({<]\s*(?:\.|dot|点|點)\s*[\])}>]\s*")
_SPELLED_DOT = re.compile(r"(?<!\s)\s+(?:dot|点|點)\s+")
_DEOBFUSCATE: tuple[normalize.Step, ...] = (
    normalize.replace_mapped(_BRACKETED_DOT, lambda _: "."),
    normalize.replace_mapped(_SPELLED_DOT, lambda _: "."),
)
_HOST_RUN = re.compile(r"[a-z0-9.-]+")
_SCHEME = re.compile(r"[a-z*]{2,10}://$")
_REST_OF_URL = re.compile(r"[:/?#][^\s\"'<>]*")
_ASCII_LABEL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_MAX_SPELLED_VARIANTS_DOTS = 3
_EVIDENCE_CONTEXT = 200
_has_punycode = normalize.bytes_finder(b"xn--")


def deobfuscate(light: str) -> str:
    """Undo dot obfuscations in text already in the light form."""
    if "dot" in light or "点" in light or "點" in light or any(b in light for b in "[({<"):
        light = _BRACKETED_DOT.sub(".", light)
        light = _SPELLED_DOT.sub(".", light)
    return light


def _label_char(char: str) -> bool:
    return char in _ASCII_LABEL or (not char.isascii() and not normalize.is_cjk(char) and char.isalnum())


def _idna_decode(host: str) -> str | None:
    try:
        return ".".join(
            label.encode("ascii").decode("idna") if label.startswith("xn--") else label
            for label in host.split(".")
        )
    except UnicodeError:
        return None


def _idna_encode(host: str) -> str | None:
    try:
        return ".".join(
            label if label.isascii() else label.encode("idna").decode("ascii") for label in host.split(".")
        )
    except UnicodeError:
        return None


def domain_forms(entry: str) -> tuple[str, set[str]] | None:
    """The canonical (light) form of a configured domain, and the forms it takes in text; None if invalid."""
    host = entry.strip()
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", host).split("/", 1)[0].split(":", 1)[0]
    host = host.strip(".").removeprefix("*.").strip(".")
    if "." not in host or any(c.isspace() for c in host):
        return None
    canonical = normalize.light(host)
    if "." not in canonical or not all(
        c in _ASCII_LABEL or c == "." or (not c.isascii() and c.isalnum()) for c in canonical
    ):
        return None
    forms = {canonical}
    punycode = _idna_encode(unicode_host := host.lower())
    if punycode:
        forms.add(punycode)
    decoded = _idna_decode(unicode_host)
    if decoded and decoded != unicode_host:
        forms.add(normalize.light(decoded))
        canonical = normalize.light(decoded)
    return canonical, forms


def _compact_variants(form: str) -> set[bytes]:
    """What a domain leaves in the compact form, including with its dots spelled out.

    The compact form has Traditional Chinese made Simplified (``normalize.compact_form``), so these are too
    (``點`` is ``点`` there); the exact match then runs over the light form, as the domain is written.
    """
    labels = [label.replace("-", "") for label in form.split(".")]
    out = {"".join(labels).encode()}
    if len(labels) - 1 <= _MAX_SPELLED_VARIANTS_DOTS:
        for joints in itertools.product(("", "dot", "点"), repeat=len(labels) - 1):
            pieces = [labels[0]]
            for joint, label in zip(joints, labels[1:], strict=True):
                pieces.extend((joint, label))
            out.add("".join(pieces).encode())
    return {normalize.simplified_bytes(variant) for variant in out}


#: Media elements' fields holding a URL: ``links`` rules read them unless their ``fields`` say otherwise.
URL_FIELDS: Final = frozenset({"URL", "Url", "VideoUrl", "ThumbUrl"})


def reads(selector: Selector, item: TextField) -> bool:
    """True when a links rule with this selector reads the field: what the selector accepts, and, when it
    names no ``fields``, the media URLs of the elements it accepts."""
    if selector.accepts(item):
        return True
    return (
        selector.fields is None
        and not item.textual
        and item.field in URL_FIELDS
        and selector.accepts_element(item.element_type)
    )


@dataclass(frozen=True, slots=True)
class _MediaUrls:
    """The media URL fields some links rules read by default and the text selection leaves out."""

    elements: frozenset[str] | None  # element types (None: any)
    selection: Selector | AnyOf  # what the rules' selectors accept (already scanned)

    def accepts(self, item: TextField) -> bool:
        """True for a media URL field of one of ``elements`` that ``selection`` does not accept."""
        return (
            not item.textual
            and item.field in URL_FIELDS
            and (self.elements is None or item.element_type in self.elements)
            and not self.selection.accepts(item)
        )


def _media_urls(rules: Sequence[RuleSpec], selection: Selector | AnyOf) -> _MediaUrls | None:
    """The media URLs read by the rules that name no ``fields``; None when every rule names some."""
    default = [r.selector for r in rules if r.selector.fields is None]
    if not default:
        return None
    if any(s.elements is None for s in default):
        return _MediaUrls(None, selection)
    return _MediaUrls(frozenset().union(*(s.elements or () for s in default)), selection)


def suffixes(host: str) -> list[str]:
    """``a.b.c`` -> ``[a.b.c, b.c, c]``."""
    labels = host.split(".")
    return [".".join(labels[k:]) for k in range(len(labels))]


class LinksParams(BaseModel):
    """Parameters of a ``links`` rule."""

    model_config = ConfigDict(extra="forbid")

    block: list[str] = Field(default_factory=list, description="Blocked domains (their subdomains too).")
    block_file: str | list[str] | None = Field(
        default=None, description="File(s) of blocked domains, one a line."
    )
    allow: list[str] = Field(
        default_factory=list, description="Domains never reported (most specific entry wins)."
    )
    allow_file: str | list[str] | None = Field(default=None, description="File(s) of allowed domains.")

    @model_validator(mode="after")
    def _has_block(self) -> LinksParams:
        if not self.block and not self.block_file:
            raise ValueError("give block or block_file")
        return self


@dataclass(frozen=True, slots=True)
class _Blocked:
    rule: int
    domain: str  # canonical form of the entry


class LinksType:
    """The ``links`` rule type."""

    name = "links"
    params = LinksParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """One automaton for every blocked domain of the rule set."""
        blocked: dict[str, list[_Blocked]] = {}
        allowed: list[frozenset[str]] = []
        for r, rule in enumerate(rules):
            params = rule.params_as(LinksParams)
            for name, inline, files in (
                ("block", params.block, params.block_file),
                ("allow", params.allow, params.allow_file),
            ):
                allow_forms: set[str] = set()
                for k, entry in enumerate(entries(context, rule, inline, files, f"{name}_file")):
                    found = domain_forms(entry)
                    if found is None:
                        loc: tuple[str | int, ...] = (name, k) if k < len(inline) else (f"{name}_file",)
                        context.report(rule, f"{entry!r} is not a domain name", *loc)
                        continue
                    canonical, forms = found
                    if name == "allow":
                        allow_forms.update(forms)
                        continue
                    for form in forms:
                        blocked.setdefault(form, []).append(_Blocked(r, canonical))
                if name == "allow":
                    allowed.append(frozenset(allow_forms))
        return LinksMatcher(rules, blocked, allowed)


class LinksMatcher(MessageMatcher):
    """Every links rule of a rule set."""

    def __init__(
        self, rules: Sequence[RuleSpec], blocked: dict[str, list[_Blocked]], allowed: Sequence[frozenset[str]]
    ) -> None:
        self.rules = tuple(rules)
        self.allowed = tuple(allowed)
        self.selection = union(r.selector for r in rules)
        self.media = _media_urls(self.rules, self.selection)
        self._forms = sorted(blocked)
        self._payloads = [tuple(blocked[f]) for f in self._forms]
        self._blocked = blocked
        self._exact = automaton(self._forms) if self._forms else None
        compact = set().union(*(_compact_variants(f) for f in self._forms)) if self._forms else set()
        self._prefilter = bytes_automaton(sorted(compact)) if compact else None

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Prefilter the batch, then find domains in the fields it points at: the fields the rules' selectors
        accept, then the media URLs the rules read by default (when the batch has any non-text field)."""
        if self._prefilter is None:
            return ()
        found = self._scan(batch, batch.joined(self.selection))
        media = self._media_joined(batch)
        if media is not None:
            more = self._scan(batch, media)
            if more:  # message by message, as the other rule types report
                found = sorted(found + more, key=lambda owned: owned[0])
        return [match for _, match in found]

    def _media_joined(self, batch: Batch) -> Joined | None:
        """The batch's media URLs that the rules read by default, or None. Built here rather than by
        ``batch.joined``, which would ask the filter about every field of the page (about 4% of a scan of the
        benchmark corpus, profiled): only the non-text fields named like URLs are looked at."""
        page = batch.page
        if self.media is None or not page.other_texts:
            return None
        media = self.media
        keep = [
            k
            for k, (_, template) in enumerate(page.other_specs)
            if template.field in URL_FIELDS and media.accepts(template)
        ]
        if not keep:
            return None
        owners = [page.other_owners[k] for k in keep]
        starts = [bisect.bisect_left(owners, n) for n in range(len(page.keys) + 1)]
        return Joined(
            [page.other_texts[k] for k in keep], owners, [page.other_specs[k] for k in keep], starts
        )

    def _scan(self, batch: Batch, joined: Joined) -> list[tuple[int, Match]]:
        """``(message index, match)`` of the blocked domains in ``joined``'s fields, in field order."""
        if not joined.texts or self._prefilter is None:
            return []
        compact = joined.compact()
        indexes = set(
            joined.fields_of_compact(
                s for _, s, _ in self._prefilter.find_matches_as_indexes(compact, overlapping=True)
            )
        )
        if _has_punycode(joined.light_bytes()):
            indexes.update(i for i, piece in enumerate(joined.light_pieces()) if b"xn--" in piece)
        out: list[tuple[int, Match]] = []
        for i in sorted(indexes):
            item = joined.field(i)
            owner = joined.owners[i]
            for rule_index, host, span in self.find(joined.field_light(i)):
                rule = self.rules[rule_index]
                if reads(rule.selector, item):
                    evidence = self._evidence(item.text, joined.field_light(i), span) or host
                    out.append((owner, rule.match(batch.msg_key(owner), item.path, evidence, host)))
        return out

    def find(self, light: str) -> list[tuple[int, str, tuple[int, int]]]:
        """``(rule index, host, span in the deobfuscated text)`` of each blocked domain in a light text."""
        if self._exact is None:
            return []
        text = deobfuscate(light)
        found: list[tuple[int, str, tuple[int, int]]] = []
        seen: set[tuple[int, str]] = set()
        for index, start, end in self._exact.find_matches_as_indexes(text, overlapping=True):
            form = self._forms[index]
            if not self._bounded(text, start, end, form):
                continue
            host_start = start
            while host_start > 0 and (text[host_start - 1] in _ASCII_LABEL or text[host_start - 1] == "."):
                host_start -= 1
            host = text[host_start:end].lstrip(".-")
            host_start = end - len(host)
            for blocked in self._payloads[index]:
                if (blocked.rule, host) not in seen and not self._allowed(blocked.rule, host, form):
                    seen.add((blocked.rule, host))
                    found.append((blocked.rule, host, (host_start, end)))
        found.extend(self._punycode(text, [(rule, span) for rule, _, span in found]))
        return found

    def _punycode(
        self, text: str, reported: list[tuple[int, tuple[int, int]]]
    ) -> Iterator[tuple[int, str, tuple[int, int]]]:
        """Blocked domains written in punycode, decoded (a look-alike's punycode included)."""
        for m in _HOST_RUN.finditer(text):
            if "xn--" not in m.group():
                continue
            decoded = _idna_decode(m.group().strip(".-"))
            if decoded is None:
                continue
            host = normalize.light(decoded)
            start, end = m.span()
            for suffix in suffixes(host):
                for blocked in self._blocked.get(suffix, ()):
                    # Skip what was already found as written (the block list may hold the punycode form).
                    if any(rule == blocked.rule and a < end and start < b for rule, (a, b) in reported):
                        continue
                    if not self._allowed(blocked.rule, host, suffix):
                        reported.append((blocked.rule, (start, end)))
                        yield blocked.rule, host, (start, end)

    def _allowed(self, rule: int, host: str, blocked_form: str) -> bool:
        allow = self.allowed[rule]
        if not allow:
            return False
        return any(suffix in allow and len(suffix) >= len(blocked_form) for suffix in suffixes(host))

    @staticmethod
    def _bounded(text: str, start: int, end: int, form: str) -> bool:
        if start > 0 and not normalize.is_cjk(form[0]) and _label_char(text[start - 1]):
            return False
        if end < len(text) and not normalize.is_cjk(form[-1]):
            after = text[end]
            if _label_char(after) or (after == "." and end + 1 < len(text) and _label_char(text[end + 1])):
                return False
        return True

    @staticmethod
    def _evidence(raw: str, light: str, span: tuple[int, int]) -> str | None:
        """The original text of the URL around ``span`` (scheme and path included)."""
        mapped = normalize.apply_steps(normalize.light_mapped(raw), _DEOBFUSCATE)
        if mapped.text != deobfuscate(light):
            return None
        start, end = span
        scheme = _SCHEME.search(mapped.text, max(0, start - 16), start)
        if scheme is not None:
            start = scheme.start()
        rest = _REST_OF_URL.match(mapped.text, end)
        if rest is not None:
            end = min(rest.end(), start + _EVIDENCE_CONTEXT)
        return mapped.original_text(start, end)
