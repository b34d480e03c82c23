"""The intake's storage, in the ledger's database: reports, cases, reporters, the outbox, deliveries.

Each method is one transaction. :meth:`IntakeStore.write_batch` stores many reports in one (the intake
commits what arrived together: a group commit), and is safe to run from several processes at once:

- a signature is stored with its report, so the same signed request twice is one report (a replay is
  answered as such, and does not count against the reporter's limit);
- the rate limit counts a reporter's attempts in the current minute with one ``INSERT … ON CONFLICT DO
  UPDATE … RETURNING`` per reporter, so replicas share it exactly;
- reports on one conversation and suspect join the **open** case (a partial unique index allows one) by
  ``INSERT … ON CONFLICT DO UPDATE``, or, when a case's job already runs and scans what the report names,
  that case; otherwise they open a follow-up case.

Rows are written in a stable order (signatures, reporters, then cases, each sorted by key), and every
other writer locks in the same order, so two transactions never wait on each other in a circle; a deadlock
PostgreSQL still reports is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from worker.intake.cases import CaseReport, build_job, covered, job_id_of, window_of
from worker.intake.model import ReportIn
from worker.intake.outcomes import outcome_of
from worker.intake.statements import ACTIVE, write_statements
from worker.intake.trust import Policy, Record, case_priority, decide, trust_score
from worker.jobs import parse_job
from worker.ledger.clock import aware
from worker.ledger.models import (
    CaseRow,
    DeliveryRow,
    JobRow,
    OutboxRow,
    ReporterRow,
    ReportRow,
    SeenSignatureRow,
)
from worker.ledger.upsert import chunks, insert

#: PostgreSQL's deadlock_detected and serialization_failure: the transaction is tried again.
_RETRYABLE_SQLSTATES = ("40P01", "40001")
_ATTEMPTS = 4
#: A claimed delivery is tried again after this long if its sender died before recording the attempt.
DELIVERY_LEASE_S = 120.0


def new_report_id() -> str:
    """A fresh report id: ``rpt_`` and 24 random hex digits."""
    return "rpt_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A report that passed its signature and validation, ready to store."""

    report: ReportIn
    signature: str
    key_id: str = ""


@dataclass(frozen=True, slots=True)
class Stored:
    """The report is stored (202)."""

    report_id: str
    case_id: int
    joined_running: bool = False  # joined a case whose job already runs (it covers the report)


@dataclass(frozen=True, slots=True)
class Replayed:
    """The same signed request was served before (409); ``report_id`` is what it stored, if anything."""

    report_id: str | None


@dataclass(frozen=True, slots=True)
class Limited:
    """The reporter filed too many reports this minute (429)."""

    retry_after_s: int


Outcome = Stored | Replayed | Limited


@dataclass(frozen=True, slots=True)
class Timing:
    """When a job is made: ``quiet_s`` after the last report, ``max_wait_s`` after the first at most."""

    quiet_s: float = 60.0
    max_wait_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery of a report's outcome."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(slots=True)
class Tracked:
    """What one pass over the active cases did."""

    started: int = 0
    settled: dict[str, int] = field(default_factory=dict)


def _worth_retrying(exc: DBAPIError) -> bool:
    """A deadlock, or a pooled connection the server dropped (the intake's pool is not pre-pinged)."""
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES or exc.connection_invalidated


