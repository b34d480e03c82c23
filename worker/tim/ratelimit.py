"""Client-side rate limiting: keep every command under the service's calls-per-second limit, and use all of
what is left of it.

**A grid of reserved starts.** Call starts take evenly spaced slots, ``spacing = window_s / rate`` apart.
A caller *reserves* its slot the moment it asks (the next free one, never one in the past) and sleeps until
it: the grid runs from the scheduled times, not from when sleepers actually woke, so a sleep that wakes a
millisecond late (the event loop wakes on whole milliseconds) costs no rate. Spacing, rather than a bucket
that lets ``rate`` calls go at once, matters: a burst released together queues up at the service, whose
arrival times then spread into its next second and overrun the limit there.

**Bounded catch-up.** A caller woken more than :data:`MAX_LATE_S` after its slot (the loop was busy) does
not start: it reserves a fresh slot. So a start is never more than :data:`MAX_LATE_S` after its slot, and a
stalled loop cannot release a burst of overdue calls together: any one second holds at most
``(1 + MAX_LATE_S) / spacing + 1`` starts, 197 at 200 per 1.04 s. The window is a little longer than a
second for that reason, and for the jitter between starting a call here and its arrival there.

**Shared and adaptive.** :class:`RedisRateLimiter` keeps the grid in Redis, so every replica of the app
draws from one schedule, which is what the service enforces (per app, not per process). Reserving is one
script call per start, answered with the wait: waiters never poll Redis. The rate itself adapts
(:mod:`worker.tim.adaptive`): a rate-limit answer, told to :meth:`limited`, lowers it for the whole fleet
(the state lives beside the grid), and it climbs back on its own. :class:`RateLimiter` does the same within
one process.

A limiter given a :class:`~worker.tim.budget.BudgetStore` also honours a lowered budget (Tencent's rate
alarm, see :mod:`worker.intake.callbacks`): while an override stands, it caps the rate. The override is read
through a :class:`~worker.tim.budget.CachedOverride`, at most once a second per command.

Every caller's own wait is returned by :meth:`acquire` (so a wait metric counts every queued caller, not
only the first), and :attr:`waiting` counts the callers sleeping for their slot now.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from worker.tim.adaptive import AdaptivePolicy, RateState, after_limited, rate_at
from worker.tim.budget import DEFAULT_REFRESH_S, BudgetStore, CachedOverride

DEFAULT_RATE = 200
DEFAULT_WINDOW_S = 1.04
#: A caller woken later than this after its slot takes a fresh one instead of starting (see above).
MAX_LATE_S = 0.02


def command_of(path: str) -> str:
    """The command a call to ``path`` (``service/command``, e.g. ``openim/admin_getroammsg``) is rate
    limited, and budgeted, by: its last segment (``admin_getroammsg``). Pure."""
    return path.rsplit("/", 1)[-1]


def namespace_for(sdkappid: int) -> str:
    """The Redis namespace of one app's shared rate limits and budgets. Pure."""
    return f"recall:{sdkappid}"


def _override(
    budget: BudgetStore | None, command: str | None, refresh_s: float, clock: Callable[[], float]
) -> CachedOverride | None:
    if budget is None:
        return None
    if not command:
        raise ValueError("a limiter with a budget needs the command it limits")
    return CachedOverride(budget, command, refresh_s=refresh_s, clock=clock)


