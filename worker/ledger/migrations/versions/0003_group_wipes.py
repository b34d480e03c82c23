"""group wipes: each delete_group_msg_by_sender call a moderator approved

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Group messages need no new columns: a group's (or a topic's) messages are named by their conversation key
and their seq (``msg_key``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wipes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("plan_pk", sa.Integer(), nullable=False),
        sa.Column("conversation_key", sa.String(length=200), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recalled", sa.Integer(), nullable=True),
        sa.Column("missed", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["plan_pk"], ["plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wipes_job_pk", "wipes", ["job_pk"], unique=False)
    op.create_index("ix_wipes_plan_pk", "wipes", ["plan_pk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_wipes_plan_pk", table_name="wipes")
    op.drop_index("ix_wipes_job_pk", table_name="wipes")
    op.drop_table("wipes")
