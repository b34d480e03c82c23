"""Job results: one record per job, published to the results queue and written to the log.

A result says what the job did and why: how much history it read, every match (message, sender, time,
rule, element path, evidence excerpt), what it recalled, what it left and for what reason, the API calls it
made, how many attempts it took and how long. Evidence is bounded; secrets never get here.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from worker.jobs import Job
from worker.pipeline import JobReport, SkipReason
from worker.redact import bounded, redact
from worker.tim.recall import RecallOutcome

Status = Literal["done", "dry_run", "escalated", "invalid", "failed"]
EVIDENCE_LIMIT = 200
WORKER_ID = f"{socket.gethostname()}/{os.getpid()}"


class MatchRecord(BaseModel):
    """One rule match on one message."""

    msg_key: str
    sender: str
    time: int
    rule_id: str
    rule_type: str = ""
    action: str = "recall"
    element_path: str = ""
    evidence: str = ""


class Skipped(BaseModel):
    """A matched message that was not recalled, and why."""

    msg_key: str
    reason: str


class FailedRecall(BaseModel):
    """A recall the service refused for good."""

    msg_key: str
    code: int
    info: str = ""


class JobResult(BaseModel):
    """The durable record of one job."""

    job_id: str | None
    status: Status
    conversation: dict[str, Any] | None = None
    suspect: str | None = None
    mode: str | None = None
    ruleset: str | None = None
    window: dict[str, int] | None = None
    report: dict[str, Any] | None = None
    #: The approved plan this job carried out, if it is a plan's apply job.
    apply_plan: int | None = None
    messages_scanned: int = 0
    pages_fetched: int = 0
    matches: list[MatchRecord] = Field(default_factory=list)
    recalled: list[str] = Field(default_factory=list)
    already_recalled: list[str] = Field(default_factory=list)
    planned: list[str] = Field(default_factory=list)
    #: Recalled by an approved wipe (``delete_group_msg_by_sender``), as the history showed afterwards.
    wiped: list[str] = Field(default_factory=list)
    #: Why this job proposed a wipe of the suspect's group messages (its plan is ``plan_ids["wipe"]``).
    wipe_proposed: str | None = None
    skipped: list[Skipped] = Field(default_factory=list)
    failed: list[FailedRecall] = Field(default_factory=list)
    unverified: list[str] = Field(default_factory=list)
    #: The plans this job stored for review: reason -> plan id (``dry_run``, ``over_cap``, ``wipe``, ...).
    plan_ids: dict[str, int] = Field(default_factory=dict)
    breakers: dict[str, str] = Field(default_factory=dict)
    api_calls: dict[str, int] = Field(default_factory=dict)
    attempts: int = 1
    duration_s: float = 0.0
    error: str | None = None
    #: Why an ``invalid`` or ``failed`` job ended so: its dead-letter reason (``invalid_job``,
    #: ``undecodable``, ``job_id_conflict``, ``attempts_exhausted``, ...).
    reason: str | None = None
    finished_at: float = Field(default_factory=time.time)
    worker: str = WORKER_ID

    def to_json(self) -> bytes:
        """The record as published."""
        return orjson.dumps(self.model_dump(mode="json"))


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "conversation": job.conversation.model_dump(),
        "suspect": job.suspect,
        "mode": job.mode,
        "ruleset": job.ruleset,
        "window": {"since": job.since, "until": job.until},
        "report": job.report.model_dump(exclude_defaults=True),
        "apply_plan": job.apply_plan,
    }


def result_of(job: Job, report: JobReport, *, attempts: int, duration_s: float) -> JobResult:
    """The result of a job that ran to the end."""
    matches = [
        MatchRecord(
            msg_key=item.ref.msg_key,
            sender=item.ref.sender,
            time=item.ref.timestamp,
            rule_id=match.rule_id,
            rule_type=getattr(match, "rule_type", ""),
            action=match.action,
            element_path=getattr(match, "element_path", ""),
            evidence=bounded(redact(getattr(match, "evidence", "")), EVIDENCE_LIMIT),
        )
        for item in report.matched
        for match in item.matches
    ]
    skipped = [Skipped(msg_key=key, reason=reason.value) for key, reason in report.plan.skipped]
    recalled, already, failed = [], [], []
    for outcome in report.recalls:
        if outcome.outcome is RecallOutcome.RECALLED:
            recalled.append(outcome.msg_key)
        elif outcome.outcome is RecallOutcome.ALREADY_RECALLED:
            already.append(outcome.msg_key)
        elif outcome.outcome is RecallOutcome.NOT_FOUND:
            skipped.append(Skipped(msg_key=outcome.msg_key, reason=SkipReason.NOT_FOUND.value))
        else:
            failed.append(FailedRecall(msg_key=outcome.msg_key, code=outcome.code, info=outcome.info))
    already += [key for key, reason in report.plan.skipped if reason is SkipReason.ALREADY_RECALLED]
    status: Status
    errors = []
    if failed:
        errors.append(f"{len(failed)} recall(s) refused by the service")
    if report.unverified:
        errors.append(f"{len(report.unverified)} recall(s) not visible in the history afterwards")
    if job.dry_run:
        status = "dry_run"
    elif report.plan.over_cap:
        status = "escalated"
    elif errors:
        status = "failed"
    else:
        status = "done"
    planned = [ref.msg_key for ref in report.plan.to_recall] if status in ("dry_run", "escalated") else []
    return JobResult(
        **_job_fields(job),
        status=status,
        messages_scanned=report.history.messages,
        pages_fetched=report.history.pages,
        matches=matches,
        recalled=recalled,
        already_recalled=sorted(set(already)),
        planned=planned,
        wiped=report.wiped,
        wipe_proposed=report.plan.wipe or None,
        skipped=skipped,
        failed=failed,
        unverified=report.unverified,
        plan_ids=report.plans,
        breakers=report.breakers,
        api_calls=report.api_calls,
        attempts=attempts,
        duration_s=round(duration_s, 3),
        error="; ".join(errors) or None,
    )


def failed_result(
    job: Job | None,
    *,
    job_id: str | None,
    status: Status,
    error: str,
    attempts: int,
    duration_s: float,
    reason: str | None = None,
) -> JobResult:
    """The result of a job that could not run (invalid) or gave up (failed)."""
    fields = _job_fields(job) if job is not None else {"job_id": job_id}
    return JobResult(
        **fields,
        status=status,
        error=bounded(redact(error), 1000),
        reason=reason,
        attempts=attempts,
        duration_s=round(duration_s, 3),
    )
