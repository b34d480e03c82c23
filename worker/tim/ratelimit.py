"""Client-side rate limiting: keep every command under the service's calls-per-second limit.

Call starts take evenly spaced slots, ``spacing = window_s / rate`` apart. Spacing, rather than a bucket
that lets ``rate`` calls go at once, matters: a burst released together queues up at the service, whose
arrival times then spread into its next second and overrun the limit there.

A waiter sleeps until its slot, and a sleep always overshoots a little (the event loop wakes on whole
milliseconds, later still while it runs other work). A start that is late so keeps its slot: the next slot
follows the late one's by a whole spacing, but never comes sooner than half a spacing after the start. At
200 calls per 1.05 s the slots are 5.25 ms apart, so restarting the schedule from every late start would
lose a 0.5-1 ms overshoot per call, 10-20 % of the rate, for good. A caller that finds the limiter idle
starts at once and the next slot is a whole spacing later: time nobody waited for is never made up.

So any span of ``L`` seconds holds fewer than ``L / spacing + 1.5`` starts: at 200 per 1.05 s, at most 191
in any one second. The window is a little longer than one second so that jitter between starting a call
here and its arrival (up to 47 ms at 200 per 1.05 s) cannot push ``rate + 1`` calls into one of the
service's seconds, whether it counts fixed or sliding seconds.

A limiter given a :class:`~worker.tim.budget.BudgetStore` also honours a lowered budget (Tencent's rate
alarm, see :mod:`worker.intake.callbacks`): while an override below its rate stands, starts are spaced for
the override instead. The override is read through a :class:`~worker.tim.budget.CachedOverride`, at most
once a second per command; a changed spacing applies to the slots set after it is read (the one already
set stands). Without a budget, or with no override standing, nothing changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from worker.tim.budget import DEFAULT_REFRESH_S, BudgetStore, CachedOverride

DEFAULT_RATE = 200
DEFAULT_WINDOW_S = 1.05


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


class RateLimiter:
    """Starts in evenly spaced slots, ``rate`` per ``window_s`` seconds; waiters are served in order, and a
    waiter's start made late by its sleep keeps its slot on the schedule (see the module docstring)."""

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
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 call per window")
        self.rate = rate
        self.window_s = window_s
        self.spacing_s = window_s / rate
        self._clock = clock
        self._sleep = sleep
        self._override = _override(budget, command, budget_refresh_s, clock)
        self._next_start = float("-inf")
        self._lock = asyncio.Lock()

    async def _spacing(self) -> float:
        if self._override is None:
            return self.spacing_s
        return self.window_s / await self._override.rate(self.rate)

    def delay(self) -> float:
        """Seconds until one more call may start (0 when one may start now). Pure; takes no slot."""
        return max(0.0, self._next_start - self._clock())

    async def acquire(self) -> float:
        """Wait for a slot and take it. Returns the seconds spent waiting."""
        waited = 0.0
        async with self._lock:
            spacing = await self._spacing()
            slot = self._next_start
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
                waited += wait
            started = self._clock()
            if waited:
                # Woken late: the next slot keeps to the schedule, but stays half a spacing away at least,
                # so that a start however late never earns a catch-up burst.
                self._next_start = max(slot + spacing, started + spacing / 2)
            else:
                # Found idle: nothing was owed, the schedule starts afresh.
                self._next_start = started + spacing
        return waited


class Limiter(Protocol):
    """Anything that can hand out call starts."""

    async def acquire(self) -> float: ...


class CommandLimiters:
    """One limiter per command, created on first use: in-process, or shared through Redis.

    With ``redis`` (a ``redis.asyncio`` client) every replica using the same ``namespace`` shares each
    command's limit, which is what the service enforces: per app, not per process. With ``budget`` each
    limiter also honours its command's lowered budget (see the module docstring).
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
    ) -> None:
        self.rate = rate
        self.window_s = window_s
        self.budget = budget
        self._redis = redis
        self._namespace = namespace
        self._budget_refresh_s = budget_refresh_s
        self._by_command: dict[str, Limiter] = {}

    def for_command(self, command: str) -> Limiter:
        """Return the limiter of ``command``."""
        limiter = self._by_command.get(command)
        if limiter is None:
            refresh_s = self._budget_refresh_s
            if self._redis is not None:
                key = f"{self._namespace}:ratelimit:{command}"
                limiter = RedisRateLimiter(
                    self._redis,
                    key,
                    self.rate,
                    self.window_s,
                    budget=self.budget,
                    command=command,
                    budget_refresh_s=refresh_s,
                )
            else:
                limiter = RateLimiter(
                    self.rate, self.window_s, budget=self.budget, command=command, budget_refresh_s=refresh_s
                )
            self._by_command[command] = limiter
        return limiter


# Take a command's start slot if it is free now, shared by every replica. Redis's clock decides (replicas'
# clocks may disagree), and the next slot is stamped from the actual start, never reserved ahead: a caller
# that wakes late must not earn a catch-up burst. Returns 0 when taken, else the microseconds to wait.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing = tonumber(ARGV[1])
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if now >= free_at then
    redis.call('SET', KEYS[1], now + spacing, 'PX', math.ceil(spacing / 1000) + 60000)
    return 0
end
return free_at - now
"""


class RedisRateLimiter:
    """The same evenly spaced starts as :class:`RateLimiter`, shared by every process using ``key``; each
    next slot is stamped from the actual start, so a late start here does not keep its slot.

    Within a process waiters queue on a lock, so only one of them at a time asks Redis for the slot. With a
    ``budget``, each replica reads the command's override on its own (cached), so all of them slow down
    within about ``budget_refresh_s`` of an alarm.
    """

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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 call per window")
        self.rate = rate
        self.window_s = window_s
        self.spacing_us = _spacing_us(window_s, rate)
        self.key = key
        self._script = redis.register_script(_TAKE)
        self._override = _override(budget, command, budget_refresh_s, clock)
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def _spacing_us(self) -> int:
        if self._override is None:
            return self.spacing_us
        return _spacing_us(self.window_s, await self._override.rate(self.rate))

    async def acquire(self) -> float:
        """Wait for a free slot and take it. Returns the seconds spent waiting."""
        waited = 0.0
        async with self._lock:
            spacing_us = await self._spacing_us()
            while (wait_us := int(await self._script(keys=[self.key], args=[spacing_us]))) > 0:
                await self._sleep(wait_us / 1_000_000)
                waited += wait_us / 1_000_000
        return waited


def _spacing_us(window_s: float, rate: int) -> int:
    return max(1, round(window_s / rate * 1_000_000))
