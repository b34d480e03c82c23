"""structlog setup: JSON lines in production, readable console output on a terminal.

Every event passes through :func:`redact_event`, which masks the app key and UserSigs in every string
value, however deeply nested, so no code path can leak them by logging the wrong thing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.redact import RedactingFilter, protect_logger, redact


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every field."""
    for key, value in event.items():
        event[key] = _scrub(value)
    return event


def _redact_rendered(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Tracebacks are rendered into "exception" after redact_event ran; scrub them too.
    if isinstance(event.get("exception"), str):
        event["exception"] = redact(event["exception"])
    return event


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is at that moment (it may be swapped)."""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Set up structlog (and route the standard library's logging through the same redaction)."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_event,
    ]
    renderer: Any
    if json_output:
        shared += [structlog.processors.format_exc_info, _redact_rendered]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    for name in ("httpx", "httpcore"):
        protect_logger(name)
