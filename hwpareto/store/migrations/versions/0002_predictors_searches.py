"""Predictors, searches and exports.

Revision ID: 0002_predictors_searches
Revises: 0001_registry
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002_predictors_searches"
down_revision: str | None = "0001_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "hwp_predictors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("dataset", sa.String(128), nullable=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("meta_json", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("kind IN ('latency', 'energy', 'accuracy')", name=op.f("ck_hwp_predictors_kind")),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["hwp_devices.id"],
            name=op.f("fk_hwp_predictors_device_id_hwp_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_predictors")),
        sa.UniqueConstraint("name", name=op.f("uq_hwp_predictors_name")),
    )
    op.create_table(
        "hwp_searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("trials_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name=op.f("ck_hwp_searches_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_searches")),
        sa.UniqueConstraint("name", name=op.f("uq_hwp_searches_name")),
    )
    op.create_table(
        "hwp_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("config_key", sa.String(16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("files_json", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_exports")),
    )
    op.create_index(op.f("ix_hwp_exports_space_config_key"), "hwp_exports", ["space", "config_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_hwp_exports_space_config_key"), table_name="hwp_exports")
    for table in ("hwp_exports", "hwp_searches", "hwp_predictors"):
        op.drop_table(table)
