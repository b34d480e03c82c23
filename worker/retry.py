"""Job-level retries: each a new delayed publish of the job, never a sleep inside the worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Job-level retries: each a new delayed publish, never a sleep inside the worker."""

    max_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0

    def delay_s(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: base, doubled each attempt, capped."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))

    def delays_s(self) -> list[float]:
        """Every delay a job can wait between attempts (one retry queue each on RabbitMQ)."""
        return sorted({self.delay_s(attempt) for attempt in range(1, self.max_attempts)})
