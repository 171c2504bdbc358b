"""replica verified_at and the per-destination state index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 01:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.create_index("ix_replica_destination_state", ["destination_id", "state"])
        # Copies per asset (the safety report, the dashboard) read verified rows by asset.
        batch_op.create_index("ix_replica_state_sha256", ["state", "sha256"])


def downgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.drop_index("ix_replica_state_sha256")
        batch_op.drop_index("ix_replica_destination_state")
        batch_op.drop_column("verified_at")
