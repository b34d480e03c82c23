"""Outcome webhooks: one signed POST per report to the app backend, and the pure pieces around it.

A delivery is tried by :func:`post_webhook`, which never raises for anything the network or the receiver
does: it returns an :class:`Attempt` saying whether the receiver took the payload and, if not, whether
trying again later can help. The retry bookkeeping (which attempt, when next, when dead) lives elsewhere;
it waits :func:`backoff_s` (or the receiver's ``Retry-After``, whichever is longer) between tries.

The request is signed like every request of this project (:mod:`worker.intake.signing`), with key id
``webhook``::

    POST <the app's URL>
    Content-Type: application/json
    X-Recall-Delivery: <delivery id>          (when the payload has one; the same on every retry)
    X-Recall-Key: webhook
    X-Recall-Timestamp: <Unix seconds>
    X-Recall-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>\\nPOST\\n<path>\\n" + body)>

``<path>`` is the URL's path (percent-decoded, as web frameworks hand it over), without the query string.
An app backend checks a delivery with :func:`verify_webhook`.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from worker.intake.signing import signed_headers, verify
from worker.redact import MASK, bounded, redact

#: Key id of the webhook secret in the ``X-Recall-Key`` header.
WEBHOOK_KEY_ID = "webhook"
#: Names the delivery; a receiver uses it to drop a retry of a delivery it already took.
DELIVERY_HEADER = "X-Recall-Delivery"
#: ``Attempt.error`` is at most about this many characters.
ERROR_LIMIT = 200
#: Characters of the receiver's answer quoted in an error.
QUOTE_LIMIT = 80
#: Bytes of the receiver's answer read at most (only to quote it).
READ_LIMIT = 1024
#: A ``Retry-After`` longer than this is taken as this: a receiver cannot park a delivery for weeks.
MAX_RETRY_AFTER_S = 86400.0
#: Statuses worth trying again besides 5xx: the receiver timed out reading, or asks to slow down.
RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST of a webhook came to.

    ``ok``: the receiver answered 2xx. ``status``: its HTTP status, None when there was no answer.
    ``error``: why it did not work, short and free of the secret ("" when ok). ``retryable``: whether
    the same delivery may succeed later (network errors, timeouts, 408, 429, 5xx); a receiver that
    refuses the payload (other 4xx) or a URL that cannot work will not change its mind.
    ``retry_after_s``: the receiver's ``Retry-After``, in seconds from now, when it sent one.
    """

    ok: bool
    status: int | None
    error: str = ""
    retryable: bool = False
    retry_after_s: float | None = None


# pure pieces ------------------------------------------------------------------------------------------


def backoff_s(
    attempt: int,
    *,
    base_s: float = 2.0,
    cap_s: float = 600.0,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay before retry number ``attempt`` (1-based): ``base_s`` doubled each time, at most
    ``cap_s``, then spread by up to ``jitter`` of itself either way so retries of many deliveries do not
    arrive together. The result lies in ``[d * (1 - jitter), d * (1 + jitter)]`` for
    ``d = min(cap_s, base_s * 2 ** (attempt - 1))``. ``rand`` returns a float in ``[0, 1)``."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if base_s < 0 or cap_s < 0:
        raise ValueError("base_s and cap_s must not be negative")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter is a fraction in [0, 1), got {jitter}")
    # The exponent is bounded so a very large attempt number caps instead of overflowing a float.
    delay = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return delay * (1.0 + jitter * (2.0 * rand() - 1.0))


def webhook_path(url: str) -> str:
    """The path that is signed for ``url``: its path, percent-decoded, without the query ("/" if empty).

    Raises :class:`httpx.InvalidURL` for a URL that cannot be parsed."""
    return httpx.URL(url).path or "/"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date), None if absent or
    unreadable; never negative and at most :data:`MAX_RETRY_AFTER_S`."""
    if value is None:
        return None
    text = value.strip()
    seconds: float
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def scrub(text: str, secret: str) -> str:
    """``text`` without the secret (and without anything :func:`worker.redact.redact` masks), on one line,
    cut to :data:`ERROR_LIMIT` characters."""
    if secret:
        text = text.replace(secret, MASK)
    text = " ".join(redact(text).split())
    return bounded(text, ERROR_LIMIT)


def status_attempt(
    status: int, *, reason: str = "", answer: str = "", retry_after_s: float | None = None, secret: str = ""
) -> Attempt:
    """The :class:`Attempt` of a receiver that answered ``status`` (``answer``: the start of its body,
    quoted in the error)."""
    if 200 <= status < 300:
        return Attempt(ok=True, status=status)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    error = f"HTTP {status}" + (f" {reason}" if reason else "")
    if 300 <= status < 400:
        error += " (redirects are not followed: configure the final URL)"
    quoted = " ".join(answer.split())
    if quoted:
        error += f": {bounded(quoted, QUOTE_LIMIT)}"
    return Attempt(
        ok=False, status=status, error=scrub(error, secret), retryable=retryable, retry_after_s=retry_after_s
    )


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


#: OS errors under a network failure, and how an error names them.
_OS_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset by the receiver"),
    (socket.gaierror, "the host name does not resolve"),
    (ssl.SSLCertVerificationError, "TLS certificate not accepted"),
    (ssl.SSLError, "TLS handshake failed"),
)


def _network_reason(error: BaseException) -> str:
    """A short description of a network failure from the OS error under it. Only fixed words: the
    underlying messages may name addresses, and the request's URL may carry a token."""
    for cause in _causes(error):
        for kind, reason in _OS_REASONS:
            if isinstance(cause, kind):
                return reason
    if isinstance(error, httpx.RemoteProtocolError):
        return "the receiver closed the connection or broke the HTTP protocol"
    return f"network error ({type(error).__name__})"


