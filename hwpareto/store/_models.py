"""ORM of hwpareto's store (SQLAlchemy 2, typed): describes exactly the schema of the newest Alembic revision.

Every table is prefixed ``hwp_`` so one database holds hwpareto's tables beside Optuna's (``studies``,
``trials``, ... and Optuna's own ``alembic_version``); hwpareto's revision lives in ``hwp_alembic_version``.
JSON columns hold canonical JSON text (sorted keys, portable across SQLite and PostgreSQL); timestamps are
timezone-aware UTC. Deleting a device deletes its LUT entries, measurements and predictors; deleting a SubNet
deletes its measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "PREDICTOR_KINDS",
    "SEARCH_STATUSES",
    "SOURCES",
    "SUBJECT_KINDS",
    "VERSION_TABLE",
    "Base",
    "Checkpoint",
    "Device",
    "Export",
    "LutEntry",
    "Measurement",
    "Predictor",
    "Search",
    "Space",
    "SubNet",
    "UTCDateTime",
    "include_name",
]

SOURCES = ("measured", "simulated", "imported", "predicted", "evaluated")
SUBJECT_KINDS = ("device", "dataset")
PREDICTOR_KINDS = ("latency", "energy", "accuracy")
SEARCH_STATUSES = ("queued", "running", "done", "failed", "cancelled")
VERSION_TABLE = "hwp_alembic_version"
TABLE_PREFIX = "hwp_"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: only hwpareto's own tables (Optuna's tables share the database)."""
    return type_ != "table" or bool(name and name.startswith(TABLE_PREFIX))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and always reads back aware UTC datetimes.

    SQLite keeps no offset, so values are converted to UTC before they are written; naive values count as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, allowed: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in allowed)})"


class Base(DeclarativeBase):
    """Declarative base: naming convention for every constraint, UTC timestamps and double-precision floats."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), float: Double()}


class Device(Base):
    """A hardware target (profiled, simulated or named by an imported table)."""

    __tablename__ = "hwp_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(128))  # a name (``check_name``): backends declare kinds, no closed list
    spec_json: Mapped[str] = mapped_column(Text)
    provenance_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)


class Space(Base):
    """A stored space: the document ``supernet.space_document`` returns (declarative, or with a ``kind``)."""

    __tablename__ = "hwp_spaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    definition_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SubNet(Base):
    """A SubNet configuration, keyed by ``(space, SubNetConfig.key)``; ``config_json`` is canonical JSON of values."""

    __tablename__ = "hwp_subnets"
    __table_args__ = (UniqueConstraint("space", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LutEntry(Base):
    """Cost of one layer (``LayerSpec.key``) on a device at a batch size."""

    __tablename__ = "hwp_lut_entries"
    __table_args__ = (
        UniqueConstraint("device_id", "layer_key", "batch"),
        CheckConstraint(_one_of("source", SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("hwp_devices.id", ondelete="CASCADE"))
    layer_key: Mapped[str] = mapped_column(String(255))
    op: Mapped[str] = mapped_column(String(32))
    spec_json: Mapped[str] = mapped_column(Text)
    batch: Mapped[int] = mapped_column(server_default=text("1"))
    latency_ms_mean: Mapped[float]
    latency_ms_std: Mapped[float]
    energy_mj_mean: Mapped[float | None]
    energy_mj_std: Mapped[float | None]
    n: Mapped[int]
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Measurement(Base):
    """One metric of one SubNet on a subject: a device (``device_id`` set) or a dataset."""

    __tablename__ = "hwp_measurements"
    __table_args__ = (
        UniqueConstraint(
            "subnet_id", "subject_kind", "subject", "metric", "source", "batch", name="uq_hwp_measurements_identity"
        ),
        CheckConstraint(_one_of("subject_kind", SUBJECT_KINDS), name="subject_kind"),
        CheckConstraint(_one_of("source", SOURCES), name="source"),
        Index(None, "subject", "metric"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subnet_id: Mapped[int] = mapped_column(ForeignKey("hwp_subnets.id", ondelete="CASCADE"))
    subject_kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(128))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("hwp_devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    std: Mapped[float | None]
    n: Mapped[int | None]
    batch: Mapped[int] = mapped_column(server_default=text("1"))
    source: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Predictor(Base):
    """A trained cost/accuracy predictor, serialised in a portable format (never pickle)."""

    __tablename__ = "hwp_predictors"
    __table_args__ = (CheckConstraint(_one_of("kind", PREDICTOR_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    space: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("hwp_devices.id", ondelete="CASCADE"))
    dataset: Mapped[str | None] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    meta_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Search(Base):
    """A queued or running hardware-aware search; its trials live in the Optuna study ``study_name``."""

    __tablename__ = "hwp_searches"
    __table_args__ = (CheckConstraint(_one_of("status", SEARCH_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    space: Mapped[str] = mapped_column(String(64))
    params_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    n_trials: Mapped[int]
    trials_done: Mapped[int] = mapped_column(server_default=text("0"))
    study_name: Mapped[str] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)


class Export(Base):
    """A SubNet exported to files (weights, ONNX, ...) at ``path``."""

    __tablename__ = "hwp_exports"
    __table_args__ = (Index(None, "space", "config_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    config_key: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    files_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Checkpoint(Base):
    """A SuperNet checkpoint file known to the store, by space and content (SHA-256): one a space's quality was
    evaluated with (``evaluated_at`` set; the newest is what exports use by default) or one an export read
    (``verify-bundle`` finds a bundle's SuperNet by its hash). ``meta_json``: the checkpoint's own header (training
    data, seed, ...)."""

    __tablename__ = "hwp_checkpoints"
    __table_args__ = (UniqueConstraint("space", "sha256"), Index(None, "sha256"))

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    meta_json: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(32))
    evaluated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=utcnow)
