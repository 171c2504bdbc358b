"""asset: where the UTC offset of the capture time came from; place names; payload hash

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        # tag | gps-zone | configured | default; NULL while the offset is unknown (floating).
        batch_op.add_column(sa.Column("offset_source", sa.String(12), nullable=True))
        for column in ("city", "region", "country"):
            batch_op.add_column(sa.Column(column, sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("payload_sha256", sa.String(64), nullable=True))
        batch_op.create_index("ix_asset_payload_sha256", ["payload_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_payload_sha256")
        batch_op.drop_column("payload_sha256")
        for column in ("country", "region", "city"):
            batch_op.drop_column(column)
        batch_op.drop_column("offset_source")