class IntakeStore:
    """The intake's tables over one ledger engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        timing: Timing | None = None,
        reporter_limit: int = 20,
        trusted: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
        async_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        #: The same database for :meth:`write_batch_async` (PostgreSQL only), or None.
        self.async_engine = async_engine
        self._async_sessions = (
            async_sessionmaker(async_engine, expire_on_commit=False) if async_engine is not None else None
        )
        self.timing = timing or Timing()
        #: Reporters whose reports make their case due at once.
        self.trusted = trusted
        self.reporter_limit = reporter_limit
        self._clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._sql = write_statements(engine.dialect.name)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _retrying(self, work: Callable[[Session], Any]) -> Any:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._write() as session:
                    return work(session)
            except DBAPIError as exc:
                if not _worth_retrying(exc) or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> None:
        """One round trip to the database (readiness)."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    # intake -----------------------------------------------------------------------------------------

    def write_batch(self, items: Sequence[Incoming]) -> list[Outcome]:
        """Store ``items`` in one transaction; one outcome per item, in order."""
        result: list[Outcome] = self._retrying(lambda session: self._write_batch(session, items))
        return result

    async def write_batch_async(self, items: Sequence[Incoming]) -> list[Outcome]:
        """:meth:`write_batch` for the event loop: on PostgreSQL (with an async engine) the same code runs
        on the loop's thread with non-blocking I/O; otherwise on a worker thread.

        On a thread, every database round trip hands the GIL back and forth with the event loop's thread,
        which under load holds it a switch interval at a time; on the loop there is nothing to hand over.
        """
        if self._async_sessions is None:
            return await asyncio.to_thread(self.write_batch, items)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._async_sessions() as session, session.begin():
                    result: list[Outcome] = await session.run_sync(self._write_batch, items)
                    return result
            except DBAPIError as exc:
                if not _worth_retrying(exc) or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the async engine's connections (on the loop that used them)."""
        if self.async_engine is not None:
            await self.async_engine.dispose()

    def _write_batch(self, session: Session, items: Sequence[Incoming]) -> list[Outcome]:
        moment = self._clock()
        now = datetime.fromtimestamp(moment, UTC)
        outcomes: list[Outcome | None] = [None] * len(items)
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.signature in first:
                outcomes[index] = Replayed(None)  # the same request twice in one batch
            else:
                first[item.signature] = index
        report_ids = {index: new_report_id() for index in first.values()}
        unseen = self._unseen(session, items, report_ids, now, outcomes)
        fresh = self._within_limit(session, items, unseen, moment, outcomes)
        if len(fresh) < len(unseen):  # a refused request was not served: the same one may come again
            limited = sorted(items[i].signature for i in set(unseen) - set(fresh))
            session.connection().execute(
                delete(SeenSignatureRow).where(SeenSignatureRow.signature.in_(limited))
            )
        if fresh:
            cases = self._cases_for(session, items, fresh, now)
            session.connection().execute(
                self._sql.insert_reports,
                [
                    {
                        "report_id": report_ids[index],
                        "case_pk": cases[index][0],
                        "reporter": items[index].report.reporter,
                        "suspect": items[index].report.suspect,
                        "conversation_key": items[index].report.conversation_key(),
                        "msg_refs": items[index].report.msg_refs(),
                        "category": items[index].report.category,
                        "description": items[index].report.description,
                        "language": items[index].report.language,
                        "reported_at": items[index].report.reported_at,
                        "received_at": now,
                        "key_id": items[index].key_id,
                    }
                    for index in fresh
                ],
            )
            for index in fresh:
                outcomes[index] = Stored(report_ids[index], cases[index][0], cases[index][1])
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Replayed) and outcome.report_id is None:
                original = outcomes[first[items[index].signature]]
                if isinstance(original, Stored | Replayed):
                    outcomes[index] = Replayed(original.report_id)
        return [o if o is not None else Replayed(None) for o in outcomes]

    def _within_limit(
        self,
        session: Session,
        items: Sequence[Incoming],
        candidates: list[int],
        moment: float,
        outcomes: list[Outcome | None],
    ) -> list[int]:
        """Count the candidates against their reporters' minute; mark those over the limit."""
        if not candidates:
            return []
        minute = int(moment // 60)
        attempts = Counter(items[i].report.reporter for i in candidates)
        counted: dict[str, int] = {}
        for part in chunks(sorted(attempts)):
            rows = [
                {
                    "reporter": reporter,
                    "reports": 0,
                    "upheld": 0,
                    "baseless": 0,
                    "window_start": minute,
                    "window_count": attempts[reporter],
                }
                for reporter in part
            ]
            counted.update(session.connection().execute(self._sql.count_attempts, rows).all())
        allowance = {r: self.reporter_limit - (counted[r] - attempts[r]) for r in attempts}
        retry_after = max(1, math.ceil(60 - moment % 60))
        passed = []
        for index in candidates:
            reporter = items[index].report.reporter
            if allowance[reporter] > 0:
                allowance[reporter] -= 1
                passed.append(index)
            else:
                outcomes[index] = Limited(retry_after)
        return passed

    def _unseen(
        self,
        session: Session,
        items: Sequence[Incoming],
        report_ids: dict[int, str],
        now: datetime,
        outcomes: list[Outcome | None],
    ) -> list[int]:
        """Record the signatures of ``report_ids``' items; those seen before are replays."""
        if not report_ids:
            return []
        by_signature = {items[i].signature: i for i in report_ids}
        new: set[str] = set()
        for part in chunks(sorted(by_signature)):
            rows = [{"signature": s, "report_id": report_ids[by_signature[s]], "seen_at": now} for s in part]
            new.update(session.connection().execute(self._sql.remember_signatures, rows).scalars().all())
        replays = sorted(set(by_signature) - new)
        if replays:
            known = dict(
                session.execute(
                    select(SeenSignatureRow.signature, SeenSignatureRow.report_id).where(
                        SeenSignatureRow.signature.in_(replays)
                    )
                ).all()
            )
            for signature in replays:
                outcomes[by_signature[signature]] = Replayed(known.get(signature))
        return sorted(by_signature[s] for s in new)

    def _cases_for(
        self, session: Session, items: Sequence[Incoming], fresh: list[int], now: datetime
    ) -> dict[int, tuple[int, bool]]:
        """The case each of ``fresh`` joins: (case id, whether its job already runs)."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index in fresh:
            report = items[index].report
            groups[(report.conversation_key(), report.suspect)].append(index)
        active = {
            (row.conversation_key, row.suspect): row
            for row in session.connection().execute(self._sql.active_cases, {"pairs": list(groups)})
        }  # the newest active case of each (a later row replaces an earlier one)
        joined: dict[int, tuple[int, bool]] = {}
        to_open: dict[tuple[str, str], list[int]] = {}
        for key in sorted(groups):
            running = active.get(key)
            rest = []
            for index in groups[key]:
                report = items[index].report
                if running is not None and covered(
                    running.window_since,
                    running.window_until,
                    running.max_seq,
                    msg_refs=report.msg_refs(),
                    reported_at=report.reported_at,
                ):
                    joined[index] = (running.id, True)
                else:
                    rest.append(index)
            if running is not None and len(rest) < len(groups[key]):
                count = len(groups[key]) - len(rest)
                still = session.execute(
                    update(CaseRow)
                    .where(CaseRow.id == running.id, CaseRow.state.in_(ACTIVE))
                    .values(reports=CaseRow.reports + count)
                    .returning(CaseRow.id)
                ).first()
                if still is None:  # settled meanwhile: these reports open a new case instead
                    rest = groups[key]
                    for index in rest:
                        joined.pop(index, None)
            if rest:
                to_open[key] = rest
        if to_open:
            joined.update(self._open_cases(session, items, to_open, active, now))
        return joined

    def _open_cases(
        self,
        session: Session,
        items: Sequence[Incoming],
        groups: dict[tuple[str, str], list[int]],
        active: dict[tuple[str, str], Any],
        now: datetime,
    ) -> dict[int, tuple[int, bool]]:
        quiet = timedelta(seconds=self.timing.quiet_s)
        longest = timedelta(seconds=self.timing.max_wait_s)
        rows = []
        for key in sorted(groups):
            first = items[groups[key][0]].report
            urgent = any(items[i].report.reporter in self.trusted for i in groups[key])
            deadline_at = now if urgent else now + longest
            running = active.get(key)
            rows.append(
                {
                    "conversation_key": key[0],
                    "suspect": key[1],
                    "conversation": first.job_conversation(),
                    "state": "open",
                    "opened_at": now,
                    "last_report_at": now,
                    "due_at": min(now + quiet, deadline_at),
                    "deadline_at": deadline_at,
                    "reports": len(groups[key]),
                    "follow_up_of": running.id if running is not None else None,
                }
            )
        ids: dict[tuple[str, str], int] = {}
        for part in chunks(rows):
            for case_id, conversation_key, suspect in session.connection().execute(
                self._sql.join_open_cases, list(part)
            ):
                ids[(conversation_key, suspect)] = case_id
        return {index: (ids[key], False) for key, indexes in groups.items() for index in indexes}

    # cases -> jobs ----------------------------------------------------------------------------------

    def close_due(self, policy: Policy, *, lookback_s: int, ruleset: str, limit: int = 50) -> list[str]:
        """Turn the open cases that are due into jobs in the outbox; returns their job ids."""
        result: list[str] = self._retrying(
            lambda session: self._close_due(
                session, policy, lookback_s=lookback_s, ruleset=ruleset, limit=limit
            )
        )
        return result

    def _close_due(
        self, session: Session, policy: Policy, *, lookback_s: int, ruleset: str, limit: int
    ) -> list[str]:
        now = self._now()
        due = session.scalars(
            select(CaseRow)
            .where(CaseRow.state == "open", CaseRow.due_at <= now)
            .order_by(CaseRow.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        job_ids = []
        for row in due:
            reports = [
                CaseReport(r.report_id, r.reporter, r.category, r.msg_refs, r.reported_at)
                for r in session.scalars(
                    select(ReportRow).where(ReportRow.case_pk == row.id).order_by(ReportRow.id)
                )
            ]
            if not reports:  # pragma: no cover - a case is opened with its first report
                row.state = "dismissed"
                continue
            reporters = sorted({r.reporter for r in reports})
            records = {
                r.reporter: Record(r.upheld, r.baseless)
                for r in session.scalars(select(ReporterRow).where(ReporterRow.reporter.in_(reporters)))
            }
            decision = decide(policy, reporters, records)
            window = window_of(reports, closed_at=int(now.timestamp()), lookback_s=lookback_s)
            job = build_job(
                row.id,
                row.conversation,
                row.suspect,
                reports,
                decision=decision,
                window=window,
                ruleset=ruleset,
            )
            body = orjson.dumps(job)
            parse_job(body)  # a job the intake makes is always valid; never publish one that is not
            row.state, row.job_id, row.mode, row.why = "queued", job["job_id"], decision.mode, decision.why
            row.window_since, row.window_until, row.max_seq = window.since, window.until, window.max_seq
            session.add(OutboxRow(job_id=job["job_id"], body=body.decode(), created_at=now))
            job_ids.append(job["job_id"])
        return job_ids

    def unpublished(self, limit: int = 100) -> list[tuple[int, str, bytes]]:
        """Jobs in the outbox not yet confirmed by the broker: (row id, job id, body), oldest first."""
        with self._sessions() as session:
            rows = session.execute(
                select(OutboxRow.id, OutboxRow.job_id, OutboxRow.body)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(limit)
            )
            return [(pk, job_id, body.encode()) for pk, job_id, body in rows]

    def priorities(self, job_ids: Sequence[str], policy: Policy) -> dict[str, int]:
        """The priority each of ``job_ids`` is published with, from its case's reporters and their trust now
        (:func:`~worker.intake.trust.case_priority`); not part of the job, so the same job published again
        is the same job whatever it says."""
        reports = self.reports_of_jobs(job_ids)  # each with its reporter's record
        records = {
            job_id: {r["reporter"]: Record(r["upheld"], r["baseless"]) for r in reports.get(job_id, [])}
            for job_id in job_ids
        }
        return {job_id: case_priority(policy, named, named) for job_id, named in records.items()}

    def mark_published(self, ids: Sequence[int]) -> None:
        """The broker confirmed these outbox rows."""
        with self._write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(published_at=self._now(), attempts=OutboxRow.attempts + 1, last_error=None)
            )

    def publish_failed(self, ids: Sequence[int], error: str) -> None:
        """Publishing these rows failed; they stay in the outbox."""
        with self._write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)))
                .values(attempts=OutboxRow.attempts + 1, last_error=error[:500])
            )

    # jobs -> outcomes -------------------------------------------------------------------------------

    def track(self, *, webhook: bool, notices: bool, limit: int = 100) -> Tracked:
        """Follow the active cases' jobs in the ledger: mark started ones running, settle finished ones
        (the case's outcome, its reporters' records, a delivery per report and channel)."""
        result: Tracked = self._retrying(
            lambda session: self._track(session, webhook=webhook, notices=notices, limit=limit)
        )
        return result

    def _track(self, session: Session, *, webhook: bool, notices: bool, limit: int) -> Tracked:
        now = self._now()
        tracked = Tracked()
        rows = session.execute(
            select(CaseRow, JobRow.result)
            .join(JobRow, JobRow.job_id == CaseRow.job_id)
            .where(CaseRow.state.in_(ACTIVE))
            .order_by(CaseRow.id)
            .limit(limit)
            .with_for_update(of=CaseRow, skip_locked=True)
        )
        finished = []
        for row, result in rows:
            if result is None:
                if row.state == "queued":
                    row.state = "running"
                    tracked.started += 1
                continue
            finished.append((row, orjson.loads(result)))
        for row, result in finished:
            outcome = outcome_of(result)
            row.state, row.outcome, row.settled_at = outcome.state, outcome.counts, now
            tracked.settled[outcome.state] = tracked.settled.get(outcome.state, 0) + 1
            reports = session.scalars(select(ReportRow).where(ReportRow.case_pk == row.id)).all()
            if outcome.upheld is not None:
                column = ReporterRow.upheld if outcome.upheld else ReporterRow.baseless
                for reporter in sorted({r.reporter for r in reports}):  # each counted once per case
                    session.execute(
                        update(ReporterRow)
                        .where(ReporterRow.reporter == reporter)
                        .values({column: column + 1, ReporterRow.reports: ReporterRow.reports + 1})
                    )
            deliveries = []
            for report in reports:
                payload = {
                    "report_id": report.report_id,
                    "status": outcome.state,
                    "job_id": row.job_id,
                    "case_id": row.id,
                    "mode": row.mode,
                    "reporter": report.reporter,
                    "suspect": report.suspect,
                    "conversation": row.conversation,
                    "category": report.category,
                    "counts": outcome.counts,
                    "settled_at": int(now.timestamp()),
                }
                if webhook:
                    deliveries.append(self._delivery(report.id, "webhook", payload, now))
                if notices and outcome.notice is not None:
                    notice = {
                        "report_id": report.report_id,
                        "reporter": report.reporter,
                        "language": report.language,
                        "outcome": outcome.notice,
                        "category": report.category,
                    }
                    deliveries.append(self._delivery(report.id, "notice", notice, now))
            if deliveries:
                session.execute(
                    insert(session, DeliveryRow).on_conflict_do_nothing(index_elements=["report_pk", "kind"]),
                    deliveries,
                )
        return tracked

    @staticmethod
    def _delivery(report_pk: int, kind: str, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        payload = {"delivery_id": f"{payload['report_id']}.{kind}", **payload}
        return {
            "report_pk": report_pk,
            "kind": kind,
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_at": now,
            "created_at": now,
        }

    # deliveries -------------------------------------------------------------------------------------

    def claim_deliveries(self, *, limit: int = 20, lease_s: float = DELIVERY_LEASE_S) -> list[Delivery]:
        """Take up to ``limit`` due deliveries; each is leased (not handed out again) for ``lease_s``."""

        def work(session: Session) -> list[Delivery]:
            now = self._now()
            rows = session.scalars(
                select(DeliveryRow)
                .where(DeliveryRow.state == "pending", DeliveryRow.next_at <= now)
                .order_by(DeliveryRow.next_at, DeliveryRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.attempts += 1
                row.next_at = now + timedelta(seconds=lease_s)
            return [Delivery(row.id, row.kind, dict(row.payload), row.attempts) for row in rows]

        result: list[Delivery] = self._retrying(work)
        return result

    def delivered(self, delivery_id: int) -> None:
        """A delivery went through."""
        with self._write() as session:
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(state="delivered", delivered_at=self._now(), last_error=None)
            )

    def delivery_failed(self, delivery_id: int, error: str, *, retry_in_s: float | None) -> None:
        """A delivery failed: tried again in ``retry_in_s``, or dead (None)."""
        values: dict[str, Any] = {"last_error": error[:500]}
        if retry_in_s is None:
            values["state"] = "dead"
        else:
            values["next_at"] = self._now() + timedelta(seconds=retry_in_s)
        with self._write() as session:
            session.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(values))

    def deliveries(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Deliveries, newest first (for ``recall-worker intake deliveries``)."""
        with self._sessions() as session:
            query = (
                select(DeliveryRow, ReportRow.report_id)
                .join(ReportRow, ReportRow.id == DeliveryRow.report_pk)
                .order_by(DeliveryRow.id.desc())
                .limit(limit)
            )
            if state is not None:
                query = query.where(DeliveryRow.state == state)
            return [
                {
                    "id": row.id,
                    "report_id": report_id,
                    "kind": row.kind,
                    "state": row.state,
                    "attempts": row.attempts,
                    "next_at": aware(row.next_at).isoformat() if row.state == "pending" else None,
                    "last_error": row.last_error,
                    "created_at": aware(row.created_at).isoformat(),
                    "delivered_at": aware(row.delivered_at).isoformat() if row.delivered_at else None,
                }
                for row, report_id in session.execute(query)
            ]

    def redeliver(self, delivery_ids: Sequence[int]) -> int:
        """Put dead deliveries back in line (attempts start again); returns how many."""
        with self._write() as session:
            done = session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_(list(delivery_ids)), DeliveryRow.state == "dead")
                .values(state="pending", attempts=0, next_at=self._now())
            )
            return int(getattr(done, "rowcount", 0) or 0)

    # reading ----------------------------------------------------------------------------------------

    def report_status(self, report_id: str) -> dict[str, Any] | None:
        """What became of a report (``GET /v1/reports/{id}``), or None if there is no such report."""
        with self._sessions() as session:
            found = session.execute(
                select(ReportRow, CaseRow)
                .join(CaseRow, CaseRow.id == ReportRow.case_pk)
                .where(ReportRow.report_id == report_id)
            ).first()
            if found is None:
                return None
            report, row = found
            status = {"open": "queued", "queued": "queued"}.get(row.state, row.state)
            view: dict[str, Any] = {
                "report_id": report.report_id,
                "status": status,
                "received_at": int(aware(report.received_at).timestamp()),
                "reporter": report.reporter,
                "suspect": report.suspect,
                "category": report.category,
                "case": {"id": row.id, "reports": row.reports, "follow_up_of": row.follow_up_of},
                "job_id": row.job_id,
            }
            if row.state == "open":
                view["due_at"] = int(aware(row.due_at).timestamp())
            if row.mode is not None:
                view["mode"] = row.mode
                view["why"] = row.why
            if row.outcome is not None:
                view["counts"] = row.outcome
            return view

    def reports_of_job(self, job_id: str) -> list[dict[str, Any]]:
        """The reports a job answers, each with its reporter's trust (the review page)."""
        return self.reports_of_jobs([job_id]).get(job_id, [])

    def reports_of_jobs(self, job_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`reports_of_job` for several jobs in one query (jobs without reports are left out)."""
        found: dict[str, list[dict[str, Any]]] = {}
        if not job_ids:
            return found
        with self._sessions() as session:
            rows = session.execute(
                select(CaseRow.job_id, ReportRow, ReporterRow)
                .join(CaseRow, CaseRow.id == ReportRow.case_pk)
                .outerjoin(ReporterRow, ReporterRow.reporter == ReportRow.reporter)
                .where(CaseRow.job_id.in_(list(job_ids)))
                .order_by(ReportRow.id)
            )
            for job_id, report, r in rows:
                found.setdefault(str(job_id), []).append(
                    {
                        "report_id": report.report_id,
                        "reporter": report.reporter,
                        "category": report.category,
                        "description": report.description or "",
                        "trust": round(trust_score(Record(r.upheld, r.baseless) if r else Record()), 2),
                        "upheld": r.upheld if r else 0,
                        "baseless": r.baseless if r else 0,
                    }
                )
        return found

    def counts(self) -> dict[str, int]:
        """Open cases, outbox rows not yet published, pending and dead deliveries (metrics)."""
        with self._sessions() as session:
            return {
                "open_cases": session.scalar(select(func.count()).where(CaseRow.state == "open")) or 0,
                "unpublished": session.scalar(select(func.count()).where(OutboxRow.published_at.is_(None)))
                or 0,
                "pending_deliveries": session.scalar(
                    select(func.count()).where(DeliveryRow.state == "pending")
                )
                or 0,
                "dead_deliveries": session.scalar(select(func.count()).where(DeliveryRow.state == "dead"))
                or 0,
            }

    def forget_signatures(self, older_than_s: float) -> int:
        """Drop signatures too old to be replayed (their timestamps are past the allowed skew)."""
        with self._write() as session:
            done = session.execute(
                delete(SeenSignatureRow).where(
                    SeenSignatureRow.seen_at < self._now() - timedelta(seconds=older_than_s)
                )
            )
            return int(getattr(done, "rowcount", 0) or 0)


__all__ = [
    "Delivery",
    "Incoming",
    "IntakeStore",
    "Limited",
    "Replayed",
    "Stored",
    "Timing",
    "Tracked",
    "job_id_of",
]
