"""``flood``: the same (or nearly the same) content sent ``count`` times within ``seconds`` by one sender.

Parameters: ``count`` (at least 2), ``seconds``; ``similarity`` (default 1.0: the same content once
normalized, ignoring case, spacing, punctuation, invisible characters and, with ``ignore_digits`` (default
true), digits, so ``win 100 coins!!`` and ``WIN 250 coins`` are the same; lower, down to 0.5, also groups
near-same messages by the Jaccard similarity of their character trigrams); ``min_length`` (default 1):
shorter content is ignored. Images, files, videos, voice and stickers count by their UUID or index.

This is a window rule: messages are collected in ``Scanner.feed`` and judged in ``Scanner.finish``, so they
may arrive in any order (history pages come newest first). Every message of a burst is reported, each under
its own ``msg_key``, so that the worker can recall all of them.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from rules.api import CompileContext, Matcher, Window
from rules.model import Match, RuleSpec, bound
from rules.view import Batch, Joined

_MEDIA_IDS = {
    "TIMImageElem": ("UUID",),
    "TIMFileElem": ("UUID",),
    "TIMSoundElem": ("UUID",),
    "TIMVideoFileElem": ("VideoUUID",),
    "TIMFaceElem": ("Index", "Data"),
}
_DIGITS = b"0123456789"
_NO_ELEMENT = ("MsgBody", "")


class FloodParams(BaseModel):
    """Parameters of a ``flood`` rule."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=2, description="How many messages make a flood.")
    seconds: float = Field(gt=0, description="Within how many seconds.")
    similarity: float = Field(default=1.0, ge=0.5, le=1.0, description="1.0: same content; lower: near-same.")
    ignore_digits: bool = Field(default=True, description="Digits do not make messages different.")
    min_length: int = Field(default=1, ge=1, description="Content shorter than this (normalized) is ignored.")


def trigrams(text: str) -> frozenset[str]:
    """Character trigrams of ``text`` (the text itself when shorter)."""
    if len(text) < 3:
        return frozenset((text,))
    return frozenset(text[k : k + 3] for k in range(len(text) - 2))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two trigram sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def bursts(timestamps: Sequence[int], count: int, seconds: float) -> set[int]:
    """Indexes (into sorted ``timestamps``) of every item in some window of ``seconds`` holding ``count``."""
    flagged: set[int] = set()
    first = 0
    for last, timestamp in enumerate(timestamps):
        while timestamp - timestamps[first] > seconds:
            first += 1
        if last - first + 1 >= count:
            flagged.update(range(first, last + 1))
    return flagged


def clusters(texts: Sequence[str], threshold: float) -> list[list[int]]:
    """Indexes of ``texts`` grouped by equal text, or, below a threshold of 1.0, by trigram similarity."""
    if threshold >= 1.0:
        groups: dict[str, list[int]] = {}
        for k, text in enumerate(texts):
            groups.setdefault(text, []).append(k)
        return list(groups.values())
    found: list[tuple[frozenset[str], int, list[int]]] = []
    for k, text in enumerate(texts):
        grams = trigrams(text)
        for seed, length, members in found:
            # Jaccard >= t needs the shorter to be at least t times the longer: skip hopeless comparisons.
            if min(length, len(text)) >= threshold * max(length, len(text)) and (
                similarity(seed, grams) >= threshold
            ):
                members.append(k)
                break
        else:
            found.append((grams, len(text), [k]))
    return [members for _, _, members in found]


class _Places:
    """Where the text of each message of one batch is, for one rule: to name the field and show the text.

    Strings only (no message bodies): a scan keeps one of these per batch and rule, until it finishes.
    """

    __slots__ = ("elements", "specs", "starts", "texts")

    def __init__(self, joined: Joined) -> None:
        self.texts, self.starts, self.specs = joined.texts, joined.starts, joined.specs()
        self.elements: dict[int, tuple[str, str]] = {}  # (path, type) of the first element, when no field

    def place(self, n: int) -> tuple[str, str]:
        """``(element_path, evidence)`` of message ``n``: its first field and all its text, or its element."""
        start, end = self.starts[n], self.starts[n + 1]
        if start == end:
            return self.elements.get(n, _NO_ELEMENT)
        prefix, template = self.specs[start]
        return prefix + template.path, bound(" ".join(self.texts[start:end]))


class FloodType:
    """The ``flood`` rule type."""

    name = "flood"
    params = FloodParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """Nothing to compile: the work is done per scan."""
        return FloodMatcher(rules)


