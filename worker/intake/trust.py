"""Reporter trust and the policy that turns it into a job's mode. Pure functions.

A reporter's trust is the share of their settled reports that held up, with one upheld and one baseless
report assumed to begin with (Laplace's rule): a new reporter scores 0.5, one whose 8 reports all held up
0.9, one whose 8 reports were all baseless 0.1. It moves slowly for a new reporter and firmly with a record.

A case's job recalls when any of these holds, and is otherwise a dry run (its matches become a plan for a
moderator to decide): a configured trusted reporter filed one of its reports; enough distinct reporters
agree; or one of its reporters' trust is at least the low-trust threshold.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Record:
    """How a reporter's settled reports turned out."""

    upheld: int = 0
    baseless: int = 0


def trust_score(record: Record) -> float:
    """The reporter's trust, between 0 and 1: (upheld + 1) / (settled + 2)."""
    return (record.upheld + 1) / (record.upheld + record.baseless + 2)


@dataclass(frozen=True, slots=True)
class Policy:
    """The knobs of the trust policy (``RECALL_INTAKE_*``)."""

    trusted: frozenset[str] = frozenset()
    low_trust: float = 0.35
    agree: int = 3


@dataclass(frozen=True, slots=True)
class Decision:
    """The mode of a case's job, and why (shown to moderators and in the report's status)."""

    mode: Literal["recall", "dry_run"]
    why: str


def decide(policy: Policy, reporters: Collection[str], records: Mapping[str, Record]) -> Decision:
    """The mode of the job answering reports from ``reporters`` (distinct accounts)."""
    trusted = sorted(set(reporters) & policy.trusted)
    if trusted:
        return Decision("recall", f"trusted reporter {trusted[0]}")
    distinct = len(set(reporters))
    if distinct >= policy.agree:
        return Decision("recall", f"{distinct} reporters agree")
    best = max((trust_score(records.get(r, Record())) for r in reporters), default=0.0)
    if best >= policy.low_trust:
        return Decision("recall", f"reporter trust {best:.2f}")
    return Decision(
        "dry_run",
        f"low-trust reporters only (best {best:.2f} < {policy.low_trust:g}) and fewer than "
        f"{policy.agree} agree: planned for review",
    )
