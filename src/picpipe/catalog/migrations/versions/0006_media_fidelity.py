"""asset: where the UTC offset of the capture time came from; place names

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
    with op.batch_alter_table("asset", schema=None) as batch_op:
        # tag | gps-zone | configured | default; NULL while the offset is unknown (floating).
        batch_op.add_column(sa.Column("offset_source", sa.String(12), nullable=True))
        for column in ("city", "region", "country"):
            batch_op.add_column(sa.Column(column, sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        for column in ("country", "region", "city"):
            batch_op.drop_column(column)
        batch_op.drop_column("offset_source")
