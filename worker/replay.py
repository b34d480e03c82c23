"""Shadow evaluation: run a candidate rule set over the evidence of past jobs and compare, per rule, with
what the rules in force at the time matched.

Only evidence is replayed (matched messages, stored before any recall), so the report says what the
candidate would add on those messages and what it would drop; messages no rule matched were never kept.

:func:`reread` reads each past job's history window again from the Chat API instead (dry: it only reads
the history, never recalls and writes nothing to the ledger) and runs both the job's rule set, as the rule
file in force has it now, and the candidate on every message: the report then shows what the candidate
would add on messages no rule matched too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from worker.jobs import Job
from worker.ledger.models import EvidenceRow, JobRow, MessageRow
from worker.ledger.store import Ledger
from worker.pipeline import SCAN_PAGE, RuleSetLike, history_of
from worker.tim.history import ApiCaller, HistoryStats
from worker.tim.models import ConversationKind, Message

Hit = tuple[str, str]  # (job id, msg key)


@dataclass(slots=True)
class RuleChange:
    """How one rule's matches change under the candidate rule set."""

    rule_id: str
    kept: list[Hit] = field(default_factory=list)
    added: list[Hit] = field(default_factory=list)
    dropped: list[Hit] = field(default_factory=list)


@dataclass(slots=True)
class ReplayReport:
    """The comparison, rule by rule."""

    jobs: int = 0
    messages: int = 0
    rules: dict[str, RuleChange] = field(default_factory=dict)

    def change(self, rule_id: str) -> RuleChange:
        return self.rules.setdefault(rule_id, RuleChange(rule_id))

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "messages": self.messages,
            "rules": {
                rule_id: {
                    "kept": len(c.kept),
                    "added": [list(h) for h in c.added],
                    "dropped": [list(h) for h in c.dropped],
                }
                for rule_id, c in sorted(self.rules.items())
            },
        }

    def lines(self) -> list[str]:
        """A readable table."""
        out = [
            f"replayed {self.messages} messages of {self.jobs} jobs",
            "",
            f"{'rule':<32} {'kept':>6} {'added':>6} {'dropped':>8}",
        ]
        for rule_id, change in sorted(self.rules.items()):
            out.append(f"{rule_id:<32} {len(change.kept):>6} {len(change.added):>6} {len(change.dropped):>8}")
        for rule_id, change in sorted(self.rules.items()):
            out += [f"  + {rule_id}: {job} {key}" for job, key in change.added]
            out += [f"  - {rule_id}: {job} {key}" for job, key in change.dropped]
        return out


def _message(row: MessageRow, evidence: EvidenceRow) -> Message:
    """The message as it was, rebuilt from its identity and evidence."""
    kind = (
        ConversationKind.OFFICIAL_ACCOUNT if row.conversation_key.startswith("oa:") else ConversationKind.C2C
    )
    first = row.msg_key.split("_", 1)[0]
    return Message(
        kind=kind,
        msg_key=row.msg_key,
        from_account=row.sender,
        to_account=row.receiver,
        timestamp=row.msg_time,
        seq=int(first) if first.isdigit() else 0,
        body=tuple(evidence.body or ()),
        cloud_custom_data=evidence.cloud_custom_data or "",
    )


def replay(ledger: Ledger, ruleset: RuleSetLike, *, since: datetime, until: datetime) -> ReplayReport:
    """Evaluate ``ruleset`` on the evidence of jobs finished in ``[since, until]``."""
    report = ReplayReport()
    by_job: dict[str, list[tuple[Message, set[str]]]] = defaultdict(list)
    for job_id, row, evidence, matches in ledger.evidence_of_jobs(since, until):
        by_job[job_id].append(
            (
                _message(row, evidence),
                {m.rule_id for m in matches},
            )
        )
    for job_id, items in by_job.items():
        report.jobs += 1
        scanner = ruleset.scanner()
        now_matched: dict[str, set[str]] = defaultdict(set)
        report.messages += len(items)
        for match in scanner.feed_many([message for message, _ in items]):
            now_matched[match.msg_key].add(match.rule_id)
        for match in scanner.finish():
            now_matched[match.msg_key].add(match.rule_id)
        _compare(report, job_id, ((m.msg_key, before) for m, before in items), now_matched)
    return report


