"""The ledger database of a test: a SQLite file, or a fresh schema on the real PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.services import POSTGRES, require
from worker.ledger import open_ledger
from worker.ledger.store import Ledger

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """The URL of a new, empty schema on the real PostgreSQL, dropped afterwards."""
    require(POSTGRES)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


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
    """The ledger at ``database_url``, migrated (a module may define its own)."""
    ledger = open_ledger(database_url)
    yield ledger
    ledger.dispose()