class Limiter(Protocol):
    """Anything that can hand out call starts, and be told the service refused one for its rate."""

    #: Callers sleeping for their slot now.
    waiting: int

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the seconds this caller waited."""
        ...

    async def limited(self) -> None:
        """The service answered a call with a rate-limit code: lower the rate (see module docstring)."""
        ...

    def rate_per_s(self) -> float:
        """The rate last spaced for, in calls per second."""
        ...


class _Base:
    def __init__(
        self,
        rate: int,
        window_s: float,
        *,
        policy: AdaptivePolicy | None,
        budget: BudgetStore | None,
        command: str | None,
        budget_refresh_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 call per window")
        self.rate = rate
        self.window_s = window_s
        self.policy = AdaptivePolicy.for_rate(rate, policy)
        self.waiting = 0
        self._override = _override(budget, command, budget_refresh_s, clock)
        self._clock = clock
        self._sleep = sleep
        self._current = float(rate)

    async def _cap(self) -> float | None:
        """The rate a standing alarm override allows (the configured rate when none stands), if budgeted."""
        return None if self._override is None else float(await self._override.rate(self.rate))

    async def _sleep_until(self, wait: float) -> float:
        """Sleep ``wait`` seconds; returns how late the wake-up was."""
        due = self._clock() + wait
        self.waiting += 1
        try:
            await self._sleep(wait)
        finally:
            self.waiting -= 1
        return self._clock() - due

    def rate_per_s(self) -> float:
        """The rate last spaced for, in calls per second."""
        return self._current / self.window_s


class RateLimiter(_Base):
    """The grid of reserved starts in this process, ``rate`` per ``window_s`` seconds at most, adapting to
    rate-limit answers (see the module docstring)."""

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        budget: BudgetStore | None = None,
        command: str | None = None,
        budget_refresh_s: float = DEFAULT_REFRESH_S,
        policy: AdaptivePolicy | None = None,
    ) -> None:
        super().__init__(
            rate,
            window_s,
            policy=policy,
            budget=budget,
            command=command,
            budget_refresh_s=budget_refresh_s,
            clock=clock,
            sleep=sleep,
        )
        self._next_free = float("-inf")
        self._state: RateState | None = None

    def delay(self) -> float:
        """Seconds until one more call may start (0 when one may start now). Pure; takes no slot."""
        return max(0.0, self._next_free - self._clock())

    def _reserve(self, cap: float | None) -> float:
        now = self._clock()
        rate = rate_at(self.policy, self._state, now)
        self._current = min(rate, cap) if cap is not None else rate
        slot = max(self._next_free, now)
        self._next_free = slot + self.window_s / self._current
        return slot - now

    async def acquire(self) -> float:
        """Reserve the next slot and sleep until it. Returns the seconds spent waiting."""
        waited = 0.0
        cap = await self._cap()
        while (wait := self._reserve(cap)) > 0:
            late = await self._sleep_until(wait)
            waited += wait + max(0.0, late)
            if late <= MAX_LATE_S:
                break
        return waited

    async def limited(self) -> None:
        """See :meth:`Limiter.limited`."""
        state = after_limited(self.policy, self._state, self._clock(), await self._cap())
        if state is not None:
            self._state = state


class CommandLimiters:
    """One limiter per command, created on first use: in-process, or shared through Redis.

    With ``redis`` (a ``redis.asyncio`` client) every replica using the same ``namespace`` shares each
    command's schedule and adaptive rate. With ``budget`` each limiter also honours its command's lowered
    budget (see the module docstring). ``policy`` sets how rates adapt; its ceiling is ``rate``.
    """

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        redis: Any = None,
        namespace: str = "recall",
        budget: BudgetStore | None = None,
        budget_refresh_s: float = DEFAULT_REFRESH_S,
        policy: AdaptivePolicy | None = None,
    ) -> None:
        self.rate = rate
        self.window_s = window_s
        self.budget = budget
        self.policy = AdaptivePolicy.for_rate(rate, policy)
        self._redis = redis
        self._namespace = namespace
        self._budget_refresh_s = budget_refresh_s
        self._by_command: dict[str, Limiter] = {}

    def for_command(self, command: str) -> Limiter:
        """Return the limiter of ``command``."""
        limiter = self._by_command.get(command)
        if limiter is None:
            common: dict[str, Any] = {
                "budget": self.budget,
                "command": command,
                "budget_refresh_s": self._budget_refresh_s,
                "policy": self.policy,
            }
            if self._redis is not None:
                key = f"{self._namespace}:ratelimit:{command}"
                limiter = RedisRateLimiter(self._redis, key, self.rate, self.window_s, **common)
            else:
                limiter = RateLimiter(self.rate, self.window_s, **common)
            self._by_command[command] = limiter
        return limiter


# The adaptive rate at `now`, as worker.tim.adaptive.rate_at computes it (times in microseconds, Redis's
# clock). Shared by both scripts below.
_RATE_AT = """
local function rate_at(state_key, now, ceiling, floor, recover, growth)
    local st = redis.call('HMGET', state_key, 'base', 'safe', 'since', 'probe_at')
    if not st[1] then return ceiling end
    local base, safe, since, probe_at = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), tonumber(st[4])
    local rate
    if now < probe_at then
        rate = math.min(safe, base + recover * (now - since) / 1e6)
    else
        local level = math.min(safe, base + recover * (probe_at - since) / 1e6)
        rate = level * math.pow(1 + growth, (now - probe_at) / 1e6)
    end
    return math.max(floor, math.min(ceiling, rate)), since
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ceiling, floor = tonumber(ARGV[1]), tonumber(ARGV[2])
local recover, growth = tonumber(ARGV[3]), tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local rate, since = rate_at(KEYS[2], now, ceiling, floor, recover, growth)
if cap > 0 and cap < rate then rate = cap end
"""

#: Reserve the next slot of the shared grid: KEYS = grid, adaptive state; ARGV = ceiling, floor, recover,
#: growth, cap (0: none), window (µs). Returns {µs to wait, rate × 1000}.
RESERVE = (
    _RATE_AT
    + """
