"""Matches (:class:`Match`) and configured rules as the engine knows them (:class:`RuleSpec`)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from pydantic import BaseModel

from rules.walk import TextField

#: ``recall`` the message; ``flag`` it for human review only; ``wipe``: recall it and, in a group, propose
#: recalling everything its sender sent recently (a plan for a moderator to approve).
Action = Literal["recall", "flag", "wipe"]

#: Longest evidence (and normalized form) a match carries, in characters.
EVIDENCE_LIMIT: Final = 200

Loc = tuple[str | int, ...]
P = TypeVar("P", bound=BaseModel)


def bound(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Match:
    """One rule matching one place of one message."""

    msg_key: str
    rule_id: str
    rule_type: str
    action: Action  # "recall", "flag" (human review only) or "wipe" (recall, and propose a wipe)
    element_path: str  # e.g. "MsgBody[1].MsgContent.Text"
    evidence: str  # the original text that matched, at most EVIDENCE_LIMIT characters
    normalized: str  # the normalized form that matched

    def to_dict(self) -> dict[str, str]:
        """The match as a JSON-ready dict."""
        return {
            "msg_key": self.msg_key,
            "rule_id": self.rule_id,
            "rule_type": self.rule_type,
            "action": self.action,
            "element_path": self.element_path,
            "evidence": self.evidence,
            "normalized": self.normalized,
        }


@dataclass(frozen=True, slots=True)
class Selector:
    """Which fields a rule looks at: ``elements`` (element types) and ``fields`` (field names).

    ``None`` means "not restricted"; with ``fields`` unrestricted, only text-bearing fields are looked at.
    """

    elements: frozenset[str] | None = None
    fields: frozenset[str] | None = None
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        # Selectors key the per-batch caches, looked up several times per message: hash once.
        object.__setattr__(self, "_hash", hash((self.elements, self.fields)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def textual_only(self) -> bool:
        """True when this selects exactly the text-bearing fields of every element."""
        return self.elements is None and self.fields is None

    def accepts(self, item: TextField) -> bool:
        """True when the rule looks at this field."""
        if self.elements is not None and item.element_type not in self.elements:
            return False
        return item.textual if self.fields is None else item.field in self.fields

    def accepts_element(self, element_type: str) -> bool:
        """True when the rule looks at elements of this type."""
        return self.elements is None or element_type in self.elements


#: Every text-bearing field of every element.
TEXT: Final = Selector()


@dataclass(frozen=True)
class RuleSpec:
    """One configured rule, validated, as rule types receive it to compile."""

    id: str
    type: str
    action: Action
    params: BaseModel  # an instance of the rule type's ``params`` model
    selector: Selector = TEXT
    description: str = ""
    source: str = "<string>"
    line: int | None = None  # where the rule starts
    lines: Mapping[Loc, int] = field(default_factory=dict, repr=False)  # parameter path -> line

    def line_of(self, *loc: str | int) -> int | None:
        """The line of a parameter (or of the deepest part of its path that has one)."""
        for end in range(len(loc), 0, -1):
            found = self.lines.get(tuple(loc[:end]))
            if found is not None:
                return found
        return self.line

    def params_as(self, kind: builtins.type[P]) -> P:
        """The parameters, as the rule type's model (a rule type calls this with its own ``params``)."""
        if not isinstance(self.params, kind):
            raise TypeError(
                f"rule {self.id!r}: parameters are {type(self.params).__name__}, not {kind.__name__}"
            )
        return self.params

    def match(self, msg_key: str, element_path: str, evidence: str, normalized: str) -> Match:
        """A :class:`Match` of this rule."""
        return Match(
            msg_key, self.id, self.type, self.action, element_path, bound(evidence), bound(normalized)
        )


@dataclass(frozen=True, slots=True)
class AnyOf:
    """The fields any of several selectors accepts."""

    selectors: frozenset[Selector]

    @property
    def textual_only(self) -> bool:
        """False: a union of different selectors is never exactly the text-bearing fields."""
        return False

    def accepts(self, item: TextField) -> bool:
        """True when one of the selectors accepts the field."""
        return any(s.accepts(item) for s in self.selectors)


def union(selectors: Iterable[Selector]) -> Selector | AnyOf:
    """One filter accepting what any of ``selectors`` accepts (the selector itself if they are all equal)."""
    distinct = frozenset(selectors)
    if len(distinct) == 1:
        return next(iter(distinct))
    return AnyOf(distinct)
