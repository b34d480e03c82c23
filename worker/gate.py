"""The credential gate: the worker consumes jobs only while the Chat API accepts its credentials.

Wrong credentials (a rotated key, another app's SDKAppID, a renamed admin) fail every job the same way;
they are the deployment's fault, not the jobs'. So the gate is closed until a check passes, closes again
when a job meets a credential error (that job is put back on the queue, never dead-lettered), and while it
is closed a check runs every ``recheck_s`` seconds. The readiness endpoint reports it.

A check that cannot reach the service opens the gate: an unreachable service says nothing about the
credentials, and jobs retry service failures on their own.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from worker.redact import bounded
from worker.tim.credentials import hint
from worker.tim.errors import credential_code

log = structlog.get_logger("worker.gate")


class GateObserver(Protocol):
    """Told what the gate learns (metrics hook)."""

    def credentials_checked(self, ok: bool) -> None: ...
    def credential_error(self, code: int) -> None: ...


class CredentialGate:
    """Open while the last credential check passed; see the module's docstring."""

    def __init__(
        self,
        start_check: Callable[[], concurrent.futures.Future[None]],
        *,
        recheck_s: float,
        observer: GateObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start_check = start_check
        self.recheck_s = recheck_s
        self._observer = observer
        self._clock = clock
        self._check: concurrent.futures.Future[None] | None = None
        self._next_check_at = 0.0
        #: None until the first check has answered; then whether the credentials were accepted.
        self.ok: bool | None = None

    @property
    def open(self) -> bool:
        """True when jobs may run."""
        return self.ok is True

    def poll(self) -> None:
        """Collect a finished check; start one if the gate is closed and one is due. Never blocks."""
        if self._check is not None:
            if not self._check.done():
                return
            check, self._check = self._check, None
            self._collect(check)
        if not self.open and self._clock() >= self._next_check_at:
            self._next_check_at = self._clock() + self.recheck_s
            self._check = self._start_check()

    def rejected(self, code: int, error: str) -> None:
        """A job met credential error ``code``: close the gate and check again after ``recheck_s``."""
        if self._observer is not None:
            self._observer.credential_error(code)
        was_open = self.ok is not False
        self._close(code, error)
        if was_open:
            self._next_check_at = self._clock() + self.recheck_s

    def _collect(self, check: concurrent.futures.Future[None]) -> None:
        try:
            check.result()
        except Exception as exc:  # noqa: BLE001 - any failure of the check is classified here
            code = credential_code(exc)
            if code is not None:
                if self._observer is not None:
                    self._observer.credential_error(code)
                self._close(code, str(exc))
                return
            log.warning(
                "worker.credentials_unchecked",
                error=bounded(f"{type(exc).__name__}: {exc}", 300),
                note="the Chat API could not be asked; consuming, jobs retry service failures",
            )
        if self.ok is not True:
            log.info("worker.credentials_accepted")
        self._set(True)

    def _close(self, code: int, error: str) -> None:
        if self.ok is not False:
            log.error(
                "worker.credentials_rejected",
                code=code,
                error=bounded(error, 300),
                check=hint(code),
                retry_in_s=self.recheck_s,
                note="no jobs consumed until the credentials are accepted; jobs wait, never dead-lettered",
            )
        self._set(False)

    def _set(self, ok: bool) -> None:
        self.ok = ok
        if self._observer is not None:
            self._observer.credentials_checked(ok)
