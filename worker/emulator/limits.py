"""The service's per-command frequency limit (200 calls/s by default), as a sliding one-second window.

The limit is the app's, shared by every caller of the app. A *second tenant* stands for the app's other
callers (another backend of the same app): it takes a steady share of a command's calls every second, so
the calls the emulator's clients may make are the limit minus that share. It is set through
``/_emulator/tenant`` and lets a test see the worker's fleet adapt to a budget it does not own.
"""

from __future__ import annotations

from collections import deque

DEFAULT_LIMIT = 200
WINDOW_S = 1.0


class ServerLimits:
    """Admit at most ``limit`` calls of a command in any one-second window, less what the second tenant
    takes; ``None`` lifts the limit."""

    def __init__(self, default: int | None = DEFAULT_LIMIT) -> None:
        self.default = default
        self.per_command: dict[str, int | None] = {}
        #: Calls per second of each command the second tenant makes.
        self.tenant: dict[str, int] = {}
        self._windows: dict[str, deque[float]] = {}

    def configure(self, default: int | None, per_command: dict[str, int | None]) -> None:
        """Set the limits and start every window afresh."""
        self.default = default
        self.per_command = dict(per_command)
        self._windows.clear()

    def set_tenant(self, per_command: dict[str, int]) -> None:
        """Let the second tenant take ``per_command`` calls/s of each command (0 or absent: none)."""
        self.tenant = {command: rate for command, rate in per_command.items() if rate > 0}

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
        left = limit - self.tenant.get(command, 0)
        # The last ``left`` calls must span a whole window before one more is admitted.
        if left <= 0 or (len(window) >= left and now - window[len(window) - left] < WINDOW_S):
            return False
        window.append(now)
        return True
