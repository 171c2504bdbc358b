"""card sessions: one row per insertion of a removable card, until safe to format

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_session",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source_name", sa.String(400), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("uuid", sa.String(100), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("reader", sa.Text(), nullable=True),
        sa.Column("mount_path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("insertions", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("blocking", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("import_session_id", sa.Integer(), sa.ForeignKey("session.id"), nullable=True),
        sa.Column("sync_session_id", sa.Integer(), sa.ForeignKey("session.id"), nullable=True),
    )
    op.create_index("ix_card_session_state", "card_session", ["state"])
    op.create_index("ix_card_session_card", "card_session", ["uuid", "label"])


def downgrade() -> None:
    op.drop_index("ix_card_session_card", table_name="card_session")
    op.drop_index("ix_card_session_state", table_name="card_session")
    op.drop_table("card_session")
