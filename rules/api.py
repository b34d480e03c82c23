"""The interface every rule type implements, built-in or plugin.

A **rule type** is what the ``type:`` of a rule names. It is an object with:

``name``
    The type's name (the entry point's name, for plugins).
``params``
    A pydantic model of the rule's own parameters: every key of a rule other than the common ones
    (``id``, ``type``, ``action``, ``description``, ``enabled``, ``elements``, ``fields``). Use
    ``model_config = ConfigDict(extra="forbid")`` so that a misspelt key is reported with its line.
``compile(rules, context) -> Matcher``
    Called once per rule set with every enabled rule of this type in it (so a type can merge them into one
    automaton). Report problems with ``context.report(rule, message, *param_path)`` rather than raising,
    so that a moderator sees all of them at once; read word lists with ``context.read_list``.

A **matcher** scans messages a batch at a time: ``scan(batch)`` returns the matches in the messages of a
:class:`rules.view.Batch` (``batch.views``: one :class:`rules.view.MessageView` per message, with its string
fields and elements; ``batch.joined(selector)``: the normalized text of every message at once, for types
that gain from one pass over a whole page). ``window()`` returns ``None``, or, for rules that look across
messages (like ``flood``), a fresh :class:`Window` per scan whose ``feed(batch)`` collects what it needs and
whose ``finish()`` returns the matches once every message has been fed, in whatever order they came.

Matchers are shared by every scan of a rule set, possibly from several threads: keep per-scan state in the
window. Build matches with ``rule.match(msg_key, element_path, evidence, normalized)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from rules.errors import Problem
from rules.model import Match, RuleSpec
from rules.view import Batch, MessageView

#: The keys every rule has, whatever its type; a type's parameters may not use them.
COMMON_KEYS = frozenset({"id", "type", "action", "description", "enabled", "elements", "fields"})

#: Longest word or domain list file accepted, in bytes.
MAX_LIST_BYTES = 64 * 1024 * 1024


class Window(Protocol):
    """Per-scan state of a rule that looks across messages."""

    def feed(self, batch: Batch) -> None:
        """Take note of some messages."""
        ...

    def finish(self) -> Iterable[Match]:
        """The matches, once every message has been fed."""
        ...


class Matcher(Protocol):
    """All the rules of one type in one rule set, compiled."""

    def scan(self, batch: Batch) -> Iterable[Match]:
        """The matches in a batch of messages."""
        ...

    def window(self) -> Window | None:
        """A fresh window for one scan, or None for rules that only look at one message at a time."""
        ...


@runtime_checkable
class RuleType(Protocol):
    """A kind of rule (what ``type:`` names in a rule file)."""

    name: str
    params: type[BaseModel]

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """Compile every rule of this type of one rule set."""
        ...


class MessageMatcher:
    """Base for matchers of rules that look at one message at a time."""

    def scan(self, batch: Batch) -> Iterable[Match]:
        """The matches in a batch: those of :meth:`scan_message` for each message."""
        out: list[Match] = []
        for view in batch.views:
            out.extend(self.scan_message(view))
        return out

    def scan_message(self, view: MessageView) -> Iterable[Match]:  # pragma: no cover - overridden
        """The matches of one message (override this, or :meth:`scan`)."""
        raise NotImplementedError

    def window(self) -> Window | None:
        """No window: nothing is kept between messages."""
        return None


class CompileContext:
    """What a rule type gets besides its rules when compiling: problem reporting and list files."""

    def __init__(self, source: str = "<string>", base_dir: Path | None = None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.files: dict[Path, bytes] = {}  # list files read, for the book's version and reload checks

    def report(self, rule: RuleSpec, message: str, *loc: str | int) -> None:
        """Record a problem with ``rule``, at the line of parameter ``loc`` if given."""
        self.problems.append(Problem(rule.source, rule.line_of(*loc), f"rule {rule.id!r}: {message}"))

    def read_list(self, rule: RuleSpec, ref: str, *loc: str | int) -> list[str]:
        """The entries of a list file: one per line, blank lines and ``#`` comments skipped.

        ``ref`` is relative to the rule file's directory. A missing or unreadable file is reported and
        reads as empty.
        """
        path = Path(ref)
        if not path.is_absolute():
            if self.base_dir is None:
                self.report(
                    rule, f"list file {ref!r} is relative, but the rules were not read from a file", *loc
                )
                return []
            path = self.base_dir / path
        try:
            if path.stat().st_size > MAX_LIST_BYTES:
                self.report(rule, f"list file {ref!r} is larger than {MAX_LIST_BYTES} bytes", *loc)
                return []
            data = path.read_bytes()
            text = data.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            self.report(rule, f"cannot read list file {ref!r}: {exc}", *loc)
            return []
        self.files[path] = data
        entries = []
        for line in text.splitlines():
            entry = line.strip()
            if entry and not entry.startswith("#"):
                entries.append(entry)
        return entries
