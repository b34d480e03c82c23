"""Reading and writing the ledger. Each method is one short transaction.

The methods are synchronous (SQLAlchemy); the async pipeline calls them through ``asyncio.to_thread``.
A job's own steps are few, fused transactions (:meth:`Ledger.start_job`,
:meth:`Ledger.record_scan_for_plan`, :meth:`Ledger.prepare_recalls`, :meth:`Ledger.record_recalls`,
:meth:`Ledger.settle_job`) written with Core statements on a plain connection: no ORM bookkeeping, no
round trip to check a pooled connection used a moment ago, and a transaction that meets a connection the
server dropped runs once more on a new one (every one of them is safe to repeat).
Everything is safe to repeat for a redelivered job, and safe to run from several workers at once: rows are
created by their natural keys with ``INSERT … ON CONFLICT`` (:mod:`worker.ledger.upsert`), and decisions
that read a row before changing it lock it first (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite every
writing transaction holds the write lock from its start).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from worker.jobs import Job
from worker.ledger import decisions, views
from worker.ledger.clock import aware, now
from worker.ledger.engine import make_engine, reader, retrying_dropped
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
from worker.ledger.upsert import chunks, core_insert, insert_absent, locked, table_of
from worker.ledger.views import WIPE_PLAN, PlanItem, PlanStateError, PlanView, kept_evidence, plan_view

DONE_STATES = ("recalled", "already_recalled")

JOBS = table_of(JobRow)
MESSAGES = table_of(MessageRow)
MATCHES = table_of(MatchRow)
EVIDENCE = table_of(EvidenceRow)
RECALLS = table_of(RecallRow)
PLANS = table_of(PlanRow)
PLAN_ITEMS = table_of(PlanItemRow)
RULE_STATS = table_of(RuleStatRow)
BREAKERS = table_of(BreakerRow)

T = TypeVar("T")

#: A rule's baseline: (matches, messages scanned, jobs) over the lookback period.
Baseline = tuple[int, int, int]
#: Decides, from the baselines of the rules asked about, which breakers a job trips (rule -> why). Pure.
TripDecision = Callable[[dict[str, Baseline]], dict[str, str]]


@dataclass(frozen=True, slots=True)
class Claim:
    """The ledger's answer to "may this job recall these messages?"."""

    to_call: list[str]
    skipped: dict[str, str]  # msg_key -> reason


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """What :meth:`Ledger.record_scan_for_plan` hands back: everything planning needs from the ledger."""

    ids: dict[str, int]  # MsgKey -> message row id of every matched message
    trips: dict[str, str]  # the breakers this job tripped, with why
    open_breakers: dict[str, str]  # every breaker tripped now (this job's trips included), with why
    rejected: dict[int, str]  # message row id -> the active rejection holding it back


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :meth:`Ledger.prepare_recalls` did: the message row ids (the newly recorded ones added), the
    plans by reason, and the claim."""

    ids: dict[str, int]
    plans: dict[str, int]
    claim: Claim


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The outcome of one recall call, as :meth:`Ledger.record_recalls` records it."""

    message_pk: int
    state: str  # recalled, already_recalled, not_found, failed
    code: int
    info: str


