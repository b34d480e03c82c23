"""Several workers on one ledger at once: upserts instead of select-then-insert, and serialized migrations.

Each thread (or process) has its own engine, as separate workers would; a barrier lines them up so that
they hit the same rows in the same instant.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from tests.ledger.conftest import fresh_pg_schema
from tests.ledger.helpers import make_job, scanned, start
from worker.ledger import open_ledger
from worker.ledger.migrate import MIGRATIONS
from worker.ledger.models import (
    BreakerRow,
    EvidenceRow,
    JobRow,
    MatchRow,
    MessageRow,
    PlanItemRow,
    PlanRow,
    RecallRow,
)
from worker.ledger.store import Ledger, make_engine, now

THREADS = 4
ROUNDS = 12
MESSAGES = 8
RACES = 40


def run_together(count: int, work: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    """Run ``work(index, barrier)`` on ``count`` threads; re-raise the first failure."""
    barrier = threading.Barrier(count, timeout=60)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            results[index] = work(index, barrier)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return results


def test_concurrent_jobs_on_one_conversation_record_each_row_once(database_url: str) -> None:
    open_ledger(database_url).dispose()  # migrate once, as the first worker would
    ledgers = [Ledger(make_engine(database_url)) for _ in range(THREADS)]
    try:

        def work(index: int, barrier: threading.Barrier) -> list[dict[str, Any]]:
            ledger, rounds = ledgers[index], []
            shuffler = random.Random(index)
            for round_ in range(ROUNDS):
                keys = [f"r{round_}-m{n}" for n in range(MESSAGES)]
                shuffler.shuffle(keys)
                shared, own = make_job(f"shared-{round_}"), make_job(f"own-{round_}-{index}")
                barrier.wait()
                shared_pk = start(ledger, shared)  # two deliveries of one job at once
                own_pk = start(ledger, own)
                barrier.wait()
                own_ids = ledger.record_scan(own_pk, own, [scanned(k) for k in keys])
                barrier.wait()
                shared_ids = ledger.record_scan(shared_pk, shared, [scanned(k) for k in keys])
                barrier.wait()
                claim = ledger.claim_recalls(own_pk, own_ids)
                barrier.wait()
                plan_id = ledger.create_plan(shared_pk, "dry_run", shared_ids.values())
                barrier.wait()
                ledger.trip_breaker(f"rule-{round_}", for_s=60, reason=f"thread {index}")
                rounds.append(
                    {"ids": own_ids, "shared": shared_pk, "to_call": claim.to_call, "plan": plan_id}
                )
            return rounds

        results = run_together(THREADS, work)
    finally:
        for ledger in ledgers:
            ledger.dispose()

    ledger = open_ledger(database_url)
    try:
        with ledger.session() as session:
            assert session.scalar(select(func.count()).select_from(MessageRow)) == ROUNDS * MESSAGES
            identities = session.execute(select(MessageRow.conversation_key, MessageRow.msg_key)).all()
            assert len(set(identities)) == len(identities)
            assert session.scalar(select(func.count()).select_from(EvidenceRow)) == ROUNDS * MESSAGES
            assert session.scalar(select(func.count()).select_from(RecallRow)) == ROUNDS * MESSAGES
            assert session.scalar(select(func.count()).select_from(BreakerRow)) == ROUNDS
            assert session.scalar(select(func.count()).select_from(PlanRow)) == ROUNDS
            assert session.scalar(select(func.count()).select_from(PlanItemRow)) == ROUNDS * MESSAGES
            assert session.scalar(select(func.count()).select_from(JobRow)) == ROUNDS * (THREADS + 1)
            attempts = session.scalars(select(JobRow.attempts).where(JobRow.job_id.like("shared-%"))).all()
            assert attempts == [THREADS] * ROUNDS
            shared_matches = session.scalar(
                select(func.count())
                .select_from(MatchRow)
                .join(JobRow, JobRow.id == MatchRow.job_pk)
                .where(JobRow.job_id.like("shared-%"))
            )
            assert shared_matches == ROUNDS * MESSAGES
        for round_ in range(ROUNDS):
            mine = [thread[round_] for thread in results]
            assert len({r["shared"] for r in mine}) == 1, "every delivery found the one job row"
            assert len({r["plan"] for r in mine}) == 1, "every delivery found the one plan"
            assert len({tuple(sorted(r["ids"].items())) for r in mine}) == 1, "one row per message"
            called = [key for r in mine for key in r["to_call"]]
            assert sorted(called) == sorted(mine[0]["ids"]), "each message claimed by exactly one job"
    finally:
        ledger.dispose()


def test_a_purge_racing_a_claim_never_leaves_a_planned_recall_without_evidence(database_url: str) -> None:
    open_ledger(database_url).dispose()
    ledgers = [Ledger(make_engine(database_url)) for _ in range(2)]
    try:
        for round_ in range(RACES):
            job = make_job(f"report-{round_}")
            job_pk = start(ledgers[0], job)
            ids = ledgers[0].record_scan(job_pk, job, [scanned(f"r{round_}-m{n}") for n in range(MESSAGES)])

            def work(
                index: int, barrier: threading.Barrier, job_pk: int = job_pk, ids: dict[str, int] = ids
            ) -> Any:
                barrier.wait()
                if index == 1:
                    return ledgers[1].purge_evidence(now() + timedelta(seconds=1))
                try:
                    return ledgers[0].claim_recalls(job_pk, ids)
                except RuntimeError as exc:  # the purge came first: nothing may be claimed
                    return exc

            claim, purge = run_together(2, work)
            with ledgers[0].session() as session:
                rows = session.execute(
                    select(RecallRow.message_pk, EvidenceRow.purged_at)
                    .join(EvidenceRow, EvidenceRow.message_pk == RecallRow.message_pk)
                    .where(RecallRow.message_pk.in_(ids.values()))
                ).all()
            if isinstance(claim, RuntimeError):
                assert "no evidence stored" in str(claim)
                assert rows == [] and sorted(purge.purged) == sorted(ids.values())
            else:
                assert len(claim.to_call) == MESSAGES and purge.purged == []
                assert [purged_at for _, purged_at in rows] == [None] * MESSAGES
    finally:
        for ledger in ledgers:
            ledger.dispose()


WAITER = """
import sys, time
from pathlib import Path
from worker.ledger import open_ledger

go, ready, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.0005)
open_ledger(url).dispose()
"""


def migrate_at_once(url: str, tmp_path: Path, count: int = 4) -> None:
    """Start ``count`` processes that open (and migrate) the ledger at ``url`` at the same moment."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    readies = [tmp_path / f"ready-{n}-{go.name}" for n in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WAITER, str(go), str(ready), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "the processes did not start"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.01)
        go.touch()
        outcomes = [(p.wait(60), p.communicate()[1]) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    failed = [err[-1500:] for code, err in outcomes if code != 0]
    assert not failed, failed
    ledger = open_ledger(url)
    try:
        with ledger.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [HEAD]
    finally:
        ledger.dispose()


HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_workers_started_together_on_a_fresh_postgresql_ledger_all_migrate_it(tmp_path: Path) -> None:
    for _ in range(2):
        with fresh_pg_schema() as url:
            migrate_at_once(url, tmp_path)


@pytest.mark.parametrize("round_", range(3))
def test_workers_started_together_on_a_fresh_sqlite_ledger_all_migrate_it(
    tmp_path: Path, round_: int
) -> None:
    migrate_at_once(f"sqlite:///{tmp_path}/fresh-{round_}.db", tmp_path)
