"""skipped files counted: session.skipped, source_folder.skipped

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))
    # How many of a settled folder's files were skipped: an unchanged folder is counted
    # (skipped vs unchanged) without loading its rows.
    with op.batch_alter_table("source_folder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("source_folder", schema=None) as batch_op:
        batch_op.drop_column("skipped")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_column("skipped")