class Ledger:
    """The ledger over one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._reader = reader(engine)
        self._readers = sessionmaker(self._reader, expire_on_commit=False)

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

    def _atomic(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction on a plain connection (commits, or rolls back on an exception).

        The connection is not checked with a round trip on its way out of the pool unless it sat idle
        there (:data:`~worker.ledger.engine.retrying_dropped`): one the server dropped all the same (a
        restart) fails its first statement, the pool replaces every connection as old, and ``work`` runs
        once more on a new one. Only for work that is safe to repeat: a failed COMMIT may have committed.
        """
        try:
            return self._once(work)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._once(work)

    def _once(self, work: Callable[[Connection], T]) -> T:
        token = retrying_dropped.set(True)
        try:
            connection = self.engine.connect()
        finally:
            retrying_dropped.reset(token)
        with connection, connection.begin():
            return work(connection)

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
        return self._atomic(lambda c: _start_job(c, job, fingerprint, ruleset_version, replayed_at))

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
        text = result.decode()  # JSON is UTF-8: stored as text, handed back byte for byte
        at = now()
        values = {
            "status": status,
            "error": error,
            "dead_reason": dead_reason,
            "result": text,
            "messages_scanned": scanned,
            "pages_fetched": pages,
            "finished_at": at,
            "settled_at": at,
        }

        def settle(connection: Connection) -> Settled:
            # The row is locked by the UPDATE; a settlement that got there first leaves nothing to update.
            stored = connection.execute(
                update(JOBS).where(JOBS.c.id == job_pk, JOBS.c.result.is_(None)).values(**values)
            )
            if stored.rowcount == 1:
                return Settled(status, text.encode(), dead_reason)
            row = connection.execute(
                select(JOBS.c.status, JOBS.c.result, JOBS.c.dead_reason).where(JOBS.c.id == job_pk)
            ).one()
            return settled(row)

        return self._atomic(settle)

    def finish_job(self, job_pk: int, *, status: str, error: str | None, scanned: int, pages: int) -> None:
        """Record how an attempt ended short of settling the job (``retrying``); a settled job stays as is."""
        statement = (
            update(JOBS)
            .where(JOBS.c.id == job_pk, JOBS.c.result.is_(None))
            .values(
                status=status, error=error, messages_scanned=scanned, pages_fetched=pages, finished_at=now()
            )
        )
        self._atomic(lambda connection: connection.execute(statement))

    # scans ------------------------------------------------------------------------------------------

    def record_scan(self, job_pk: int, job: Job, matched: Iterable[ScannedMessage]) -> dict[str, int]:
        """Record every matched message, its matches and its evidence, in one transaction.

        Evidence is written once per message (the first capture is the original); evidence purged since is
        captured again if the content is the same (its hash matches). A redelivered job's earlier matches
        are replaced. Returns the message row id of each MsgKey.
        """
        scans = {scanned.msg_key: scanned for scanned in matched}
        return self._atomic(lambda connection: _record_scan(connection, job_pk, job, scans))

    def record_scan_for_plan(
        self,
        job_pk: int,
        job: Job,
        matched: Iterable[ScannedMessage],
        *,
        counts: dict[str, int],
        scanned: int,
        baseline_rules: Collection[str],
        baseline_since: datetime,
        trips: TripDecision,
        cooldown_s: float,
        already_recalled: Iterable[str] = (),
    ) -> ScanRecord:
        """Record a job's scan and read all its plan needs, in one transaction.

        In order: :meth:`record_scan`; :meth:`settle_already_recalled` for ``already_recalled`` (MsgKeys
        the history shows recalled); the baselines (:func:`_rule_baselines`, since ``baseline_since``) of
        ``baseline_rules`` (the rules that matched often enough to trip: none read when empty), from which
        ``trips`` decides the breakers to trip for ``cooldown_s`` (:meth:`trip_breaker`, in rule order);
        this job's rule stats (``counts`` of ``scanned`` messages, :func:`_record_rule_stats`); then
        :meth:`open_breakers` and :meth:`rejected_messages` of the matched messages. The evidence is
        committed with it, before any recall can be attempted.
        """
        scans = {message.msg_key: message for message in matched}
        gone = list(already_recalled)

        def work(connection: Connection) -> ScanRecord:
            ids = _record_scan(connection, job_pk, job, scans)
            _settle_already_recalled(connection, [ids[key] for key in gone if key in ids])
            baselines = _rule_baselines(connection, baseline_rules, baseline_since, job_pk)
            tripped = trips(baselines)
            for rule_id in sorted(tripped):  # one order for every job: two trips never wait on each other
                _trip_breaker(connection, rule_id, cooldown_s, tripped[rule_id])
            _record_rule_stats(connection, job_pk, counts, scanned)
            return ScanRecord(
                ids, tripped, _open_breakers(connection), decisions.rejections(connection, ids.values())
            )

        return self._atomic(work)

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
        return self._atomic(lambda connection: _claim_recalls(connection, job_pk, message_ids, lease_s))

    def prepare_recalls(
        self,
        job_pk: int,
        job: Job,
        ids: Mapping[str, int],
        *,
        evidence: Iterable[ScannedMessage] = (),
        plans: Mapping[str, Sequence[str]] | None = None,
        claim: Sequence[str] = (),
        lease_s: float = 600.0,
    ) -> Prepared:
        """Everything a job does between planning and its recall calls, in one transaction.

        In order: the messages of ``evidence`` and their evidence, as :meth:`record_scan` records them but
        leaving the job's matches as they are (messages a plan shows that no rule matched: a wipe's);
        :meth:`create_plan` for each of ``plans`` (reason -> MsgKeys, in its order); then
        :meth:`claim_recalls` of ``claim`` (MsgKeys). ``ids`` maps the MsgKeys named to their message row
        ids (those of ``evidence`` are added). If the claim raises, nothing of it is kept.
        """
        scans = {m.msg_key: m for m in evidence}

        def work(connection: Connection) -> Prepared:
            known = dict(ids)
            if scans:
                known |= _record_messages(connection, job_pk, job, scans)
            created = {
                reason: _create_plan(connection, job_pk, reason, [known[key] for key in keys])
                for reason, keys in (plans or {}).items()
            }
            claimed = Claim([], {})
            if claim:
                claimed = _claim_recalls(connection, job_pk, {key: known[key] for key in claim}, lease_s)
            return Prepared(known, created, claimed)

        return self._atomic(work)

    def record_recall(self, message_pk: int, *, state: str, code: int, info: str) -> None:
        """Record the outcome of one recall call."""
        self.record_recalls([CallOutcome(message_pk, state, code, info)])

    def record_recalls(
        self, outcomes: Iterable[CallOutcome], verification: Mapping[int, bool] | None = None
    ) -> None:
        """Record the outcome of each recall call and then, if given, whether each recalled message (by row
        id) now shows as recalled (:meth:`record_verification`): one transaction for all of a job's."""
        rows = [
            {
                "pk": outcome.message_pk,
                "new_state": outcome.state,
                "new_code": outcome.code,
                "new_info": outcome.info[:1000],
            }
            for outcome in outcomes
        ]
        checked = dict(verification or {})
        if not rows and not checked:
            return

        def work(connection: Connection) -> None:
            at = now()
            if rows:
                connection.execute(_RECORD_RECALL, [{**row, "at": at} for row in rows])
            _record_verification(connection, checked, at)

        self._atomic(work)

    def settle_already_recalled(self, message_ids: Iterable[int]) -> None:
        """Messages the history shows recalled: close any claim left open by an attempt that died.

        The history showing the message recalled is the verification of its recall: such a row is marked
        verified, whether its claim was left open, its check failed (``unverified``), or it was recorded
        recalled just before its worker died (``verified`` still unknown).
        """
        ids = sorted(set(message_ids))
        if ids:
            self._atomic(lambda connection: _settle_already_recalled(connection, ids))

    def record_verification(self, results: dict[int, bool]) -> None:
        """Record whether each recalled message (by row id) now shows as recalled."""
        if results:
            self._atomic(lambda connection: _record_verification(connection, results, now()))

    # plans and moderators' decisions ----------------------------------------------------------------

    def create_plan(self, job_pk: int, reason: str, message_ids: Iterable[int]) -> int:
        """Store a plan for review (one per job and reason: a redelivery finds the first one, unchanged)."""
        pks = list(message_ids)
        return self._atomic(lambda connection: _create_plan(connection, job_pk, reason, pks))

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
        pks = list(message_ids)
        with self._reader.connect() as connection:
            return decisions.rejections(connection, pks)

    def mark_plan_applied(self, plan_id: int) -> None:
        """The apply job of an approved plan has run."""
        with self._write() as session:
            session.execute(
                update(PlanRow)
                .where(PlanRow.id == plan_id, PlanRow.status == "approved")
                .values(status="applied")
            )

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

    def open_breakers(self) -> dict[str, str]:
        """Rules whose breaker is tripped now, with the reason."""
        with self._reader.connect() as connection:
            return _open_breakers(connection)

    def trip_breaker(self, rule_id: str, *, for_s: float, reason: str) -> None:
        """Trip ``rule_id``'s breaker for ``for_s`` seconds (if tripped already, the latest trip wins)."""
        self._atomic(lambda connection: _trip_breaker(connection, rule_id, for_s, reason))

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


