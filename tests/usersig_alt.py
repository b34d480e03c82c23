"""A UserSig generator written independently of ``tls-sig-api-v2``.

It differs from the official Python library where the format allows: JSON key order, compact
separators, the zlib compression level (0 reproduces Go's default ``NoCompression``), and it can back-date
the issue time, which the library cannot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import zlib


def make_usersig(
    *,
    sdkappid: int,
    key: str,
    identifier: str,
    expire: int = 86400,
    issued: int | None = None,
    level: int = 9,
) -> str:
    """A TLS 2.0 UserSig for ``identifier``."""
    issued = int(time.time()) if issued is None else issued
    content = (
        f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{issued}\nTLS.expire:{expire}\n"
    )
    signature = base64.b64encode(hmac.new(key.encode(), content.encode(), hashlib.sha256).digest()).decode()
    doc = {
        "TLS.sig": signature,
        "TLS.time": issued,
        "TLS.expire": expire,
        "TLS.sdkappid": sdkappid,
        "TLS.identifier": identifier,
        "TLS.ver": "2.0",
    }
    packed = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), level)
    return base64.b64encode(packed).decode().translate(str.maketrans("+/=", "*-_"))
