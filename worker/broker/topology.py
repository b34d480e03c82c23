"""Queue names and declarations, connections, and confirmed publishing, for RabbitMQ and the embedded queue.

Everything is published to the default exchange with the queue name as routing key, which both
transports route the same way (the embedded transport keeps exchange bindings per process only).

RabbitMQ layout (prefix ``recall``):

- ``recall.jobs`` and ``recall.jobs.urgent``: the two lanes of jobs, quorum queues; a job redelivered more
  than ``x-delivery-limit`` times (a job that keeps killing workers) is dead-lettered to ``recall.dead`` by
  the broker itself. A job of priority :data:`worker.priority.URGENT` or more is published to the urgent
  lane, the others to ``recall.jobs``; the worker serves the urgent lane first.
- ``recall.retry.<N>ms`` and ``recall.retry.urgent.<N>ms``: quorum queues whose messages expire after N ms
  back into ``recall.jobs`` (``recall.jobs.urgent``); one queue per delay and lane, so a long delay never
  holds a short one behind it, and a retried job keeps its lane.
- ``recall.results``, ``recall.dead``, ``recall.escalations``: quorum queues of results, dead letters
  (with the reason in headers) and over-cap jobs awaiting human review.

Every queue that dead-letters does it *at least once* (``x-dead-letter-strategy: at-least-once``, which
needs ``x-overflow: reject-publish``): a message leaves its queue only once the target queue has it. By
default RabbitMQ dead-letters at most once, and a job expiring out of a retry queue while the broker
restarts was simply dropped.

Why two lanes rather than one queue with ``x-max-priority``: on RabbitMQ 3 a quorum queue is never a
priority queue (declared anew with the argument it is refused, ``invalid arg 'x-max-priority' … of queue
type rabbit_quorum_queue``; an existing one redeclared with it takes it and ignores it), and a classic queue,
which honours it, has no ``x-delivery-limit`` (nor the ``x-delivery-count`` the worker ends poison jobs by),
no at-least-once dead-lettering and no replication; nor can the existing quorum queue be redeclared as a
classic one (``PRECONDITION_FAILED - inequivalent arg 'x-queue-type'``). The lanes leave ``recall.jobs`` as
it was, so a deployment upgrades without redeclaring anything. Every job also carries its priority as the
message's ``priority`` property (which RabbitMQ 4's quorum queues read as two levels, 0-4 and 5 up: the
lanes' split).

The embedded queue has no TTL or dead-lettering; a delayed retry is a message whose ``x-delay-ms`` header
keeps it invisible for that long. It is one queue, ``recall.jobs``, that delivers higher priorities first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Connection, Producer, Queue

from worker import priority as prio
from worker.broker.sqlite import DELAY_HEADER
from worker.broker.sqlite import Transport as SqliteTransport

DELIVERY_LIMIT = 20
PERSISTENT = 2


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Names of every queue, under one prefix."""

    prefix: str = "recall"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def urgent(self) -> str:
        """The urgent lane of jobs (RabbitMQ only)."""
        return f"{self.prefix}.jobs.urgent"

    @property
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def escalations(self) -> str:
        return f"{self.prefix}.escalations"

    def retry(self, delay_ms: int, *, urgent: bool = False) -> str:
        """The queue holding retries of one delay, into ``jobs`` (or, ``urgent``, into the urgent lane)."""
        return f"{self.prefix}.retry.{'urgent.' if urgent else ''}{delay_ms}ms"

    def fixed(self) -> tuple[str, ...]:
        """The queues that always exist."""
        return (self.jobs, self.results, self.dead, self.escalations)


def is_embedded(broker_url: str) -> bool:
    """True for the on-disk SQLite queue."""
    return broker_url.startswith("sqlite://")


def connect(broker_url: str, *, heartbeat_s: int = 15, confirm: bool = False) -> Connection:
    """A kombu connection (not yet established) to ``broker_url``.

    RabbitMQ connections always carry an explicit heartbeat (kombu's default, 0, turns it off) and, when
    ``confirm``, publisher confirms.
    """
    if is_embedded(broker_url):
        path = broker_url.removeprefix("sqlite://").removeprefix("/") or "queue.db"
        # sqlite:////abs/path keeps its leading slash; sqlite:///rel/path is relative to the working dir
        if broker_url.startswith("sqlite:////"):
            path = "/" + path
        return Connection(transport=SqliteTransport, transport_options={"path": str(Path(path))})
    options: dict[str, Any] = {"confirm_publish": True} if confirm else {}
    # Bounded reconnects: kombu's defaults retry forever, which hangs a publisher on a dead broker.
    options.update(max_retries=3, interval_start=0.5, interval_step=1, interval_max=3)
    return Connection(broker_url, heartbeat=heartbeat_s, transport_options=options, connect_timeout=10)


def _dead_letter_to(queue: str) -> dict[str, Any]:
    """Quorum-queue arguments that dead-letter into ``queue``, at least once."""
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


