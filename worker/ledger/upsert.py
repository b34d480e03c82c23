"""Atomic insert-if-absent and upsert (``INSERT … ON CONFLICT``) on the ledger's two databases.

Selecting a row and inserting it when missing races with another worker doing the same: one of them fails
on the unique key. ``ON CONFLICT`` decides in the database instead; on PostgreSQL an insert that meets a
row another transaction is inserting waits for that transaction, then skips (or updates) it.

Callers insert rows in a stable order (by key), so that two transactions never wait on each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.ledger.models import Base

#: Rows, or values of an IN list, per statement: well under SQLite's and PostgreSQL's parameter limits.
CHUNK = 200

T = TypeVar("T")
M = TypeVar("M", bound=Base)


def locked(session: Session, model: type[M], *where: Any) -> M:
    """The row of ``model`` matching ``where``, read afresh and locked until the transaction ends.

    ``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite a writing transaction holds the database already.
    Raises ``LookupError`` if there is no such row.
    """
    statement = select(model).where(*where).with_for_update().execution_options(populate_existing=True)
    row = session.scalars(statement).first()
    if row is None:
        raise LookupError(f"no {model.__tablename__} row matches")
    return row


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``model``'s table in the dialect of ``session``'s database (for ``on_conflict_*``)."""
    return _dialect_insert(session.get_bind().dialect.name, model)


def table_of(model: type[Base]) -> Table:
    """``model``'s table, for Core statements (no ORM bookkeeping on the hot path)."""
    table = model.__table__
    if not isinstance(table, Table):  # pragma: no cover - every model maps one table
        raise TypeError(f"{model.__name__} maps no single table")
    return table


def core_insert(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """A Core INSERT into ``table`` in the dialect of ``connection``'s database (for ``on_conflict_*``)."""
    return _dialect_insert(connection.dialect.name, table)


def _dialect_insert(name: str, target: type[Base] | Table) -> postgresql.Insert | sqlite.Insert:
    if name == "postgresql":
        return postgresql.insert(target)
    if name == "sqlite":
        return sqlite.insert(target)
    raise NotImplementedError(f"the ledger runs on PostgreSQL or SQLite, not {name}")


def insert_absent(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], *, key: Sequence[str]
) -> None:
    """Insert each of ``rows`` (in order, one ``executemany``) unless a row with the same ``key`` exists.

    Every row must have the same columns. One statement whatever the number of rows, so it is compiled
    once and cached, where a multi-row VALUES is compiled anew for each count.
    """
    if rows:
        statement = core_insert(connection, table).on_conflict_do_nothing(index_elements=key)
        connection.execute(statement, list(rows))
