"""/files shuffles (shuffle_round, shuffle_entry); asset indexes for keyset pages and new photos

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shuffle_round",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("filter_key", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("client", "filter_key"),
    )
    op.create_table(
        "shuffle_entry",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("filter_key", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rank", sa.Float(), nullable=False),
        sa.Column("shown", sa.Boolean(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=False), nullable=True),
        sa.ForeignKeyConstraint(
            ["client", "filter_key"],
            ["shuffle_round.client", "shuffle_round.filter_key"],
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["sha256"], ["asset.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client", "filter_key", "sha256"),
    )
    op.create_index(
        "ix_shuffle_entry_next", "shuffle_entry", ["client", "filter_key", "shown", "rank"]
    )
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.create_index("ix_asset_taken_local_sha256", ["taken_local", "sha256"])
        batch_op.create_index("ix_asset_imported_at", ["imported_at"])


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_imported_at")
        batch_op.drop_index("ix_asset_taken_local_sha256")
    op.drop_index("ix_shuffle_entry_next", table_name="shuffle_entry")
    op.drop_table("shuffle_entry")
    op.drop_table("shuffle_round")
