"""Lowered budgets: the stores, and limiters spacing a command's calls for the override while it stands."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.conftest import SDKAPPID, make_client
from tests.services import free_port
from tests.tim.fakes import FakeClock, FakeSleeps
from worker.emulator.server import EmulatorThread
from worker.tim.budget import (
    BudgetUnavailable,
    CachedOverride,
    MemoryBudget,
    RedisBudget,
    effective_rate,
    parse_rate,
)
from worker.tim.ratelimit import CommandLimiters, RateLimiter, command_of, namespace_for

REDIS_URL = "redis://127.0.0.1:6379/0"


class CountingBudget(MemoryBudget):
    """A memory budget that counts reads (and can be made to fail them)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.reads = 0
        self.down = False

    async def current(self, command: str) -> int | None:
        self.reads += 1
        if self.down:
            raise BudgetUnavailable("reading the budget: ConnectionError")
        return await super().current(command)


def gaps(starts: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(starts)]


# pure parts ----------------------------------------------------------------------------------------------


def test_effective_rate_takes_an_override_only_below_the_configured_rate() -> None:
    assert effective_rate(200, None) == 200
    assert effective_rate(200, 50) == 50
    assert effective_rate(200, 200) == 200
    assert effective_rate(200, 500) == 200


@pytest.mark.parametrize(
    ("raw", "rate"), [(b"100", 100), ("7", 7), (None, None), (b"0", None), (b"x", None), (b"-3", None)]
)
def test_a_stored_override_is_read_as_a_positive_integer_or_none(raw: object, rate: int | None) -> None:
    assert parse_rate(raw) == rate


def test_the_client_limits_and_budgets_by_the_last_path_segment() -> None:
    assert command_of("openim/admin_getroammsg") == "admin_getroammsg"
    assert namespace_for(SDKAPPID) == f"recall:{SDKAPPID}"


# the in-process store ------------------------------------------------------------------------------------


async def test_memory_budget_holds_an_override_until_it_expires() -> None:
    clock = FakeClock()
    budget = MemoryBudget(clock=clock)
    assert await budget.current("batchsendmsg") is None
    await budget.lower("batchsendmsg", 100, 5.0)
    assert await budget.current("batchsendmsg") == 100
    assert await budget.current("sendmsg") is None
    clock.now += 4.9
    assert await budget.current("batchsendmsg") == 100
    clock.now += 0.2
    assert await budget.current("batchsendmsg") is None


async def test_memory_budget_keeps_the_lower_rate_and_extends_the_hold() -> None:
    clock = FakeClock()
    budget = MemoryBudget(clock=clock)
    await budget.lower("batchsendmsg", 50, 5.0)
    clock.now += 3
    await budget.lower("batchsendmsg", 100, 5.0)  # a second alarm, for a higher rate
    clock.now += 4  # past the first hold, inside the second
    assert await budget.current("batchsendmsg") == 50
    clock.now += 1.1
    assert await budget.current("batchsendmsg") is None
    await budget.lower("batchsendmsg", 100, 5.0)  # the first has expired: a fresh hold at the new rate
    assert await budget.current("batchsendmsg") == 100


@pytest.mark.parametrize(("rate", "hold_s"), [(0, 1.0), (10, 0.0), (10, -1.0), (10, float("nan"))])
async def test_a_budget_refuses_a_meaningless_override(rate: int, hold_s: float) -> None:
    with pytest.raises(ValueError, match=r"rate|hold_s"):
        await MemoryBudget().lower("sendmsg", rate, hold_s)


# the shared store ----------------------------------------------------------------------------------------


