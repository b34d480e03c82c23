"""Ledger migrations, and the ledger's command line (plans, audit, replay, evidence, breaker)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tests.keyword_rules import StaticRules
from tests.ledger.helpers import cli as run_cli
from tests.ledger.test_ledger import c2c_job, seed
from tests.worker.harness import ThreadWorker, wait_results, worker_settings
from worker.config import Settings
from worker.emulator.server import EmulatorThread
from worker.ledger import open_ledger
from worker.ledger.migrate import MIGRATIONS, upgrade
from worker.ledger.models import Base
from worker.ledger.store import make_engine
from worker.queues import Queues

TABLES = {
    "jobs",
    "messages",
    "matches",
    "evidence",
    "recalls",
    "plans",
    "plan_items",
    "rule_stats",
    "breakers",
    "message_decisions",
    "alembic_version",
}
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    first = open_ledger(database_url)
    first.dispose()
    second = open_ledger(database_url)  # upgrading an up-to-date schema does nothing
    try:
        assert set(inspect(second.engine).get_table_names()) >= TABLES
        with second.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    finally:
        second.dispose()


def test_the_models_and_the_migrations_agree(database_url: str) -> None:
    ledger = open_ledger(database_url)
    try:
        with ledger.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        ledger.dispose()


def test_upgrading_a_ledger_keeps_every_row(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0001")
        at = "2026-01-01 00:00:00+00:00"
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO jobs (id, job_id, conversation_key, conversation, suspect, mode, ruleset,"
                    " ruleset_version, report, window_since, window_until, status, attempts,"
                    " messages_scanned, pages_fetched, created_at) VALUES (1, 'old-job', 'c2c:bob|eve',"
                    " '{}', 'eve', 'recall', 'default', 'v0', '{}', 0, 10, 'done', 1, 5, 1, :at)"
                ),
                {"at": at},
            )
            connection.execute(
                text(
                    "INSERT INTO messages (id, conversation_key, msg_key, sender, msg_time)"
                    " VALUES (1, 'c2c:bob|eve', 'k1', 'eve', 5)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO evidence (message_pk, job_pk, body, cloud_custom_data, content_hash,"
                    " captured_at) VALUES (1, 1, '[]', '', 'h', :at)"
                ),
                {"at": at},
            )
            connection.execute(
                text(
                    "INSERT INTO plans (id, job_pk, reason, status, created_at)"
                    " VALUES (1, 1, 'dry_run', 'rejected', :at)"
                ),
                {"at": at},
            )
            connection.execute(text("INSERT INTO plan_items (plan_pk, message_pk) VALUES (1, 1)"))
            connection.execute(
                text(
                    "INSERT INTO recalls (message_pk, job_pk, state, info, planned_at)"
                    " VALUES (1, 1, 'recalled', '', :at)"
                ),
                {"at": at},
            )
        upgrade(engine)
        with engine.connect() as connection:
            for table in ("jobs", "messages", "evidence", "plans", "plan_items", "recalls"):
                assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 1, table  # noqa: S608
            assert connection.execute(text("SELECT fingerprint, result FROM jobs")).one() == (None, None)
    finally:
        engine.dispose()
    ledger = open_ledger(database_url)
    try:
        assert ledger.audit("old-job")["messages_scanned"] == 5
    finally:
        ledger.dispose()


def test_sqlite_ledger_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/l.db")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        settings.database_url, *args, broker_url=settings.broker_url, queue_prefix=settings.queue_prefix
    )


@pytest.fixture
def settings_with_plan(emulator: EmulatorThread, tmp_path: Path) -> tuple[Settings, int, list[str]]:
    settings = worker_settings(
        f"sqlite:///{tmp_path}/q.db", emulator.url, database_url=f"sqlite:///{tmp_path}/l.db"
    )
    keys = seed(emulator.url, [("eve", "bob")], [(0, "a", "buy spam now"), (0, "a", "hello")])
    queues = Queues(settings)
    queues.submit(
        [c2c_job("preview-cli", "eve", "bob", mode="dry_run", report={"reporter": "bob", "reason": "spam"})]
    )
    with ThreadWorker(settings, StaticRules()):
        [result] = wait_results(queues, 1)
    return settings, result["plan_ids"]["dry_run"], keys


def test_plans_commands(settings_with_plan: tuple[Settings, int, list[str]]) -> None:
    settings, plan_id, keys = settings_with_plan
    listing = cli(settings, "plans", "list")
    assert listing.returncode == 0, listing.stderr
    assert f"{plan_id}  pending" in listing.stdout and "preview-cli" in listing.stdout
    shown = json.loads(cli(settings, "plans", "show", str(plan_id)).stdout)
    assert [item["msg_key"] for item in shown["items"]] == [keys[0]]
    assert shown["items"][0]["matches"][0]["evidence"] == "spam"
    refused = cli(settings, "plans", "approve", str(plan_id))
    assert refused.returncode == 2 and "--by" in refused.stderr
    approved = cli(settings, "plans", "approve", str(plan_id), "--by", "ann")
    assert approved.returncode == 0, approved.stderr
    assert f"queued plan-{plan_id}-apply" in approved.stdout
    again = cli(settings, "plans", "reject", str(plan_id), "--by", "bo")
    assert again.returncode == 2 and "approved, not pending" in again.stderr
    [queued] = Queues(settings).read(Queues(settings).names.jobs, take=True)
    assert json.loads(queued.body)["apply_plan"] == plan_id


def test_audit_replay_evidence_and_breaker_commands(
    settings_with_plan: tuple[Settings, int, list[str]], tmp_path: Path
) -> None:
    settings, _, keys = settings_with_plan
    audit = json.loads(cli(settings, "audit", "preview-cli").stdout)
    assert audit["status"] == "dry_run"
    assert audit["messages"][0]["evidence"]["MsgBody"][0]["MsgContent"]["Text"] == "buy spam now"
    assert cli(settings, "audit", "nope").returncode == 2
    replay = cli(settings, "replay", "--rules", "rules/examples/default.yaml", "--since", "0", "--json")
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    assert report["jobs"] == 1 and report["messages"] == 1
    assert report["rules"]["kw-spam"]["dropped"] == [["preview-cli", keys[0]]], (
        "the shipped rules do not ban 'spam'"
    )
    purge = cli(settings, "evidence", "purge", "--older-than-days", "1", "--yes")
    assert purge.returncode == 0 and "purged the content of 0 evidence" in purge.stdout
    assert cli(settings, "breaker", "list").stdout == ""
    reset = cli(settings, "breaker", "reset", "kw-spam")
    assert reset.returncode == 2 and "no tripped breaker" in reset.stderr
