"""The statements of the intake's write path, built once per database dialect.

Building an ``INSERT … ON CONFLICT`` anew for every batch costs more CPU than running it (each build makes
the ``excluded`` alias with a proxy of every column, and a fresh cache key); these are built on first use
and reused, so each batch only binds its rows. They are Core statements on the tables, not ORM ones: the
ORM's bulk machinery is not needed to insert plain rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, case, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from worker.ledger.models import Base, CaseRow, ReporterRow, ReportRow, SeenSignatureRow

#: Case states while its job is on its way or running: a report its job covers joins it.
ACTIVE = ("queued", "running")


def _insert(model: type[Base], dialect: str) -> Any:
    table: Table = model.__table__  # type: ignore[assignment]
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _min(a: Any, b: Any) -> Any:
    return case((a < b, a), else_=b)


@dataclass(frozen=True)
class WriteStatements:
    """One batch's statements (see :class:`worker.intake.store.IntakeStore`)."""

    count_attempts: Any  # reporters: this minute's attempts, RETURNING (reporter, count)
    remember_signatures: Any  # seen_signatures: insert, RETURNING the new ones
    active_cases: Any  # the queued/running cases of some (conversation, suspect) pairs
    join_open_cases: Any  # cases: open one, or join the open one, RETURNING (id, key, suspect)
    insert_reports: Any


@cache
def write_statements(dialect: str) -> WriteStatements:
    """The write path's statements for ``dialect`` (``postgresql`` or ``sqlite``)."""
    attempts = _insert(ReporterRow, dialect)
    count_attempts = attempts.on_conflict_do_update(
        index_elements=["reporter"],
        set_={
            "window_count": case(
                (
                    ReporterRow.window_start == attempts.excluded.window_start,
                    ReporterRow.window_count + attempts.excluded.window_count,
                ),
                else_=attempts.excluded.window_count,
            ),
            "window_start": attempts.excluded.window_start,
        },
    ).returning(ReporterRow.reporter, ReporterRow.window_count)

    remember_signatures = (
        _insert(SeenSignatureRow, dialect)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(SeenSignatureRow.signature)
    )

    active_cases = (
        select(
            CaseRow.id,
            CaseRow.conversation_key,
            CaseRow.suspect,
            CaseRow.window_since,
            CaseRow.window_until,
            CaseRow.max_seq,
        )
        .where(
            tuple_(CaseRow.conversation_key, CaseRow.suspect).in_(bindparam("pairs", expanding=True)),
            CaseRow.state.in_(ACTIVE),
        )
        .order_by(CaseRow.id)
    )

    cases = _insert(CaseRow, dialect)
    deadline = _min(CaseRow.deadline_at, cases.excluded.deadline_at)
    join_open_cases = cases.on_conflict_do_update(
        index_elements=["conversation_key", "suspect"],
        index_where=text("state = 'open'"),  # a literal: PostgreSQL matches the partial index by its text
        set_={
            "last_report_at": cases.excluded.last_report_at,
            "reports": CaseRow.reports + cases.excluded.reports,
            "deadline_at": deadline,
            "due_at": _min(cases.excluded.due_at, deadline),
        },
    ).returning(CaseRow.id, CaseRow.conversation_key, CaseRow.suspect)

    return WriteStatements(
        count_attempts=count_attempts,
        remember_signatures=remember_signatures,
        active_cases=active_cases,
        join_open_cases=join_open_cases,
        insert_reports=_insert(ReportRow, dialect),
    )
