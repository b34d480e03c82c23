"""The failure a handler raises to answer ``ActionStatus: FAIL`` with a documented code."""

from __future__ import annotations


class ApiFailure(Exception):
    """Answer the request with ``ErrorCode=code`` and ``ErrorInfo=info``."""

    def __init__(self, code: int, info: str) -> None:
        super().__init__(f"{code}: {info}")
        self.code = code
        self.info = info
