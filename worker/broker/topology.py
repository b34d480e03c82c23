"""Queue names and declarations, connections, and confirmed publishing, for RabbitMQ and the embedded queue.

Everything is published to the default exchange with the queue name as routing key, which both
transports route the same way (the embedded transport keeps exchange bindings per process only).

RabbitMQ layout (prefix ``recall``):

- ``recall.jobs``: quorum queue of jobs; a job redelivered more than ``x-delivery-limit`` times (a job
  that keeps killing workers) is dead-lettered to ``recall.dead`` by the broker itself.
- ``recall.retry.<N>ms``: quorum queues whose messages expire after N ms back into ``recall.jobs``;
  one queue per delay, so a long delay never holds a short one behind it.
- ``recall.results``, ``recall.dead``, ``recall.escalations``: quorum queues of results, dead letters
  (with the reason in headers) and over-cap jobs awaiting human review.

Every queue that dead-letters does it *at least once* (``x-dead-letter-strategy: at-least-once``, which
needs ``x-overflow: reject-publish``): a message leaves its queue only once the target queue has it. By
default RabbitMQ dead-letters at most once, and a job expiring out of a retry queue while the broker
restarts was simply dropped.

The embedded queue has no TTL or dead-lettering; a delayed retry is a message whose ``x-delay-ms`` header
keeps it invisible for that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Connection, Producer, Queue

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
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def escalations(self) -> str:
        return f"{self.prefix}.escalations"

    def retry(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

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

    def queue(self, name: str) -> Queue:
        """The kombu ``Queue`` of ``name``, with the arguments it must be declared with."""
        arguments: dict[str, Any] = {}
        if not self.embedded:
            arguments = {"x-queue-type": "quorum"}
            if name.startswith(f"{self.names.prefix}.retry."):
                delay_ms = int(name.rsplit(".", 1)[1].removesuffix("ms"))
                arguments |= _dead_letter_to(self.names.jobs) | {"x-message-ttl": delay_ms}
            elif name == self.names.jobs:
                arguments |= _dead_letter_to(self.names.dead) | {"x-delivery-limit": DELIVERY_LIMIT}
        return Queue(name, routing_key=name, durable=True, auto_delete=False, queue_arguments=arguments)

    def declare(self, channel: Any, *names: str) -> None:
        """Declare ``names`` (default: the fixed queues) on ``channel``."""
        for name in names or self.names.fixed():
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
    ) -> None:
        """Publish ``body`` (JSON, or opaque bytes when ``binary``) to ``queue``; with ``delay_s``, to the
        retry path of that delay.

        Returns once the message is safely stored (RabbitMQ confirm, or SQLite commit). Raises on failure,
        so a caller never acks a delivery whose outcome was not stored.
        """
        headers = dict(headers or {})
        target = queue
        if delay_s > 0:
            delay_ms = max(1, round(delay_s * 1000))
            if self.topology.embedded:
                headers[DELAY_HEADER] = delay_ms
            else:
                target = self.topology.names.retry(delay_ms)
        try:
            self._publish(target, body, headers, binary)
        except self.connection.recoverable_connection_errors + self.connection.recoverable_channel_errors:
            # One reconnect: the connection may simply have been idle-closed.
            self.reset()
            self.connection.ensure_connection(max_retries=3)
            self._publish(target, body, headers, binary)

    def _publish(self, target: str, body: bytes, headers: dict[str, Any], binary: bool) -> None:
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
            timeout=self.confirm_timeout_s,
            confirm_timeout=self.confirm_timeout_s,
        )

    def reset(self) -> None:
        """Forget the channel (after a connection error)."""
        self._producer = None
        self._declared.clear()
