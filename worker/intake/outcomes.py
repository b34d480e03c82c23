"""What a finished job means for the reports it answered. Pure functions.

A job's stored result says what it scanned, matched, recalled and proposed. Its reports are **done** when the
rules found something of the suspect's (recalled, already recalled, or planned for a moderator), which
counts as a report that held up; **dismissed** when the job scanned the window and found nothing, a
baseless report; **failed** when the job gave up, which says nothing about the reporters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CaseState = Literal["done", "dismissed", "failed"]
#: What the reporter's notice says (see notice-templates.yaml).
NoticeOutcome = Literal["actioned", "reviewing", "no_action"]

_GAVE_UP = ("failed", "invalid")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A settled case."""

    state: CaseState
    counts: dict[str, int]
    upheld: bool | None  # None: no bearing on the reporters' trust
    notice: NoticeOutcome | None


def outcome_of(result: dict[str, Any]) -> Outcome:
    """The outcome of a case whose job settled with ``result`` (the published result record)."""
    matched = len({m.get("msg_key") for m in result.get("matches") or [] if isinstance(m, dict)})
    recalled = len(result.get("recalled") or []) + len(result.get("wiped") or [])
    already = len(result.get("already_recalled") or [])
    proposed = len(result.get("planned") or []) + (1 if result.get("wipe_proposed") else 0)
    counts = {
        "scanned": int(result.get("messages_scanned") or 0),
        "matched": matched,
        "recalled": recalled,
        "already_recalled": already,
        "proposed": proposed,
    }
    if result.get("status") in _GAVE_UP and not recalled:
        return Outcome("failed", counts, None, None)
    if recalled or already:
        return Outcome("done", counts, True, "actioned")
    if matched or proposed:
        return Outcome("done", counts, True, "reviewing")
    return Outcome("dismissed", counts, False, "no_action")
