"""Client rate limiting: the sliding window, and a real burst against the emulator's 200 calls/s limit."""

from __future__ import annotations

import asyncio
import bisect
import random
import time

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import make_client
from tests.services import REDIS, require
from tests.tim.fakes import FakeClock, FakeSleeps
from worker.observability import Metrics
from worker.tim.client import RetryPolicy
from worker.tim.errors import TimApiError
from worker.tim.ratelimit import DEFAULT_WINDOW_S, CommandLimiters, RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
IMPORT = "im_open_login_svc/account_import"


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


async def test_a_start_woken_late_keeps_its_slot() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, window_s=1.0, clock=clock, sleep=FakeSleeps(clock, iter([0.015])))
    await limiter.acquire()  # idle: starts at once, the next slot is 0.25 s later
    await limiter.acquire()  # sleeps 0.25 s, wakes 15 ms late: within MAX_LATE_S, it starts
    assert clock.now == pytest.approx(100.265)
    assert limiter.delay() == pytest.approx(0.235), "the next slot is still 100.50: the grid kept"


async def test_a_very_late_start_earns_no_catch_up_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, window_s=1.0, clock=clock, sleep=FakeSleeps(clock, iter([0.2, 0.0])))
    await limiter.acquire()
    waited = await limiter.acquire()  # wakes at 100.45, far past its slot: it takes the next one instead
    assert clock.now == pytest.approx(100.50)
    assert waited == pytest.approx(0.50)
    assert limiter.delay() == pytest.approx(0.25)


async def test_callers_reserve_their_slots_in_order_and_each_counts_its_own_wait() -> None:
    limiter = RateLimiter(rate=20, window_s=1.0)  # 50 ms apart
    started = time.monotonic()
    waits = await asyncio.gather(*(limiter.acquire() for _ in range(6)))
    elapsed = time.monotonic() - started
    assert waits[0] == 0
    # every queued caller reports its own wait (the sum is 0+50+...+250 ms), not only the first in line
    assert sum(waits) == pytest.approx(0.75, abs=0.06)
    assert waits == sorted(waits)
    assert 0.24 <= elapsed < 0.4
    assert limiter.waiting == 0


async def test_an_idle_limiter_owes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=4, window_s=1.0, clock=clock)
    await limiter.acquire()
    clock.now += 0.4  # nobody waited for the slot at 100.25
    await limiter.acquire()
    assert limiter.delay() == pytest.approx(0.25)


async def test_sleeps_that_overshoot_cost_no_rate() -> None:
    clock = FakeClock()
    rng = random.Random(7)
    overshoots = iter(lambda: rng.uniform(0, 0.002), None)  # up to 2 ms each, as an event loop wakes
    limiter = RateLimiter(clock=clock, sleep=FakeSleeps(clock, overshoots))  # 200 per 1.04 s
    starts = []
    for _ in range(2000):
        await limiter.acquire()
        starts.append(clock.now)
    assert (len(starts) - 1) / (starts[-1] - starts[0]) == pytest.approx(200 / DEFAULT_WINDOW_S, rel=0.002)


async def test_late_starts_never_put_more_than_197_calls_in_one_second() -> None:
    clock = FakeClock()
    rng = random.Random(11)
    # Mostly small overshoots, some stalls of several spacings.
    overshoots = iter(lambda: rng.choice([0.0, 0.001, 0.003, 0.005, 0.02]) * rng.random(), None)
    limiter = RateLimiter(clock=clock, sleep=FakeSleeps(clock, overshoots))
    starts = []
    for n in range(3000):
        if n % 500 == 499:
            clock.now += 0.5  # now and then the limiter goes idle
        await limiter.acquire()
        starts.append(clock.now)
    for i, first in enumerate(starts):
        assert bisect.bisect_left(starts, first + 1.0) - i <= 197
        assert bisect.bisect_left(starts, first + DEFAULT_WINDOW_S) - i <= 201


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
    one_try = RetryPolicy(max_attempts=1, rate_limit_patience_s=0)
    async with make_client(url, retry=one_try) as one, make_client(url, retry=one_try) as two:
        outcomes = await asyncio.gather(
            *(c.call(IMPORT, {"UserID": f"u{n}"}) for n in range(300) for c in (one, two)),
            return_exceptions=True,
        )
    refused = [o for o in outcomes if isinstance(o, TimApiError) and o.code == 60007]
    assert refused, "two processes at 200/s each are over the service's 200/s"
    assert httpx.get(f"{url}/_emulator/stats").json()["limit_breaches"]["account_import"] == len(refused)


