"""``regex``: RE2 patterns, so that no configured pattern can take more than linear time.

Parameters: ``pattern`` and/or ``patterns``; ``normalize`` (default true: match the *light* form of the text,
lower-cased, NFKC, invisible characters removed, homoglyphs mapped, CJK punctuation as ASCII; false: the raw
text); ``ignore_case`` (default true); ``allow``: patterns that, matching a hit's text in full, drop it.

Patterns RE2 cannot run (backreferences, look-around, ...) are rejected with their line, as are patterns
that match the empty string (they would match every message). RE2 syntax differs from Python's in places:
``\\d``, ``\\w`` and ``\\b`` are ASCII-only, ``\\z`` is end of text. Patterns without anchors (``^``, ``$``,
``\\A``, ``\\z``) of a rule set are merged into one ``re2.Set`` run once over the whole message; the others
run per field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import re2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules import normalize as norm
from rules.api import CompileContext, Matcher, MessageMatcher
from rules.model import Match, RuleSpec, union
from rules.view import Batch, Joined
from rules.walk import TextField

#: Memory RE2 may use per pattern, and for the merged set (its DFA cache).
PATTERN_MAX_MEM = 8 << 20
SET_MAX_MEM = 64 << 20
_EMPTY_PROBES = ("", "a", "a b", "中文", "\n")
_ESCAPE_OR_CLASS = re.compile(r"\\[^Az]|\[\^?\]?(?:\[:[a-z]+:\]|\\.|[^\]])*\]")
_ANCHOR = re.compile(r"[\^$]|\\[Az]")
_MAX_ALLOWED_SKIPS = 50


class RegexParams(BaseModel):
    """Parameters of a ``regex`` rule."""

    model_config = ConfigDict(extra="forbid")

    pattern: str | None = Field(default=None, description="An RE2 pattern.")
    patterns: list[str] = Field(
        default_factory=list, description="More RE2 patterns; any one matching is a match."
    )
    normalize: bool = Field(
        default=True, description="Match the normalized (light) text rather than the raw text."
    )
    ignore_case: bool = Field(default=True, description="Match regardless of case.")
    allow: list[str] = Field(
        default_factory=list, description="RE2 patterns: a hit one of them matches in full is ignored."
    )

    @model_validator(mode="after")
    def _has_pattern(self) -> RegexParams:
        if self.pattern is None and not self.patterns:
            raise ValueError("give pattern or patterns")
        return self


def has_anchor(pattern: str) -> bool:
    """True when ``pattern`` may use ``^``, ``$``, ``\\A`` or ``\\z`` (outside character classes)."""
    return _ANCHOR.search(_ESCAPE_OR_CLASS.sub("", pattern)) is not None


def options(max_mem: int = PATTERN_MAX_MEM) -> Any:
    """RE2 options: bounded memory, errors reported to us rather than logged to stderr."""
    opts = re2.Options()
    opts.max_mem = max_mem
    opts.log_errors = False
    return opts


def compile_pattern(pattern: str, ignore_case: bool) -> tuple[Any, str | None]:
    """``(compiled, None)``, or ``(None, why)`` when the pattern cannot be used."""
    source = f"(?i){pattern}" if ignore_case else pattern
    try:
        compiled = re2.compile(source, options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return None, f"RE2 cannot run pattern {pattern!r}: {reason}"
    for probe in _EMPTY_PROBES:
        found = compiled.search(probe)
        if found is not None and found.start() == found.end():
            return None, f"pattern {pattern!r} matches the empty string, so it would match every message"
    return compiled, None


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: int
    pattern: str
    regex: Any  # re2._Regexp


class _Group:
    """Patterns that run over the same text: normalized or raw; whole message (one Set) or per field."""

    def __init__(self, normalized: bool, per_field: bool) -> None:
        self.normalized = normalized
        self.per_field = per_field
        self.entries: list[_Entry] = []
        self.set: Any = None

    def build(self) -> None:
        self.set = re2.Set.SearchSet(options(SET_MAX_MEM))
        for entry in self.entries:
            self.set.Add(entry.regex.pattern)
        self.set.Compile()

    def candidates(self, joined: Joined) -> dict[int, set[int]]:
        """Field index -> indexes of the patterns that may match it."""
        if self.per_field:
            found: dict[int, set[int]] = {}
            for i, text in enumerate(joined.texts):
                hits = self.set.Match(joined.field_light(i) if self.normalized else text)
                if hits:
                    found[i] = set(hits)
            return found
        data = joined.light_bytes() if self.normalized else joined.raw.encode()
        hits = self.set.Match(data)
        if not hits:
            return {}
        # Each pattern the set reports then runs alone over the batch, and its matches name the fields to
        # check: every field a match overlaps (one may span a field separator, and hide a match inside).
        found = {}
        for index in hits:
            field, pos = 0, 0
            for match in self.entries[index].regex.finditer(data):
                start, end = match.span()
                field += data.count(b"\x00", pos, start)
                last = field + data.count(b"\x00", start, end)
                for i in range(field, last + 1):
                    found.setdefault(i, set()).add(index)
                field, pos = last, max(start, end)
        return found


class RegexType:
    """The ``regex`` rule type."""

    name = "regex"
    params = RegexParams

    def compile(self, rules: Sequence[RuleSpec], context: CompileContext) -> Matcher:
        """Check every pattern with RE2, then merge them into sets."""
        groups = {(n, f): _Group(n, f) for n in (True, False) for f in (True, False)}
        allows: list[tuple[Any, ...]] = []
        for r, rule in enumerate(rules):
            params = rule.params_as(RegexParams)
            located: list[tuple[str, tuple[str | int, ...]]] = []
            if params.pattern is not None:
                located.append((params.pattern, ("pattern",)))
            located.extend((p, ("patterns", k)) for k, p in enumerate(params.patterns))
            for pattern, loc in located:
                compiled, problem = compile_pattern(pattern, params.ignore_case)
                if problem is not None:
                    context.report(rule, problem, *loc)
                    continue
                anchored = has_anchor(pattern)
                groups[(params.normalize, anchored)].entries.append(_Entry(r, pattern, compiled))
            allow = []
            for k, pattern in enumerate(params.allow):
                compiled, problem = compile_pattern(pattern, params.ignore_case)
                if problem is not None:
                    context.report(rule, problem, "allow", k)
                else:
                    allow.append(compiled)
            allows.append(tuple(allow))
        live = [g for g in groups.values() if g.entries]
        for group in live:
            group.build()
        return RegexMatcher(rules, live, allows)


class RegexMatcher(MessageMatcher):
    """Every regex rule of a rule set."""

    def __init__(
        self, rules: Sequence[RuleSpec], groups: Sequence[_Group], allows: Sequence[tuple[Any, ...]]
    ) -> None:
        self.rules = tuple(rules)
        self.groups = tuple(groups)
        self.allows = tuple(allows)
        self.selection = union(r.selector for r in rules)

    def scan(self, batch: Batch) -> Iterable[Match]:
        """Run the sets over the batch, then each pattern they report over the fields they point at."""
        if not self.groups:
            return ()
        joined = batch.joined(self.selection)
        if not joined.texts:
            return ()
        out: dict[tuple[str, str, str, str], Match] = {}
        for group in self.groups:
            for i, indexes in sorted(group.candidates(joined).items()):
                item = joined.field(i)
                text = joined.field_light(i) if group.normalized else item.text
                msg_key = batch.msg_key(joined.owners[i])
                for index in sorted(indexes):
                    match = self._locate(msg_key, item, text, group.normalized, group.entries[index])
                    if match is not None:
                        # Several patterns of a rule may find the same text: report it once.
                        out.setdefault(
                            (match.msg_key, match.rule_id, match.element_path, match.normalized), match
                        )
        return list(out.values())

    def _first(self, entry: _Entry, text: str) -> tuple[int, int] | None:
        allows = self.allows[entry.rule]
        for n, found in enumerate(entry.regex.finditer(text)):
            start, end = found.span()
            if not any(allow.fullmatch(text[start:end]) is not None for allow in allows):
                return start, end
            if n >= _MAX_ALLOWED_SKIPS:
                break
        return None

    def _locate(
        self, msg_key: str, item: TextField, text: str, normalized: bool, entry: _Entry
    ) -> Match | None:
        rule = self.rules[entry.rule]
        if not rule.selector.accepts(item):
            return None
        found = self._first(entry, text)
        if found is None:
            return None
        start, end = found
        hit = evidence = text[start:end]
        if normalized:
            mapped = norm.light_mapped(item.text, text)
            if mapped.text == text:
                evidence = mapped.original_text(start, end)
        return rule.match(msg_key, item.path, evidence, hit)