#: What starting a job reads of its row (locked): not the job itself, which its fingerprint stands for.
_JOB_TO_START = select(
    JOBS.c.id,
    JOBS.c.fingerprint,
    JOBS.c.conversation_key,
    JOBS.c.suspect,
    JOBS.c.attempts,
    JOBS.c.status,
    JOBS.c.result,
    JOBS.c.dead_reason,
    JOBS.c.settled_at,
).with_for_update()


def _start_job(
    connection: Connection, job: Job, fingerprint: str, ruleset_version: str, replayed_at: datetime | None
) -> Started | Settled:
    """:meth:`Ledger.start_job` in ``connection``'s transaction."""
    insert_absent(connection, JOBS, [job_values(job, fingerprint)], key=("job_id",))
    row = connection.execute(_JOB_TO_START.where(JOBS.c.job_id == job.job_id)).one()
    values: dict[str, Any] = {}
    stored = row.fingerprint
    if stored is None and same_job(connection.execute(select(JOBS).where(JOBS.c.id == row.id)).one(), job):
        stored = values["fingerprint"] = fingerprint  # a row from before fingerprints: adopted by its own job
    if stored != fingerprint:
        raise JobIdConflict(job.job_id, row.conversation_key, row.suspect)
    if row.result is not None:
        replayed = replayed_at is not None and aware(row.settled_at or replayed_at) < replayed_at
        if not (replayed and row.status == "failed"):
            if values:
                connection.execute(update(JOBS).where(JOBS.c.id == row.id).values(**values))
            return settled(row)
        values |= {
            "result": None,
            "dead_reason": None,
            "settled_at": None,
            "error": None,
            "finished_at": None,
        }
    attempt = int(row.attempts) + 1
    values |= {
        "attempts": attempt,
        "status": "running",
        "started_at": now(),
        "ruleset_version": ruleset_version,
    }
    connection.execute(update(JOBS).where(JOBS.c.id == row.id).values(**values))
    return Started(int(row.id), attempt)


