"""Running one delivered job to a settlement, on the asyncio side of the worker.

A settlement says what the consumer must do with the delivery before acking it: publish a result (and an
escalation, or a dead letter), or publish a delayed retry. Deciding it is here; doing it (publishing,
acking) is the consumer's job, on the channel's own thread.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from worker.jobs import Job
from worker.ledger.store import Ledger
from worker.pipeline import Policy, RuleSetLike, run_job
from worker.redact import redact
from worker.results import JobResult, failed_result, result_of
from worker.tim.errors import TimError, TimProtocolError
from worker.tim.history import ApiCaller

log = structlog.get_logger("worker.runner")


class RuleSource(Protocol):
    """Where the current rule sets come from (``rules.RuleStore``)."""

    @property
    def version(self) -> str: ...

    def ruleset(self, name: str) -> RuleSetLike: ...


class Action(enum.Enum):
    """What to do with the delivery."""

    FINISH = "finish"  # publish the result (and escalation / dead letter if set), ack
    RETRY = "retry"  # publish the job again after a delay with the next attempt number, ack


@dataclass(slots=True)
class Settlement:
    """The outcome of one attempt of one job."""

    action: Action
    result: JobResult | None = None
    escalate: bool = False
    dead_reason: str | None = None
    retry_delay_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Job-level retries: each a new delayed publish, never a sleep inside the worker."""

    max_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0

    def delay_s(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: base, doubled each attempt, capped."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


def is_transient(error: BaseException) -> bool:
    """Worth another attempt later: service hiccups, malformed replies, timeouts, unexpected failures.

    Only API errors the service gave as final (bad key, unknown account, ...) are not.
    """
    if isinstance(error, TimError):
        return error.retryable or isinstance(error, TimProtocolError)
    return True


async def execute(
    job: Job,
    attempt: int,
    *,
    client: ApiCaller,
    rules: RuleSource,
    ledger: Ledger,
    policy: Policy,
    retry: RetryPolicy,
    timeout_s: float,
) -> Settlement:
    """Run ``job`` once and decide its settlement. Never raises (but for cancellation)."""
    started = time.perf_counter()
    bound = log.bind(job_id=job.job_id, attempt=attempt, conversation=job.conversation.type)
    try:
        ruleset = rules.ruleset(job.ruleset)
    except LookupError as exc:
        error = f"unknown rule set {job.ruleset!r}: {exc}"
        result = failed_result(
            job, job_id=job.job_id, status="invalid", error=error, attempts=attempt, duration_s=0
        )
        return Settlement(Action.FINISH, result, dead_reason="unknown_ruleset", error=error)
    job_pk: int | None = None
    try:
        job_pk = await asyncio.to_thread(ledger.start_job, job, ruleset_version=rules.version)
        report = await asyncio.wait_for(
            run_job(job, client, ruleset, ledger=ledger, policy=policy, job_pk=job_pk), timeout=timeout_s
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must become a settlement, never kill the worker
        duration = time.perf_counter() - started
        error = redact(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TimeoutError):
            error = f"job took longer than {timeout_s:g} s"
        if not isinstance(exc, TimError | TimeoutError):
            bound.exception("job.crashed")
        if is_transient(exc) and attempt < retry.max_attempts:
            delay = retry.delay_s(attempt)
            bound.warning("job.retry", error=error, delay_s=delay)
            await _finish_in_ledger(ledger, job_pk, "retrying", error)
            return Settlement(Action.RETRY, retry_delay_s=delay, error=error)
        reason = "attempts_exhausted" if is_transient(exc) else "permanent_error"
        result = failed_result(
            job, job_id=job.job_id, status="failed", error=error, attempts=attempt, duration_s=duration
        )
        await _finish_in_ledger(ledger, job_pk, "failed", error)
        return Settlement(Action.FINISH, result, dead_reason=reason, error=error)
    result = result_of(job, report, attempts=attempt, duration_s=time.perf_counter() - started)
    await _finish_in_ledger(
        ledger,
        job_pk,
        result.status,
        result.error,
        scanned=result.messages_scanned,
        pages=result.pages_fetched,
    )
    dead_reason = None
    if result.status == "failed":
        dead_reason = "verification_failed" if result.unverified else "recall_refused"
    return Settlement(
        Action.FINISH,
        result,
        escalate=result.status == "escalated",
        dead_reason=dead_reason,
        error=result.error,
    )


async def _finish_in_ledger(
    ledger: Ledger, job_pk: int | None, status: str, error: str | None, *, scanned: int = 0, pages: int = 0
) -> None:
    if job_pk is None:
        return
    try:
        await asyncio.to_thread(
            ledger.finish_job, job_pk, status=status, error=error, scanned=scanned, pages=pages
        )
    except Exception:
        # The result is still published; the ledger row keeps its last state.
        log.exception("ledger.finish_failed", job_pk=job_pk)
