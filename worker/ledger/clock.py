"""The ledger's clock."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The ledger's clock (UTC)."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
