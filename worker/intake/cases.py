"""What a case's job is, and whether a running job already covers a new report. Pure functions.

A case gathers the reports on one conversation and suspect. When it closes, its job scans from
``lookback_s`` before the earliest reported moment (a report's time, or the send time in a reported MsgKey)
up to the close, so it also sees what the suspect sent after the last report; it names every report, and up
to 100 of the reported messages (the newest), which the window holds in any case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.intake.model import msg_key_time
from worker.intake.trust import Decision
from worker.jobs import MAX_REPORTS_PER_JOB, MAX_WINDOW_S

MAX_NAMED_MESSAGES = 100


@dataclass(frozen=True, slots=True)
class CaseReport:
    """What a case's job needs of one of its reports."""

    report_id: str
    reporter: str
    category: str
    msg_refs: Sequence[str | int]
    reported_at: int


@dataclass(frozen=True, slots=True)
class Window:
    """A job's window, and the newest group message its reports name (for follow-ups)."""

    since: int
    until: int
    max_seq: int | None


def job_id_of(case_id: int) -> str:
    """The job id of a case: fixed, so a job published twice is the same job to the worker."""
    return f"intake-{case_id}"


def window_of(reports: Sequence[CaseReport], *, closed_at: int, lookback_s: int) -> Window:
    """The window a case's job scans."""
    moments = [r.reported_at for r in reports]
    key_times = (msg_key_time(ref) for r in reports for ref in r.msg_refs if isinstance(ref, str))
    moments += [t for t in key_times if t is not None]  # a MsgKey's time may be 0: test for None
    until = max([closed_at, *(r.reported_at for r in reports)])
    since = max(0, min(moments, default=until) - lookback_s, until - MAX_WINDOW_S)
    seqs = [ref for r in reports for ref in r.msg_refs if isinstance(ref, int)]
    return Window(since, until, max(seqs, default=None))


def build_job(
    case_id: int,
    conversation: dict[str, Any],
    suspect: str,
    reports: Sequence[CaseReport],
    *,
    decision: Decision,
    window: Window,
    ruleset: str,
) -> dict[str, Any]:
    """The job (v1 document) answering a case's ``reports`` (oldest first)."""
    keys: dict[str, None] = {}
    seqs: dict[int, None] = {}
    for filed in reversed(reports):  # newest first, so the newest are kept under the cap
        for ref in filed.msg_refs:
            if isinstance(ref, int):
                seqs.setdefault(ref)
            else:
                keys.setdefault(ref)
    categories = Counter(r.category for r in reports)
    # most reported category first; ties by name, so the same reports always give the same job
    reason = sorted(categories.items(), key=lambda item: (-item[1], item[0]))[0][0]
    first = reports[0]
    report: dict[str, Any] = {
        "reporter": first.reporter,
        "reason": reason,
        "reported_at": first.reported_at,
        "reports": [r.report_id for r in reports[:MAX_REPORTS_PER_JOB]],
    }
    if keys:
        report["msg_keys"] = list(keys)[:MAX_NAMED_MESSAGES]
    if seqs:
        report["msg_seqs"] = list(seqs)[:MAX_NAMED_MESSAGES]
    return {
        "version": 1,
        "job_id": job_id_of(case_id),
        "conversation": conversation,
        "suspect": suspect,
        "window": {"since": window.since, "until": window.until},
        "report": report,
        "ruleset": ruleset,
        "mode": decision.mode,
    }


def covered(
    window_since: int | None,
    window_until: int | None,
    max_seq: int | None,
    *,
    msg_refs: Sequence[str | int],
    reported_at: int,
) -> bool:
    """True when a case's job (its window, the newest seq it names) already scans everything a new report
    names; otherwise the report starts a follow-up case.

    A MsgKey carries its send time, so it is covered when that time is in the window. A group's MsgSeq
    carries none: it is covered when it is no newer than the newest seq the case's reports named, since the
    job reads the group from its newest message down through the window. A report naming no message is
    covered when it was made within the window.
    """
    if window_since is None or window_until is None:
        return False
    if not msg_refs:
        return window_since <= reported_at <= window_until
    for ref in msg_refs:
        if isinstance(ref, int):
            if max_seq is None or ref > max_seq:
                return False
        else:
            moment = msg_key_time(ref)
            if moment is None or not window_since <= moment <= window_until:
                return False
    return True
