"""Device kinds are declared by the backends: no closed list (CHECK constraint) on ``hwp_devices.kind``, which
takes a name (up to 128 characters, as ``check_name`` allows).

On SQLite the table is rebuilt (batch mode); :meth:`hwpareto.store._db.Database._migrate` turns foreign keys off
around the migration, so dropping the old table does not cascade to its LUT entries, measurements and predictors.

Revision ID: 0004_device_kinds
Revises: 0003_checkpoints
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_device_kinds"
down_revision: str | None = "0003_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_0003 = ("cpu", "cuda", "npu", "cim", "imported", "fake")


def upgrade() -> None:
    with op.batch_alter_table("hwp_devices") as batch:
        batch.drop_constraint(op.f("ck_hwp_devices_kind"), type_="check")
        batch.alter_column("kind", existing_type=sa.String(16), type_=sa.String(128), existing_nullable=False)


def downgrade() -> None:
    allowed = ", ".join(f"'{k}'" for k in _KINDS_0003)
    with op.batch_alter_table("hwp_devices") as batch:
        batch.alter_column("kind", existing_type=sa.String(128), type_=sa.String(16), existing_nullable=False)
        batch.create_check_constraint(op.f("ck_hwp_devices_kind"), f"kind IN ({allowed})")
