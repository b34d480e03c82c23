"""A fake clock and the sleeps that move it, for limiter tests that must not wait."""

from __future__ import annotations

import itertools
from collections.abc import Iterator


class FakeClock:
    """A monotonic clock that moves only when told (``now``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSleeps:
    """A sleep moving a :class:`FakeClock` on by the time asked, plus an overshoot from ``overshoots``
    (real sleeps wake late; none by default)."""

    def __init__(self, clock: FakeClock, overshoots: Iterator[float] | None = None) -> None:
        self.clock = clock
        self.overshoots = overshoots if overshoots is not None else itertools.repeat(0.0)

    async def __call__(self, seconds: float) -> None:
        self.clock.now += seconds + next(self.overshoots)