async def test_redis_budget_keeps_the_lower_rate_extends_the_hold_and_expires(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    budget = RedisBudget(redis_client, redis_namespace)
    await budget.lower("batchsendmsg", 50, 0.5)
    assert await redis_client.get(f"{redis_namespace}:budget:batchsendmsg") == b"50"
    assert 0 < await redis_client.pttl(f"{redis_namespace}:budget:batchsendmsg") <= 500
    await budget.lower("batchsendmsg", 100, 1.0)
    assert await budget.current("batchsendmsg") == 50, "the lower rate stands"
    assert 500 < await redis_client.pttl(f"{redis_namespace}:budget:batchsendmsg") <= 1000, (
        "the hold is extended"
    )
    await budget.lower("batchsendmsg", 100, 0.2)
    assert await redis_client.pttl(f"{redis_namespace}:budget:batchsendmsg") > 500, (
        "a shorter hold cuts nothing"
    )
    await asyncio.sleep(1.1)
    assert await budget.current("batchsendmsg") is None


async def test_redis_budget_away_is_reported_as_unavailable() -> None:
    away = aioredis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    budget = RedisBudget(away, "nowhere")
    with pytest.raises(BudgetUnavailable, match="batchsendmsg"):
        await budget.lower("batchsendmsg", 10, 1.0)
    with pytest.raises(BudgetUnavailable):
        await budget.current("batchsendmsg")
    await away.aclose()


# limiters honouring it -----------------------------------------------------------------------------------


async def test_a_limiter_spaces_calls_for_the_override_then_returns_to_its_rate() -> None:
    clock = FakeClock()
    budget = MemoryBudget(clock=clock)
    limiter = RateLimiter(
        rate=10, window_s=1.0, clock=clock, sleep=FakeSleeps(clock), budget=budget, command="sendmsg"
    )
    starts = []
    for _ in range(4):
        await limiter.acquire()
        starts.append(clock.now)
    assert gaps(starts) == [0.1, 0.1, 0.1], "no override: the configured 10 per second"

    clock.now += 1.0  # idle, and the cached override (none) is a second old
    await budget.lower("sendmsg", 2, 3.0)  # an alarm: 2 per second for 3 s
    starts = []
    for _ in range(5):
        await limiter.acquire()
        starts.append(clock.now)
    assert gaps(starts) == [0.5, 0.5, 0.5, 0.5], "the lowered rate, 2 per second"

    clock.now += 2.0  # the override expires at 104.3 s; the next read is due
    starts = []
    for _ in range(6):
        await limiter.acquire()
        starts.append(clock.now)
    assert gaps(starts) == [0.1, 0.1, 0.1, 0.1, 0.1], "back to 10 per second"


async def test_an_override_standing_mid_stream_spaces_the_slots_set_after_it_is_read() -> None:
    clock = FakeClock()
    budget = MemoryBudget(clock=clock)
    limiter = RateLimiter(  # 0.125 s and 0.5 s are exact in binary: no drift in the fake clock
        rate=8, window_s=1.0, clock=clock, sleep=FakeSleeps(clock), budget=budget, command="sendmsg"
    )
    starts = []
    for n in range(20):
        if n == 4:
            await budget.lower("sendmsg", 2, 2.0)  # at 100.5 s, until 102.5 s
        await limiter.acquire()
        starts.append(clock.now)
    # Read at 100 s (none), 101 s (2 per second), 102.125 s (still), 103.125 s (expired); each read
    # spaces the slot after the one already set.
    assert gaps(starts) == [0.125] * 9 + [0.5] * 5 + [0.125] * 5


async def test_an_override_above_the_configured_rate_changes_nothing() -> None:
    clock = FakeClock()
    budget = MemoryBudget(clock=clock)
    await budget.lower("sendmsg", 500, 60.0)
    limiter = RateLimiter(
        rate=10, window_s=1.0, clock=clock, sleep=FakeSleeps(clock), budget=budget, command="sendmsg"
    )
    starts = []
    for _ in range(4):
        await limiter.acquire()
        starts.append(clock.now)
    assert gaps(starts) == [0.1, 0.1, 0.1]


async def test_the_override_is_read_at_most_once_a_second() -> None:
    clock = FakeClock()
    budget = CountingBudget(clock)
    limiter = RateLimiter(
        rate=200, window_s=1.0, clock=clock, sleep=FakeSleeps(clock), budget=budget, command="sendmsg"
    )
    for _ in range(1000):  # five seconds of calls at 200 a second
        await limiter.acquire()
    assert clock.now == pytest.approx(104.995)
    assert budget.reads == 5


async def test_a_budget_that_cannot_be_read_keeps_the_last_override_and_fails_no_call() -> None:
    clock = FakeClock()
    budget = CountingBudget(clock)
    await budget.lower("sendmsg", 2, 60.0)
    cached = CachedOverride(budget, "sendmsg", refresh_s=1.0, clock=clock)
    assert await cached.rate(10) == 2
    budget.down = True
    clock.now += 1.0
    assert await cached.rate(10) == 2, "the override read last stands"
    assert budget.reads == 2
    fresh = CachedOverride(budget, "sendmsg", clock=clock)
    assert await fresh.rate(10) == 10, "nothing read yet: the configured rate"


def test_a_limiter_with_a_budget_needs_its_command() -> None:
    with pytest.raises(ValueError, match="command"):
        RateLimiter(rate=10, budget=MemoryBudget())


async def test_command_limiters_lower_only_the_command_under_alarm() -> None:
    budget = MemoryBudget()
    await budget.lower("batchsendmsg", 5, 60.0)
    limiters = CommandLimiters(rate=100, window_s=1.0, budget=budget)
    started = time.monotonic()
    for _ in range(5):
        await limiters.for_command("sendmsg").acquire()
    assert time.monotonic() - started < 0.15, "sendmsg keeps 100 per second"
    started = time.monotonic()
    for _ in range(3):
        await limiters.for_command("batchsendmsg").acquire()
    assert time.monotonic() - started >= 0.39, "batchsendmsg is spaced for 5 per second"


async def test_redis_limiters_follow_a_shared_override_and_recover_when_it_expires(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    budget = RedisBudget(redis_client, redis_namespace)
    limiters = CommandLimiters(
        rate=100,
        window_s=1.0,
        redis=redis_client,
        namespace=redis_namespace,
        budget=budget,
        budget_refresh_s=0.1,
    )
    limiter = limiters.for_command("batchsendmsg")

    async def spent_on(calls: int) -> float:
        started = time.monotonic()
        for _ in range(calls):
            await limiter.acquire()
        return time.monotonic() - started

    assert await spent_on(6) < 0.3, "100 per second: about 50 ms"
    await asyncio.sleep(0.15)  # the cached "no override" goes stale
    await budget.lower("batchsendmsg", 10, 0.8)  # another process took the alarm
    assert await spent_on(6) >= 0.45, "10 per second: 100 ms apart"
    await asyncio.sleep(0.9)  # the override expires, and the cache goes stale
    assert await budget.current("batchsendmsg") is None
    assert await spent_on(6) < 0.3, "back to 100 per second"


async def test_the_client_with_redis_reads_the_budget_of_its_namespace(
    emulator: EmulatorThread, redis_client: aioredis.Redis
) -> None:
    path = "im_open_login_svc/account_check"
    budget = RedisBudget(redis_client, namespace_for(SDKAPPID))
    await budget.lower(command_of(path), 5, 3.0)
    try:
        async with make_client(emulator.url, redis_url=REDIS_URL) as client:
            started = time.monotonic()
            for _ in range(3):
                await client.call(path, {"CheckItem": [{"UserID": "administrator"}]})
            elapsed = time.monotonic() - started
    finally:
        await redis_client.delete(budget.key(command_of(path)))
    assert elapsed >= 0.4, "5 per 1.05 s: 210 ms between calls"


async def test_the_client_takes_an_in_process_budget(emulator: EmulatorThread) -> None:
    path = "im_open_login_svc/account_check"
    budget = MemoryBudget()
    await budget.lower(command_of(path), 5, 60.0)
    async with make_client(emulator.url, budget=budget) as client:
        started = time.monotonic()
        for _ in range(3):
            await client.call(path, {"CheckItem": [{"UserID": "administrator"}]})
        assert time.monotonic() - started >= 0.4
