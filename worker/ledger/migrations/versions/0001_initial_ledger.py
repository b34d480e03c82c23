"""initial ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breakers",
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("tripped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("conversation_key", sa.String(length=200), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("suspect", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("ruleset", sa.String(length=64), nullable=False),
        sa.Column("ruleset_version", sa.String(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("window_since", sa.Integer(), nullable=False),
        sa.Column("window_until", sa.Integer(), nullable=False),
        sa.Column("applies_plan", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("messages_scanned", sa.Integer(), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_conversation_key"), ["conversation_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_key", sa.String(length=200), nullable=False),
        sa.Column("msg_key", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("receiver", sa.String(length=64), nullable=True),
        sa.Column("msg_time", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_key", "msg_key", name="uq_message_identity"),
    )
    op.create_table(
        "evidence",
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("cloud_custom_data", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk"),
    )
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_captured_at"), ["captured_at"], unique=False)

    op.create_table(
        "matches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("rule_type", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("element_path", sa.String(length=300), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("normalized", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_pk", "message_pk", "rule_id", "element_path", name="uq_match"),
    )
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matches_message_pk"), ["message_pk"], unique=False)
        batch_op.create_index("ix_matches_rule", ["rule_id"], unique=False)

    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("apply_job_id", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plans_job_pk"), ["job_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_plans_status"), ["status"], unique=False)

    op.create_table(
        "recalls",
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk"),
    )
    with op.batch_alter_table("recalls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recalls_job_pk"), ["job_pk"], unique=False)

    op.create_table(
        "rule_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("scanned", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rule_stats", schema=None) as batch_op:
        batch_op.create_index("ix_rule_stats_rule_at", ["rule_id", "at"], unique=False)

    op.create_table(
        "plan_items",
        sa.Column("plan_pk", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["plan_pk"], ["plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("plan_pk", "message_pk"),
    )


def downgrade() -> None:
    op.drop_table("plan_items")
    with op.batch_alter_table("rule_stats", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_stats_rule_at")

    op.drop_table("rule_stats")
    with op.batch_alter_table("recalls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recalls_job_pk"))

    op.drop_table("recalls")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plans_status"))
        batch_op.drop_index(batch_op.f("ix_plans_job_pk"))

    op.drop_table("plans")
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.drop_index("ix_matches_rule")
        batch_op.drop_index(batch_op.f("ix_matches_message_pk"))

    op.drop_table("matches")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_captured_at"))

    op.drop_table("evidence")
    op.drop_table("messages")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_jobs_finished_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_conversation_key"))

    op.drop_table("jobs")
    op.drop_table("breakers")
