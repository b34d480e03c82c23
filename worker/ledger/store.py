"""Reading and writing the ledger. Each method is one short transaction.

The methods are synchronous (SQLAlchemy); the async pipeline calls them through ``asyncio.to_thread``.
Everything is safe to repeat for a redelivered job, and safe to run from several workers at once: rows are
created by their natural keys with ``INSERT … ON CONFLICT`` (:mod:`worker.ledger.upsert`), and decisions
that read a row before changing it lock it first (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite every
writing transaction holds the write lock from its start).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.jobs import Job
from worker.ledger import decisions, views
from worker.ledger.clock import aware, now
from worker.ledger.engine import make_engine, reader
from worker.ledger.idempotency import (
    JobIdConflict,
    Settled,
    Started,
    job_fingerprint,
    job_values,
    same_job,
    settled,
)
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
    WipeRow,
)
from worker.ledger.retention import Purged, purge_batch
from worker.ledger.scans import (
    ScannedMessage,
    content_hash,
    conversation_key,
    match_rows,
    message_ids,
    recapture_purged,
)
from worker.ledger.upsert import chunks, insert, insert_missing, locked
from worker.ledger.views import WIPE_PLAN, PlanItem, PlanStateError, PlanView, kept_evidence, plan_view

DONE_STATES = ("recalled", "already_recalled")


@dataclass(frozen=True, slots=True)
class Claim:
    """The ledger's answer to "may this job recall these messages?"."""

    to_call: list[str]
    skipped: dict[str, str]  # msg_key -> reason


