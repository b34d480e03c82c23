"""Request signatures: HMAC-SHA256 over the timestamp, method, path and body, with a shared secret.

The same scheme signs what the app backend sends the intake and what the intake's webhooks send back::

    X-Recall-Key: <key id>
    X-Recall-Timestamp: <Unix seconds>
    X-Recall-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>\\n<METHOD>\\n<path>\\n" + body)>

Two keys may be valid at once, so a secret is rotated without a moment where either side is refused. A
request whose timestamp is more than the allowed skew away from now is refused, and so (at the intake) is a
second request with the same signature: each signed request is good once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

KEY_HEADER = "X-Recall-Key"
TIMESTAMP_HEADER = "X-Recall-Timestamp"
SIGNATURE_HEADER = "X-Recall-Signature"
SCHEME = "v1="
DEFAULT_SKEW_S = 300


def signature(secret: str, timestamp: int, method: str, path: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of one request."""
    message = f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: str, method: str, path: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The three headers that sign a request made now (or at ``now``)."""
    timestamp = int(time.time() if now is None else now)
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: SCHEME + signature(secret, timestamp, method, path, body),
    }


class BadSignature(ValueError):
    """A request's signature is missing, malformed, stale, or wrong; the message says which, no secret."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed: which key signed it, and its signature (the replay key)."""

    key_id: str
    signature: str
    timestamp: int


def verify(
    keys: Mapping[str, str],
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
    skew_s: int = DEFAULT_SKEW_S,
) -> Verified:
    """Check a request's signature headers against ``keys`` (key id -> secret); :class:`BadSignature` if
    they do not hold. The comparison takes the same time however many characters match."""
    key_id = headers.get(KEY_HEADER.lower()) or headers.get(KEY_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
    if not key_id or not stamp or not given:
        raise BadSignature(f"sign the request: {KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
    secret = keys.get(key_id)
    if secret is None:
        raise BadSignature(f"{KEY_HEADER}: unknown key id")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise BadSignature(f"{TIMESTAMP_HEADER}: not Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > skew_s:
        raise BadSignature(f"{TIMESTAMP_HEADER}: more than {skew_s} s from the server's clock")
    if not given.startswith(SCHEME):
        raise BadSignature(f"{SIGNATURE_HEADER}: expected {SCHEME}<hex>")
    expected = signature(secret, timestamp, method, path, body)
    if not hmac.compare_digest(given[len(SCHEME) :].encode(), expected.encode()):
        raise BadSignature(f"{SIGNATURE_HEADER}: does not match the request")
    return Verified(key_id, expected, timestamp)
