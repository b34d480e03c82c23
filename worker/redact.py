"""Scrub secrets (the app key, UserSigs) out of any text before it is logged, raised or stored.

Secrets are registered once where they are created; every log line, exception message and result passes
through :func:`redact`. The query-string pattern catches UserSigs that were never registered, such as one
pasted into a URL by hand.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque

MASK = "***"

_USERSIG_PARAM = re.compile(r"(?i)(usersig=)[^&\s\"']+")
_MIN_SECRET_LEN = 6  # shorter strings would mask ordinary words

_lock = threading.Lock()
# Bounded: UserSigs are renewed over a long-running process; the newest ones are the ones that can leak.
_secrets: deque[str] = deque(maxlen=64)


def register_secret(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` masks it wherever it appears."""
    if len(secret) < _MIN_SECRET_LEN:
        return
    with _lock:
        if secret not in _secrets:
            _secrets.append(secret)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and every ``usersig=`` value masked."""
    with _lock:
        secrets = tuple(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _USERSIG_PARAM.sub(r"\1" + MASK, text)


def bounded(text: str, limit: int = 200) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut, so message text never floods a log."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"…(+{len(text) - limit} chars)"


class RedactingFilter(logging.Filter):
    """A :mod:`logging` filter that redacts the formatted message of every record it sees.

    Attached to third-party loggers (httpx logs each request URL, UserSig included, at INFO).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def protect_logger(name: str) -> None:
    """Attach a :class:`RedactingFilter` to the standard logger ``name`` (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
