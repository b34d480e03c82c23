"""Shadow evaluation: run a candidate rule set over the evidence of past jobs and compare, per rule, with
what the rules in force at the time matched.

Only evidence is replayed (matched messages, stored before any recall), so the report says what the
candidate would add on those messages and what it would drop; messages no rule matched were never kept.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.ledger.models import EvidenceRow, MessageRow
from worker.ledger.store import Ledger
from worker.pipeline import RuleSetLike
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
        for message, before in items:
            after = now_matched.get(message.msg_key, set())
            hit = (job_id, message.msg_key)
            for rule_id in before & after:
                report.change(rule_id).kept.append(hit)
            for rule_id in after - before:
                report.change(rule_id).added.append(hit)
            for rule_id in before - after:
                report.change(rule_id).dropped.append(hit)
    return report
