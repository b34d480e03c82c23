"""The headers the worker reads and writes on its messages, and how a delivered message is read safely.

A delivery's headers come from whoever published it (or from the broker): they may be of any AMQP type,
hold anything, and be as large as a frame allows. Nothing of them is copied onward blindly: a republished
job (a delayed retry, a dead letter) carries only the worker's own headers, each of a plain type and
bounded, so a publish can never fail because of what some producer put in a header.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from worker import priority as prio
from worker.jobs import is_valid_job_id
from worker.redact import bounded

JOB_ID = "x-job-id"
ATTEMPT = "x-attempt"
LAST_ERROR = "x-last-error"
REPLAYED_AT = "x-replayed-at"
DEAD_REASON = "x-dead-reason"
DEAD_ERROR = "x-dead-error"
DEAD_AT = "x-dead-at"
ATTEMPTS = "x-attempts"
STATUS = "x-status"
ORIGINAL_CONTENT_TYPE = "x-original-content-type"
ORIGINAL_COMPRESSION = "x-original-compression"
#: Set by quorum queues on redelivery: how many times the broker handed this message out before.
DELIVERY_COUNT = "x-delivery-count"

#: The longest text each header of ours may hold; anything else is cut to ``DEFAULT_TEXT_LIMIT``.
TEXT_LIMITS = {LAST_ERROR: 500, DEAD_ERROR: 2000, JOB_ID: 128}
DEFAULT_TEXT_LIMIT = 200

#: Headers that travel with a job when it is republished (a retry, a dead letter).
CARRIED = (JOB_ID, ATTEMPT, LAST_ERROR, REPLAYED_AT)


def plain(name: str, value: Any) -> str | int | float | bool | None:
    """``value`` as a header of ours may hold it: a bounded string or a number; None if it is neither."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return bounded(value, TEXT_LIMITS.get(name, DEFAULT_TEXT_LIMIT))
    return None


def own(headers: Any, names: tuple[str, ...] = CARRIED) -> dict[str, Any]:
    """The headers among ``names`` that ``headers`` holds, each of a plain type and bounded."""
    if not isinstance(headers, dict):
        return {}
    kept: dict[str, Any] = {}
    for name in names:
        value = plain(name, headers.get(name))
        if value is not None:
            kept[name] = value
    return kept


def valid_job_id(value: Any) -> str | None:
    """``value`` if it could be a job id (so it may go into a header), else None."""
    return value if is_valid_job_id(value) else None


def attempt_of(headers: Any) -> int:
    """The attempt number a delivery carries (1 when absent or nonsense)."""
    value = headers.get(ATTEMPT) if isinstance(headers, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10_000 else 1


def now_stamp() -> float:
    """The time now as a header holds it: Unix seconds, to the millisecond."""
    return round(time.time(), 3)


def replayed_at(headers: Any) -> datetime | None:
    """When an operator replayed this job (``dlq replay``, ``plans requeue``), if one did."""
    value = headers.get(REPLAYED_AT) if isinstance(headers, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 2**32:
        return None
    return datetime.fromtimestamp(value, UTC)


def delivery_count(headers: Any) -> int:
    """How many times the broker delivered this message before (0 when it does not say)."""
    value = headers.get(DELIVERY_COUNT) if isinstance(headers, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def priority_of(message: Any) -> int:
    """A delivered message's priority (its AMQP ``priority`` property), 0 to 9; 0 when it has none.

    Not a header: the broker property travels with the message (through RabbitMQ's dead-lettering too) and
    is what the embedded queue orders by.
    """
    properties = getattr(message, "properties", None)
    return prio.of_property(properties.get("priority") if isinstance(properties, dict) else None)


def raw_body(message: Any) -> bytes:
    """The body of a delivered message as bytes (py-amqp may hand back text it decoded itself)."""
    body = getattr(message, "body", b"")
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    return str(body).encode("utf-8", "surrogateescape")


def headers_of(message: Any) -> dict[str, Any]:
    """A delivered message's headers, whatever kind of message object the transport gave."""
    headers = getattr(message, "headers", None)
    if headers is None:
        headers = (getattr(message, "properties", None) or {}).get("application_headers")
    return headers if isinstance(headers, dict) else {}


#: Content types a job may arrive as (besides none at all): JSON, in its common spellings.
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json"})
#: Character encodings a job body may declare: JSON is UTF-8 (RFC 8259); "binary" is what kombu says of
#: bytes published without an encoding.
JSON_ENCODINGS = frozenset({"utf-8", "utf8", "ascii", "us-ascii", "binary"})


def transport_problem(message: Any) -> str | None:
    """Why a delivered message cannot hold a job, judged by its properties alone (None: it may)."""
    content_type = str(getattr(message, "content_type", None) or "").split(";")[0].strip().lower()
    if content_type and content_type not in JSON_CONTENT_TYPES and not content_type.endswith("+json"):
        return f"content type {bounded(content_type, 100)!r} is not JSON"
    encoding = str(getattr(message, "content_encoding", None) or "").strip().lower()
    if encoding and encoding not in JSON_ENCODINGS:
        return f"content encoding {bounded(encoding, 100)!r} is not UTF-8"
    return None
