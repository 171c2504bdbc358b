"""asset.embedded_in: the asset whose file held this one (a motion photo's video)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An extracted video has no source file of its own: its provenance is the still's sha256.
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedded_in", sa.String(64), nullable=True))
        batch_op.create_index("ix_asset_embedded_in", ["embedded_in"])


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_embedded_in")
        batch_op.drop_column("embedded_in")
