"""Schema migrations of the ledger, run programmatically (no alembic.ini needed).

Workers started together all migrate on start; only one may run the migrations at a time, and the others
must then find the schema at head and do nothing. On PostgreSQL a transaction-scoped advisory lock is taken
in the migration's own transaction (DDL is transactional there, so whoever waited sees the finished schema);
on a SQLite file, an exclusive ``flock`` on a sibling lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"

#: The advisory lock every process migrating a PostgreSQL ledger takes (a signed 64-bit key).
LOCK_NAME = "recall-worker ledger migrations"
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine``'s database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def sqlite_lock_path(engine: Engine) -> Path | None:
    """The lock file serializing migrations of a SQLite file ledger (None: not a SQLite file)."""
    database = engine.url.database
    if (
        engine.dialect.name != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return None
    return Path(f"{database}.migrate.lock")


@contextlib.contextmanager
def _exclusive(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; safe to call from several processes at once."""
    config = alembic_config(engine)
    with _exclusive(sqlite_lock_path(engine)), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(CAST(:key AS BIGINT))"), {"key": PG_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def revision(engine: Engine, message: str, rev_id: str) -> None:
    """Write a new migration by comparing the models with ``engine``'s (up-to-date) database."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
