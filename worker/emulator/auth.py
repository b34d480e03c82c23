"""UserSig verification, the way the official verifiers (Go ``VerifyUserSig``, PHP ``verifySig``) do it.

Decode (URL-safe base64 with ``*``, ``-``, ``_``), inflate (zlib), parse JSON, then check in the Go
library's order: SDKAppID, identifier, expiry, HMAC-SHA256 over the fixed ``TLS.*`` lines. The JSON's key
order, whitespace and the zlib compression level play no part, so sigs made by any official library pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache

from worker.emulator.errors import ApiFailure

EXPIRED = 70001
EMPTY = 70002
UNDECODABLE = 70003
BAD_SIGNATURE = 70009
IDENTIFIER_MISMATCH = 70013
SDKAPPID_MISMATCH = 70014


@dataclass(frozen=True, slots=True)
class SigDoc:
    """The fields of a decoded UserSig, and whether its HMAC matched the key."""

    identifier: str
    sdkappid: int
    time: int
    expire: int
    hmac_ok: bool


def _b64url_decode(sig: str) -> bytes:
    text = sig.replace("_", "=").replace("-", "/").replace("*", "+")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


def signed_content(identifier: str, sdkappid: int, issued: int, expire: int, userbuf: str | None) -> bytes:
    """The text the HMAC covers."""
    content = (
        f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{issued}\nTLS.expire:{expire}\n"
    )
    if userbuf is not None:
        content += f"TLS.userbuf:{userbuf}\n"
    return content.encode()


@lru_cache(maxsize=4096)
def decode_usersig(sig: str, key: str) -> SigDoc:
    """Decode ``sig`` and check its HMAC against ``key``. Raises :class:`ApiFailure` if undecodable.

    Cached: the same admin sig arrives on every call, and decoding is the expensive part.
    """
    if not sig:
        raise ApiFailure(EMPTY, "UserSig is empty")
    try:
        doc = json.loads(zlib.decompress(_b64url_decode(sig)))
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise ApiFailure(UNDECODABLE, f"UserSig cannot be decoded: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise ApiFailure(UNDECODABLE, "UserSig does not hold a JSON object")
    try:
        identifier = str(doc["TLS.identifier"])
        sdkappid = int(doc["TLS.sdkappid"])
        issued = int(doc["TLS.time"])
        expire = int(doc["TLS.expire"])
        given = base64.b64decode(str(doc["TLS.sig"]), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ApiFailure(UNDECODABLE, "UserSig lacks a TLS field or has a mistyped one") from None
    userbuf = doc.get("TLS.userbuf")
    expected = hmac.new(
        key.encode(),
        signed_content(identifier, sdkappid, issued, expire, None if userbuf is None else str(userbuf)),
        hashlib.sha256,
    ).digest()
    return SigDoc(identifier, sdkappid, issued, expire, hmac.compare_digest(expected, given))


def verify_usersig(sig: str, *, key: str, sdkappid: int, identifier: str, now: float) -> None:
    """Raise :class:`ApiFailure` with the documented code unless ``sig`` is valid for the request."""
    doc = decode_usersig(sig, key)
    if doc.sdkappid != sdkappid:
        raise ApiFailure(SDKAPPID_MISMATCH, "SDKAppID in the request does not match the one in the UserSig")
    if doc.identifier != identifier:
        raise ApiFailure(
            IDENTIFIER_MISMATCH, "identifier in the request does not match the one in the UserSig"
        )
    if now > doc.time + doc.expire:
        raise ApiFailure(EXPIRED, "UserSig has expired")
    if not doc.hmac_ok:
        raise ApiFailure(BAD_SIGNATURE, "UserSig verification failed")
