"""The emulator's clock: wall time plus an offset that the control surface can set or advance."""

from __future__ import annotations

import time


class Clock:
    """Seconds since the epoch as the emulated service sees them."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Current emulated time, fractional seconds."""
        return time.time() + self._offset

    def now_s(self) -> int:
        """Current emulated time, whole seconds (what message timestamps use)."""
        return int(self.now())

    def set(self, epoch_s: float) -> None:
        """Make the clock read ``epoch_s`` now; it keeps running from there."""
        self._offset = epoch_s - time.time()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) by ``seconds``."""
        self._offset += seconds

    def reset(self) -> None:
        """Back to wall time."""
        self._offset = 0.0
