"""Building reports and signed requests for the intake's tests."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from worker.intake.model import parse_report
from worker.intake.signing import signed_headers
from worker.intake.store import Incoming

KEY_ID = "k1"
SECRET = "test-intake-secret-0123456789"
NEXT_KEY_ID = "k2"
NEXT_SECRET = "next-intake-secret-9876543210"
KEYS = {KEY_ID: SECRET}
NOW = 1_800_000_000

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
