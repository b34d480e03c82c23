"""Injected faults: error codes, HTTP 502s, added latency, timeouts, silently dropped recalls.

Faults are set per command (or ``"*"`` for every command) as rates, drawn from a seeded generator so a
test can replay them, and as an exact queue (``fail_next``) for tests that count attempts.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class CommandFaults(BaseModel):
    """Fault rates of one command."""

    model_config = ConfigDict(extra="forbid")

    error_rates: dict[int, float] = Field(default_factory=dict, description="ErrorCode -> probability")
    http_502_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_s: float = Field(30.0, ge=0)
    drop_recall_rate: float = Field(0.0, ge=0, le=1)


class FaultSpec(BaseModel):
    """The body of ``POST /_emulator/faults``."""

    model_config = ConfigDict(extra="forbid")

    commands: dict[str, CommandFaults] = Field(default_factory=dict)
    #: Exact outcomes for the next calls of a command: an ErrorCode, "http_502" or "timeout".
    fail_next: dict[str, list[int | str]] = Field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one call instead of serving it."""

    kind: str  # "code" | "http" | "timeout"
    value: float = 0


class FaultPlan:
    """The faults in force."""

    def __init__(self) -> None:
        self.spec = FaultSpec()
        self._rng = random.Random()
        self._queues: dict[str, deque[int | str]] = {}

    def configure(self, spec: FaultSpec) -> None:
        """Replace every fault with ``spec``."""
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._queues = {cmd: deque(outcomes) for cmd, outcomes in spec.fail_next.items()}

    def clear(self) -> None:
        """No faults."""
        self.configure(FaultSpec())

    def _faults(self, command: str) -> CommandFaults | None:
        return self.spec.commands.get(command) or self.spec.commands.get("*")

    def latency_s(self, command: str) -> float:
        """Extra latency to add to a call of ``command``."""
        faults = self._faults(command)
        return faults.latency_ms / 1000 if faults else 0.0

    def draw(self, command: str) -> Fault | None:
        """The fault to inflict on this call of ``command``, if any."""
        queue = self._queues.get(command) or self._queues.get("*")
        if queue:
            outcome = queue.popleft()
            if outcome == "timeout":
                faults = self._faults(command)
                return Fault("timeout", faults.timeout_s if faults else 30.0)
            if isinstance(outcome, str):
                return Fault("http", int(outcome.removeprefix("http_")))
            return Fault("code", outcome)
        faults = self._faults(command)
        if faults is None:
            return None
        roll = self._rng.random()
        for threshold, fault in (
            (faults.http_502_rate, Fault("http", 502)),
            (faults.timeout_rate, Fault("timeout", faults.timeout_s)),
            *((rate, Fault("code", code)) for code, rate in faults.error_rates.items()),
        ):
            if roll < threshold:
                return fault
            roll -= threshold
        return None

    def drop_recall(self, command: str) -> bool:
        """Whether this recall should be answered OK but not applied."""
        faults = self._faults(command)
        return bool(faults and faults.drop_recall_rate and self._rng.random() < faults.drop_recall_rate)
