"""Driving the broker in tests: publishing exact bytes, reading a queue's depth, restarting RabbitMQ."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import amqp
from kombu import Producer

from tests.services import reachable
from tests.worker.harness import wait_until
from worker.broker.topology import Topology, connect, is_embedded
from worker.config import Settings
from worker.queues import Queues


def publish(
    settings: Settings,
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    content_type: str | None = "application/json",
    content_encoding: str | None = "utf-8",
    queue: str | None = None,
) -> None:
    """Publish exactly these bytes and properties, as a careless or hostile producer might."""
    topology = Topology(Queues(settings).names, embedded=is_embedded(settings.broker_url))
    target = queue or topology.names.jobs
    with connect(settings.broker_url) as conn:
        channel = conn.channel()
        topology.declare(channel, target)
        Producer(channel).publish(
            body,
            routing_key=target,
            exchange="",
            headers=headers or {},
            content_type=content_type,
            content_encoding=content_encoding,
            delivery_mode=2,
        )


def queue_depth(name: str) -> int:
    """Messages ready in ``name`` (0 if it does not exist)."""
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare(name, passive=True).message_count)
        except amqp.exceptions.NotFound:
            return 0


def restart_rabbitmq(down_s: float) -> None:
    """``stop_app``, stay down ``down_s``, ``start_app``; waits until the broker answers again."""
    try:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
        time.sleep(down_s)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=180)
        wait_until(lambda: reachable("127.0.0.1", 5672), 60, "RabbitMQ back")
