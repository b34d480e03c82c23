"""The fleet adapts to a budget it does not own: a second tenant of the app takes half of a command's limit,
the replicas (sharing Redis) settle under what is left and stop being refused; it leaves, they climb back.

Two replicas, each a client with its own Redis connection and limiters, keep calling as fast as their
shared limiter lets them, against the emulator process at its 200 calls/s limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import SDKAPPID, make_client
from tests.services import REDIS, require
from worker.tim.ratelimit import DEFAULT_WINDOW_S, namespace_for

REDIS_URL = "redis://127.0.0.1:6379/0"
COMMAND = "account_check"
PATH = f"im_open_login_svc/{COMMAND}"
LIMIT = 200
TENANT = 100

pytestmark = pytest.mark.slow


class Sampler:
    """The emulator's count of ``COMMAND`` calls (and of its rate-limit answers) every 0.25 s."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int, int]] = []

    async def run(self) -> None:
        async with httpx.AsyncClient() as http:
            while True:
                calls = (await http.get(f"{self.url}/_emulator/stats")).json()["calls"].get(COMMAND, {})
                self.samples.append((time.monotonic(), sum(calls.values()), calls.get("60007", 0)))
                await asyncio.sleep(0.25)

    def between(self, start: float, end: float) -> tuple[float, int]:
        """Admitted calls/s and rate-limit answers from ``start`` to ``end``."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        (t0, calls0, refused0), (t1, calls1, refused1) = inside[0], inside[-1]
        return ((calls1 - refused1) - (calls0 - refused0)) / (t1 - t0), refused1 - refused0


@pytest.fixture
async def clean_namespace() -> AsyncIterator[None]:
    require(REDIS)
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    pattern = f"{namespace_for(SDKAPPID)}:ratelimit:{COMMAND}*"

    async def clean() -> None:
        async for key in client.scan_iter(pattern):
            await client.delete(key)

    await clean()
    yield
    await clean()
    await client.aclose()


async def test_the_fleet_gives_way_to_a_second_tenant_and_takes_the_budget_back(
    fresh_emulator_process: str, clean_namespace: None
) -> None:
    url = fresh_emulator_process
    sampler = Sampler(url)

    async def replica() -> None:
        async with make_client(url, redis_url=REDIS_URL) as client:

            async def caller() -> None:
                while True:
                    await client.call(PATH, {"CheckItem": [{"UserID": "nobody"}]})

            await asyncio.gather(*(caller() for _ in range(12)))

    async def at(offset_s: float) -> float:
        await asyncio.sleep(max(0.0, started + offset_s - time.monotonic()))
        return time.monotonic()

    tasks = [
        asyncio.create_task(sampler.run()),
        asyncio.create_task(replica()),
        asyncio.create_task(replica()),
    ]
    try:
        started = time.monotonic()
        full = LIMIT / DEFAULT_WINDOW_S
        rate, refused = sampler.between(await at(2), await at(6))
        assert rate >= 0.9 * LIMIT and refused == 0, f"alone, the fleet uses the limit: {rate:.0f}/s"

        arrived = await at(6)
        httpx.post(f"{url}/_emulator/tenant", json={"commands": {COMMAND: TENANT}}).raise_for_status()
        # settled within 10 s: at or under what is left, and no more rate-limit answers (until the next
        # probe for spare budget, RECALL_TIM_RATE_PROBE_S after the last drop)
        rate, refused = sampler.between(await at(16), await at(21))
        assert rate <= LIMIT - TENANT and refused == 0, f"{rate:.0f}/s with {refused} refused"
        assert rate >= 0.8 * (LIMIT - TENANT), f"and uses most of what is left: {rate:.0f}/s"

        left = await at(21)
        httpx.post(f"{url}/_emulator/tenant", json={"commands": {}}).raise_for_status()
        climbed = None
        while climbed is None and time.monotonic() < left + 30:
            now = await at(time.monotonic() - started + 1)
            rate, _ = sampler.between(now - 2, now)
            if rate >= 0.9 * full:
                climbed = now - left
        assert climbed is not None, (
            "the fleet climbed back to the whole limit within 30 s of the tenant leaving"
        )
        assert arrived < left
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
