"""Broker fixtures: each worker test runs on the embedded queue and on the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import RABBITMQ, require

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The broker of one test run: the on-disk queue, or RabbitMQ (required under CI)."""
    if request.param == "rabbitmq":
        require(RABBITMQ)
        yield AMQP_URL
    else:
        yield f"sqlite:///{tmp_path}/queue.db"
