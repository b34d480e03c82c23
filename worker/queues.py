"""Operator tools over the queues: submit jobs, read results and dead letters, replay dead letters."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kombu import Connection

from worker.broker.topology import Publisher, QueueNames, Topology, connect, is_embedded
from worker.config import Settings
from worker.jobs import Job

REPLAY_DROP_HEADERS = (
    "x-attempt",
    "x-dead-reason",
    "x-dead-error",
    "x-dead-at",
    "x-attempts",
    "x-last-error",
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message read from a queue."""

    body: bytes
    headers: dict[str, Any]


class Queues:
    """The queues of one deployment (broker URL and prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = QueueNames(settings.queue_prefix)
        self.topology = Topology(self.names, embedded=is_embedded(settings.broker_url))

    def _connect(self, *, confirm: bool = False) -> Connection:
        conn = connect(self.settings.broker_url, heartbeat_s=self.settings.heartbeat_s, confirm=confirm)
        conn.ensure_connection(max_retries=3)
        return conn

    def submit(self, jobs: Iterable[Job]) -> int:
        """Publish ``jobs`` to the jobs queue (confirmed); returns how many."""
        with self._connect(confirm=True) as conn:
            publisher = Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s)
            count = 0
            for job in jobs:
                publisher.publish(
                    self.names.jobs,
                    job.model_dump_json(exclude_none=True).encode(),
                    headers={"x-job-id": job.job_id},
                )
                count += 1
        return count

    def publish_raw(self, queue: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        """Publish an arbitrary body (tests, replays)."""
        with self._connect(confirm=True) as conn:
            Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s).publish(
                queue, body, headers=headers
            )

    def read(
        self, queue: str, *, limit: int | None = None, take: bool = False, wait_s: float = 0.0
    ) -> list[Envelope]:
        """Read up to ``limit`` messages from ``queue``; ``take`` removes them, otherwise they stay.

        Without ``take`` the messages are left unacknowledged and the connection is closed, which puts
        them back in order. ``wait_s`` keeps polling that long for the first message.
        """
        return list(self._iterate(queue, limit=limit, take=take, wait_s=wait_s))

    def _iterate(self, queue: str, *, limit: int | None, take: bool, wait_s: float) -> Iterator[Envelope]:
        with self._connect() as conn:
            channel = conn.channel()
            self.topology.declare(channel, queue)
            bound = self.topology.queue(queue)(channel)
            deadline = time.monotonic() + wait_s
            count = 0
            while limit is None or count < limit:
                message = bound.get(no_ack=False, accept=None)
                if message is None:
                    if count or time.monotonic() >= deadline:
                        return
                    time.sleep(0.1)
                    continue
                body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
                yield Envelope(body, dict(message.headers or {}))
                count += 1
                if take:
                    message.ack()

    def replay_dead(self, *, job_ids: set[str] | None = None) -> int:
        """Move dead letters (all, or those of ``job_ids``) back to the jobs queue as first attempts."""
        moved = 0
        with self._connect(confirm=True) as conn:
            publisher = Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s)
            channel = conn.channel()
            self.topology.declare(channel, self.names.dead)
            dead = self.topology.queue(self.names.dead)(channel)
            skipped = []
            while (message := dead.get(no_ack=False, accept=None)) is not None:
                headers = dict(message.headers or {})
                if job_ids is not None and headers.get("x-job-id") not in job_ids:
                    skipped.append(message)
                    continue
                clean = {k: v for k, v in headers.items() if k not in REPLAY_DROP_HEADERS}
                clean["x-replayed-at"] = int(time.time())
                body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
                publisher.publish(self.names.jobs, body, headers=clean)
                message.ack()
                moved += 1
            for message in skipped:
                message.requeue()
        return moved

    def purge(self, *queues: str) -> None:
        """Empty ``queues`` (tests and demos)."""
        with self._connect() as conn:
            channel = conn.channel()
            for name in queues:
                self.topology.declare(channel, name)
                self.topology.queue(name)(channel).purge()

    def delete_all(self, extra: Iterable[str] = ()) -> None:
        """Delete every queue of this prefix (tests)."""
        with self._connect() as conn:
            channel = conn.channel()
            for name in (*self.names.fixed(), *extra):
                try:
                    self.topology.queue(name)(channel).delete()
                except Exception:  # noqa: BLE001 - a queue that does not exist is already gone
                    channel = conn.channel()
