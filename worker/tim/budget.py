"""Rate budgets lowered by Tencent's rate alarm, and the cached view the limiters read them through.

Tencent calls the app's callback with ``Alert.RequestOverLimit`` when a command's calls pass 80 % of its
limit (the limit is per app, so the app's other callers count too). The intake then *lowers* that command's
budget for a while: an override rate, below the configured one, that every limiter of the command honours
until it expires. A :class:`BudgetStore` holds the overrides:

- :class:`RedisBudget`: shared by every replica and the intake, one key per command,
  ``{namespace}:budget:{command}``, expiring on its own (``PX``) after the hold.
- :class:`MemoryBudget`: one process only; for tests, and when no Redis is configured (then an alarm only
  slows the process that received it).

``command`` is the string the limiters are keyed by (see :func:`worker.tim.ratelimit.command_of`).
A second alarm while one stands keeps the lower of the two rates and extends the hold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger("worker.tim.budget")

#: How often a limiter re-reads its command's override, at most.
DEFAULT_REFRESH_S = 1.0


class BudgetUnavailable(RuntimeError):
    """The budget store could not be read or written (Redis away); the message names the operation."""


class BudgetStore(Protocol):
    """Where lowered per-command rates live while an alarm stands."""

    async def lower(self, command: str, rate: int, hold_s: float) -> None:
        """Hold ``command`` at ``rate`` calls per window for ``hold_s`` seconds (or keep a lower standing
        rate, and extend its hold)."""
        ...

    async def current(self, command: str) -> int | None:
        """The standing override of ``command``, or None when there is none."""
        ...


def _check(rate: int, hold_s: float) -> None:
    if type(rate) is not int or rate < 1:
        raise ValueError("rate must be an integer of at least 1")
    if not hold_s > 0 or math.isinf(hold_s):
        raise ValueError("hold_s must be a positive, finite number of seconds")


def hold_ms(hold_s: float) -> int:
    """``hold_s`` in whole milliseconds, rounded up, at least 1 (what ``PX`` takes). Pure."""
    return max(1, math.ceil(hold_s * 1000))


def parse_rate(raw: object) -> int | None:
    """A stored override as a rate, or None when it is absent or not a positive integer. Pure."""
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        return None
    rate = int(raw)
    return rate if rate >= 1 else None


def effective_rate(configured: int, override: int | None) -> int:
    """The rate to space calls for: the override when one stands below ``configured``. Pure."""
    if override is None or override >= configured:
        return configured
    return max(1, override)


# Keep the lower of the standing and the new rate; the hold runs from now, or longer if it already does.
_LOWER = """
local rate = tonumber(ARGV[1])
local hold = tonumber(ARGV[2])
local standing = tonumber(redis.call('GET', KEYS[1]) or '')
if standing and standing >= 1 and standing < rate then rate = standing end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > hold then hold = ttl end
redis.call('SET', KEYS[1], rate, 'PX', hold)
return rate
"""


class RedisBudget:
    """Overrides in Redis, shared by every process using ``namespace`` (the limiters' namespace,
    :func:`worker.tim.ratelimit.namespace_for`)."""

    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.namespace = namespace
        self._redis = redis
        self._lower = redis.register_script(_LOWER)

    def key(self, command: str) -> str:
        """The Redis key holding ``command``'s override."""
        return f"{self.namespace}:budget:{command}"

    async def lower(self, command: str, rate: int, hold_s: float) -> None:
        """See :meth:`BudgetStore.lower`. Raises :class:`BudgetUnavailable` when Redis fails."""
        _check(rate, hold_s)
        try:
            await self._lower(keys=[self.key(command)], args=[rate, hold_ms(hold_s)])
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"lowering the budget of {command}: {type(exc).__name__}") from exc

    async def current(self, command: str) -> int | None:
        """See :meth:`BudgetStore.current`. Raises :class:`BudgetUnavailable` when Redis fails."""
        try:
            raw = await self._redis.get(self.key(command))
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"reading the budget of {command}: {type(exc).__name__}") from exc
        return parse_rate(raw)


class MemoryBudget:
    """Overrides in this process only (tests, or no Redis configured)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[int, float]] = {}

    async def lower(self, command: str, rate: int, hold_s: float) -> None:
        """See :meth:`BudgetStore.lower`."""
        _check(rate, hold_s)
        now = self._clock()
        until = now + hold_ms(hold_s) / 1000
        standing = self._held.get(command)
        if standing is not None and standing[1] > now:
            rate = min(rate, standing[0])
            until = max(until, standing[1])
        self._held[command] = (rate, until)

    async def current(self, command: str) -> int | None:
        """See :meth:`BudgetStore.current`."""
        standing = self._held.get(command)
        if standing is None:
            return None
        if standing[1] <= self._clock():
            del self._held[command]
            return None
        return standing[0]


class CachedOverride:
    """One command's override as a limiter sees it: read from the store at most every ``refresh_s``
    seconds, so that the hot path does not go to Redis on every call.

    An alarm therefore takes effect within ``refresh_s`` (and ends as late), which is well inside the
    minutes an alarm is held. When the store cannot be read the last value read stands (or none), and the
    store is asked again after another ``refresh_s``: a Redis hiccup neither fails calls nor drops an
    override in force.
    """

    def __init__(
        self,
        budget: BudgetStore,
        command: str,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = command
        self.refresh_s = refresh_s
        self._budget = budget
        self._clock = clock
        self._value: int | None = None
        self._read_at = float("-inf")

    async def override(self) -> int | None:
        """The override, as last read (re-read when the last read is ``refresh_s`` old)."""
        now = self._clock()
        if now - self._read_at >= self.refresh_s:
            self._read_at = now
            try:
                value = await self._budget.current(self.command)
            except BudgetUnavailable as exc:
                log.warning("tim.budget.unreadable", command=self.command, error=str(exc))
            else:
                if value != self._value:
                    log.info("tim.budget.override", command=self.command, rate=value)
                self._value = value
        return self._value

    async def rate(self, configured: int) -> int:
        """The rate to space calls for now: ``configured``, or the override standing below it."""
        return effective_rate(configured, await self.override())