class Topology:
    """Declares the queues of one prefix on one transport and knows each queue's arguments."""

    def __init__(self, names: QueueNames, *, embedded: bool) -> None:
        self.names = names
        self.embedded = embedded

    def lanes(self) -> tuple[str, ...]:
        """The queues jobs are consumed from, the one served first first: on RabbitMQ the urgent lane and
        the jobs queue; embedded, the jobs queue alone (it orders by priority itself)."""
        return (self.names.jobs,) if self.embedded else (self.names.urgent, self.names.jobs)

    def lane(self, priority: int) -> str:
        """The queue a job of ``priority`` is published to."""
        return self.names.urgent if not self.embedded and prio.is_urgent(priority) else self.names.jobs

    def priority_in(self, lane: str, priority: int) -> int:
        """``priority`` as a job delivered from ``lane`` keeps it: within the lane's range, so that its
        retries go back to the same lane (a producer may publish any priority to either lane)."""
        if self.embedded:
            return priority
        if lane == self.names.urgent:
            return max(priority, prio.URGENT)
        return min(priority, prio.URGENT - 1)

    def fixed(self) -> tuple[str, ...]:
        """The queues that always exist on this transport: on RabbitMQ, the urgent lane too."""
        return self.names.fixed() if self.embedded else (self.names.urgent, *self.names.fixed())

    def queue(self, name: str) -> Queue:
        """The kombu ``Queue`` of ``name``, with the arguments it must be declared with."""
        arguments: dict[str, Any] = {}
        if not self.embedded:
            arguments = {"x-queue-type": "quorum"}
            retry = f"{self.names.prefix}.retry."
            if name.startswith(retry):
                delay = name.removeprefix(retry)
                into = self.names.urgent if delay.startswith("urgent.") else self.names.jobs
                delay_ms = int(delay.removeprefix("urgent.").removesuffix("ms"))
                arguments |= _dead_letter_to(into) | {"x-message-ttl": delay_ms}
            elif name in (self.names.jobs, self.names.urgent):
                # The urgent lane is declared exactly as the jobs queue, whose arguments never change: a
                # redeclare with others would fail (PRECONDITION_FAILED) on every existing deployment.
                arguments |= _dead_letter_to(self.names.dead) | {"x-delivery-limit": DELIVERY_LIMIT}
        return Queue(name, routing_key=name, durable=True, auto_delete=False, queue_arguments=arguments)

    def declare(self, channel: Any, *names: str) -> None:
        """Declare ``names`` (default: the fixed queues) on ``channel``."""
        for name in names or self.fixed():
            self.queue(name)(channel).declare()


class Publisher:
    """Publishes persistent messages and, on RabbitMQ, waits for the broker's confirm (bounded)."""

    def __init__(
        self, connection: Connection, topology: Topology, *, confirm_timeout_s: float = 10.0
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.confirm_timeout_s = confirm_timeout_s
        self._producer: Producer | None = None
        self._declared: set[str] = set()

    def _channel_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.connection.default_channel)
        return self._producer

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        delay_s: float = 0,
        binary: bool = False,
        priority: int | None = None,
    ) -> None:
        """Publish ``body`` (JSON, or opaque bytes when ``binary``) to ``queue``; with ``delay_s``, to the
        retry path of that delay.

        With ``priority`` (0 to 9), the message carries it, and a job published to the jobs queue (or the
        urgent lane) goes to the lane of that priority, its delayed retry to that lane's retry queue.

        Returns once the message is safely stored (RabbitMQ confirm, or SQLite commit). Raises on failure,
        so a caller never acks a delivery whose outcome was not stored.
        """
        headers = dict(headers or {})
        names = self.topology.names
        target = queue
        if priority is not None:
            priority = prio.of_property(priority)
            if queue in (names.jobs, names.urgent):
                target = self.topology.lane(priority)
        if delay_s > 0:
            delay_ms = max(1, round(delay_s * 1000))
            if self.topology.embedded:
                headers[DELAY_HEADER] = delay_ms
            else:
                target = names.retry(delay_ms, urgent=target == names.urgent)
        try:
            self._publish(target, body, headers, binary, priority)
        except self.connection.recoverable_connection_errors + self.connection.recoverable_channel_errors:
            # One reconnect: the connection may simply have been idle-closed.
            self.reset()
            self.connection.ensure_connection(max_retries=3)
            self._publish(target, body, headers, binary, priority)

    def _publish(
        self, target: str, body: bytes, headers: dict[str, Any], binary: bool, priority: int | None
    ) -> None:
        producer = self._channel_producer()
        if target not in self._declared:
            self.topology.declare(producer.channel, target)
            self._declared.add(target)
        producer.publish(
            body,
            routing_key=target,
            exchange="",
            content_type="application/octet-stream" if binary else "application/json",
            content_encoding="binary" if binary else "utf-8",
            delivery_mode=PERSISTENT,
            headers=headers,
            priority=priority,
            timeout=self.confirm_timeout_s,
            confirm_timeout=self.confirm_timeout_s,
        )

    def reset(self) -> None:
        """Forget the channel (after a connection error)."""
        self._producer = None
        self._declared.clear()
