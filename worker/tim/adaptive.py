"""The adaptive part of a command's rate: how fast the fleet may call, given the rate-limit answers it got.

The service's limit is per app, and the app's other callers (another backend, a second tenant) use the
same budget. So the rate the fleet spaces its calls for is not fixed: it starts at the configured ceiling,
and a rate-limit answer (60007, 60011, 60018, 60019) takes it down; it climbs back on its own.

- **Back off** (multiplicative): the rate drops to ``backoff`` × the rate that was refused (never under
  ``floor``). Answers within ``cooldown_s`` of a drop are ignored: they come from calls already on their way.
- **Recover** (additive): the rate climbs ``recover_per_s`` calls a second back up to ``safe_share`` × the
  refused rate, and stays there: just under what was refused, so the answers stop.
- **Probe**: ``probe_after_s`` after the last drop, the rate grows by ``probe_growth`` a second until the
  ceiling or the next answer. If the other caller has gone the fleet is back at the ceiling in seconds; if
  not, the probe costs a few answers, and the cycle starts again.

Rates are calls per limiter window (see :mod:`worker.tim.ratelimit`). The same arithmetic runs in Python
here (one process) and in Redis (the whole fleet, :data:`worker.tim.ratelimit.RESERVE`): these functions
are its reference. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Calls per window no rate-limit answer takes a command under (``RECALL_TIM_RATE_FLOOR``).
DEFAULT_FLOOR = 10.0


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    """How a command's rate backs off and climbs back."""

    ceiling: float
    floor: float = DEFAULT_FLOOR
    backoff: float = 0.7
    safe_share: float = 0.95
    recover_per_s: float = 10.0
    probe_after_s: float = 15.0
    probe_growth: float = 0.10
    cooldown_s: float = 1.0

    @classmethod
    def for_rate(cls, rate: float, policy: AdaptivePolicy | None = None) -> AdaptivePolicy:
        """``policy`` (or the default one, its floor at most ``rate``) with ``rate`` as its ceiling: a
        limiter's configured rate is the only ceiling there is."""
        if policy is None:
            return cls(ceiling=rate, floor=min(float(rate), DEFAULT_FLOOR))
        return replace(policy, ceiling=rate)

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise ValueError("the floor must be positive and at most the ceiling")
        if not 0 < self.backoff < 1 or not 0 < self.safe_share <= 1:
            raise ValueError("backoff must be in (0, 1) and safe_share in (0, 1]")
        if self.recover_per_s <= 0 or self.probe_growth <= 0 or self.probe_after_s < 0 or self.cooldown_s < 0:
            raise ValueError("recovery, probe growth, probe delay and cooldown must be positive")


@dataclass(frozen=True, slots=True)
class RateState:
    """Where a command's rate stands after its last drop (times in seconds of the limiter's clock)."""

    base: float  # the rate right after the drop
    safe: float  # the level it recovers to and holds until probing
    since: float  # when it dropped
    probe_at: float  # when probing starts


def rate_at(policy: AdaptivePolicy, state: RateState | None, now: float) -> float:
    """The rate at ``now`` (the ceiling when nothing was ever refused)."""
    if state is None:
        return policy.ceiling
    if now < state.probe_at:
        rate = min(state.safe, state.base + policy.recover_per_s * (now - state.since))
    else:
        level = min(state.safe, state.base + policy.recover_per_s * (state.probe_at - state.since))
        rate = level * (1 + policy.probe_growth) ** (now - state.probe_at)
    return max(policy.floor, min(policy.ceiling, rate))


def after_limited(
    policy: AdaptivePolicy, state: RateState | None, now: float, cap: float | None = None
) -> RateState | None:
    """The state after a rate-limit answer at ``now``; None when the answer is ignored (in the cooldown).

    ``cap`` is a lower rate standing over the adaptive one (Tencent's rate alarm), if any: what was
    refused is the rate actually used.
    """
    if state is not None and now - state.since < policy.cooldown_s:
        return None
    refused = rate_at(policy, state, now)
    if cap is not None:
        refused = min(refused, cap)
    base = max(policy.floor, policy.backoff * refused)
    safe = max(base, policy.safe_share * refused)
    return RateState(base, safe, now, now + policy.probe_after_s)
