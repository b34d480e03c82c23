"""A job's ledger work in few transactions, on SQLite and on the real PostgreSQL: the scan with everything
its plan needs, the plans with the claim, every recall's outcome with its verification; a recall job's
whole run takes five transactions (start, those three, settle); a pooled connection the server dropped is
replaced without failing the job's step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event, select

from tests.keyword_rules import KeywordRuleSet
from tests.ledger.conftest import PG_ADMIN, fresh_pg_schema
from tests.ledger.helpers import make_job, record, scanned, start
from tests.worker.harness import job as c2c_job
from worker.emulator.seed import import_accounts, import_c2c, text
from worker.emulator.server import EmulatorThread
from worker.ledger import engine as ledger_engine
from worker.ledger import open_ledger
from worker.ledger.models import EvidenceRow, PlanItemRow, PlanRow, RecallRow, RuleStatRow
from worker.ledger.store import CallOutcome, Ledger, Started, now
from worker.pipeline import Policy, run_job
from worker.tim.client import TimClient


@pytest.fixture
def transactions(ledger: Ledger) -> Iterator[list[str]]:
    """Every transaction the ledger's engine begins from here on (one entry each)."""
    begun: list[str] = []

    def on_begin(_: Any) -> None:
        begun.append("begin")

    event.listen(ledger.engine, "begin", on_begin)
    yield begun
    event.remove(ledger.engine, "begin", on_begin)


@pytest.fixture
def statements(ledger: Ledger) -> Iterator[list[str]]:
    """The SQL of every statement the ledger's engine runs from here on (lower case)."""
    ran: list[str] = []

    def on_execute(*args: Any) -> None:
        ran.append(str(args[2]).lower())  # (connection, cursor, statement, parameters, context, executemany)

    event.listen(ledger.engine, "before_cursor_execute", on_execute)
    yield ran
    event.remove(ledger.engine, "before_cursor_execute", on_execute)


def recall_rows(ledger: Ledger) -> dict[int, RecallRow]:
    with ledger.session() as session:
        return {row.message_pk: row for row in session.scalars(select(RecallRow))}


def test_recording_a_scan_reads_all_its_plan_needs_in_one_transaction(
    ledger: Ledger, transactions: list[str]
) -> None:
    preview_pk, kept = record(ledger, make_job("preview", mode="dry_run"), ["m1"])
    ledger.decide_plan(ledger.create_plan(preview_pk, "dry_run", kept.values()), approve=False, by="alice")
    earlier_pk, earlier = record(ledger, make_job("earlier"), ["m0"])
    ledger.claim_recalls(earlier_pk, earlier)  # its worker died before recording the call
    ledger.trip_breaker("noisy", for_s=60, reason="tripped before")
    job = make_job("report")
    job_pk = start(ledger, job)
    asked: list[dict[str, tuple[int, int, int]]] = []

    def trips(baselines: dict[str, tuple[int, int, int]]) -> dict[str, str]:
        asked.append(baselines)
        return {"kw-spam": "a spike"}

    transactions.clear()
    found = ledger.record_scan_for_plan(
        job_pk,
        job,
        [scanned("m0"), scanned("m1"), scanned("m2")],
        counts={"kw-spam": 3},
        scanned=40,
        baseline_rules=["kw-spam"],
        baseline_since=now() - timedelta(days=1),
        trips=trips,
        cooldown_s=600,
        already_recalled=["m0"],
    )

    assert len(transactions) == 1
    assert found.ids["m0"] == earlier["m0"] and found.ids["m1"] == kept["m1"]
    assert asked == [{"kw-spam": (0, 0, 0)}], "no finished job has scanned anything yet"
    assert found.trips == {"kw-spam": "a spike"}
    assert found.open_breakers == {"noisy": "tripped before", "kw-spam": "a spike"}
    assert found.rejected == {kept["m1"]: "rejected by alice in plan 1"}
    settled = recall_rows(ledger)[earlier["m0"]]
    assert (settled.state, settled.verified) == ("already_recalled", True)
    with ledger.session() as session:
        stats = session.execute(select(RuleStatRow.rule_id, RuleStatRow.matches, RuleStatRow.scanned)).all()
        evidence = session.scalars(select(EvidenceRow.message_pk)).all()
    assert stats == [("kw-spam", 3, 40)]
    assert sorted(evidence) == sorted(found.ids.values())


