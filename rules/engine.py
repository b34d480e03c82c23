"""Compiled rule sets and the scanners that run them over messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rules.api import CompileContext, Matcher, Window
from rules.errors import RulesError
from rules.media import Media
from rules.model import Match, RuleSpec
from rules.plugins import Registry
from rules.view import Batch
from worker.tim.models import Message


class Scanner:
    """One scan of a rule set over some messages (e.g. one conversation's history).

    ``feed`` returns the matches of per-message rules at once; window rules (``flood``) collect what they need
    and report in ``finish``. Messages may come in any order. A scanner is not thread-safe; the rule set is,
    so make one scanner per job.
    """

    def __init__(self, matchers: Sequence[Matcher]) -> None:
        self._matchers = tuple(matchers)
        self._windows: tuple[Window, ...] = tuple(w for m in matchers if (w := m.window()) is not None)

    def feed(self, message: Message) -> list[Match]:
        """The matches of per-message rules in ``message``."""
        return self.feed_many((message,))

    def feed_many(self, messages: Sequence[Message], media: Mapping[str, Media] | None = None) -> list[Match]:
        """The matches of per-message rules in ``messages`` (e.g. a page of history).

        The same matches as feeding them one by one, found faster: normalization and every automaton run
        once over the whole batch. ``media`` holds the pictures of these messages that media rules may
        examine, by UUID (see :mod:`rules.media`).
        """
        if not messages:
            return []
        batch = Batch.of(messages, media)
        out: list[Match] = []
        for matcher in self._matchers:
            out.extend(matcher.scan(batch))
        for window in self._windows:
            window.feed(batch)
        return out

    def finish(self) -> list[Match]:
        """The matches of window rules, over every message fed."""
        out: list[Match] = []
        for window in self._windows:
            out.extend(window.finish())
        return out

    def scan(self, messages: Iterable[Message], page: int = 100) -> list[Match]:
        """Feed every message (``page`` at a time), then finish: all the matches."""
        out: list[Match] = []
        pending: list[Message] = []
        for message in messages:
            pending.append(message)
            if len(pending) >= page:
                out.extend(self.feed_many(pending))
                pending.clear()
        out.extend(self.feed_many(pending))
        out.extend(self.finish())
        return out


@dataclass(frozen=True)
class RuleSet:
    """A named list of rules, compiled once; make a :class:`Scanner` per job with :meth:`scanner`."""

    name: str
    rules: tuple[RuleSpec, ...]
    matchers: tuple[Matcher, ...] = field(repr=False)
    description: str = ""

    def scanner(self) -> Scanner:
        """A fresh scanner (cheap: the compiled matchers are shared)."""
        return Scanner(self.matchers)

    @property
    def has_window_rules(self) -> bool:
        """True when some rule (like ``flood``) reports only in ``Scanner.finish``."""
        return any(m.window() is not None for m in self.matchers)

    @property
    def wants_media(self) -> bool:
        """True when some rule (``qr``, ``image_hash``) examines pictures: a scan should be given the bytes
        of the messages' :func:`rules.media.media_refs` (a matcher says so with ``wants_media = True``)."""
        return any(getattr(m, "wants_media", False) for m in self.matchers)


@dataclass(frozen=True)
class RuleBook:
    """Every rule set of one rule file."""

    path: Path | None
    version: str  # sha256 of the file's bytes (followed by those of its list files, if it has any)
    rulesets: Mapping[str, RuleSet]
    sources: tuple[Path, ...] = ()  # the rule file and the list files it reads

    def get(self, name: str) -> RuleSet:
        """The rule set called ``name``."""
        found = self.rulesets.get(name)
        if found is None:
            known = ", ".join(sorted(self.rulesets)) or "none"
            raise RulesError.single(
                str(self.path or "<string>"), f"no rule set named {name!r} (have: {known})"
            )
        return found


def compile_ruleset(
    name: str, rules: Sequence[RuleSpec], registry: Registry, context: CompileContext, description: str = ""
) -> RuleSet:
    """Compile ``rules`` (already validated): every rule type gets all its rules at once, in file order."""
    by_type: dict[str, list[RuleSpec]] = {}
    for rule in rules:
        by_type.setdefault(rule.type, []).append(rule)
    matchers = [registry.types[kind].compile(specs, context) for kind, specs in by_type.items()]
    return RuleSet(name, tuple(rules), tuple(matchers), description)