def failure_attempt(error: BaseException, *, timeout_s: float, secret: str = "") -> Attempt:
    """The :class:`Attempt` of a POST that got no answer because of ``error``."""
    if isinstance(error, httpx.ConnectTimeout):
        reason, retryable = f"connect timed out after {timeout_s:g} s", True
    elif isinstance(error, httpx.TimeoutException | TimeoutError):
        reason, retryable = f"timed out after {timeout_s:g} s waiting for the receiver", True
    elif isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        reason, retryable = "the webhook URL is not a valid http(s) URL", False
    else:
        reason, retryable = _network_reason(error), True
    return Attempt(ok=False, status=None, error=scrub(reason, secret), retryable=retryable)


def webhook_headers(
    secret: str, path: str, body: bytes, payload: Mapping[str, Any], *, now: float | None = None
) -> dict[str, str]:
    """Every header of one delivery: content type, delivery id (when ``payload`` has one) and signature."""
    headers = {"Content-Type": "application/json"}
    delivery = payload.get("delivery_id")
    if delivery is not None:
        value = str(delivery)
        if not value or not value.isascii() or not value.isprintable():
            raise ValueError("delivery_id must be printable ASCII to travel in a header")
        headers[DELIVERY_HEADER] = value
    headers.update(signed_headers(WEBHOOK_KEY_ID, secret, "POST", path, body, now=now))
    return headers


# I/O ----------------------------------------------------------------------------------------------------


async def post_webhook(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float,
    now: float | None = None,
) -> Attempt:
    """POST ``payload`` as JSON to ``url``, signed with ``secret``, and say how it went.

    ``now`` (default: the clock) is the time of the signature and the reference of a ``Retry-After``
    date. The whole exchange (connect, send, answer headers) is bounded by ``timeout_s``; redirects are
    not followed. Raises only for a caller's mistake: a payload that is not JSON-ready
    or a ``delivery_id`` that cannot be a header value."""
    body = orjson.dumps(dict(payload))
    try:
        path = webhook_path(url)
    except httpx.InvalidURL as exc:
        return failure_attempt(exc, timeout_s=timeout_s, secret=secret)
    headers = webhook_headers(secret, path, body, payload, now=now)
    try:
        async with asyncio.timeout(timeout_s):
            request = http.build_request("POST", url, content=body, headers=headers, timeout=timeout_s)
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                answer = "" if response.is_success else await _read_some(response)
            finally:
                await response.aclose()
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError) as exc:
        return failure_attempt(exc, timeout_s=timeout_s, secret=secret)
    return status_attempt(
        response.status_code,
        reason=response.reason_phrase,
        answer=answer,
        retry_after_s=parse_retry_after(
            response.headers.get("Retry-After"), now=time.time() if now is None else now
        ),
        secret=secret,
    )


async def _read_some(response: httpx.Response) -> str:
    """The first :data:`READ_LIMIT` bytes of the answer, as text; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
    return b"".join(chunks)[:READ_LIMIT].decode("utf-8", "replace")


# the receiving side -------------------------------------------------------------------------------------


def verify_webhook(
    secret: str, headers: Mapping[str, str], path: str, body: bytes, *, now: float | None = None
) -> None:
    """Check one delivery the way an app backend should, before trusting it; raises
    :class:`~worker.intake.signing.BadSignature` (a ``ValueError`` saying what is wrong, never the
    secret) when it does not hold.

    ``headers``: the request's headers (a case-insensitive mapping, as web frameworks give; or lower-case
    keys). ``path``: the request's path without the query string. ``body``: the raw bytes, before any
    JSON parsing. ``now``: the receiver's clock (default: the system's); a timestamp more than five minutes
    off is refused. A retried delivery is signed afresh but keeps its ``X-Recall-Delivery``: deduplicate
    on that, and answer 2xx for a delivery already taken. Example (Starlette)::

        body = await request.body()
        try:
            verify_webhook(SECRET, request.headers, request.url.path, body)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=401)
    """
    verify({WEBHOOK_KEY_ID: secret}, headers, "POST", path, body, now=now)