def test_no_baseline_is_read_for_no_rule(ledger: Ledger, statements: list[str]) -> None:
    job = make_job("quiet")
    job_pk = start(ledger, job)
    statements.clear()
    found = ledger.record_scan_for_plan(
        job_pk,
        job,
        [],
        counts={},
        scanned=12,
        baseline_rules=[],
        baseline_since=now(),
        trips=lambda baselines: {} if baselines == {} else {"unexpected": "baselines read"},
        cooldown_s=600,
    )
    assert (found.ids, found.trips, found.open_breakers, found.rejected) == ({}, {}, {}, {})
    assert statements, "the scan was recorded"
    assert [sql for sql in statements if "sum(" in sql] == [], "neither baseline query ran"


def test_plans_and_the_claim_are_one_transaction(ledger: Ledger, transactions: list[str]) -> None:
    job = make_job("report")
    job_pk, ids = record(ledger, job, ["m1", "m2", "m3"])
    transactions.clear()
    prepared = ledger.prepare_recalls(
        job_pk,
        job,
        ids,
        evidence=[scanned("w1", text="hello")],
        plans={"flag_rule_only": ["m3"], "wipe": ["m1", "w1"]},
        claim=["m1", "m2"],
    )
    assert len(transactions) == 1
    assert set(prepared.ids) == {"m1", "m2", "m3", "w1"}
    assert list(prepared.plans) == ["flag_rule_only", "wipe"]
    assert prepared.plans["flag_rule_only"] < prepared.plans["wipe"], "created in the order given"
    assert prepared.claim.to_call == ["m1", "m2"] and prepared.claim.skipped == {}
    wipe = ledger.plan(prepared.plans["wipe"])
    assert sorted(item.msg_key for item in wipe.items) == ["m1", "w1"]
    again = ledger.prepare_recalls(job_pk, job, ids, plans={"flag_rule_only": ["m3"]}, claim=["m1"])
    assert again.plans == {"flag_rule_only": prepared.plans["flag_rule_only"]}, "a redelivery finds its plan"


def test_a_claim_refused_for_purged_evidence_keeps_nothing_of_its_transaction(ledger: Ledger) -> None:
    job = make_job("report")
    job_pk, ids = record(ledger, job, ["m1", "m2"])
    ledger.purge_evidence(now() + timedelta(seconds=1))
    with pytest.raises(RuntimeError, match="no evidence stored"):
        ledger.prepare_recalls(job_pk, job, ids, plans={"flag_rule_only": ["m2"]}, claim=["m1"])
    with ledger.session() as session:
        assert session.scalars(select(PlanRow)).all() == []
        assert session.scalars(select(PlanItemRow)).all() == []
    assert recall_rows(ledger) == {}


def test_a_claim_respects_done_and_fresh_claims_and_takes_over_stale_ones(ledger: Ledger) -> None:
    first_pk, ids = record(ledger, make_job("first"), ["done", "gone", "fresh", "stale", "new"])
    assert ledger.claim_recalls(first_pk, ids).to_call == list(ids)
    ledger.record_recalls(
        [CallOutcome(ids["done"], "recalled", 0, ""), CallOutcome(ids["gone"], "not_found", 20022, "")]
    )
    with ledger.session() as session, session.begin():
        row = session.get(RecallRow, ids["stale"])
        assert row is not None
        row.planned_at = now() - timedelta(hours=1)
    second_pk, _ = record(ledger, make_job("second"), list(ids))
    claim = ledger.claim_recalls(second_pk, ids, lease_s=600)
    assert claim.to_call == ["stale"]
    assert claim.skipped == {
        "done": "already_recalled",
        "gone": "gone_before_recall",
        "fresh": "being_recalled_by_another_job",
        "new": "being_recalled_by_another_job",
    }
    assert recall_rows(ledger)[ids["stale"]].job_pk == second_pk


def test_every_outcome_and_its_verification_are_one_transaction(
    ledger: Ledger, transactions: list[str]
) -> None:
    job_pk, ids = record(ledger, make_job("report"), ["ok", "dropped", "failed"])
    ledger.claim_recalls(job_pk, ids)
    transactions.clear()
    ledger.record_recalls(
        [
            CallOutcome(ids["ok"], "recalled", 0, ""),
            CallOutcome(ids["dropped"], "recalled", 0, ""),
            CallOutcome(ids["failed"], "failed", 20004, "busy " * 300),
        ],
        {ids["ok"]: True, ids["dropped"]: False},
    )
    assert len(transactions) == 1
    rows = recall_rows(ledger)
    assert (rows[ids["ok"]].state, rows[ids["ok"]].verified) == ("recalled", True)
    assert (rows[ids["dropped"]].state, rows[ids["dropped"]].verified) == ("unverified", False)
    failed = rows[ids["failed"]]
    assert (failed.state, failed.code, failed.verified, len(failed.info)) == ("failed", 20004, None, 1000)
    assert all(row.finished_at is not None for row in rows.values())
    transactions.clear()
    ledger.record_recalls([])
    assert transactions == [], "nothing to record: no transaction"


