"""Fixtures of the intake's tests: a migrated ledger database (SQLite file or a PostgreSQL schema), the
intake's store over it, and report builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.intake.receiver import receiver  # noqa: F401 - the webhook receiver fixture
from tests.intake.reports import QUIET_S, Clock
from tests.ledger.conftest import fresh_pg_schema
from worker.intake.store import IntakeStore, Timing
from worker.ledger import open_ledger
from worker.ledger.store import Ledger


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ledger URL; PostgreSQL gets its own schema, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """The ledger at ``database_url``, migrated."""
    ledger = open_ledger(database_url)
    yield ledger
    ledger.dispose()


@pytest.fixture
def clock() -> Clock:
    """The store's clock, set by the test."""
    return Clock()


@pytest.fixture
def store(ledger: Ledger, clock: Clock) -> IntakeStore:
    """The intake's store over ``ledger``: quiet period ``QUIET_S``, 5 reports a minute, one trusted
    reporter (``moderator1``)."""
    return IntakeStore(
        ledger.engine,
        timing=Timing(quiet_s=QUIET_S, max_wait_s=300),
        reporter_limit=5,
        trusted=frozenset({"moderator1"}),
        clock=clock,
    )