def _record_scan(
    connection: Connection, job_pk: int, job: Job, scans: dict[str, ScannedMessage]
) -> dict[str, int]:
    """:meth:`Ledger.record_scan` in ``connection``'s transaction."""
    connection.execute(delete(MATCHES).where(MATCHES.c.job_pk == job_pk))
    ids = _record_messages(connection, job_pk, job, scans)
    insert_absent(
        connection,
        MATCHES,
        [
            row
            for msg_key, pk in sorted(ids.items(), key=lambda item: item[1])
            for row in match_rows(job_pk, pk, scans[msg_key].matches)
        ],
        key=("job_pk", "message_pk", "rule_id", "element_path"),
    )
    return ids


def _record_messages(
    connection: Connection, job_pk: int, job: Job, scans: dict[str, ScannedMessage]
) -> dict[str, int]:
    """Insert the messages and their evidence (first capture wins; a purged one is recaptured if its content
    is the same); the row id of each MsgKey."""
    if not scans:
        return {}
    key = conversation_key(job)
    keys = sorted(scans)
    insert_absent(
        connection,
        MESSAGES,
        [
            {
                "conversation_key": key,
                "msg_key": msg_key,
                "sender": scans[msg_key].sender,
                "receiver": scans[msg_key].receiver,
                "msg_time": scans[msg_key].timestamp,
            }
            for msg_key in keys
        ],
        key=("conversation_key", "msg_key"),
    )
    ids = message_ids(connection, key, keys)
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
    insert_absent(connection, EVIDENCE, list(evidence.values()), key=("message_pk",))
    recapture_purged(connection, evidence)
    return ids


def _claim_recalls(connection: Connection, job_pk: int, message_ids: dict[str, int], lease_s: float) -> Claim:
    """:meth:`Ledger.claim_recalls` in ``connection``'s transaction, a few statements for all messages.

    Rows are locked in one order (message row id) by every job, so that two claims never wait on each
    other's rows: first the evidence (shared, until the claim commits: a purge waits, then sees the recall
    row), then the recall rows.
    """
    at = now()
    stale = at - timedelta(seconds=lease_s)
    skipped: dict[str, str] = {}
    rejected = decisions.rejections(connection, message_ids.values())
    wanted: dict[int, str] = {}
    for msg_key, message_pk in message_ids.items():
        if message_pk in rejected:
            skipped[msg_key] = decisions.REJECTED_BY_MODERATOR
        else:
            wanted[message_pk] = msg_key
    pks = sorted(wanted)
    kept = _kept_evidence(connection, pks)
    rows = _planned_recalls(connection, job_pk, pks, at)
    called: list[int] = []
    for pk in pks:
        row, msg_key = rows[pk], wanted[pk]
        if row.state in DONE_STATES:
            skipped[msg_key] = "already_recalled"
        elif row.state == "not_found":
            skipped[msg_key] = "gone_before_recall"
        elif row.state == "planned" and row.job_pk != job_pk and aware(row.planned_at) > stale:
            skipped[msg_key] = "being_recalled_by_another_job"
        elif pk not in kept:
            # Raising rolls the whole claim back, the recall rows just inserted included.
            raise RuntimeError(f"no evidence stored for {msg_key}: refusing to recall it")
        else:
            called.append(pk)
    for part in chunks(called):
        connection.execute(
            update(RECALLS)
            .where(RECALLS.c.message_pk.in_(part))
            .values(job_pk=job_pk, state="planned", planned_at=at)
        )
    taken = set(called)
    return Claim([key for key, pk in message_ids.items() if pk in taken], skipped)


