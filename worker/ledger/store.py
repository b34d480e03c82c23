"""Reading and writing the ledger. Each method is one short transaction.

The methods are synchronous (SQLAlchemy); the async pipeline calls them through ``asyncio.to_thread``.
Everything is safe to repeat for a redelivered job: rows are found or created by their natural keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.jobs import C2CConversation, Job, OfficialAccountConversation
from worker.ledger.migrate import upgrade
from worker.ledger.models import (
    BreakerRow,
    EvidenceRow,
    JobRow,
    MatchRow,
    MessageRow,
    PlanItemRow,
    PlanRow,
    RecallRow,
    RuleStatRow,
)

DONE_STATES = ("recalled", "already_recalled")


def now() -> datetime:
    """The ledger's clock (UTC)."""
    return datetime.now(UTC)


def conversation_key(job: Job) -> str:
    """A conversation's identity, the same from either party's side."""
    conversation = job.conversation
    if isinstance(conversation, C2CConversation):
        return "c2c:" + "|".join(sorted((conversation.operator, conversation.peer)))
    if isinstance(conversation, OfficialAccountConversation):
        return f"oa:{conversation.account}"
    return f"group:{conversation.group_id}"


def content_hash(body: Any, cloud_custom_data: str) -> str:
    """SHA-256 of a message's content in canonical JSON (sorted keys)."""
    canonical = orjson.dumps(
        {"CloudCustomData": cloud_custom_data, "MsgBody": body}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class ScannedMessage:
    """What the ledger records of a matched message."""

    msg_key: str
    sender: str
    receiver: str | None
    timestamp: int
    body: Sequence[Any]
    cloud_custom_data: str
    matches: Sequence[Any]  # rules.Match-like: rule_id, rule_type, action, element_path, evidence, normalized


@dataclass(frozen=True, slots=True)
class Claim:
    """The ledger's answer to "may this job recall these messages?"."""

    to_call: list[str]
    skipped: dict[str, str]  # msg_key -> reason


@dataclass(slots=True)
class PlanItem:
    """One message of a plan, with its evidence and matches."""

    msg_key: str
    sender: str
    receiver: str | None
    time: int
    body: list[Any] | None
    cloud_custom_data: str | None
    content_hash: str
    matches: list[dict[str, str]]
    recall_state: str | None


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


class PlanStateError(ValueError):
    """A plan that cannot take the requested decision (unknown, or already decided)."""


class Ledger:
    """The ledger over one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session (use as a context manager)."""
        return self._sessions()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # jobs -------------------------------------------------------------------------------------------

    def start_job(self, job: Job, *, ruleset_version: str) -> int:
        """Record an attempt of ``job``; returns its row id."""
        with self.session() as session, session.begin():
            row = session.scalar(select(JobRow).where(JobRow.job_id == job.job_id))
            if row is None:
                row = JobRow(
                    job_id=job.job_id,
                    conversation_key=conversation_key(job),
                    conversation=job.conversation.model_dump(),
                    suspect=job.suspect,
                    mode=job.mode,
                    ruleset=job.ruleset,
                    report=job.report.model_dump(exclude_defaults=True),
                    window_since=job.since,
                    window_until=job.until,
                    applies_plan=job.apply_plan,
                    created_at=now(),
                    attempts=0,
                )
                session.add(row)
            row.attempts += 1
            row.status = "running"
            row.started_at = now()
            row.ruleset_version = ruleset_version
            session.flush()
            return row.id

    def finish_job(self, job_pk: int, *, status: str, error: str | None, scanned: int, pages: int) -> None:
        """Record how the job ended."""
        with self.session() as session, session.begin():
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_pk)
                .values(
                    status=status,
                    error=error,
                    messages_scanned=scanned,
                    pages_fetched=pages,
                    finished_at=now(),
                )
            )

    def _message(self, session: Session, key: str, scanned: ScannedMessage) -> MessageRow:
        row = session.scalar(
            select(MessageRow).where(
                MessageRow.conversation_key == key, MessageRow.msg_key == scanned.msg_key
            )
        )
        if row is None:
            row = MessageRow(
                conversation_key=key,
                msg_key=scanned.msg_key,
                sender=scanned.sender,
                receiver=scanned.receiver,
                msg_time=scanned.timestamp,
            )
            session.add(row)
            session.flush()
        return row

    def record_scan(self, job_pk: int, job: Job, matched: Iterable[ScannedMessage]) -> dict[str, int]:
        """Record every matched message, its matches and its evidence, in one transaction.

        Evidence is written once per message (the first capture is the original); a redelivered job's
        earlier matches are replaced. Returns the message row id of each MsgKey.
        """
        key = conversation_key(job)
        ids: dict[str, int] = {}
        with self.session() as session, session.begin():
            session.execute(delete(MatchRow).where(MatchRow.job_pk == job_pk))
            for scanned in matched:
                message = self._message(session, key, scanned)
                ids[scanned.msg_key] = message.id
                if session.get(EvidenceRow, message.id) is None:
                    body = list(scanned.body)
                    session.add(
                        EvidenceRow(
                            message_pk=message.id,
                            job_pk=job_pk,
                            body=body,
                            cloud_custom_data=scanned.cloud_custom_data,
                            content_hash=content_hash(body, scanned.cloud_custom_data),
                            captured_at=now(),
                        )
                    )
                seen: set[tuple[str, str]] = set()
                for match in scanned.matches:
                    if (match.rule_id, match.element_path) in seen:
                        continue
                    seen.add((match.rule_id, match.element_path))
                    session.add(
                        MatchRow(
                            job_pk=job_pk,
                            message_pk=message.id,
                            rule_id=match.rule_id,
                            rule_type=getattr(match, "rule_type", ""),
                            action=match.action,
                            element_path=getattr(match, "element_path", ""),
                            evidence=getattr(match, "evidence", ""),
                            normalized=getattr(match, "normalized", ""),
                        )
                    )
        return ids

    # recalls ----------------------------------------------------------------------------------------

    def claim_recalls(self, job_pk: int, message_ids: dict[str, int], *, lease_s: float = 600.0) -> Claim:
        """Mark ``message_ids`` planned for recall by this job, unless done or being done.

        A message some job already recalled is skipped: the ledger, not the history, decides that a second
        report or a redelivery recalls nothing twice. A claim by another job younger than ``lease_s`` is
        respected (that job is recalling it now); an older one, or this job's own from an attempt that died
        between this commit and the call, is taken over (the service treats a repeat as already done).
        """
        for attempt in range(3):
            try:
                return self._claim(job_pk, message_ids, lease_s)
            except IntegrityError:
                # Another job inserted a claim for one of these messages at the same moment: look again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _claim(self, job_pk: int, message_ids: dict[str, int], lease_s: float) -> Claim:
        to_call: list[str] = []
        skipped: dict[str, str] = {}
        stale = now() - timedelta(seconds=lease_s)
        with self.session() as session, session.begin():
            for msg_key, message_pk in message_ids.items():
                if session.get(EvidenceRow, message_pk) is None:
                    raise RuntimeError(f"no evidence stored for {msg_key}: refusing to recall it")
                row = session.get(RecallRow, message_pk, with_for_update=True)
                if row is None:
                    session.add(
                        RecallRow(message_pk=message_pk, job_pk=job_pk, state="planned", planned_at=now())
                    )
                    session.flush()
                    to_call.append(msg_key)
                elif row.state in DONE_STATES:
                    skipped[msg_key] = "already_recalled"
                elif row.state == "not_found":
                    skipped[msg_key] = "gone_before_recall"
                elif row.state == "planned" and row.job_pk != job_pk and _aware(row.planned_at) > stale:
                    skipped[msg_key] = "being_recalled_by_another_job"
                else:
                    row.job_pk, row.state, row.planned_at = job_pk, "planned", now()
                    to_call.append(msg_key)
        return Claim(to_call, skipped)

    def record_recall(self, message_pk: int, *, state: str, code: int, info: str) -> None:
        """Record the outcome of one recall call."""
        with self.session() as session, session.begin():
            session.execute(
                update(RecallRow)
                .where(RecallRow.message_pk == message_pk)
                .values(state=state, code=code, info=info[:1000], finished_at=now())
            )

    def settle_already_recalled(self, message_ids: Iterable[int]) -> None:
        """Messages the history shows recalled: close any claim left open by an attempt that died."""
        ids = list(message_ids)
        if not ids:
            return
        with self.session() as session, session.begin():
            session.execute(
                update(RecallRow)
                .where(
                    RecallRow.message_pk.in_(ids), RecallRow.state.in_(("planned", "failed", "unverified"))
                )
                .values(state="already_recalled", finished_at=now())
            )

    def record_verification(self, results: dict[int, bool]) -> None:
        """Record whether each recalled message (by row id) now shows as recalled."""
        with self.session() as session, session.begin():
            for message_pk, ok in results.items():
                values: dict[str, Any] = {"verified": ok, "verified_at": now()}
                if not ok:
                    values["state"] = "unverified"
                session.execute(update(RecallRow).where(RecallRow.message_pk == message_pk).values(**values))

    # plans ------------------------------------------------------------------------------------------

    def create_plan(self, job_pk: int, reason: str, message_ids: Iterable[int]) -> int:
        """Store a plan for review (one per job and reason: a redelivery finds the first one)."""
        with self.session() as session, session.begin():
            existing = session.scalar(
                select(PlanRow).where(PlanRow.job_pk == job_pk, PlanRow.reason == reason)
            )
            if existing is not None:
                return existing.id
            plan = PlanRow(job_pk=job_pk, reason=reason, status="pending", created_at=now())
            session.add(plan)
            session.flush()
            for message_pk in sorted(set(message_ids)):
                session.add(PlanItemRow(plan_pk=plan.id, message_pk=message_pk))
            return plan.id

    def list_plans(self, status: str | None = None) -> list[PlanView]:
        """Plans (newest first), without their items."""
        with self.session() as session:
            query = (
                select(PlanRow, JobRow).join(JobRow, PlanRow.job_pk == JobRow.id).order_by(PlanRow.id.desc())
            )
            if status is not None:
                query = query.where(PlanRow.status == status)
            return [_plan_view(plan, job) for plan, job in session.execute(query)]

    def plan(self, plan_id: int) -> PlanView:
        """A plan with every item, its evidence and matches."""
        with self.session() as session:
            row = session.execute(
                select(PlanRow, JobRow).join(JobRow, PlanRow.job_pk == JobRow.id).where(PlanRow.id == plan_id)
            ).first()
            if row is None:
                raise PlanStateError(f"no plan {plan_id}")
            view = _plan_view(*row)
            messages = session.scalars(
                select(MessageRow)
                .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
                .where(PlanItemRow.plan_pk == plan_id)
                .order_by(MessageRow.msg_time)
            ).all()
            for message in messages:
                evidence = session.get(EvidenceRow, message.id)
                recall = session.get(RecallRow, message.id)
                matches = session.scalars(
                    select(MatchRow).where(MatchRow.message_pk == message.id, MatchRow.job_pk == row[1].id)
                ).all()
                view.items.append(
                    PlanItem(
                        msg_key=message.msg_key,
                        sender=message.sender,
                        receiver=message.receiver,
                        time=message.msg_time,
                        body=evidence.body if evidence else None,
                        cloud_custom_data=evidence.cloud_custom_data if evidence else None,
                        content_hash=evidence.content_hash if evidence else "",
                        matches=[_match_dict(m) for m in matches],
                        recall_state=recall.state if recall else None,
                    )
                )
            return view

    def decide_plan(self, plan_id: int, *, approve: bool, by: str, note: str | None = None) -> PlanView:
        """Approve or reject a pending plan."""
        with self.session() as session, session.begin():
            plan = session.get(PlanRow, plan_id, with_for_update=True)
            if plan is None:
                raise PlanStateError(f"no plan {plan_id}")
            if plan.status != "pending":
                raise PlanStateError(f"plan {plan_id} is {plan.status}, not pending")
            plan.status = "approved" if approve else "rejected"
            plan.decided_at, plan.decided_by, plan.note = now(), by, note
            if approve:
                plan.apply_job_id = f"plan-{plan_id}-apply"
        return self.plan(plan_id)

    def mark_plan_applied(self, plan_id: int) -> None:
        """The apply job of an approved plan has run."""
        with self.session() as session, session.begin():
            session.execute(
                update(PlanRow)
                .where(PlanRow.id == plan_id, PlanRow.status == "approved")
                .values(status="applied")
            )

    def plan_message_keys(self, plan_id: int) -> dict[str, int]:
        """MsgKey -> message row id of every item of an approved plan."""
        with self.session() as session:
            plan = session.get(PlanRow, plan_id)
            if plan is None or plan.status not in ("approved", "applied"):
                raise PlanStateError(f"plan {plan_id} is not approved")
            rows = session.execute(
                select(MessageRow.msg_key, MessageRow.id)
                .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
                .where(PlanItemRow.plan_pk == plan_id)
            )
            return {str(key): int(pk) for key, pk in rows.all()}

    # circuit breaker --------------------------------------------------------------------------------

    def record_rule_stats(self, job_pk: int, counts: dict[str, int], scanned: int) -> None:
        """Remember how often each rule matched in this job."""
        with self.session() as session, session.begin():
            session.execute(delete(RuleStatRow).where(RuleStatRow.job_pk == job_pk))
            at = now()
            for rule_id, count in counts.items():
                session.add(
                    RuleStatRow(rule_id=rule_id, job_pk=job_pk, matches=count, scanned=scanned, at=at)
                )

    def rule_baselines(
        self, rule_ids: Iterable[str], since: datetime, *, exclude_job: int
    ) -> dict[str, tuple[int, int, int]]:
        """(matches, messages scanned, jobs) per rule since ``since``, over jobs that scanned anything.

        Jobs in which a rule did not match count for its baseline too (with 0 matches): every job's
        scanned total is the denominator of every rule.
        """
        with self.session() as session:
            scanned_total, jobs_total = session.execute(
                select(func.coalesce(func.sum(JobRow.messages_scanned), 0), func.count(JobRow.id)).where(
                    JobRow.finished_at >= since, JobRow.id != exclude_job, JobRow.messages_scanned > 0
                )
            ).one()
            result = {}
            for rule_id in rule_ids:
                matches = session.scalar(
                    select(func.coalesce(func.sum(RuleStatRow.matches), 0)).where(
                        RuleStatRow.rule_id == rule_id,
                        RuleStatRow.at >= since,
                        RuleStatRow.job_pk != exclude_job,
                    )
                )
                result[rule_id] = (int(matches or 0), int(scanned_total), int(jobs_total))
            return result

    def open_breakers(self) -> dict[str, str]:
        """Rules whose breaker is tripped now, with the reason."""
        with self.session() as session:
            rows = session.scalars(select(BreakerRow).where(BreakerRow.until > now())).all()
            return {row.rule_id: row.reason for row in rows}

    def trip_breaker(self, rule_id: str, *, for_s: float, reason: str) -> None:
        """Trip ``rule_id``'s breaker for ``for_s`` seconds."""
        with self.session() as session, session.begin():
            row = session.get(BreakerRow, rule_id)
            until = now() + timedelta(seconds=for_s)
            if row is None:
                session.add(BreakerRow(rule_id=rule_id, tripped_at=now(), until=until, reason=reason))
            else:
                row.tripped_at, row.until, row.reason = now(), until, reason

    def reset_breaker(self, rule_id: str) -> bool:
        """Close ``rule_id``'s breaker; False if it was not tripped."""
        with self.session() as session, session.begin():
            result = session.execute(delete(BreakerRow).where(BreakerRow.rule_id == rule_id))
            return bool(getattr(result, "rowcount", 0))

    # audit, replay, retention -----------------------------------------------------------------------

    def audit(self, job_id: str) -> dict[str, Any]:
        """Everything the ledger knows about one job: what it matched, kept as evidence, recalled, planned."""
        with self.session() as session:
            job = session.scalar(select(JobRow).where(JobRow.job_id == job_id))
            if job is None:
                raise LookupError(f"no job {job_id!r} in the ledger")
            messages: dict[int, dict[str, Any]] = {}
            for match in session.scalars(
                select(MatchRow).where(MatchRow.job_pk == job.id).order_by(MatchRow.id)
            ):
                entry = messages.get(match.message_pk)
                if entry is None:
                    message = session.get(MessageRow, match.message_pk)
                    evidence = session.get(EvidenceRow, match.message_pk)
                    recall = session.get(RecallRow, match.message_pk)
                    entry = messages[match.message_pk] = {
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
                            "finished_at": recall.finished_at.isoformat() if recall.finished_at else None,
                            "verified": recall.verified,
                        },
                        "matches": [],
                    }
                entry["matches"].append(_match_dict(match))
            plans = session.scalars(select(PlanRow).where(PlanRow.job_pk == job.id)).all()
            return {
                "job_id": job.job_id,
                "status": job.status,
                "attempts": job.attempts,
                "conversation": job.conversation,
                "suspect": job.suspect,
                "mode": job.mode,
                "ruleset": job.ruleset,
                "ruleset_version": job.ruleset_version,
                "report": job.report,
                "window": {"since": job.window_since, "until": job.window_until},
                "messages_scanned": job.messages_scanned,
                "created_at": job.created_at.isoformat(),
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "error": job.error,
                "messages": list(messages.values()),
                "plans": [
                    {"id": p.id, "reason": p.reason, "status": p.status, "decided_by": p.decided_by}
                    for p in plans
                ],
            }

    def evidence_of_jobs(
        self, since: datetime, until: datetime
    ) -> Iterator[tuple[str, MessageRow, EvidenceRow, list[MatchRow]]]:
        """(job id, message, evidence, that job's matches on it) for jobs finished in ``[since, until]``."""
        with self.session() as session:
            jobs = session.scalars(
                select(JobRow)
                .where(
                    JobRow.finished_at >= since, JobRow.finished_at <= until, JobRow.applies_plan.is_(None)
                )
                .order_by(JobRow.id)
            ).all()
            for job in jobs:
                message_ids = session.scalars(
                    select(MatchRow.message_pk).where(MatchRow.job_pk == job.id).distinct()
                ).all()
                for message_pk in message_ids:
                    evidence = session.get(EvidenceRow, message_pk)
                    message = session.get(MessageRow, message_pk)
                    if evidence is None or message is None or evidence.body is None:
                        continue
                    matches = list(
                        session.scalars(
                            select(MatchRow).where(
                                MatchRow.job_pk == job.id, MatchRow.message_pk == message_pk
                            )
                        )
                    )
                    yield job.job_id, message, evidence, matches

    def purge_evidence(self, older_than: datetime) -> int:
        """Drop the content of evidence captured before ``older_than`` (the hash stays); returns how many."""
        with self.session() as session, session.begin():
            result = session.execute(
                update(EvidenceRow)
                .where(EvidenceRow.captured_at < older_than, EvidenceRow.purged_at.is_(None))
                .values(body=None, cloud_custom_data=None, purged_at=now())
            )
            return int(getattr(result, "rowcount", 0) or 0)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _job_id_of(session: Session, job_pk: int) -> str | None:
    return session.scalar(select(JobRow.job_id).where(JobRow.id == job_pk))


def _match_dict(match: MatchRow) -> dict[str, str]:
    return {
        "rule_id": match.rule_id,
        "rule_type": match.rule_type,
        "action": match.action,
        "element_path": match.element_path,
        "evidence": match.evidence,
        "normalized": match.normalized,
    }


def _plan_view(plan: PlanRow, job: JobRow) -> PlanView:
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


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``: SQLite files get WAL, full sync, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def open_ledger(url: str) -> Ledger:
    """Open the ledger at ``url`` and bring its schema up to date."""
    engine = make_engine(url)
    upgrade(engine)
    return Ledger(engine)


__all__ = ["Claim", "IntegrityError", "Ledger", "PlanStateError", "PlanView", "ScannedMessage", "open_ledger"]
