"""A job's id is its idempotency key: one id, one job; a settled job's result is final.

The ledger stores each job's fingerprint (a hash of the job itself) with its id. A delivery naming a known
id with another job is refused (:class:`JobIdConflict`) and leaves the first job's record alone; a delivery
of a job the ledger already settled gets the stored settlement back (:class:`Settled`) instead of a new run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row

from worker.jobs import Job
from worker.ledger.clock import now
from worker.ledger.models import JobRow
from worker.ledger.scans import conversation_key


def job_fingerprint(job: Job) -> str:
    """SHA-256 (hex) of the job's canonical JSON: sorted keys, every field, defaults included.

    Two documents that parse to the same :class:`~worker.jobs.Job` have the same fingerprint.
    """
    canonical = orjson.dumps(job.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class JobIdConflict(ValueError):
    """A job reuses the id of another job the ledger holds."""

    def __init__(self, job_id: str, conversation_key: str, suspect: str) -> None:
        super().__init__(
            f"job_id {job_id!r} was already used for another job ({conversation_key[:200]}, suspect "
            f"{suspect[:64]}); use a new job_id"
        )
        self.job_id = job_id


@dataclass(frozen=True, slots=True)
class Started:
    """A new attempt of a job: its row id, and the ledger's attempt count including this one."""

    pk: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A job the ledger already settled: its final status and its published result, byte for byte."""

    status: str
    result: bytes
    dead_reason: str | None


def job_values(job: Job, fingerprint: str) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "conversation_key": conversation_key(job),
        "conversation": job.conversation.model_dump(),
        "suspect": job.suspect,
        "mode": job.mode,
        "ruleset": job.ruleset,
        "ruleset_version": "",
        "report": job.report.model_dump(exclude_defaults=True),
        "window_since": job.since,
        "window_until": job.until,
        "applies_plan": job.apply_plan,
        "status": "running",
        "attempts": 0,
        "messages_scanned": 0,
        "pages_fetched": 0,
        "created_at": now(),
        "fingerprint": fingerprint,
    }


def same_job(row: JobRow | Row[*tuple[Any, ...]], job: Job) -> bool:
    """Whether a row written before fingerprints records ``job`` (every field it kept agrees)."""
    kept = job_values(job, "")
    return all(
        getattr(row, name) == kept[name]
        for name in (
            "conversation_key",
            "conversation",
            "suspect",
            "mode",
            "ruleset",
            "report",
            "window_since",
            "window_until",
            "applies_plan",
        )
    )


def settled(row: JobRow | Row[*tuple[Any, ...]]) -> Settled:
    """The settlement a settled job's row (ORM, or a Core row with its status, result and dead reason)
    holds."""
    if row.result is None:
        raise AssertionError("only a settled job has a settlement")  # pragma: no cover
    return Settled(row.status, row.result.encode(), row.dead_reason)
