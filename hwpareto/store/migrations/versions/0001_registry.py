"""Registry: devices, declarative spaces, SubNets, layer LUTs and measurements.

Revision ID: 0001_registry
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001_registry"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = "source IN ('measured', 'simulated', 'imported', 'predicted', 'evaluated')"


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "hwp_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("provenance_json", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "kind IN ('cpu', 'cuda', 'npu', 'cim', 'imported', 'fake')", name=op.f("ck_hwp_devices_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_devices")),
        sa.UniqueConstraint("name", name=op.f("uq_hwp_devices_name")),
    )
    op.create_table(
        "hwp_spaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("definition_json", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_spaces")),
        sa.UniqueConstraint("name", name=op.f("uq_hwp_spaces_name")),
    )
    op.create_table(
        "hwp_subnets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("key", sa.String(16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_subnets")),
        sa.UniqueConstraint("space", "key", name=op.f("uq_hwp_subnets_space_key")),
    )
    op.create_table(
        "hwp_lut_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("layer_key", sa.String(255), nullable=False),
        sa.Column("op", sa.String(32), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("batch", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("latency_ms_mean", sa.Double(), nullable=False),
        sa.Column("latency_ms_std", sa.Double(), nullable=False),
        sa.Column("energy_mj_mean", sa.Double(), nullable=True),
        sa.Column("energy_mj_std", sa.Double(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint(_SOURCES, name=op.f("ck_hwp_lut_entries_source")),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["hwp_devices.id"],
            name=op.f("fk_hwp_lut_entries_device_id_hwp_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_lut_entries")),
        sa.UniqueConstraint(
            "device_id", "layer_key", "batch", name=op.f("uq_hwp_lut_entries_device_id_layer_key_batch")
        ),
    )
    op.create_table(
        "hwp_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("subject_kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("std", sa.Double(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("batch", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("subject_kind IN ('device', 'dataset')", name=op.f("ck_hwp_measurements_subject_kind")),
        sa.CheckConstraint(_SOURCES, name=op.f("ck_hwp_measurements_source")),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["hwp_subnets.id"],
            name=op.f("fk_hwp_measurements_subnet_id_hwp_subnets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["hwp_devices.id"],
            name=op.f("fk_hwp_measurements_device_id_hwp_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hwp_measurements")),
        sa.UniqueConstraint(
            "subnet_id",
            "subject_kind",
            "subject",
            "metric",
            "source",
            "batch",
            name=op.f("uq_hwp_measurements_identity"),
        ),
    )
    op.create_index(op.f("ix_hwp_measurements_subject_metric"), "hwp_measurements", ["subject", "metric"])


def downgrade() -> None:
    op.drop_index(op.f("ix_hwp_measurements_subject_metric"), table_name="hwp_measurements")
    for table in ("hwp_measurements", "hwp_lut_entries", "hwp_subnets", "hwp_spaces", "hwp_devices"):
        op.drop_table(table)
