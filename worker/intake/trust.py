"""Reporter trust and the policy that turns it into a job's mode. Pure functions.

A reporter's trust is the share of their settled reports that held up, with one upheld and one baseless
report assumed to begin with (Laplace's rule): a new reporter scores 0.5, one whose 8 reports all held up
0.9, one whose 8 reports were all baseless 0.1. It moves slowly for a new reporter and firmly with a record.

A case's job recalls when any of these holds, and is otherwise a dry run (its matches become a plan for a
moderator to decide): a configured trusted reporter filed one of its reports; enough distinct reporters
agree; or one of its reporters' trust is at least the low-trust threshold.

A case's job also gets a priority (0 to 9, see :mod:`worker.priority`), so that when the queue is deep the
jobs that more, and more reliable, reporters back run first: :func:`case_priority`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from worker import priority


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


#: Priority points one reporter adds per decade of reliability: log10(1 / (1 - trust)) is 0.30 for a
#: newcomer (0.5), 0.70 at 0.8 and 1 at 0.9 (a reporter wrong one time in ten).
POINTS_PER_DECADE = 6.0
#: The highest priority reporters' trust alone can reach; a configured trusted reporter gives HIGHEST.
TOP_BY_TRUST = priority.HIGHEST - 1


def reporter_weight(trust: float) -> float:
    """How much one reporter backs a case: log10(1 / (1 - trust)), so that the weights of several reporters
    add up to log10(1 / the chance that every one of them is wrong)."""
    return math.log10(1 / (1 - min(trust, 1 - 1e-9)))


def case_priority(policy: Policy, reporters: Collection[str], records: Mapping[str, Record]) -> int:
    """The priority (0 to 9) of the job answering reports from ``reporters``.

    - 9 when a configured trusted reporter filed one of the reports;
    - 0 when the job is a dry run (:func:`decide`: low-trust reporters only, fewer than ``policy.agree``);
    - otherwise ``POINTS_PER_DECADE`` points for each decade of :func:`reporter_weight` of the distinct
      reporters together, rounded down, between 1 and 8: one newcomer 1, two 3, three 5, four 7, five or
      more 8; one reporter at trust 0.8 (3 of 3 upheld) 4, at 0.9 (8 of 8) 6.

    More distinct reporters, or more trust in any of them, never lowers it.
    """
    distinct = set(reporters)
    if distinct & policy.trusted:
        return priority.HIGHEST
    if decide(policy, distinct, records).mode == "dry_run":
        return priority.LOWEST
    weight = sum(reporter_weight(trust_score(records.get(r, Record()))) for r in distinct)
    points = math.floor(POINTS_PER_DECADE * weight + 1e-9)
    return max(priority.LOWEST + 1, min(TOP_BY_TRUST, points))
