"""Runs leased in the catalog (run_lease, claim, session lease columns); source_file ctime_ns;
one replica per (destination, remote key); catalog_info (the library this catalog belongs to)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_started", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=False), nullable=True))
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch_op.create_index("ix_session_status", ["status"])
    op.create_table(
        "run_lease",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=False), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_run_lease_session_id", "run_lease", ["session_id"])
    op.create_table(
        "claim",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_claim_session_id", "claim", ["session_id"])
    with op.batch_alter_table("source_file", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ctime_ns", sa.BigInteger(), nullable=True))
    op.create_table(
        "catalog_info",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_replica_remote_key", ["destination_id", "remote_key"])


def downgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.drop_constraint("uq_replica_remote_key", type_="unique")
    op.drop_table("catalog_info")
    with op.batch_alter_table("source_file", schema=None) as batch_op:
        batch_op.drop_column("ctime_ns")
    op.drop_index("ix_claim_session_id", table_name="claim")
    op.drop_table("claim")
    op.drop_index("ix_run_lease_session_id", table_name="run_lease")
    op.drop_table("run_lease")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index("ix_session_status")
        batch_op.drop_column("progress")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("owner_started")