class FloodMatcher:
    """Every flood rule of a rule set."""

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self.rules = tuple(rules)

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Nothing per message."""
        return ()

    def window(self) -> Window | None:
        """A fresh window."""
        return FloodWindow(self.rules) if self.rules else None


@dataclass
class FloodWindow:
    """Every message fed so far in one scan: sender, time and, per rule, content; judged in :meth:`finish`."""

    rules: tuple[RuleSpec, ...]
    keys: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # where each batch starts in the lists above
    contents: list[list[bytes]] = field(default_factory=list)  # per rule, per message
    places: list[list[_Places]] = field(default_factory=list)  # per rule, per batch
    seen: set[str] = field(default_factory=set)
    repeated: bool = False  # some message key was fed twice (then the latest content of each counts)

    def __post_init__(self) -> None:
        self.contents = [[] for _ in self.rules]
        self.places = [[] for _ in self.rules]

    def feed(self, batch: Batch) -> None:
        """Note sender, time and content of each message."""
        keys = batch.page.keys
        self.starts.append(len(self.keys))
        self.keys += keys
        self.senders += batch.page.senders
        self.times += batch.page.times
        before = len(self.seen)
        self.seen.update(keys)
        self.repeated = self.repeated or len(self.seen) - before != len(keys)
        for r, rule in enumerate(self.rules):
            joined = batch.joined(rule.selector)
            places = _Places(joined)
            self.contents[r] += _contents(batch, joined, rule, places)
            self.places[r].append(places)

    def finish(self) -> Iterable[Match]:
        """Report every message of every burst."""
        out: list[Match] = []
        for r, rule in enumerate(self.rules):
            params = rule.params_as(FloodParams)
            contents = self.contents[r]
            for items in self._groups(contents, params):
                items.sort()
                group = [contents[i].decode(errors="replace") for _, _, i in items]
                for members in clusters(group, params.similarity):
                    if len(members) < params.count:
                        continue
                    flagged = bursts([items[k][0] for k in members], params.count, params.seconds)
                    for k in sorted(flagged):
                        _, msg_key, i = items[members[k]]
                        batch = bisect.bisect_right(self.starts, i) - 1
                        path, evidence = self.places[r][batch].place(i - self.starts[batch])
                        out.append(rule.match(msg_key, path, evidence, group[members[k]]))
        return out

    def _groups(self, contents: list[bytes], params: FloodParams) -> list[list[tuple[int, str, int]]]:
        """``(timestamp, msg_key, index)`` of the messages to cluster, in groups that cluster alone.

        Per sender; with ``similarity`` 1.0 (and no key fed twice) per sender and content, and only the
        groups of at least ``count`` messages: contents are counted in C first.
        """
        min_length = params.min_length

        def counts(content: bytes) -> bool:
            return bool(content) and (
                min_length <= 1 or len(content.decode("utf-8", "replace")) >= min_length
            )

        keys, senders, times = self.keys, self.senders, self.times
        if params.similarity >= 1.0 and not self.repeated:
            hot = {c for c, seen in Counter(contents).items() if seen >= params.count and counts(c)}
            by_pair: dict[tuple[str, bytes], list[tuple[int, str, int]]] = {}
            for i, content in enumerate(contents if hot else ()):
                if content in hot:
                    by_pair.setdefault((senders[i], content), []).append((times[i], keys[i], i))
            return [items for items in by_pair.values() if len(items) >= params.count]
        by_sender: dict[str, dict[str, tuple[int, str, int]]] = {}
        for i, content in enumerate(contents):
            if counts(content):
                by_sender.setdefault(senders[i], {})[keys[i]] = (times[i], keys[i], i)
        return [list(by_key.values()) for by_key in by_sender.values()]


def _contents(batch: Batch, joined: Joined, rule: RuleSpec, places: _Places) -> list[bytes]:
    """Each message's content for ``rule`` (``joined``: the fields it looks at): compact text, then media."""
    compact = joined.compact()
    if rule.params_as(FloodParams).ignore_digits:
        compact = compact.translate(None, _DIGITS)
    pieces = compact.split(b"\x00") if joined.texts else []
    starts = joined.starts
    # a message's fields are in a row
    contents = [b"".join(pieces[a:b]) for a, b in itertools.pairwise(starts)]
    page, accepts = batch.page, rule.selector.accepts_element
    for k in batch.elements_of(_MEDIA_IDS):  # images, files, voice, video, stickers: by identifier
        _, kind, content, _ = page.elements[k]
        if not accepts(kind):
            continue
        n = page.element_owners[k]
        for name in _MEDIA_IDS[kind]:
            value = content.get(name)
            if value not in (None, ""):
                contents[n] = b"|".join((contents[n], f"{kind}:{value}".encode()))
                if starts[n] == starts[n + 1]:  # no text: name its first element instead
                    first = page.elements[bisect.bisect_left(page.element_owners, n)]
                    places.elements[n] = (first[0], first[1])
    return contents
