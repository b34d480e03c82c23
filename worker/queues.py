"""Operator tools over the queues: submit jobs, read results and dead letters, replay dead letters.

Messages are read as raw bytes, never decoded by kombu: a dead letter is often there precisely because it
does not decode (a bad ``compression`` header, a body that is not JSON), and the tools must still list and
replay it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection
from kombu.exceptions import OperationalError

from worker import priority as prio
from worker.broker import headers as h
from worker.broker.topology import Publisher, QueueNames, Topology, connect, is_embedded
from worker.config import Settings, mask_url
from worker.jobs import Job
from worker.retry import RetryPolicy

#: How long an operator tool waits for the broker before saying it cannot be reached.
CONNECT_TIMEOUT_S = 3.0


class BrokerUnreachable(ConnectionError):
    """The broker of ``RECALL_BROKER_URL`` could not be reached; the message names it, password masked."""

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = mask_url(url)
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(f"cannot reach the broker at {self.url} ({reason}); check RECALL_BROKER_URL")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message read from a queue, as it was sent: raw body, headers, what the body says it is."""

    body: bytes
    headers: dict[str, Any]
    content_type: str | None = None
    content_encoding: str | None = None
    priority: int = 0


class Queues:
    """The queues of one deployment (broker URL and prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = QueueNames(settings.queue_prefix)
        self.topology = Topology(self.names, embedded=is_embedded(settings.broker_url))

    def _connect(self, *, confirm: bool = False) -> Connection:
        """A connection, established; :class:`BrokerUnreachable` after one quick retry if it cannot be."""
        conn = connect(self.settings.broker_url, heartbeat_s=self.settings.heartbeat_s, confirm=confirm)
        if not is_embedded(self.settings.broker_url):
            conn.connect_timeout = CONNECT_TIMEOUT_S
        try:
            conn.ensure_connection(
                max_retries=1, interval_start=0.2, interval_step=0, timeout=CONNECT_TIMEOUT_S
            )
        except (OSError, OperationalError, *conn.connection_errors) as exc:
            conn.release()
            raise BrokerUnreachable(self.settings.broker_url, exc) from exc
        return conn

    def check_reachable(self) -> None:
        """Connect once and disconnect: :class:`BrokerUnreachable` if the broker cannot be reached."""
        with self._connect():
            pass

    def submit(self, jobs: Iterable[Job], *, rerun: bool = False, priority: int = prio.SUBMIT_DEFAULT) -> int:
        """Publish ``jobs`` with ``priority`` to the jobs queue (on RabbitMQ, the lane of that priority),
        confirmed; returns how many.

        With ``rerun``, a job the ledger holds as ``failed`` runs again instead of having its stored result
        published again (what ``dlq replay`` and ``plans requeue`` ask for).
        """
        with self._connect(confirm=True) as conn:
            publisher = Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s)
            count = 0
            for job in jobs:
                headers: dict[str, Any] = {h.JOB_ID: job.job_id}
                if rerun:
                    headers[h.REPLAYED_AT] = h.now_stamp()
                publisher.publish(
                    self.names.jobs,
                    job.model_dump_json(exclude_none=True).encode(),
                    headers=headers,
                    priority=priority,
                )
                count += 1
        return count

    def publish_jobs(self, jobs: Sequence[tuple[str, bytes, int]]) -> None:
        """Publish job documents as they are, (job id, body, priority) each, to the jobs queue (the lane of
        each one's priority); returns once the broker confirmed every one (the intake's outbox relay)."""
        with self._connect(confirm=True) as conn:
            publisher = Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s)
            for job_id, body, priority in jobs:
                publisher.publish(self.names.jobs, body, headers={h.JOB_ID: job_id}, priority=priority)

    def publish_raw(
        self,
        queue: str,
        body: bytes,
        headers: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
    ) -> None:
        """Publish an arbitrary body (tests, replays); with ``priority``, a job goes to its lane."""
        with self._connect(confirm=True) as conn:
            Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s).publish(
                queue, body, headers=headers, priority=priority
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
                message = _get_raw(bound.channel, queue)
                if message is None:
                    if count or time.monotonic() >= deadline:
                        return
                    time.sleep(0.1)
                    continue
                yield Envelope(
                    h.raw_body(message),
                    h.headers_of(message),
                    getattr(message, "content_type", None),
                    getattr(message, "content_encoding", None),
                    h.priority_of(message),
                )
                count += 1
                if take:
                    message.ack()

    def replay_dead(self, *, job_ids: set[str] | None = None) -> int:
        """Move dead letters (all, or those of ``job_ids``) back to the jobs queue as first attempts, each
        with the priority it had (into the lane of that priority).

        A replayed job that the ledger holds as ``failed`` runs again (``x-replayed-at``); one it holds as
        settled otherwise has its stored result published again.
        """
        moved = 0
        with self._connect(confirm=True) as conn:
            publisher = Publisher(conn, self.topology, confirm_timeout_s=self.settings.confirm_timeout_s)
            channel = conn.channel()
            self.topology.declare(channel, self.names.dead)
            skipped = []
            while (message := _get_raw(channel, self.names.dead)) is not None:
                headers = h.headers_of(message)
                if job_ids is not None and headers.get(h.JOB_ID) not in job_ids:
                    skipped.append(message)
                    continue
                replayed = {**h.own(headers, (h.JOB_ID,)), h.REPLAYED_AT: h.now_stamp()}
                publisher.publish(
                    self.names.jobs, h.raw_body(message), headers=replayed, priority=h.priority_of(message)
                )
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
        """Delete every queue of this prefix, the retry queues of the settings' delays included (tests)."""
        delays = RetryPolicy(
            self.settings.max_attempts, self.settings.retry_base_delay_s, self.settings.retry_max_delay_s
        ).delays_s()
        delays_ms = [round(delay * 1000) for delay in delays]
        delays_ms.append(round(self.settings.credential_recheck_s * 1000))
        retries = [self.names.retry(ms, urgent=urgent) for ms in delays_ms for urgent in (False, True)]
        with self._connect() as conn:
            channel = conn.channel()
            for name in (*self.names.fixed(), self.names.urgent, *retries, *extra):
                try:
                    self.topology.queue(name)(channel).delete()
                except Exception:  # noqa: BLE001 - a queue that does not exist is already gone
                    channel = conn.channel()


def _get_raw(channel: Any, queue: str) -> Any:
    """One message from ``queue``, unacknowledged, wrapped by the transport but never decoded.

    ``Queue.get`` re-raises a decoding error (a bad ``compression`` header) and loses the message's place;
    here such a message comes back with its raw body, so it can be shown and replayed.
    """
    raw = channel.basic_get(queue=queue, no_ack=False)
    if raw is None:
        return None
    to_python = getattr(channel, "message_to_python", None)
    return to_python(raw) if to_python is not None else raw