def _kept_evidence(connection: Connection, message_pks: Sequence[int]) -> set[int]:
    """Those of ``message_pks`` (sorted) whose evidence content is stored; all their evidence rows are
    locked (shared) until the transaction ends."""
    kept: set[int] = set()
    for part in chunks(message_pks):
        kept.update(
            int(pk)
            for pk, purged_at, empty in connection.execute(
                select(EVIDENCE.c.message_pk, EVIDENCE.c.purged_at, EVIDENCE.c.body.is_(None))
                .where(EVIDENCE.c.message_pk.in_(part))
                .order_by(EVIDENCE.c.message_pk)
                .with_for_update(read=True)
            )
            if purged_at is None and not empty
        )
    return kept


def _planned_recalls(
    connection: Connection, job_pk: int, message_pks: Sequence[int], at: datetime
) -> dict[int, Any]:
    """The recall row of each of ``message_pks`` (sorted), created ``planned`` by ``job_pk`` where there was
    none, and locked until the transaction ends."""
    insert_absent(
        connection,
        RECALLS,
        [
            {"message_pk": pk, "job_pk": job_pk, "state": "planned", "info": "", "planned_at": at}
            for pk in message_pks
        ],
        key=("message_pk",),
    )
    rows: dict[int, Any] = {}
    for part in chunks(message_pks):
        rows.update(
            (int(row.message_pk), row)
            for row in connection.execute(
                select(RECALLS.c.message_pk, RECALLS.c.job_pk, RECALLS.c.state, RECALLS.c.planned_at)
                .where(RECALLS.c.message_pk.in_(part))
                .order_by(RECALLS.c.message_pk)
                .with_for_update()
            )
        )
    return rows


#: Records one recall call's outcome (``executemany`` over a job's outcomes).
_RECORD_RECALL = (
    update(RECALLS)
    .where(RECALLS.c.message_pk == bindparam("pk"))
    .values(
        state=bindparam("new_state"),
        code=bindparam("new_code"),
        info=bindparam("new_info"),
        finished_at=bindparam("at", type_=RECALLS.c.finished_at.type),
    )
)
_VERIFIED = (
    update(RECALLS)
    .where(RECALLS.c.message_pk == bindparam("pk"))
    .values(verified=True, verified_at=bindparam("at", type_=RECALLS.c.verified_at.type))
)
_UNVERIFIED = (
    update(RECALLS)
    .where(RECALLS.c.message_pk == bindparam("pk"))
    .values(state="unverified", verified=False, verified_at=bindparam("at", type_=RECALLS.c.verified_at.type))
)


def _record_verification(connection: Connection, results: Mapping[int, bool], at: datetime) -> None:
    """:meth:`Ledger.record_verification` in ``connection``'s transaction."""
    for statement, ok in ((_VERIFIED, True), (_UNVERIFIED, False)):
        rows = [{"pk": pk, "at": at} for pk, verified in sorted(results.items()) if verified is ok]
        if rows:
            connection.execute(statement, rows)


def _settle_already_recalled(connection: Connection, message_ids: Sequence[int]) -> None:
    """:meth:`Ledger.settle_already_recalled` in ``connection``'s transaction."""
    for part in chunks(sorted(set(message_ids))):
        at = now()
        connection.execute(
            update(RECALLS)
            .where(RECALLS.c.message_pk.in_(part), RECALLS.c.state.in_(("planned", "failed", "unverified")))
            .values(state="already_recalled", finished_at=at, verified=True, verified_at=at)
        )
        connection.execute(
            update(RECALLS)
            .where(
                RECALLS.c.message_pk.in_(part), RECALLS.c.state.in_(DONE_STATES), RECALLS.c.verified.is_(None)
            )
            .values(verified=True, verified_at=at)
        )


