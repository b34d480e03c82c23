"""idempotent jobs, one plan per job and reason, moderators' decisions per message

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Only additions SQLite makes in place (columns, indexes, a table): rebuilding a table there with foreign keys
on would delete its children through ``ON DELETE CASCADE``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("result", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("dead_reason", sa.String(length=32), nullable=True))
    op.add_column("jobs", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))

    duplicates = (
        op.get_bind()
        .execute(
            sa.text("SELECT job_pk, reason FROM plans GROUP BY job_pk, reason HAVING count(*) > 1 LIMIT 5")
        )
        .all()
    )
    if duplicates:
        raise RuntimeError(
            "plans holds more than one plan for the same job and reason (job row, reason: "
            f"{', '.join(f'{job_pk} {reason}' for job_pk, reason in duplicates)}); merge or delete the "
            "duplicates (keep the one a moderator decided), then upgrade again"
        )
    op.create_index("uq_plans_job_reason", "plans", ["job_pk", "reason"], unique=True)

    op.create_table(
        "message_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("plan_pk", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.Column("lifted_how", sa.String(length=16), nullable=True),
        sa.Column("lifted_plan_pk", sa.Integer(), nullable=True),
        sa.Column("lifted_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["lifted_plan_pk"], ["plans.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["plan_pk"], ["plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_message_decisions_message_pk", "message_decisions", ["message_pk"], unique=False)
    op.create_index("ix_message_decisions_plan_pk", "message_decisions", ["plan_pk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_message_decisions_plan_pk", table_name="message_decisions")
    op.drop_index("ix_message_decisions_message_pk", table_name="message_decisions")
    op.drop_table("message_decisions")
    op.drop_index("uq_plans_job_reason", table_name="plans")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch rebuild: see the module docstring.
    for column in ("settled_at", "dead_reason", "result", "fingerprint"):
        op.drop_column("jobs", column)
