"""album_asset.source_key: the source's own key of an album member (a Synology cache key)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # photos-sync named its photos by Synology's cache key (`/files/<cache_key>.jpg`); the
    # compatibility endpoints look members up by it.
    with op.batch_alter_table("album_asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_key", sa.String(200), nullable=True))
        batch_op.create_index("ix_album_asset_source_key", ["source_key"])


def downgrade() -> None:
    with op.batch_alter_table("album_asset", schema=None) as batch_op:
        batch_op.drop_index("ix_album_asset_source_key")
        batch_op.drop_column("source_key")
