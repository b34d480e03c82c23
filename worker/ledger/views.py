"""What the ledger shows: plans as moderators review them, and the audit of a job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.ledger import decisions
from worker.ledger.models import (
    EvidenceRow,
    JobRow,
    MatchRow,
    MessageRow,
    PlanItemRow,
    PlanRow,
    RecallRow,
    WipeRow,
)
from worker.ledger.upsert import chunks

#: The reason of a plan that proposes a wipe (``delete_group_msg_by_sender``): one call for the whole
#: sender, approved whole or not at all.
WIPE_PLAN = "wipe"


@dataclass(slots=True)
class PlanItem:
    """One message of a plan, with its evidence and matches (``body`` None: evidence purged or missing)."""

    msg_key: str
    sender: str
    receiver: str | None
    time: int
    body: list[Any] | None
    cloud_custom_data: str | None
    content_hash: str
    matches: list[dict[str, str]]
    recall_state: str | None
    #: The moderator's choice on approving: True selected, False deselected (held back as rejected), None
    #: undecided (or approved whole before subsets existed).
    approved: bool | None = None


@dataclass(slots=True)
class PlanView:
    """A plan as a moderator sees it."""

    id: int
    job_id: str
    reason: str
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    apply_job_id: str | None
    job: dict[str, Any]
    items: list[PlanItem] = field(default_factory=list)
    message_count: int = 0  # how many messages the plan holds (set whether or not items are loaded)

    @property
    def deselected(self) -> list[str]:
        """MsgKeys of the (loaded) items deselected when the plan was approved (not recalled)."""
        return [item.msg_key for item in self.items if item.approved is False]

    @property
    def is_wipe(self) -> bool:
        """True for a plan proposing a wipe of the suspect's group messages."""
        return self.reason == WIPE_PLAN

    @property
    def missing_evidence(self) -> list[str]:
        """MsgKeys of the (loaded) items without kept evidence: such a plan cannot be approved."""
        return [item.msg_key for item in self.items if item.body is None]


class PlanStateError(ValueError):
    """A plan that cannot take the requested decision (unknown, already decided, or without evidence)."""


def load_plan(session: Session, plan_id: int) -> PlanView:
    """A plan with every item, its evidence (if kept) and the plan's job's matches on it."""
    row = session.execute(
        select(PlanRow, JobRow).join(JobRow, PlanRow.job_pk == JobRow.id).where(PlanRow.id == plan_id)
    ).first()
    if row is None:
        raise PlanStateError(f"no plan {plan_id}")
    plan, job = row
    view = plan_view(plan, job)
    messages = session.execute(
        select(MessageRow, PlanItemRow.approved)
        .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
        .where(PlanItemRow.plan_pk == plan_id)
        .order_by(MessageRow.msg_time)
    ).all()
    view.message_count = len(messages)
    for message, approved in messages:
        stored = session.get(EvidenceRow, message.id)
        evidence = kept_evidence(stored)
        recall = session.get(RecallRow, message.id)
        matches = session.scalars(
            select(MatchRow).where(MatchRow.message_pk == message.id, MatchRow.job_pk == job.id)
        ).all()
        view.items.append(
            PlanItem(
                msg_key=message.msg_key,
                sender=message.sender,
                receiver=message.receiver,
                time=message.msg_time,
                body=evidence.body if evidence else None,
                cloud_custom_data=evidence.cloud_custom_data if evidence else None,
                content_hash=stored.content_hash if stored else "",
                matches=[match_dict(m) for m in matches],
                recall_state=recall.state if recall else None,
                approved=approved,
            )
        )
    return view


def audit(session: Session, job_id: str) -> dict[str, Any]:
    """Everything the ledger knows about one job: what it matched, kept as evidence, recalled, planned,
    what moderators decided on its messages, and the result it settled with."""
    job = session.scalar(select(JobRow).where(JobRow.job_id == job_id))
    if job is None:
        raise LookupError(f"no job {job_id!r} in the ledger")
    messages: dict[int, dict[str, Any]] = {}
    for match in session.scalars(select(MatchRow).where(MatchRow.job_pk == job.id).order_by(MatchRow.id)):
        entry = messages.get(match.message_pk)
        if entry is None:
            entry = messages[match.message_pk] = _audited_message(session, match.message_pk)
        entry["matches"].append(match_dict(match))
    plans = session.scalars(select(PlanRow).where(PlanRow.job_pk == job.id).order_by(PlanRow.id)).all()
    return {
        "job_id": job.job_id,
        "status": job.status,
        "attempts": job.attempts,
        "fingerprint": job.fingerprint,
        "conversation": job.conversation,
        "suspect": job.suspect,
        "mode": job.mode,
        "ruleset": job.ruleset,
        "ruleset_version": job.ruleset_version,
        "report": job.report,
        "window": {"since": job.window_since, "until": job.window_until},
        "messages_scanned": job.messages_scanned,
        "created_at": job.created_at.isoformat(),
        "finished_at": _iso(job.finished_at),
        "settled_at": _iso(job.settled_at),
        "error": job.error,
        "dead_reason": job.dead_reason,
        "result": _parsed(job.result),
        "messages": list(messages.values()),
        "plans": [
            {
                "id": p.id,
                "reason": p.reason,
                "status": p.status,
                "decided_by": p.decided_by,
                "decided_at": _iso(p.decided_at),
                "apply_job_id": p.apply_job_id,
                **_chosen(session, p.id),
            }
            for p in plans
        ],
        "wipes": [
            {
                "plan": w.plan_pk,
                "conversation_key": w.conversation_key,
                "sender": w.sender,
                "listed": w.listed,
                "called_at": w.called_at.isoformat(),
                "finished_at": _iso(w.finished_at),
                "recalled": w.recalled,
                "missed": w.missed,
            }
            for w in session.scalars(select(WipeRow).where(WipeRow.job_pk == job.id).order_by(WipeRow.id))
        ],
    }


