"""plan subsets: which messages of an approved plan the moderator selected

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15

``plan_items.approved``: True (selected, recalled by the apply job), False (deselected when approving: not
recalled, held back like a rejected message), NULL (undecided, rejected, or approved whole before this
column existed: an approved plan's NULL items are all recalled).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plan_items", sa.Column("approved", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plan_items") as batch:
        batch.drop_column("approved")
