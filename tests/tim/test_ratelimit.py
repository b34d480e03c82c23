"""Client rate limiting: the sliding window, and a real burst against the emulator's 200 calls/s limit."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from tests.conftest import make_client
from tests.services import REDIS, require
from worker.tim.client import RetryPolicy
from worker.tim.errors import TimApiError
from worker.tim.ratelimit import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
IMPORT = "im_open_login_svc/account_import"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_starts_are_spaced_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, window_s=1.0, clock=clock)
    await limiter.acquire()
    assert limiter.delay() == pytest.approx(0.25)
    clock.now += 0.1
    assert limiter.delay() == pytest.approx(0.15)


async def test_no_window_holds_more_than_rate_starts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=5, window_s=1.0, clock=clock)
    starts = []
    for _ in range(40):
        clock.now += limiter.delay() + 0.003 * (len(starts) % 3)  # start as soon as allowed, with jitter
        await limiter.acquire()
        starts.append(clock.now)
    for first in starts:
        assert sum(first <= s < first + 1.0 for s in starts) <= 5


async def test_waiting_is_reported() -> None:
    limiter = RateLimiter(rate=50, window_s=1.0)
    await limiter.acquire()
    assert await limiter.acquire() > 0.01


def test_limiter_refuses_a_zero_rate() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(rate=0)


@pytest.mark.slow
async def test_a_burst_of_1000_calls_stays_under_200_per_second_with_no_60007(
    fresh_emulator_process: str,
) -> None:
    url = fresh_emulator_process
    started = time.monotonic()
    async with make_client(url) as client:
        await asyncio.gather(
            *(client.call("im_open_login_svc/account_import", {"UserID": f"user{i}"}) for i in range(1000))
        )
        assert client.stats.retries == {}, "nothing should have needed a retry"
    elapsed = time.monotonic() - started
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert stats["calls"]["account_import"] == {"0": 1000}
    assert stats["limit_breaches"] == {}
    # 1,000 calls at most 200 per (sliding) second cannot finish in under 4 seconds.
    assert elapsed >= 4.0


@pytest.mark.slow
async def test_replicas_sharing_redis_stay_under_the_limit_together(fresh_emulator_process: str) -> None:
    require(REDIS)
    url = fresh_emulator_process
    shared = redis.Redis(host="127.0.0.1", port=6379)
    for key in shared.scan_iter("recall:*:ratelimit:*"):
        shared.delete(key)
    shared.close()
    started = time.monotonic()
    async with make_client(url, redis_url=REDIS_URL) as one, make_client(url, redis_url=REDIS_URL) as two:
        await asyncio.gather(*(c.call(IMPORT, {"UserID": f"u{n}"}) for n in range(300) for c in (one, two)))
    elapsed = time.monotonic() - started
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert stats["calls"]["account_import"] == {"0": 600}
    assert stats["limit_breaches"] == {}
    assert elapsed >= 2.5, "600 calls sharing 200/s take about 3 s"


@pytest.mark.slow
async def test_replicas_limited_each_on_their_own_overrun_the_service(fresh_emulator_process: str) -> None:
    url = fresh_emulator_process
    one_try = RetryPolicy(max_attempts=1)
    async with make_client(url, retry=one_try) as one, make_client(url, retry=one_try) as two:
        outcomes = await asyncio.gather(
            *(c.call(IMPORT, {"UserID": f"u{n}"}) for n in range(300) for c in (one, two)),
            return_exceptions=True,
        )
    refused = [o for o in outcomes if isinstance(o, TimApiError) and o.code == 60007]
    assert refused, "two processes at 200/s each are over the service's 200/s"
    assert httpx.get(f"{url}/_emulator/stats").json()["limit_breaches"]["account_import"] == len(refused)
