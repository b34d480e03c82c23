"""Engines of the ledger's databases.

SQLite: WAL, full sync, foreign keys and a busy timeout on every connection; and transactions that write
begin with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe: the driver's own BEGIN is turned off
and the engine's ``begin`` event emits ours). A deferred transaction that reads and then writes fails with
``SQLITE_BUSY_SNAPSHOT`` when another connection wrote in between, and no busy timeout retries that;
taking the write lock first makes concurrent writers queue instead. Reads (on :func:`reader`) begin
deferred, so they never wait for a writer.

PostgreSQL: a pooled connection is checked with a round trip before it is handed out again (``pre_ping``),
as SQLAlchemy's ``pool_pre_ping`` does; except while :data:`retrying_dropped` is set, for callers that run
their transaction once more on a dropped connection (the ledger's job steps): those get a connection that
came back to the pool less than :data:`PING_IDLE_S` ago unchecked. On a busy worker the check would be a
transaction of its own for each of theirs; if the server did drop it, the first statement fails as a
disconnect, the pool replaces every connection as old, and the caller runs again on a new one.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

#: Execution option marking a read-only engine: its SQLite transactions begin deferred.
READ_ONLY = "ledger_read_only"
#: Seconds a pooled PostgreSQL connection may sit idle and still be handed out unchecked to a caller that
#: runs its transaction again on a dropped connection (see :data:`retrying_dropped`).
PING_IDLE_S = 5.0
#: True while a caller that runs its transaction again on a dropped connection checks one out.
retrying_dropped: ContextVar[bool] = ContextVar("ledger_retrying_dropped", default=False)
#: Where a pooled connection's record notes when it went back to the pool (``time.monotonic()``).
_IDLE_SINCE = "ledger_idle_since"


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


def _ping_on_checkout(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection with a round trip when it leaves the pool again (not a new one): always,
    or, while :data:`retrying_dropped` is set, only after ``idle_s`` or more in the pool. A connection the
    server dropped is replaced, with every other pooled one, as ``pool_pre_ping`` does."""

    def checked_in(_: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _: PoolProxiedConnection) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or (retrying_dropped.get() and time.monotonic() - since < idle_s):
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(str(exc)) from exc  # the pool connects anew
            raise

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


def make_engine(url: str | URL, *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``: SQLite files get WAL, full sync, foreign keys, a busy timeout, and
    ``BEGIN IMMEDIATE`` for transactions that may write. ``pre_ping`` checks a PostgreSQL connection with
    a round trip each time it leaves the pool (but see :data:`retrying_dropped`; off for a caller that
    retries every transaction on a dropped connection)."""
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
    engine = create_engine(parsed)
    if pre_ping:
        _ping_on_checkout(engine, PING_IDLE_S)
    return engine


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