@pytest.mark.slow
async def test_rate_limit_answers_are_waited_out_inside_the_call_and_lower_the_rate(
    fresh_emulator_process: str,
) -> None:
    url = fresh_emulator_process
    one_try = RetryPolicy(max_attempts=1)  # rate-limit answers cost no attempt
    metrics = [Metrics(), Metrics()]  # what each client's process would export
    async with make_client(url, retry=one_try) as one, make_client(url, retry=one_try) as two:
        for client, exported in zip((one, two), metrics, strict=True):
            client.observers.append(exported)
        await asyncio.gather(*(c.call(IMPORT, {"UserID": f"u{n}"}) for n in range(300) for c in (one, two)))
        refused = one.stats.rate_limited["account_import"] + two.stats.rate_limited["account_import"]
    stats = httpx.get(f"{url}/_emulator/stats").json()
    assert stats["calls"]["account_import"]["0"] == 600, "every call succeeded in the end"
    assert stats["calls"]["account_import"].get("60007", 0) == refused > 0
    label = {"command": "account_import"}
    exported_answers = [m.registry.get_sample_value("recall_tim_rate_limited_total", label) for m in metrics]
    assert sum(n or 0 for n in exported_answers) == refused
    rates = [m.registry.get_sample_value("recall_tim_rate_limit_rate", label) for m in metrics]
    assert all(rate is not None and rate < 200 / DEFAULT_WINDOW_S for rate in rates), "each client slowed"


async def test_a_rate_limit_answer_lowers_the_shared_rate_of_every_replica() -> None:
    require(REDIS)
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    namespace = f"test-{time.monotonic_ns()}"
    try:
        one = CommandLimiters(200, redis=client, namespace=namespace).for_command("cmd")
        two = CommandLimiters(200, redis=client, namespace=namespace).for_command("cmd")
        await one.acquire()
        await two.acquire()
        assert two.rate_per_s() == pytest.approx(200 / DEFAULT_WINDOW_S)
        await one.limited()
        await one.limited()  # within the cooldown: the same burst of answers, one drop
        await two.acquire()
        assert two.rate_per_s() == pytest.approx(0.7 * 200 / DEFAULT_WINDOW_S, rel=0.02)
    finally:
        async for key in client.scan_iter(f"{namespace}:*"):
            await client.delete(key)
        await client.aclose()


async def test_every_caller_queued_on_the_shared_grid_counts_its_own_wait() -> None:
    require(REDIS)
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    namespace = f"test-{time.monotonic_ns()}"
    try:
        limiter = CommandLimiters(20, window_s=1.0, redis=client, namespace=namespace).for_command("cmd")
        started = time.monotonic()
        waits = await asyncio.gather(*(limiter.acquire() for _ in range(6)))
        elapsed = time.monotonic() - started
        # slots 50 ms apart: the queued callers waited 0, 50, ... 250 ms, 750 ms in all, each counting its own
        assert sum(waits) == pytest.approx(0.75, abs=0.08)
        assert 0.24 <= elapsed < 0.45
        assert limiter.waiting == 0
    finally:
        async for key in client.scan_iter(f"{namespace}:*"):
            await client.delete(key)
        await client.aclose()
