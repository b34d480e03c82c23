"""Fixtures of the intake's tests: a migrated ledger database (SQLite file or a PostgreSQL schema), the
intake's store over it, and report builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledger.conftest import fresh_pg_schema
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
