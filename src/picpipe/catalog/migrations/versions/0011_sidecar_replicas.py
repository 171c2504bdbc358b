"""sidecar_replica: the XMP sidecar picpipe last wrote beside each replica, and its hash

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sidecar_replica",
        sa.Column(
            "destination_id",
            sa.Integer(),
            sa.ForeignKey("destination.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), sa.ForeignKey("asset.sha256"), nullable=False),
        sa.Column("remote_key", sa.Text(), nullable=False),
        sa.Column("sidecar_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("local_mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("destination_id", "sha256"),
    )


def downgrade() -> None:
    op.drop_table("sidecar_replica")
