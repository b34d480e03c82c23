"""Alembic environment: runs on the connection the ledger hands over in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.ledger.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the ledger always passes its connection
    raise RuntimeError("run migrations through worker.ledger (recall-worker ledger upgrade)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
