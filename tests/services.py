"""Reaching the loopback services: skip with a reason on a developer's machine, fail under CI."""

from __future__ import annotations

import os
import socket

import pytest

RABBITMQ = ("RabbitMQ", "127.0.0.1", 5672)
REDIS = ("Redis", "127.0.0.1", 6379)
POSTGRES = ("PostgreSQL", "127.0.0.1", 5432)


def reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a TCP connection to ``host:port`` opens."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def require(service: tuple[str, str, int]) -> None:
    """Skip the test if ``service`` is down, unless running under CI, where that is a failure."""
    name, host, port = service
    if reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must have it running", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