class Ledger:
    """The ledger over one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(reader(engine), expire_on_commit=False)

    def session(self) -> Session:
        """A new session (use as a context manager)."""
        return self._sessions()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A session in a transaction that commits at the end (or rolls back on an exception)."""
        with self._sessions() as session, session.begin():
            yield session

    def _read(self) -> Session:
        """A session that only reads (on SQLite it never waits for a writer)."""
        return self._readers()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # jobs -------------------------------------------------------------------------------------------

    def start_job(
        self, job: Job, *, ruleset_version: str, replayed_at: datetime | None = None
    ) -> Started | Settled:
        """Record an attempt of ``job``, or return its settlement if the ledger already holds one.

        One transaction, with the job's row locked. Raises :class:`JobIdConflict` (changing nothing) if the
        job id belongs to another job. A settled job is not started again, unless it failed and an operator
        asked for it again after that (``replayed_at``, a dead letter's replay or a plan's requeue, later
        than the settlement): then its stored result is cleared. A repeat of that same replay, once it has
        settled in turn, gets the new stored result.
        """
        fingerprint = job_fingerprint(job)
        with self._write() as session:
            insert_missing(session, JobRow, [job_values(job, fingerprint)], key=("job_id",))
            row = locked(session, JobRow, JobRow.job_id == job.job_id)
            if row.fingerprint is None and same_job(row, job):
                row.fingerprint = fingerprint  # a row from before fingerprints: adopted by its own job
            if row.fingerprint != fingerprint:
                raise JobIdConflict(job.job_id, row.conversation_key, row.suspect)
            if row.result is not None:
                replayed = replayed_at is not None and aware(row.settled_at or replayed_at) < replayed_at
                if not (replayed and row.status == "failed"):
                    return settled(row)
                row.result = row.dead_reason = row.settled_at = row.error = row.finished_at = None
            row.attempts += 1
            row.status = "running"
            row.started_at = now()
            row.ruleset_version = ruleset_version
            return Started(row.id, row.attempts)

    def settle_job(
        self,
        job_pk: int,
        *,
        status: str,
        result: bytes,
        error: str | None,
        scanned: int,
        pages: int,
        dead_reason: str | None,
    ) -> Settled:
        """Store how the job ended and the result published for it, unless it is settled already.

        The first settlement wins (under the row's lock); returns the one the ledger holds.
        """
        with self._write() as session:
            row = locked(session, JobRow, JobRow.id == job_pk)
            if row.result is None:
                row.status, row.error, row.dead_reason = status, error, dead_reason
                row.result = result.decode()  # JSON is UTF-8: stored as text, handed back byte for byte
                row.messages_scanned, row.pages_fetched = scanned, pages
                row.finished_at = row.settled_at = now()
            return settled(row)

    def finish_job(self, job_pk: int, *, status: str, error: str | None, scanned: int, pages: int) -> None:
        """Record how an attempt ended short of settling the job (``retrying``); a settled job stays as is."""
        with self._write() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_pk, JobRow.result.is_(None))
                .values(
                    status=status,
                    error=error,
                    messages_scanned=scanned,
                    pages_fetched=pages,
                    finished_at=now(),
                )
            )

    # scans ------------------------------------------------------------------------------------------

    def record_scan(self, job_pk: int, job: Job, matched: Iterable[ScannedMessage]) -> dict[str, int]:
        """Record every matched message, its matches and its evidence, in one transaction.

        Evidence is written once per message (the first capture is the original); evidence purged since is
        captured again if the content is the same (its hash matches). A redelivered job's earlier matches
        are replaced. Returns the message row id of each MsgKey.
        """
        scans = {scanned.msg_key: scanned for scanned in matched}
        with self._write() as session:
            session.execute(delete(MatchRow).where(MatchRow.job_pk == job_pk))
            ids = _record_messages(session, job_pk, job, scans)
            insert_missing(
                session,
                MatchRow,
                (
                    row
                    for msg_key, pk in sorted(ids.items(), key=lambda item: item[1])
                    for row in match_rows(job_pk, pk, scans[msg_key].matches)
                ),
                key=("job_pk", "message_pk", "rule_id", "element_path"),
            )
        return ids

    def record_evidence(self, job_pk: int, job: Job, messages: Iterable[ScannedMessage]) -> dict[str, int]:
        """Record messages and their evidence as :meth:`record_scan` does, leaving the job's matches as they
        are (for messages a plan shows that no rule matched: a wipe's). Returns each MsgKey's row id."""
        with self._write() as session:
            return _record_messages(session, job_pk, job, {m.msg_key: m for m in messages})

    # recalls ----------------------------------------------------------------------------------------

    def claim_recalls(self, job_pk: int, message_ids: dict[str, int], *, lease_s: float = 600.0) -> Claim:
        """Mark ``message_ids`` planned for recall by this job, unless done, being done, or held back.

        A message some job already recalled is skipped: the ledger, not the history, decides that a second
        report or a redelivery recalls nothing twice. A claim by another job younger than ``lease_s`` is
        respected (that job is recalling it now); an older one, or this job's own from an attempt that died
        between this commit and the call, is taken over (the service treats a repeat as already done). A
        message under a moderator's active rejection is skipped (``rejected_by_moderator``). A message
        whose evidence is missing or purged is never recalled: the claim raises ``RuntimeError``.
        """
        called: set[str] = set()
        skipped: dict[str, str] = {}
        stale = now() - timedelta(seconds=lease_s)
        with self._write() as session:
            rejected = decisions.active_rejections(session, message_ids.values())
            # One order for every job, so that two claims never wait on each other's rows.
            for msg_key, message_pk in sorted(message_ids.items(), key=lambda item: item[1]):
                if message_pk in rejected:
                    skipped[msg_key] = decisions.REJECTED_BY_MODERATOR
                    continue
                # Locked (shared) until this claim commits: a purge waits, then sees the recall row.
                evidence = session.execute(
                    select(EvidenceRow.purged_at, EvidenceRow.body)
                    .where(EvidenceRow.message_pk == message_pk)
                    .with_for_update(read=True)
                ).first()
                insert_missing(
                    session,
                    RecallRow,
                    [
                        {
                            "message_pk": message_pk,
                            "job_pk": job_pk,
                            "state": "planned",
                            "info": "",
                            "planned_at": now(),
                        }
                    ],
                    key=("message_pk",),
                )
                row = locked(session, RecallRow, RecallRow.message_pk == message_pk)
                if row.state in DONE_STATES:
                    skipped[msg_key] = "already_recalled"
                elif row.state == "not_found":
                    skipped[msg_key] = "gone_before_recall"
                elif row.state == "planned" and row.job_pk != job_pk and aware(row.planned_at) > stale:
                    skipped[msg_key] = "being_recalled_by_another_job"
                elif evidence is None or evidence.purged_at is not None or evidence.body is None:
                    # Raising rolls the whole claim back, the recall row just inserted included.
                    raise RuntimeError(f"no evidence stored for {msg_key}: refusing to recall it")
                else:
                    row.job_pk, row.state, row.planned_at = job_pk, "planned", now()
                    called.add(msg_key)
        return Claim([key for key in message_ids if key in called], skipped)

    def record_recall(self, message_pk: int, *, state: str, code: int, info: str) -> None:
        """Record the outcome of one recall call."""
        with self._write() as session:
            session.execute(
                update(RecallRow)
                .where(RecallRow.message_pk == message_pk)
                .values(state=state, code=code, info=info[:1000], finished_at=now())
            )

    def settle_already_recalled(self, message_ids: Iterable[int]) -> None:
        """Messages the history shows recalled: close any claim left open by an attempt that died.

        The history showing the message recalled is the verification of its recall: such a row is marked
        verified, whether its claim was left open, its check failed (``unverified``), or it was recorded
        recalled just before its worker died (``verified`` still unknown).
        """
        ids = sorted(set(message_ids))
        if not ids:
            return
        with self._write() as session:
            for part in chunks(ids):
                at = now()
                session.execute(
                    update(RecallRow)
                    .where(
                        RecallRow.message_pk.in_(part),
                        RecallRow.state.in_(("planned", "failed", "unverified")),
                    )
                    .values(state="already_recalled", finished_at=at, verified=True, verified_at=at)
                )
                session.execute(
                    update(RecallRow)
                    .where(
                        RecallRow.message_pk.in_(part),
                        RecallRow.state.in_(DONE_STATES),
                        RecallRow.verified.is_(None),
                    )
                    .values(verified=True, verified_at=at)
                )

    def record_verification(self, results: dict[int, bool]) -> None:
        """Record whether each recalled message (by row id) now shows as recalled."""
        with self._write() as session:
            for message_pk, ok in results.items():
                values: dict[str, Any] = {"verified": ok, "verified_at": now()}
                if not ok:
                    values["state"] = "unverified"
                session.execute(update(RecallRow).where(RecallRow.message_pk == message_pk).values(**values))

    # plans and moderators' decisions ----------------------------------------------------------------

    def create_plan(self, job_pk: int, reason: str, message_ids: Iterable[int]) -> int:
        """Store a plan for review (one per job and reason: a redelivery finds the first one, unchanged)."""
        with self._write() as session:
            created = session.scalar(
                insert(session, PlanRow)
                .values(job_pk=job_pk, reason=reason, status="pending", created_at=now())
                .on_conflict_do_nothing(index_elements=["job_pk", "reason"])
                .returning(PlanRow.id)
            )
            if created is None:
                return int(
                    session.scalars(
                        select(PlanRow.id).where(PlanRow.job_pk == job_pk, PlanRow.reason == reason)
                    ).one()
                )
            insert_missing(
                session,
                PlanItemRow,
                ({"plan_pk": created, "message_pk": pk} for pk in sorted(set(message_ids))),
                key=("plan_pk", "message_pk"),
            )
            return int(created)

    def list_plans(self, status: str | None = None, *, limit: int | None = None) -> list[PlanView]:
        """Plans (newest first, at most ``limit``), without their items (with how many they hold)."""
        with self._read() as session:
            query = (
                select(PlanRow, JobRow)
                .join(JobRow, PlanRow.job_pk == JobRow.id)
                .order_by(PlanRow.id.desc())
                .limit(limit)
            )
            if status is not None:
                query = query.where(PlanRow.status == status)
            found = [plan_view(plan, job) for plan, job in session.execute(query)]
            counts: dict[int, int] = {}
            for part in chunks([view.id for view in found]):
                counts.update(
                    (int(plan_pk), int(count))
                    for plan_pk, count in session.execute(
                        select(PlanItemRow.plan_pk, func.count())
                        .where(PlanItemRow.plan_pk.in_(part))
                        .group_by(PlanItemRow.plan_pk)
                    )
                )
            for view in found:
                view.message_count = counts.get(view.id, 0)
            return found

    def plan(self, plan_id: int) -> PlanView:
        """A plan with every item, its evidence and matches."""
        with self._read() as session:
            return views.load_plan(session, plan_id)

    def decide_plan(
        self,
        plan_id: int,
        *,
        approve: bool,
        by: str,
        note: str | None = None,
        only: Collection[str] | None = None,
    ) -> PlanView:
        """Approve or reject a pending plan.

        Rejecting holds each of its messages back from every later job until a newer decision. Approving
        lifts any rejection of its messages, and is refused if any of them has no kept evidence.

        ``only`` (approving only) names the MsgKeys the moderator selected: the apply job recalls exactly
        those. Each deselected message counts as rejected: it is recorded so in the plan
        (``plan_items.approved`` False) and in the message's decision history (a rejection by ``by`` in
        this plan, noted as deselected), and is held back from every later job until a newer decision (the
        approval of another plan with it). ``only`` must name at least one of the plan's messages, and
        none other; a wipe plan (one call for the whole sender) is approved whole or not at all.
        """
        with self._write() as session:
            plan = _locked_plan(session, plan_id)
            if plan.status != "pending":
                raise PlanStateError(f"plan {plan_id} is {plan.status}, not pending")
            keys = {
                str(key): int(pk)
                for key, pk in session.execute(
                    select(MessageRow.msg_key, MessageRow.id)
                    .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
                    .where(PlanItemRow.plan_pk == plan_id)
                )
            }
            items = list(keys.values())
            if not approve:
                decisions.record_rejection(session, plan_id, items, by=by, note=note)
            else:
                selected = _selected(plan, keys, only)
                missing = views.without_evidence(session, selected)
                if missing:
                    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
                    raise PlanStateError(
                        f"plan {plan_id} cannot be approved: the evidence of {len(missing)} of its messages "
                        f"({shown}) was purged or never stored, and nothing is recalled without its evidence"
                    )
                deselected = sorted(set(items) - set(selected))
                decisions.lift_on_messages(session, selected, by=by, plan_pk=plan_id)
                if deselected:
                    decisions.record_rejection(
                        session,
                        plan_id,
                        deselected,
                        by=by,
                        note=f"deselected when approving plan {plan_id}" + (f": {note}" if note else ""),
                    )
                for chosen, part in ((True, selected), (False, deselected)):
                    for pks in chunks(sorted(part)):
                        session.execute(
                            update(PlanItemRow)
                            .where(PlanItemRow.plan_pk == plan_id, PlanItemRow.message_pk.in_(pks))
                            .values(approved=chosen)
                        )
                plan.apply_job_id = f"plan-{plan_id}-apply"
            plan.status = "approved" if approve else "rejected"
            plan.decided_at, plan.decided_by, plan.note = now(), by, note
        return self.plan(plan_id)

    def reopen_plan(self, plan_id: int, *, by: str, note: str | None = None) -> PlanView:
        """Put a rejected plan back to review (``pending``) and lift the rejection of its messages.

        The rejection stays in each message's decision history, marked reopened by ``by``.
        """
        with self._write() as session:
            plan = _locked_plan(session, plan_id)
            if plan.status != "rejected":
                raise PlanStateError(f"plan {plan_id} is {plan.status}, not rejected")
            decisions.lift_plan(session, plan_id, by=by, note=note)
            plan.status = "pending"
            plan.decided_at = plan.decided_by = plan.note = None
        return self.plan(plan_id)

    def rejected_messages(self, message_ids: Iterable[int]) -> dict[int, str]:
        """Message row id -> a short description (``rejected by alice in plan 7``) of each of
        ``message_ids`` a moderator's active rejection holds back."""
        with self._read() as session:
            active = decisions.active_rejections(session, message_ids)
            return {pk: decisions.describe(row) for pk, row in active.items()}

    def mark_plan_applied(self, plan_id: int) -> None:
        """The apply job of an approved plan has run."""
        with self._write() as session:
            session.execute(
                update(PlanRow)
                .where(PlanRow.id == plan_id, PlanRow.status == "approved")
                .values(status="applied")
            )

    def plan_message_keys(self, plan_id: int) -> dict[str, int]:
        """MsgKey -> message row id of every item of an approved plan the moderator selected."""
        return self.approved_plan(plan_id)[1]

    def approved_plan(self, plan_id: int) -> tuple[str, dict[str, int]]:
        """An approved plan's reason, and MsgKey -> message row id of each of its items the moderator
        selected (all of them, unless a subset was approved: deselected items are left out)."""
        with self._read() as session:
            plan = session.get(PlanRow, plan_id)
            if plan is None or plan.status not in ("approved", "applied"):
                raise PlanStateError(f"plan {plan_id} is not approved")
            rows = session.execute(
                select(MessageRow.msg_key, MessageRow.id)
                .join(PlanItemRow, PlanItemRow.message_pk == MessageRow.id)
                .where(PlanItemRow.plan_pk == plan_id, PlanItemRow.approved.is_not(False))
            )
            return plan.reason, {str(key): int(pk) for key, pk in rows.all()}

    # group wipes ------------------------------------------------------------------------------------

    def start_wipe(self, job_pk: int, plan_id: int, job: Job, *, listed: int) -> int:
        """Record that ``job`` is about to wipe its suspect's messages (before the call); returns its id."""
        with self._write() as session:
            row = WipeRow(
                job_pk=job_pk,
                plan_pk=plan_id,
                conversation_key=conversation_key(job),
                sender=job.suspect,
                listed=listed,
                called_at=now(),
            )
            session.add(row)
            session.flush()
            return int(row.id)

    def finish_wipe(self, wipe_id: int, *, recalled: int, missed: int) -> None:
        """Record what reading the history again after a wipe showed."""
        with self._write() as session:
            session.execute(
                update(WipeRow)
                .where(WipeRow.id == wipe_id)
                .values(recalled=recalled, missed=missed, finished_at=now())
            )

    # circuit breaker --------------------------------------------------------------------------------

    def record_rule_stats(self, job_pk: int, counts: dict[str, int], scanned: int) -> None:
        """Remember how often each rule matched in this job."""
        with self._write() as session:
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
        with self._read() as session:
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
        with self._read() as session:
            rows = session.scalars(select(BreakerRow).where(BreakerRow.until > now())).all()
            return {row.rule_id: row.reason for row in rows}

    def trip_breaker(self, rule_id: str, *, for_s: float, reason: str) -> None:
        """Trip ``rule_id``'s breaker for ``for_s`` seconds (if tripped already, the latest trip wins)."""
        at = now()
        with self._write() as session:
            statement = insert(session, BreakerRow).values(
                rule_id=rule_id, tripped_at=at, until=at + timedelta(seconds=for_s), reason=reason
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["rule_id"],
                    set_={
                        "tripped_at": statement.excluded.tripped_at,
                        "until": statement.excluded.until,
                        "reason": statement.excluded.reason,
                    },
                )
            )

    def reset_breaker(self, rule_id: str) -> bool:
        """Close ``rule_id``'s breaker; False if it was not tripped."""
        with self._write() as session:
            result = session.execute(delete(BreakerRow).where(BreakerRow.rule_id == rule_id))
            return bool(getattr(result, "rowcount", 0))

    # audit, replay, retention -----------------------------------------------------------------------

    def audit(self, job_id: str) -> dict[str, Any]:
        """Everything the ledger knows about one job: what it matched, kept as evidence, recalled, planned,
        what moderators decided on its messages, and the result it settled with."""
        with self._read() as session:
            return views.audit(session, job_id)

    def finished_jobs(self, since: datetime, until: datetime) -> list[JobRow]:
        """The scan jobs (not plans' apply jobs) finished in ``[since, until]``, oldest first."""
        with self._read() as session:
            rows = session.scalars(_scan_jobs_finished(since, until)).all()
            session.expunge_all()
            return list(rows)

    def evidence_of_jobs(
        self, since: datetime, until: datetime
    ) -> Iterator[tuple[str, MessageRow, EvidenceRow, list[MatchRow]]]:
        """(job id, message, evidence, that job's matches on it) for jobs finished in ``[since, until]``."""
        with self._read() as session:
            jobs = session.scalars(_scan_jobs_finished(since, until)).all()
            for job in jobs:
                message_ids = session.scalars(
                    select(MatchRow.message_pk).where(MatchRow.job_pk == job.id).distinct()
                ).all()
                for message_pk in message_ids:
                    evidence = kept_evidence(session.get(EvidenceRow, message_pk))
                    message = session.get(MessageRow, message_pk)
                    if evidence is None or message is None:
                        continue
                    matches = list(
                        session.scalars(
                            select(MatchRow).where(
                                MatchRow.job_pk == job.id, MatchRow.message_pk == message_pk
                            )
                        )
                    )
                    yield job.job_id, message, evidence, matches

    def purge_evidence(self, older_than: datetime) -> Purged:
        """Drop the content of evidence captured before ``older_than`` (the hash stays).

        Evidence a recall may still need is kept, however old: that of a message in a pending or approved
        plan, or whose recall is planned, failed or unverified. Works in short transactions of a few
        hundred rows; returns the message row ids purged and how many were kept.
        """
        purged = Purged()
        after: int | None = 0
        while after is not None:
            with self._write() as session:
                after = purge_batch(session, older_than, after, purged)
        return purged


