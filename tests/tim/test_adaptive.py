"""The adaptive rate: back off on a rate-limit answer, recover to just under the refused rate, probe later;
the Redis script computes the same rates as the Python reference."""

from __future__ import annotations

import math
import time

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from tests.services import REDIS, require
from worker.tim.adaptive import AdaptivePolicy, RateState, after_limited, rate_at
from worker.tim.ratelimit import RESERVE

POLICY = AdaptivePolicy(ceiling=200)


def test_nothing_refused_is_the_ceiling() -> None:
    assert rate_at(POLICY, None, 123.0) == 200


def test_an_answer_drops_the_rate_then_it_recovers_to_just_under_the_refused_rate() -> None:
    state = after_limited(POLICY, None, 10.0)
    assert state is not None
    assert rate_at(POLICY, state, 10.0) == pytest.approx(140)  # 0.7 x 200
    assert rate_at(POLICY, state, 12.0) == pytest.approx(160)  # +10 a second
    assert rate_at(POLICY, state, 20.0) == pytest.approx(190)  # held at 0.95 x 200
    assert rate_at(POLICY, state, 24.9) == pytest.approx(190)
    assert rate_at(POLICY, state, 25.0 + math.log(200 / 190) / math.log(1.1) + 0.01) == 200  # probed back


def test_answers_within_the_cooldown_are_one_burst() -> None:
    state = after_limited(POLICY, None, 10.0)
    assert after_limited(POLICY, state, 10.5) is None
    again = after_limited(POLICY, state, 11.5)
    assert again is not None and rate_at(POLICY, again, 11.5) == pytest.approx(0.7 * 155)


def test_a_budget_halved_is_found_in_a_few_drops_and_held_under() -> None:
    available = 100.0
    now, state = 0.0, None
    while now < 60:
        if rate_at(POLICY, state, now) > available:
            state = after_limited(POLICY, state, now) or state
        now += 0.05
        if 5 < now < 14:
            assert state is not None and state.since < 5, "settled in under 5 s: no drop after"
    assert state is not None
    assert 0.9 * available <= rate_at(POLICY, state, state.since + 10) <= available


def test_the_floor_and_a_cap_bound_the_drop() -> None:
    low = AdaptivePolicy(ceiling=200, floor=50)
    state = None
    for n in range(10):
        state = after_limited(low, state, n * 2.0) or state
    assert state is not None and rate_at(low, state, 18.0) == 50
    capped = after_limited(POLICY, None, 0.0, cap=100)
    assert capped is not None and rate_at(POLICY, capped, 0.0) == pytest.approx(70)


def test_a_meaningless_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        AdaptivePolicy(ceiling=10, floor=20)
    with pytest.raises(ValueError, match="backoff"):
        AdaptivePolicy(ceiling=10, backoff=1.5)


@given(
    base=st.floats(10, 200),
    extra=st.floats(0, 100),
    since_ago=st.floats(0, 40),
    probe_in=st.floats(-20, 20),
)
def test_rates_never_leave_the_floor_and_ceiling(
    base: float, extra: float, since_ago: float, probe_in: float
) -> None:
    now = 1000.0
    state = RateState(base, min(200.0, base + extra), now - since_ago, now + probe_in)
    assert POLICY.floor <= rate_at(POLICY, state, now) <= POLICY.ceiling


@pytest.mark.parametrize(
    ("since_ago_s", "probe_in_s"), [(0.5, 15.0), (3.0, 12.0), (20.0, -5.0), (16.0, -1.0), (40.0, -25.0)]
)
async def test_the_redis_script_computes_the_reference_rates(since_ago_s: float, probe_in_s: float) -> None:
    require(REDIS)
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    grid, state_key = f"test-adaptive-{time.monotonic_ns()}", f"test-adaptive-{time.monotonic_ns()}:adaptive"
    try:
        seconds, micros = await client.time()
        now_us = seconds * 1_000_000 + micros
        since_us, probe_us = now_us - since_ago_s * 1e6, now_us + probe_in_s * 1e6
        await client.hset(
            state_key,
            mapping={"base": 140, "safe": 180, "since": f"{since_us:.0f}", "probe_at": f"{probe_us:.0f}"},
        )
        reserve = client.register_script(RESERVE)
        p = POLICY
        _, rate_milli = await reserve(
            keys=[grid, state_key], args=[p.ceiling, p.floor, p.recover_per_s, p.probe_growth, 0, 1_040_000]
        )
        expected = rate_at(p, RateState(140, 180, since_us / 1e6, probe_us / 1e6), now_us / 1e6)
        assert int(rate_milli) / 1000 == pytest.approx(expected, rel=0.01)
    finally:
        await client.delete(grid, state_key)
        await client.aclose()