def _create_plan(connection: Connection, job_pk: int, reason: str, message_ids: Iterable[int]) -> int:
    """:meth:`Ledger.create_plan` in ``connection``'s transaction."""
    created = connection.scalar(
        core_insert(connection, PLANS)
        .values(job_pk=job_pk, reason=reason, status="pending", created_at=now())
        .on_conflict_do_nothing(index_elements=["job_pk", "reason"])
        .returning(PLANS.c.id)
    )
    if created is None:
        return int(
            connection.execute(
                select(PLANS.c.id).where(PLANS.c.job_pk == job_pk, PLANS.c.reason == reason)
            ).scalar_one()
        )
    insert_absent(
        connection,
        PLAN_ITEMS,
        [{"plan_pk": created, "message_pk": pk} for pk in sorted(set(message_ids))],
        key=("plan_pk", "message_pk"),
    )
    return int(created)


def _record_rule_stats(connection: Connection, job_pk: int, counts: dict[str, int], scanned: int) -> None:
    """Remember how often each rule matched in this job (a redelivered job's replace its earlier ones)."""
    connection.execute(delete(RULE_STATS).where(RULE_STATS.c.job_pk == job_pk))
    if counts:
        at = now()
        connection.execute(
            insert(RULE_STATS),
            [
                {"rule_id": rule_id, "job_pk": job_pk, "matches": count, "scanned": scanned, "at": at}
                for rule_id, count in counts.items()
            ],
        )


def _rule_baselines(
    connection: Connection, rule_ids: Iterable[str], since: datetime, exclude_job: int
) -> dict[str, Baseline]:
    """(matches, messages scanned, jobs) per rule of ``rule_ids`` since ``since``, over the jobs other than
    ``exclude_job`` that scanned anything; nothing is read for no rules.

    Jobs in which a rule did not match count for its baseline too (with 0 matches): every job's scanned
    total is the denominator of every rule.
    """
    rules = sorted(set(rule_ids))
    if not rules:
        return {}
    scanned_total, jobs_total = connection.execute(
        select(func.coalesce(func.sum(JOBS.c.messages_scanned), 0), func.count(JOBS.c.id)).where(
            JOBS.c.finished_at >= since, JOBS.c.id != exclude_job, JOBS.c.messages_scanned > 0
        )
    ).one()
    matches: dict[str, int] = {}
    for part in chunks(rules):
        matches.update(
            (str(rule_id), int(total or 0))
            for rule_id, total in connection.execute(
                select(RULE_STATS.c.rule_id, func.sum(RULE_STATS.c.matches))
                .where(
                    RULE_STATS.c.rule_id.in_(part),
                    RULE_STATS.c.at >= since,
                    RULE_STATS.c.job_pk != exclude_job,
                )
                .group_by(RULE_STATS.c.rule_id)
            )
        )
    return {rule_id: (matches.get(rule_id, 0), int(scanned_total), int(jobs_total)) for rule_id in rules}


def _open_breakers(connection: Connection) -> dict[str, str]:
    """:meth:`Ledger.open_breakers` on ``connection``."""
    rows = connection.execute(select(BREAKERS.c.rule_id, BREAKERS.c.reason).where(BREAKERS.c.until > now()))
    return {str(rule_id): str(reason) for rule_id, reason in rows}


def _trip_breaker(connection: Connection, rule_id: str, for_s: float, reason: str) -> None:
    """:meth:`Ledger.trip_breaker` in ``connection``'s transaction."""
    at = now()
    statement = core_insert(connection, BREAKERS).values(
        rule_id=rule_id, tripped_at=at, until=at + timedelta(seconds=for_s), reason=reason
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["rule_id"],
            set_={
                "tripped_at": statement.excluded.tripped_at,
                "until": statement.excluded.until,
                "reason": statement.excluded.reason,
            },
        )
    )


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
    "CallOutcome",
    "Claim",
    "JobIdConflict",
    "Ledger",
    "PlanItem",
    "PlanStateError",
    "PlanView",
    "Prepared",
    "Purged",
    "ScanRecord",
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
