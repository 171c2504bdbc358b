"""folder digests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20 23:45:28.724829
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_folder",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("source_id", "path"),
    )
    with op.batch_alter_table("source_file", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folder", sa.Text(), nullable=False, server_default=""))
        batch_op.create_index("ix_source_file_folder", ["source_id", "folder"], unique=False)
    # Existing provenance rows learn their folder from their ref.
    conn = op.get_bind()
    rows = conn.execute(sa.text("select id, ref from source_file")).all()
    updates = [{"id": i, "folder": ref.rpartition("/")[0]} for i, ref in rows if "/" in ref]
    if updates:
        conn.execute(sa.text("update source_file set folder = :folder where id = :id"), updates)


def downgrade() -> None:
    with op.batch_alter_table("source_file", schema=None) as batch_op:
        batch_op.drop_index("ix_source_file_folder")
        batch_op.drop_column("folder")

    op.drop_table("source_folder")
