"""Typed errors of the Chat REST API client.

Every reply carries ``ActionStatus/ErrorCode/ErrorInfo``; a non-zero code becomes a :class:`TimApiError`.
Whether an error is worth retrying is decided here, in one place.
"""

from __future__ import annotations

from worker.redact import bounded, redact

#: Codes the docs say to retry: internal errors (10002 for the group/official-account services, 91000 for
#: openim) and the "too frequent, retry later" family.
RETRYABLE_CODES: frozenset[int] = frozenset({10002, 91000, 60007, 60011, 60018, 60019})
#: Codes that mean the call was over a frequency limit.
RATE_LIMIT_CODES: frozenset[int] = frozenset({60007, 60011, 60018, 60019})
#: UserSig problems: retrying with the same key cannot help.
USERSIG_CODES: frozenset[int] = frozenset({70001, 70002, 70003, 70009, 70013, 70014, 70016, 70020, 70050})
#: Codes that say the deployment's credentials are wrong (the UserSig codes, and an identifier that is not
#: the app admin), not that the job is: no job can succeed until the settings are fixed.
CREDENTIAL_CODES: frozenset[int] = USERSIG_CODES | {60010}


class TimError(Exception):
    """Base class of every error raised by the Chat REST API client."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class TimApiError(TimError):
    """The service answered with a non-zero ``ErrorCode``."""

    def __init__(self, command: str, code: int, info: str) -> None:
        self.command = command
        self.code = code
        self.info = bounded(redact(info), 300)
        self.retryable = code in RETRYABLE_CODES
        super().__init__(f"{command} failed with ErrorCode {code}: {self.info}")


class TimHttpError(TimError):
    """The gateway answered with an HTTP status other than 200 (the API itself always answers 200)."""

    def __init__(self, command: str, status: int) -> None:
        self.command = command
        self.status = status
        self.retryable = status >= 500 or status == 429
        super().__init__(f"{command} got HTTP {status}")


class TimTransportError(TimError):
    """The request never got an answer: connection refused or reset, DNS failure, timeout."""

    retryable = True

    def __init__(self, command: str, cause: BaseException) -> None:
        self.command = command
        # The cause's text may hold the request URL, and so the UserSig: keep only its type (or the lean
        # pool's ``kind``, which names the failure and nothing of the request).
        kind = getattr(cause, "kind", None)
        super().__init__(
            f"{command} transport error: {kind if isinstance(kind, str) else type(cause).__name__}"
        )


class TimProtocolError(TimError):
    """The reply could not be understood: not JSON, or missing or mistyped fields, or paging that loops."""

    def __init__(self, command: str, problem: str) -> None:
        self.command = command
        super().__init__(f"{command} returned a malformed reply: {bounded(problem, 300)}")


def credential_code(error: BaseException) -> int | None:
    """The ErrorCode if ``error`` says the credentials are wrong (see :data:`CREDENTIAL_CODES`), else None."""
    if isinstance(error, TimApiError) and error.code in CREDENTIAL_CODES:
        return error.code
    return None