def _compare(
    report: ReplayReport,
    job_id: str,
    before: Iterable[tuple[str, set[str]]],
    now_matched: dict[str, set[str]],
) -> None:
    for msg_key, was in before:
        after = now_matched.get(msg_key, set())
        hit = (job_id, msg_key)
        for rule_id in sorted(was & after):
            report.change(rule_id).kept.append(hit)
        for rule_id in sorted(after - was):
            report.change(rule_id).added.append(hit)
        for rule_id in sorted(was - after):
            report.change(rule_id).dropped.append(hit)


def job_of(row: JobRow) -> Job:
    """The job a ledger row records, as a dry run (its window as the row fixed it)."""
    return Job.model_validate(
        {
            "version": 1,
            "job_id": row.job_id,
            "conversation": row.conversation,
            "suspect": row.suspect,
            "window": {"since": row.window_since, "until": row.window_until},
            "report": row.report,
            "ruleset": row.ruleset,
            "mode": "dry_run",
        }
    )


#: Told after each job re-read: (jobs done, jobs in all, messages read so far).
Progress = Callable[[int, int, int], None]


async def reread(
    ledger: Ledger,
    client: ApiCaller,
    rules_in_force: Callable[[str], RuleSetLike],
    candidate: RuleSetLike,
    *,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
) -> ReplayReport:
    """Read again the history window of every scan job finished in ``[since, until]`` and compare, message
    by message, what the job's rule set (``rules_in_force(job.ruleset)``, the rule file as it is now)
    matches with what ``candidate`` matches. Only reads: nothing is recalled, nothing written.

    A message whose body the history no longer shows (recalled, then emptied by the service) is judged
    on its stored evidence of that job, when the ledger kept it.
    """
    report = ReplayReport()
    rows = ledger.finished_jobs(since, until)
    jobs = [job_of(row) for row in rows]
    rulesets = {job.ruleset: rules_in_force(job.ruleset) for job in jobs}  # a missing one fails first
    evidence: dict[str, dict[str, Message]] = defaultdict(dict)
    for job_id, row, stored, _ in ledger.evidence_of_jobs(since, until):
        evidence[job_id][row.msg_key] = _message(row, stored)
    for done, job in enumerate(jobs, 1):
        judge = _Judge(rulesets[job.ruleset], candidate)
        await _reread_job(report, job, client, judge, evidence.get(job.job_id, {}))
        if progress is not None:
            progress(done, len(jobs), report.messages)
    return report


class _Judge:
    """The job's rule set and the candidate, fed the same pages of one window."""

    def __init__(self, old: RuleSetLike, new: RuleSetLike) -> None:
        self.old, self.new = old.scanner(), new.scanner()
        self.before: dict[str, set[str]] = defaultdict(set)
        self.after: dict[str, set[str]] = defaultdict(set)

    def feed(self, page: list[Message]) -> None:
        for match in self.old.feed_many(page):
            self.before[match.msg_key].add(match.rule_id)
        for match in self.new.feed_many(page):
            self.after[match.msg_key].add(match.rule_id)
        page.clear()

    def finish(self) -> None:
        for match in self.old.finish():
            self.before[match.msg_key].add(match.rule_id)
        for match in self.new.finish():
            self.after[match.msg_key].add(match.rule_id)


async def _reread_job(
    report: ReplayReport,
    job: Job,
    client: ApiCaller,
    judge: _Judge,
    kept: dict[str, Message],
) -> None:
    keys: list[str] = []
    page: list[Message] = []
    async for read in history_of(job, client, HistoryStats()):
        message = read
        if not message.body and message.msg_key in kept:
            message = replace(message, body=kept[message.msg_key].body)
        keys.append(message.msg_key)
        page.append(message)
        if len(page) >= SCAN_PAGE:
            judge.feed(page)
    judge.feed(page)
    judge.finish()
    report.jobs += 1
    report.messages += len(keys)
    _compare(report, job.job_id, ((key, judge.before.get(key, set())) for key in keys), judge.after)
