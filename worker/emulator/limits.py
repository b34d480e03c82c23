"""The service's per-command frequency limit (200 calls/s by default), as a sliding one-second window."""

from __future__ import annotations

from collections import deque

DEFAULT_LIMIT = 200
WINDOW_S = 1.0


class ServerLimits:
    """Admit at most ``limit`` calls of a command in any one-second window; ``None`` lifts the limit."""

    def __init__(self, default: int | None = DEFAULT_LIMIT) -> None:
        self.default = default
        self.per_command: dict[str, int | None] = {}
        self._windows: dict[str, deque[float]] = {}

    def configure(self, default: int | None, per_command: dict[str, int | None]) -> None:
        """Set the limits and start every window afresh."""
        self.default = default
        self.per_command = dict(per_command)
        self._windows.clear()

    def limit_of(self, command: str) -> int | None:
        """The limit of ``command``."""
        return self.per_command.get(command, self.default)

    def admit(self, command: str, now: float) -> bool:
        """Count a call of ``command`` at monotonic time ``now``; False if it is over the limit."""
        limit = self.limit_of(command)
        if not limit:
            return True
        window = self._windows.get(command)
        if window is None or window.maxlen != limit:
            window = self._windows[command] = deque(maxlen=limit)
        if len(window) == limit and now - window[0] < WINDOW_S:
            return False
        window.append(now)
        return True