def _selected(plan: PlanRow, keys: dict[str, int], only: Collection[str] | None) -> list[int]:
    """The message row ids an approval of ``plan`` (with items ``keys``) selects; see ``decide_plan``."""
    if only is None:
        return list(keys.values())
    chosen = set(only)
    unknown = sorted(chosen - set(keys))
    if unknown:
        raise PlanStateError(f"plan {plan.id} holds no message {', '.join(unknown[:5])}")
    if not chosen:
        raise PlanStateError(f"select at least one message of plan {plan.id} to approve, or reject it")
    if plan.reason == WIPE_PLAN and chosen != set(keys):
        raise PlanStateError(
            f"plan {plan.id} is a wipe (one call for the whole sender): approve it whole, or reject it"
        )
    return [keys[key] for key in sorted(chosen)]


def _scan_jobs_finished(since: datetime, until: datetime) -> Select[JobRow]:
    """The jobs that scanned (not plans' apply jobs) and finished in ``[since, until]``, oldest first."""
    return (
        select(JobRow)
        .where(JobRow.finished_at >= since, JobRow.finished_at <= until, JobRow.applies_plan.is_(None))
        .order_by(JobRow.id)
    )


def _record_messages(
    session: Session, job_pk: int, job: Job, scans: dict[str, ScannedMessage]
) -> dict[str, int]:
    """Insert the messages and their evidence (first capture wins; a purged one is recaptured if its content
    is the same); the row id of each MsgKey."""
    if not scans:
        return {}
    key = conversation_key(job)
    insert_missing(
        session,
        MessageRow,
        (
            {
                "conversation_key": key,
                "msg_key": msg_key,
                "sender": scans[msg_key].sender,
                "receiver": scans[msg_key].receiver,
                "msg_time": scans[msg_key].timestamp,
            }
            for msg_key in sorted(scans)
        ),
        key=("conversation_key", "msg_key"),
    )
    ids = message_ids(session, key, sorted(scans))
    captured = now()
    evidence = {
        pk: {
            "message_pk": pk,
            "job_pk": job_pk,
            "body": list(scans[msg_key].body),
            "cloud_custom_data": scans[msg_key].cloud_custom_data,
            "content_hash": content_hash(list(scans[msg_key].body), scans[msg_key].cloud_custom_data),
            "captured_at": captured,
        }
        for msg_key, pk in sorted(ids.items(), key=lambda item: item[1])
    }
    insert_missing(session, EvidenceRow, evidence.values(), key=("message_pk",))
    recapture_purged(session, evidence)
    return ids


def _locked_plan(session: Session, plan_id: int) -> PlanRow:
    try:
        return locked(session, PlanRow, PlanRow.id == plan_id)
    except LookupError:
        raise PlanStateError(f"no plan {plan_id}") from None


def open_ledger(url: str) -> Ledger:
    """Open the ledger at ``url`` and bring its schema up to date."""
    engine = make_engine(url)
    upgrade(engine)
    return Ledger(engine)


__all__ = [
    "Claim",
    "JobIdConflict",
    "Ledger",
    "PlanItem",
    "PlanStateError",
    "PlanView",
    "Purged",
    "ScannedMessage",
    "Settled",
    "Started",
    "content_hash",
    "conversation_key",
    "job_fingerprint",
    "make_engine",
    "now",
    "open_ledger",
]