async def test_a_recall_job_takes_five_transactions(
    emulator: EmulatorThread, client: TimClient, ledger: Ledger, transactions: list[str]
) -> None:
    t0 = int(time.time()) - 600
    await import_accounts(client, ["eve", "bob"])
    for n in range(20):
        body = "spam, click" if n in (3, 9, 15) else f"hello {n}"
        await import_c2c(
            client, sender="eve", receiver="bob", timestamp=t0 + n, seq=n + 1, random=n + 1, body=[text(body)]
        )
    job = c2c_job("five", operator="bob", peer="eve", suspect="eve", since=t0, until=t0 + 100)
    transactions.clear()
    started = ledger.start_job(job, ruleset_version="v1")
    assert isinstance(started, Started)
    report = await run_job(job, client, KeywordRuleSet(), ledger=ledger, policy=Policy(), job_pk=started.pk)
    ledger.settle_job(
        started.pk, status="done", result=b"{}", error=None, scanned=20, pages=1, dead_reason=None
    )
    assert len(report.recalls) == 3 and report.unverified == []
    assert len(transactions) == 5, "start, scan and plan inputs, plans and claim, outcomes, settle"
    assert {(m["recall"]["state"], m["recall"]["verified"]) for m in ledger.audit("five")["messages"]} == {
        ("recalled", True)
    }
    assert "admin_msgwithdraw" in httpx.get(f"{emulator.url}/_emulator/stats").json()["calls"]


def backend_pids(ledger: Ledger) -> set[int]:
    """The server processes of the ledger's pooled connections (checked out and back in for the asking)."""
    pool: Any = ledger.engine.pool
    held = [ledger.engine.raw_connection() for _ in range(pool.checkedin())]
    try:
        return {int(c.driver_connection.info.backend_pid) for c in held}  # type: ignore[union-attr]
    finally:
        for connection in held:
            connection.close()


def terminate(pids: set[int]) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL ledger's URL in its own schema: only PostgreSQL's pooled connections are checked and
    dropped."""
    with fresh_pg_schema() as url:
        yield url


def count_pings(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per check of a pooled connection's ledger from here on."""
    pings: list[int] = []
    dialect = ledger.engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


def test_a_job_step_skips_the_check_of_a_connection_used_a_moment_ago(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(pg_url)
    try:
        job_pk, ids = record(ledger, make_job("report"), ["m1"])
        pings = count_pings(ledger, monkeypatch)
        ledger.claim_recalls(job_pk, ids)
        ledger.record_recalls([CallOutcome(ids["m1"], "recalled", 0, "")], {ids["m1"]: True})
        assert pings == [], "no round trip of its own before each step"
        ledger.list_plans()
        assert pings == [1], "a plain session's connection is checked, as pool_pre_ping would"
    finally:
        ledger.dispose()


def test_a_step_on_a_connection_the_server_dropped_runs_again_on_a_new_one(pg_url: str) -> None:
    ledger = open_ledger(pg_url)
    try:
        job_pk, ids = record(ledger, make_job("report"), ["m1"])  # pooled, and used a moment ago: not pinged
        terminate(backend_pids(ledger))
        claim = ledger.claim_recalls(job_pk, ids)
        assert claim.to_call == ["m1"]
        terminate(backend_pids(ledger))
        assert [plan.id for plan in ledger.list_plans()] == [], "a plain session's connection was checked"
    finally:
        ledger.dispose()


def test_a_connection_idle_in_the_pool_is_checked_before_a_step(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_engine, "PING_IDLE_S", 0.0)
    ledger = open_ledger(pg_url)
    try:
        job_pk, ids = record(ledger, make_job("report"), ["m1"])
        terminate(backend_pids(ledger))
        pings = count_pings(ledger, monkeypatch)
        assert ledger.claim_recalls(job_pk, ids).to_call == ["m1"]
        assert pings == [1]
    finally:
        ledger.dispose()
