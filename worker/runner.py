"""Running one delivered job to a settlement, on the asyncio side of the worker.

A settlement says what the consumer must do with the delivery before acking it: publish a result (and an
escalation, or a dead letter), or publish a delayed retry. Deciding it is here; doing it (publishing,
acking) is the consumer's job, on the channel's own thread.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from worker.broker.topology import DELIVERY_LIMIT
from worker.jobs import Job
from worker.ledger.store import JobIdConflict, Ledger, Settled
from worker.pipeline import Policy, RuleSetLike, run_job
from worker.redact import redact
from worker.results import JobResult, failed_result, result_of
from worker.retry import RetryPolicy
from worker.tim.errors import TimError, TimProtocolError, credential_code
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
    HOLD = "hold"  # credentials refused: publish the job again after a delay, same attempt, ack; pause


@dataclass(slots=True)
class Settlement:
    """The outcome of one attempt of one job."""

    action: Action
    result: JobResult | None = None
    #: The result exactly as it is published: what the ledger stored, so a repeat is byte-identical.
    body: bytes = b""
    escalate: bool = False
    dead_reason: str | None = None
    retry_delay_s: float = 0.0
    error: str | None = None
    credential_code: int | None = None
    #: True when this is a settlement stored earlier, published again for a redelivered job.
    repeated: bool = False

    @classmethod
    def final(
        cls, result: JobResult, body: bytes, dead_reason: str | None, *, repeated: bool = False
    ) -> Settlement:
        """Publish ``body`` (``result``), and a dead letter if ``dead_reason``; escalate an escalated job."""
        return cls(
            Action.FINISH,
            result,
            body,
            escalate=result.status == "escalated",
            dead_reason=dead_reason,
            error=result.error,
            repeated=repeated,
        )

    @classmethod
    def refused(
        cls, job: Job | None, job_id: str | None, reason: str, error: str, attempt: int
    ) -> Settlement:
        """An ``invalid`` result for a job that must not run, dead-lettered with ``reason``."""
        result = failed_result(
            job, job_id=job_id, status="invalid", error=error, attempts=attempt, duration_s=0, reason=reason
        )
        return cls.final(result, result.to_json(), reason)


def is_transient(error: BaseException) -> bool:
    """Worth another attempt later: service hiccups, malformed replies, timeouts, unexpected failures.

    Only API errors the service gave as final (bad key, unknown account, ...) are not.
    """
    if isinstance(error, TimError):
        return error.retryable or isinstance(error, TimProtocolError)
    return True


#: A job the broker has handed out this many times (it keeps dying with its worker, or with the broker
#: connection) is ended here with a ``failed`` result, before the broker's own delivery limit would
#: dead-letter it without one.
REDELIVERY_LIMIT = DELIVERY_LIMIT - 2


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
    replayed_at: datetime | None = None,
    deliveries: int = 0,
) -> Settlement:
    """Run ``job`` once and decide its settlement. Never raises (but for cancellation).

    A job the ledger already settled is not run again: its stored result is published again, byte for
    byte (at-least-once delivery makes repeats happen). The exception is an operator's replay, at
    ``replayed_at``, of a job that failed before: that is a new attempt.
    """
    started = time.perf_counter()
    bound = log.bind(job_id=job.job_id, attempt=attempt, conversation=job.conversation.type)
    try:
        ruleset = rules.ruleset(job.ruleset)
    except LookupError as exc:
        error = f"unknown rule set {job.ruleset!r}: {exc}"
        return Settlement.refused(job, job.job_id, "unknown_ruleset", error, attempt)
    job_pk: int | None = None
    try:
        start = await asyncio.to_thread(
            ledger.start_job, job, ruleset_version=rules.version, replayed_at=replayed_at
        )
        if isinstance(start, Settled):
            bound.info("job.repeated", status=start.status, note="settled before: its result is sent again")
            return repeat_of(start)
        job_pk = start.pk
        if deliveries >= REDELIVERY_LIMIT:
            error = f"delivered {deliveries + 1} times without finishing (its worker died or lost the broker)"
            result = failed_result(
                job, job_id=job.job_id, status="failed", error=error, attempts=attempt, duration_s=0
            )
            return await _settle(ledger, job_pk, result, "redelivered_too_often")
        report = await asyncio.wait_for(
            run_job(job, client, ruleset, ledger=ledger, policy=policy, job_pk=job_pk), timeout=timeout_s
        )
        result = result_of(job, report, attempts=attempt, duration_s=time.perf_counter() - started)
        return await _settle(ledger, job_pk, result, _dead_reason_of(result))
    except asyncio.CancelledError:
        raise
    except JobIdConflict as exc:
        bound.warning("job.id_conflict", error=str(exc))
        return Settlement.refused(job, job.job_id, "job_id_conflict", str(exc), attempt)
    except Exception as exc:  # noqa: BLE001 - every failure must become a settlement, never kill the worker
        return await _failure(
            job,
            attempt,
            exc,
            job_pk=job_pk,
            ledger=ledger,
            retry=retry,
            timeout_s=timeout_s,
            started=started,
            bound=bound,
        )


async def _failure(
    job: Job,
    attempt: int,
    exc: Exception,
    *,
    job_pk: int | None,
    ledger: Ledger,
    retry: RetryPolicy,
    timeout_s: float,
    started: float,
    bound: Any,
) -> Settlement:
    """The settlement of an attempt that raised ``exc``: hold, retry, or give up with a ``failed`` result."""
    duration = time.perf_counter() - started
    error = redact(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, TimeoutError):
        error = f"job took longer than {timeout_s:g} s"
    elif not isinstance(exc, TimError):
        bound.exception("job.crashed")
    code = credential_code(exc)
    if code is not None:
        bound.error("job.credentials_rejected", code=code, error=error)
        await _finish_in_ledger(ledger, job_pk, "retrying", error)
        return Settlement(Action.HOLD, error=error, credential_code=code)
    transient = is_transient(exc)
    if transient and attempt < retry.max_attempts:
        delay = retry.delay_s(attempt)
        bound.warning("job.retry", error=error, delay_s=delay)
        await _finish_in_ledger(ledger, job_pk, "retrying", error)
        return Settlement(Action.RETRY, retry_delay_s=delay, error=error)
    reason = "attempts_exhausted" if transient else "permanent_error"
    result = failed_result(
        job,
        job_id=job.job_id,
        status="failed",
        error=error,
        attempts=attempt,
        duration_s=duration,
        reason=reason,
    )
    try:
        return await _settle(ledger, job_pk, result, reason)
    except Exception:  # the ledger is down too: publish the result unstored rather than lose it
        log.exception("ledger.settle_failed", job_pk=job_pk)
        return Settlement.final(result, result.to_json(), reason)


def _dead_reason_of(result: JobResult) -> str | None:
    if result.status != "failed":
        return None
    return "verification_failed" if result.unverified else "recall_refused"


async def _settle(
    ledger: Ledger, job_pk: int | None, result: JobResult, dead_reason: str | None
) -> Settlement:
    """Store the final result in the ledger (first settlement wins), and settle with what it holds."""
    if dead_reason is not None:
        result = result.model_copy(update={"reason": dead_reason})
    body = result.to_json()
    if job_pk is None:
        return Settlement.final(result, body, dead_reason)
    settled = await asyncio.to_thread(
        ledger.settle_job,
        job_pk,
        status=result.status,
        result=body,
        error=result.error,
        scanned=result.messages_scanned,
        pages=result.pages_fetched,
        dead_reason=dead_reason,
    )
    if settled.result != body:
        return repeat_of(settled)  # another delivery of this job settled it first
    return Settlement.final(result, body, dead_reason)


def repeat_of(settled: Settled) -> Settlement:
    """Publish a stored settlement again, exactly as it was."""
    try:
        result = JobResult.model_validate_json(settled.result)
    except ValueError:  # written by another version: publish the bytes anyway; this copy is only for logs
        result = JobResult(job_id=None, status="failed", error="stored result unreadable by this version")
    return Settlement.final(result, settled.result, settled.dead_reason, repeated=True)


async def _finish_in_ledger(ledger: Ledger, job_pk: int | None, status: str, error: str | None) -> None:
    if job_pk is None:
        return
    try:
        await asyncio.to_thread(ledger.finish_job, job_pk, status=status, error=error, scanned=0, pages=0)
    except Exception:
        # The delivery is still settled (retried or held); the ledger row keeps its last state.
        log.exception("ledger.finish_failed", job_pk=job_pk)
