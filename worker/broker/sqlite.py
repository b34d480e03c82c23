"""An embedded, on-disk kombu transport on SQLite, with at-least-once delivery.

Why not kombu's SQLAlchemy transport: it marks a delivered row invisible and never deletes or restores it,
so a worker that dies loses what it held, and it cannot delay a message. Here:

- a delivered row is *leased* to the consuming process (pid and start time) and deleted only on ack;
- a requeue, or a clean close with unacked messages, releases the lease in place (order kept);
- a lease held by a process that no longer exists is released when any process next reads the queue, so a
  crashed worker's messages come back; the database is a local file, so process liveness is a sound test;
- a message published with header ``x-delay-ms`` becomes visible only after that delay (delayed retries);
- a queue delivers its visible messages by priority (the message's ``priority`` property, 0 to 9), higher
  first, and in the order they became visible within one priority.

A queue file written before priorities is given the ``priority`` column (every message in it: 0) when it is
first opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import orjson
from kombu.transport import virtual

from worker.priority import of_property

DELAY_HEADER = "x-delay-ms"
_ROW = "sqlite_row_id"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    visible_at REAL NOT NULL,
    lessee TEXT,
    priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
"""
#: After the column exists (a file from before priorities gets it first): the order messages are taken in.
#: It covers every lookup the index of earlier versions (``messages_ready``) served, so that one is dropped:
#: one index fewer to update on each publish, lease and ack.
_PRIORITY_INDEX = (
    "CREATE INDEX IF NOT EXISTS messages_next ON messages (queue, lessee, priority DESC, visible_at, id)"
)
#: The next message a queue hands out (by ``messages_next``): highest priority, then first visible.
NEXT_MESSAGE = (
    "SELECT id, payload FROM messages WHERE queue = ? AND lessee IS NULL AND visible_at <= ? "
    "ORDER BY priority DESC, visible_at, id LIMIT 1"
)


def _add_priority_column(db: sqlite3.Connection) -> None:
    """Give a queue file from before priorities its ``priority`` column; safe against a racing process."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if "priority" not in columns:
        try:
            db.execute("ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise
    db.execute(_PRIORITY_INDEX)
    db.execute("DROP INDEX IF EXISTS messages_ready")


def _process_token(pid: int) -> str | None:
    """``pid:start-time``: tells a live process from a later one that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return f"{pid}:{int(fields[19])}"
    except (OSError, IndexError, ValueError):
        return None


def _alive(token: str) -> bool:
    pid_text, _, _ = token.partition(":")
    return pid_text.isdigit() and _process_token(int(pid_text)) == token


class Channel(virtual.Channel):  # type: ignore[misc]
    """A channel over one SQLite connection."""

    _lock = threading.RLock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.connection.client.transport_options
        path = Path(options.get("path") or self.connection.client.hostname or "queue.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        _add_priority_column(self._db)
        self._token = _process_token(os.getpid()) or f"{os.getpid()}:0"
        self._last_sweep = 0.0
        self._sweep_dead_leases()

    # storage ----------------------------------------------------------------------------------------

    def _sweep_dead_leases(self) -> None:
        """Release rows leased to processes that have exited (crashed workers)."""
        self._last_sweep = time.monotonic()
        with self._lock:
            lessees = [
                row[0]
                for row in self._db.execute("SELECT DISTINCT lessee FROM messages WHERE lessee IS NOT NULL")
            ]
            for lessee in lessees:
                if lessee != self._token and not _alive(lessee):
                    self._db.execute("UPDATE messages SET lessee = NULL WHERE lessee = ?", (lessee,))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        delay_ms = (message.get("headers") or {}).get(DELAY_HEADER) or 0
        message.get("properties", {}).pop(_ROW, None)
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (queue, payload, visible_at, priority) VALUES (?, ?, ?, ?)",
                (
                    queue,
                    orjson.dumps(message),
                    time.time() + float(delay_ms) / 1000,
                    of_property((message.get("properties") or {}).get("priority")),
                ),
            )

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        if time.monotonic() - self._last_sweep > 5:
            self._sweep_dead_leases()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(NEXT_MESSAGE, (queue, time.time())).fetchone()
                if row is not None:
                    self._db.execute("UPDATE messages SET lessee = ? WHERE id = ?", (self._token, row[0]))
            finally:
                self._db.execute("COMMIT")
        if row is None:
            raise Empty()
        message: dict[str, Any] = orjson.loads(row[1])
        message.setdefault("properties", {})[_ROW] = row[0]
        return message

    def _row_of(self, delivery_tag: Any) -> int | None:
        message = self.qos._delivered.get(delivery_tag)
        row = message.properties.get(_ROW) if message is not None else None
        return row if isinstance(row, int) else None

    def _delete_row(self, row: int | None) -> None:
        if row is not None:
            with self._lock:
                self._db.execute("DELETE FROM messages WHERE id = ?", (row,))

    def _restore(self, message: Any) -> None:
        row = message.properties.get(_ROW)
        if isinstance(row, int):
            with self._lock:
                self._db.execute("UPDATE messages SET lessee = NULL WHERE id = ?", (row,))
        else:
            super()._restore(message)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._delete_row(self._row_of(delivery_tag))
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if not requeue:
            self._delete_row(self._row_of(delivery_tag))
        super().basic_reject(delivery_tag, requeue=requeue)

    def _size(self, queue: str) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ? AND lessee IS NULL", (queue,)
            ).fetchone()
        return int(count)

    def _purge(self, queue: str) -> int:
        with self._lock:
            cursor = self._db.execute("DELETE FROM messages WHERE queue = ? AND lessee IS NULL", (queue,))
        return cursor.rowcount

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE queue = ?", (queue,))
            self._db.execute("DELETE FROM queues WHERE name = ?", (queue,))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM queues WHERE name = ?", (queue,)).fetchone() is not None

    def close(self) -> None:
        super().close()  # restores unacked messages first
        self._db.close()


class Transport(virtual.Transport):  # type: ignore[misc]
    """``Connection(transport=Transport, transport_options={"path": "queue.db"})``."""

    Channel = Channel
    polling_interval = 0.05
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(asynchronous=False, exchange_type=frozenset(["direct"]))

    def driver_version(self) -> str:
        return sqlite3.sqlite_version