def _chosen(session: Session, plan_pk: int) -> dict[str, list[str]]:
    """The MsgKeys a moderator selected (``approved``) and deselected (``deselected``, held back as
    rejected) when approving a plan; both empty while it is undecided, or rejected."""
    rows = session.execute(
        select(MessageRow.msg_key, PlanItemRow.approved)
        .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
        .where(PlanItemRow.plan_pk == plan_pk, PlanItemRow.approved.is_not(None))
        .order_by(MessageRow.msg_key)
    )
    chosen: dict[str, list[str]] = {"approved": [], "deselected": []}
    for msg_key, approved in rows:
        chosen["approved" if approved else "deselected"].append(str(msg_key))
    return chosen


def _audited_message(session: Session, message_pk: int) -> dict[str, Any]:
    message = session.get(MessageRow, message_pk)
    evidence = session.get(EvidenceRow, message_pk)
    recall = session.get(RecallRow, message_pk)
    active = decisions.active_rejections(session, [message_pk]).get(message_pk)
    return {
        "msg_key": message.msg_key if message else "",
        "sender": message.sender if message else "",
        "time": message.msg_time if message else 0,
        "evidence": None
        if evidence is None
        else {
            "MsgBody": evidence.body,
            "CloudCustomData": evidence.cloud_custom_data,
            "content_hash": evidence.content_hash,
            "captured_at": evidence.captured_at.isoformat(),
            "purged": evidence.purged_at is not None,
        },
        "recall": None
        if recall is None
        else {
            "state": recall.state,
            "code": recall.code,
            "by_job": _job_id_of(session, recall.job_pk),
            "finished_at": _iso(recall.finished_at),
            "verified": recall.verified,
        },
        "decision": decisions.active_view(active),
        "decisions": decisions.history(session, message_pk),
        "matches": [],
    }


def kept_evidence(evidence: EvidenceRow | None) -> EvidenceRow | None:
    """``evidence`` if its content is kept (not purged, not missing)."""
    if evidence is None or evidence.purged_at is not None or evidence.body is None:
        return None
    return evidence


def without_evidence(session: Session, message_pks: Sequence[int]) -> list[str]:
    """MsgKeys of those of ``message_pks`` without kept evidence, sorted."""
    missing: list[str] = []
    for part in chunks(sorted(message_pks)):
        rows = session.execute(
            select(MessageRow.msg_key, EvidenceRow)
            .outerjoin(EvidenceRow, EvidenceRow.message_pk == MessageRow.id)
            .where(MessageRow.id.in_(part))
        )
        missing += [str(msg_key) for msg_key, evidence in rows if kept_evidence(evidence) is None]
    return sorted(missing)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parsed(result: str | None) -> Any:
    """A stored result as JSON (as text, should it not parse)."""
    if result is None:
        return None
    try:
        return orjson.loads(result)
    except orjson.JSONDecodeError:
        return result


def _job_id_of(session: Session, job_pk: int) -> str | None:
    return session.scalar(select(JobRow.job_id).where(JobRow.id == job_pk))


def match_dict(match: MatchRow) -> dict[str, str]:
    """A match as plans and the audit show it."""
    return {
        "rule_id": match.rule_id,
        "rule_type": match.rule_type,
        "action": match.action,
        "element_path": match.element_path,
        "evidence": match.evidence,
        "normalized": match.normalized,
    }


def plan_view(plan: PlanRow, job: JobRow) -> PlanView:
    """A plan without its items."""
    return PlanView(
        id=plan.id,
        job_id=job.job_id,
        reason=plan.reason,
        status=plan.status,
        created_at=plan.created_at,
        decided_at=plan.decided_at,
        decided_by=plan.decided_by,
        note=plan.note,
        apply_job_id=plan.apply_job_id,
        job={
            "job_id": job.job_id,
            "conversation": job.conversation,
            "suspect": job.suspect,
            "ruleset": job.ruleset,
            "report": job.report,
            "window": {"since": job.window_since, "until": job.window_until},
        },
    )
