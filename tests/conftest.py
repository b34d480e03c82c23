"""Shared fixtures: an emulator per session (in-process and as a subprocess), clients bound to it; a ledger
database (a SQLite file, or a fresh schema on the real PostgreSQL) and the ledger over it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.ledger.conftest import fresh_pg_schema
from tests.services import REDIS, free_port, require
from worker.emulator.gateway import EmulatorConfig
from worker.emulator.server import EmulatorThread
from worker.ledger import open_ledger
from worker.ledger.store import Ledger
from worker.tim.client import RetryPolicy, TimClient

SDKAPPID = 1400000000
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
ADMIN = "administrator"
FAST_RETRY = RetryPolicy(max_attempts=5, max_total_s=10, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture(scope="session")
def emulator_thread() -> Iterator[EmulatorThread]:
    """One in-process emulator for the session; tests reset it through the ``emulator`` fixture."""
    with EmulatorThread(EmulatorConfig(key=KEY, sdkappid=SDKAPPID, admin=ADMIN)) as thread:
        yield thread


@pytest.fixture
def emulator(emulator_thread: EmulatorThread) -> EmulatorThread:
    """The in-process emulator, reset to a fresh app."""
    emulator_thread.emulator.reset()
    return emulator_thread


def make_client(base_url: str, **kwargs: object) -> TimClient:
    """A client of the test app at ``base_url`` with fast retries."""
    options: dict[str, object] = {"sdkappid": SDKAPPID, "key": KEY, "admin": ADMIN, "retry": FAST_RETRY}
    options.update(kwargs)
    return TimClient(base_url=base_url, **options)  # type: ignore[arg-type]


@pytest.fixture
async def client(emulator: EmulatorThread) -> AsyncIterator[TimClient]:
    """A client bound to the fresh in-process emulator."""
    async with make_client(emulator.url) as tim:
        yield tim


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[str]:
    """An emulator started as its own process (``recall-worker emulator``), as a user would run it."""
    port = free_port()
    env = {**os.environ, "RECALL_TIM_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "emulator", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/_emulator/health", timeout=1).raise_for_status()
            break
        except httpx.HTTPError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("the emulator process did not start") from exc
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def fresh_emulator_process(emulator_process: str) -> str:
    """The emulator process, reset to a fresh app."""
    httpx.post(f"{emulator_process}/_emulator/reset").raise_for_status()
    return emulator_process


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ledger URL; PostgreSQL gets its own schema, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """The ledger at ``database_url``, migrated (a module may define its own)."""
    ledger = open_ledger(database_url)
    yield ledger
    ledger.dispose()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """An asyncio client of the real Redis on 127.0.0.1:6379 (skips when it is down, except under CI)."""
    require(REDIS)
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_namespace(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    async for key in redis_client.scan_iter(f"{name}:*"):
        await redis_client.delete(key)
