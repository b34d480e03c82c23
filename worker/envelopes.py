"""Showing queued messages (results, dead letters) as JSON lines, whatever their bodies hold.

A dead letter may be anything a producer sent: not JSON, not UTF-8, JSON nested deeper than a serializer
allows, headers of any AMQP type. Each becomes one JSON line that always serializes: a JSON body as itself,
other text as ``body_text``, other bytes as ``body_base64``; header values that JSON has no type for as
text.
"""

from __future__ import annotations

import base64
import datetime
import decimal
from typing import Any, Protocol

import orjson

#: Longest body shown as text or base64 (a dead letter can be as large as the broker allows).
SHOWN_BODY_LIMIT = 64 * 1024


class EnvelopeLike(Protocol):
    """A message as read from a queue (``worker.queues.Envelope``)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, Any]: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def priority(self) -> int: ...


def _header_value(value: Any) -> Any:
    """What orjson cannot serialize itself, as text (bytes as base64)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, decimal.Decimal | datetime.datetime):
        return str(value)
    return repr(value)


def body_fields(body: bytes) -> dict[str, Any]:
    """The body as one of ``body`` (JSON), ``body_text`` or ``body_base64``, cut at SHOWN_BODY_LIMIT."""
    try:
        value = orjson.loads(body)
        orjson.dumps(value)  # JSON nested deeper than the serializer allows is shown as text
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    else:
        return {"body": value}
    shown = body[:SHOWN_BODY_LIMIT]
    cut = {"body_bytes": len(body)} if len(body) > SHOWN_BODY_LIMIT else {}
    try:
        return {"body_text": shown.decode("utf-8"), **cut}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(shown).decode(), **cut}


def envelope_line(envelope: EnvelopeLike, *, with_headers: bool) -> str:
    """One JSON line for ``envelope``: its body alone, or with its headers and content type."""
    fields = body_fields(envelope.body)
    if not with_headers:
        line: Any = fields.get("body", fields)
    else:
        line = {"headers": envelope.headers, **fields}
        if envelope.content_type not in (None, "", "application/json"):
            line["content_type"] = envelope.content_type
        if envelope.priority:  # a dead letter's job priority, which a replay keeps
            line["priority"] = envelope.priority
    return orjson.dumps(line, default=_header_value, option=orjson.OPT_NON_STR_KEYS).decode()
