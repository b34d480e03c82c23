"""Engines of the ledger's databases.

SQLite: WAL, full sync, foreign keys and a busy timeout on every connection; and transactions that write
begin with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe: the driver's own BEGIN is turned off
and the engine's ``begin`` event emits ours). A deferred transaction that reads and then writes fails with
``SQLITE_BUSY_SNAPSHOT`` when another connection wrote in between, and no busy timeout retries that;
taking the write lock first makes concurrent writers queue instead. Reads (on :func:`reader`) begin
deferred, so they never wait for a writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

#: Execution option marking a read-only engine: its SQLite transactions begin deferred.
READ_ONLY = "ledger_read_only"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own; _sqlite_begin does
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str | URL, *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``: SQLite files get WAL, full sync, foreign keys, a busy timeout, and
    ``BEGIN IMMEDIATE`` for transactions that may write. ``pre_ping`` checks a PostgreSQL connection with
    a round trip each time it leaves the pool (off for a caller that retries on a dropped connection)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=pre_ping)


def reader(engine: Engine) -> Engine:
    """``engine`` for read-only transactions (same pool)."""
    return engine.execution_options(**{READ_ONLY: True})


def make_async_engine(url: str | URL) -> AsyncEngine | None:
    """An asyncio engine for a PostgreSQL ``url`` (psycopg's async mode, no pre-ping); None for SQLite,
    which has no async driver here."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return None
    return create_async_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=False)
