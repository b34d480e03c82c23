"""Request-body field checks that answer with the API's documented error code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.emulator.errors import ApiFailure

UINT32_MAX = 4294967295


def req_str(body: Mapping[str, Any], name: str, code: int, *, allow_empty: bool = False) -> str:
    """The string field ``name``; missing, mistyped or empty answers ``code``."""
    value = body.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ApiFailure(code, f"{name} is missing or is not a non-empty string")
    return value


def opt_str(body: Mapping[str, Any], name: str, code: int, default: str = "") -> str:
    """The optional string field ``name``."""
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ApiFailure(code, f"{name} is not a string")
    return value


def req_int(body: Mapping[str, Any], name: str, code: int, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """The integer field ``name`` within ``[lo, hi]``."""
    value = body.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise ApiFailure(code, f"{name} is missing or is not an integer in [{lo}, {hi}]")
    return value


def opt_int(
    body: Mapping[str, Any], name: str, code: int, default: int, *, lo: int = 0, hi: int = 2**63 - 1
) -> int:
    """The optional integer field ``name``."""
    if name not in body:
        return default
    return req_int(body, name, code, lo=lo, hi=hi)


def req_list(body: Mapping[str, Any], name: str, code: int) -> list[Any]:
    """The array field ``name``."""
    value = body.get(name)
    if not isinstance(value, list):
        raise ApiFailure(code, f"{name} is missing or is not an array")
    return value
