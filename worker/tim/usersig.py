"""Admin UserSig: generated with the official ``tls-sig-api-v2`` library, cached, renewed before expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from TLSSigAPIv2 import TLSSigAPIv2

from worker.redact import register_secret

DEFAULT_TTL_S = 7 * 24 * 3600


class UserSigProvider:
    """Hands out a valid UserSig for one identifier, generating a new one when the cached one nears expiry.

    A sig is renewed once less than ``renew_fraction`` of its lifetime is left, so a request never goes out
    with a sig that could expire in flight.
    """

    def __init__(
        self,
        sdkappid: int,
        key: str,
        identifier: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        renew_fraction: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s < 60:
            raise ValueError("UserSig ttl must be at least 60 seconds")
        register_secret(key)
        self._api = TLSSigAPIv2(sdkappid, key)
        self._identifier = identifier
        self._ttl_s = ttl_s
        self._renew_after_s = ttl_s * (1.0 - renew_fraction)
        self._clock = clock
        self._lock = threading.Lock()
        self._sig = ""
        self._made_at = 0.0
        self.generated = 0

    @property
    def identifier(self) -> str:
        """The account the sigs are made for (the app admin)."""
        return self._identifier

    def get(self) -> str:
        """Return the cached sig, or a fresh one if the cached one is past its renewal point."""
        now = self._clock()
        with self._lock:
            if not self._sig or now - self._made_at >= self._renew_after_s:
                self._sig = str(self._api.gen_sig(self._identifier, self._ttl_s))
                self._made_at = now
                self.generated += 1
                register_secret(self._sig)
            return self._sig
