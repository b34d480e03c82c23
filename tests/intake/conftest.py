"""Fixtures of the intake's tests: the intake's store over the ``ledger`` fixture (SQLite, PostgreSQL), its
clock, and the webhook receiver."""

from __future__ import annotations

import pytest

from tests.intake.receiver import receiver  # noqa: F401 - the webhook receiver fixture
from tests.intake.reports import QUIET_S, Clock
from worker.intake.store import IntakeStore, Timing
from worker.ledger.store import Ledger


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
