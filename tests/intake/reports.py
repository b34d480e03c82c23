"""Building reports and signed requests for the intake's tests."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from sqlalchemy import select

from worker.intake.model import parse_report
from worker.intake.signing import signed_headers
from worker.intake.store import Incoming, IntakeStore
from worker.jobs import parse_job
from worker.ledger.models import OutboxRow
from worker.ledger.store import Ledger
from worker.results import JobResult

KEY_ID = "k1"
SECRET = "test-intake-secret-0123456789"
NEXT_KEY_ID = "k2"
NEXT_SECRET = "next-intake-secret-9876543210"
KEYS = {KEY_ID: SECRET}
NOW = 1_800_000_000
QUIET_S = 30.0

_signatures = itertools.count()


def report_body(**fields: Any) -> dict[str, Any]:
    """A valid group report (fields override)."""
    body: dict[str, Any] = {
        "reporter": "reporter1",
        "suspect": "spammer",
        "conversation": {"type": "group", "group_id": "@TGS#group1"},
        "msg_seqs": [10],
        "category": "spam",
        "reported_at": NOW,
    }
    body.update(fields)
    return body


def incoming(signature: str | None = None, **fields: Any) -> Incoming:
    """A report as the store receives it, with a fresh signature unless one is given."""
    report = parse_report(orjson.dumps(report_body(**fields)))
    return Incoming(report, signature or f"sig-{next(_signatures):08d}", KEY_ID)


def signed(
    body: dict[str, Any] | bytes,
    *,
    path: str = "/v1/reports",
    method: str = "POST",
    key_id: str = KEY_ID,
    secret: str = SECRET,
    now: float | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed request."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = signed_headers(key_id, secret, method, path, raw if method == "POST" else b"", now=now)
    return raw, {**headers, "Content-Type": "application/json"}


class Clock:
    """A settable clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settle(ledger: Ledger, store: IntakeStore, job_id: str, **result: Any) -> None:
    """Run the outbox's job ``job_id`` through the ledger as a worker would: start it, settle it with a
    result record of ``result``'s fields (``status`` defaults to done)."""
    with store.engine.connect() as connection:
        body = connection.execute(select(OutboxRow.body).where(OutboxRow.job_id == job_id)).scalar_one()
    started = ledger.start_job(parse_job(body), ruleset_version="test")
    status = str(result.pop("status", "done"))
    record = JobResult(job_id=job_id, status=status, **result)
    ledger.settle_job(
        started.pk,  # type: ignore[union-attr]
        status=status,
        result=record.to_json(),
        error=None,
        scanned=int(result.get("messages_scanned", 0)),
        pages=1,
        dead_reason=None,
    )
