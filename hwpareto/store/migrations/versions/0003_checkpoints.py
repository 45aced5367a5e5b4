"""SuperNet checkpoints known to the store (the one a space's quality came from; those exports read).

Revision ID: 0003_checkpoints
Revises: 0002_predictors_searches
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003_checkpoints"
down_revision: str | None = "0002_predictors_searches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "hwp_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("meta_json", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(32), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_checkpoints")),
        sa.UniqueConstraint("space", "sha256", name=op.f("uq_hwp_checkpoints_space_sha256")),
    )
    op.create_index(op.f("ix_hwp_checkpoints_sha256"), "hwp_checkpoints", ["sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_hwp_checkpoints_sha256"), table_name="hwp_checkpoints")
    op.drop_table("hwp_checkpoints")
