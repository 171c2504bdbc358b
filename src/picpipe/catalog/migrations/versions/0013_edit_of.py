"""asset.edit_of: an edited version (icloudpd's -adjusted) linked to its original

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The SHA-256 of the original an edit was made from; no foreign key, as for pair_id: an
    # edit imported before its original is linked when the original arrives.
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edit_of", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_column("edit_of")
