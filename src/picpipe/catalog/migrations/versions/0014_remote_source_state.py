"""source.state and asset.sha1: remote sources' high-water marks and servers' SHA-1 checksums

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What a remote source keeps between runs (an Immich listing's high-water mark); never
    # secrets, so it may be printed and backed up with the catalog.
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.JSON(), nullable=True))
    # The SHA-1 a server (Immich) reported for an asset's bytes, checked against them on
    # download: a later listing that names the same SHA-1 is known content, not downloaded.
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha1", sa.String(40), nullable=True))
        batch_op.create_index("ix_asset_sha1", ["sha1"])


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_sha1")
        batch_op.drop_column("sha1")
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_column("state")