local spacing = tonumber(ARGV[6]) / rate
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local free = slot + spacing
redis.call('SET', KEYS[1], string.format('%.0f', free), 'PX', math.ceil((free - now) / 1000) + 60000)
return {math.floor(slot - now), math.floor(rate * 1000)}
"""
)

#: A rate-limit answer: KEYS and the first five ARGV as RESERVE, then backoff, safe share, probe delay (µs),
#: cooldown (µs). Returns the new rate × 1000, or -1 when ignored (within the cooldown of the last drop).
LIMITED = (
    _RATE_AT
    + """
if since and now - since < tonumber(ARGV[9]) then return -1 end
local base = math.max(floor, tonumber(ARGV[6]) * rate)
local safe = math.max(base, tonumber(ARGV[7]) * rate)
local probe_at = now + tonumber(ARGV[8])
redis.call('HSET', KEYS[2], 'base', base, 'safe', safe, 'since', string.format('%.0f', now),
    'probe_at', string.format('%.0f', probe_at))
redis.call('PEXPIRE', KEYS[2], math.ceil((probe_at - now) / 1000) + 600000)
return math.floor(base * 1000)
"""
)


class RedisRateLimiter(_Base):
    """The grid of reserved starts, and the adaptive rate, shared by every process using ``key`` (the
    state lives at ``{key}:adaptive``). Redis's clock decides: replicas' clocks may disagree."""

    def __init__(
        self,
        redis: Any,
        key: str,
        rate: int = DEFAULT_RATE,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        budget: BudgetStore | None = None,
        command: str | None = None,
        budget_refresh_s: float = DEFAULT_REFRESH_S,
        policy: AdaptivePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            rate,
            window_s,
            policy=policy,
            budget=budget,
            command=command,
            budget_refresh_s=budget_refresh_s,
            clock=clock,
            sleep=sleep,
        )
        self.key = key
        self.state_key = f"{key}:adaptive"
        self._reserve = redis.register_script(RESERVE)
        self._limited = redis.register_script(LIMITED)
        self._window_us = max(1, round(window_s * 1_000_000))

    def _args(self, cap: float | None) -> list[float]:
        p = self.policy
        return [p.ceiling, p.floor, p.recover_per_s, p.probe_growth, cap or 0]

    async def acquire(self) -> float:
        """Reserve the next slot of the shared grid and sleep until it. Returns the seconds spent waiting."""
        waited = 0.0
        args = [*self._args(await self._cap()), self._window_us]
        while True:
            wait_us, rate_milli = await self._reserve(keys=[self.key, self.state_key], args=args)
            self._current = int(rate_milli) / 1000
            if int(wait_us) <= 0:
                return waited
            wait = int(wait_us) / 1_000_000
            late = await self._sleep_until(wait)
            waited += wait + max(0.0, late)
            if late <= MAX_LATE_S:
                return waited

    async def limited(self) -> None:
        """See :meth:`Limiter.limited`; lowers the rate of every replica."""
        p = self.policy
        probe_us, cooldown_us = math.ceil(p.probe_after_s * 1e6), math.ceil(p.cooldown_s * 1e6)
        args = [*self._args(await self._cap()), p.backoff, p.safe_share, probe_us, cooldown_us]
        await self._limited(keys=[self.key, self.state_key], args=args)
