"""Moderators' decisions per message: a rejected plan holds its messages back until a newer decision.

A rejection is recorded for each message of the plan. It stays active until it is lifted, by approving a
plan that holds the message (a newer decision), or by reopening the rejected plan; lifting keeps the row and
says who lifted it, when and how, so the audit shows the whole history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, select, update
from sqlalchemy.orm import Session

from worker.ledger.clock import now
from worker.ledger.models import MessageDecisionRow
from worker.ledger.upsert import chunks, table_of

DECISIONS = table_of(MessageDecisionRow)

REJECTED = "rejected"
#: The skip reason of a message under an active rejection.
REJECTED_BY_MODERATOR = "rejected_by_moderator"


def record_rejection(
    session: Session, plan_pk: int, message_pks: Iterable[int], *, by: str, note: str | None
) -> None:
    """Record that ``by`` rejected ``plan_pk``, holding back each of its messages."""
    at = now()
    session.add_all(
        MessageDecisionRow(
            message_pk=message_pk, plan_pk=plan_pk, decision=REJECTED, decided_by=by, decided_at=at, note=note
        )
        for message_pk in sorted(set(message_pks))
    )
    session.flush()


def lift_on_messages(session: Session, message_pks: Iterable[int], *, by: str, plan_pk: int) -> None:
    """A newer decision, the approval of ``plan_pk``, lifts every active rejection of ``message_pks``."""
    for part in chunks(sorted(set(message_pks))):
        session.execute(
            update(MessageDecisionRow)
            .where(MessageDecisionRow.message_pk.in_(part), MessageDecisionRow.lifted_at.is_(None))
            .values(lifted_at=now(), lifted_by=by, lifted_how="approved", lifted_plan_pk=plan_pk)
        )


def lift_plan(session: Session, plan_pk: int, *, by: str, note: str | None) -> None:
    """Reopening ``plan_pk`` lifts the rejections its own rejection recorded."""
    session.execute(
        update(MessageDecisionRow)
        .where(MessageDecisionRow.plan_pk == plan_pk, MessageDecisionRow.lifted_at.is_(None))
        .values(lifted_at=now(), lifted_by=by, lifted_how="reopened", lifted_note=note)
    )


def _active(message_pks: Sequence[int]) -> tuple[ColumnElement[bool], ...]:
    """The active rejections of ``message_pks`` (a chunk); read them ordered by id, so the latest wins."""
    return (
        DECISIONS.c.message_pk.in_(message_pks),
        DECISIONS.c.decision == REJECTED,
        DECISIONS.c.lifted_at.is_(None),
    )


def active_rejections(session: Session, message_pks: Iterable[int]) -> dict[int, MessageDecisionRow]:
    """The latest active rejection of each of ``message_pks`` that has one."""
    active: dict[int, MessageDecisionRow] = {}
    for part in chunks(sorted(set(message_pks))):
        rows = session.scalars(select(MessageDecisionRow).where(*_active(part)).order_by(DECISIONS.c.id))
        for row in rows:
            active[row.message_pk] = row  # ordered by id: the latest wins
    return active


def rejections(connection: Connection, message_pks: Iterable[int]) -> dict[int, str]:
    """:func:`active_rejections` as descriptions (see :func:`describe`), read with Core statements."""
    active: dict[int, str] = {}
    for part in chunks(sorted(set(message_pks))):
        rows = connection.execute(
            select(DECISIONS.c.message_pk, DECISIONS.c.decided_by, DECISIONS.c.plan_pk)
            .where(*_active(part))
            .order_by(DECISIONS.c.id)
        )
        for row in rows:
            active[int(row.message_pk)] = describe(row)  # ordered by id: the latest wins
    return active


class Decided(Protocol):
    """A rejection as :func:`describe` reads it (a row of ``message_decisions``, ORM or Core)."""

    @property
    def decided_by(self) -> str: ...
    @property
    def plan_pk(self) -> int: ...


def describe(row: Decided) -> str:
    """A short description of an active rejection, e.g. ``rejected by alice in plan 7``."""
    return f"rejected by {row.decided_by} in plan {row.plan_pk}"


def active_view(row: MessageDecisionRow | None) -> dict[str, Any] | None:
    """The active decision on a message, as the audit shows it."""
    if row is None:
        return None
    return {
        "state": REJECTED_BY_MODERATOR,
        "plan": row.plan_pk,
        "by": row.decided_by,
        "at": row.decided_at.isoformat(),
        "note": row.note,
    }


def history(session: Session, message_pk: int) -> list[dict[str, Any]]:
    """Every decision ever taken on a message, oldest first, with who lifted it and how."""
    rows = session.scalars(
        select(MessageDecisionRow)
        .where(MessageDecisionRow.message_pk == message_pk)
        .order_by(MessageDecisionRow.id)
    )
    return [
        {
            "decision": row.decision,
            "plan": row.plan_pk,
            "by": row.decided_by,
            "at": row.decided_at.isoformat(),
            "note": row.note,
            "lifted": row.lifted_how,
            "lifted_by": row.lifted_by,
            "lifted_at": row.lifted_at.isoformat() if row.lifted_at else None,
            "lifted_plan": row.lifted_plan_pk,
            "lifted_note": row.lifted_note,
        }
        for row in rows
    ]
