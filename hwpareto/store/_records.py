"""What the store's repositories take and return: frozen dataclasses, one per kind of row.

Field names are those of the store's JSON output (``hwpareto devices show --json`` prints
``dataclasses.asdict`` of a :class:`DeviceRecord`); timestamps are ISO 8601 strings in UTC, JSON columns parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supernet import SubNetConfig

__all__ = [
    "CheckpointRecord",
    "DeviceRecord",
    "MeasurementCount",
    "MeasurementIn",
    "PredictorBlob",
    "PredictorRecord",
    "SearchRecord",
    "WriteResult",
]


@dataclass(frozen=True, slots=True)
class MeasurementIn:
    """One value to write: ``metric`` of SubNet ``config`` on a device or dataset ``subject``.

    Units belong in the metric name (``latency_ms``, ``energy_mj``, ``test_acc``); ``origin`` names the file or
    command the value came from.
    """

    config: SubNetConfig
    subject_kind: str
    subject: str
    metric: str
    value: float
    std: float | None = None
    n: int | None = None
    batch: int = 1
    source: str = "imported"
    origin: str = ""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a bulk write did: rows inserted, updated (same key, new values), unchanged, devices registered."""

    inserted: int
    updated: int
    unchanged: int
    new_devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device with the number of its LUT entries and measurements."""

    name: str
    kind: str
    spec: dict[str, Any]
    provenance: dict[str, Any]
    lut_entries: int
    measurements: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class MeasurementCount:
    """How many measurements one (space, subject, metric, source) group holds."""

    space: str
    subject_kind: str
    subject: str
    metric: str
    source: str
    count: int


@dataclass(frozen=True, slots=True)
class PredictorRecord:
    """A stored predictor's description (``device`` for cost predictors, ``dataset`` for accuracy ones)."""

    name: str
    kind: str
    space: str
    device: str | None
    dataset: str | None
    metric: str
    format: str
    meta: dict[str, Any]
    created_at: str | None


@dataclass(frozen=True, slots=True)
class PredictorBlob(PredictorRecord):
    """A stored predictor with its serialised model (portable bytes, to be parsed, never unpickled)."""

    blob: bytes


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """A search of the queue (``status`` one of ``SEARCH_STATUSES``); its trials are Optuna study ``study_name``."""

    name: str
    space: str
    params: dict[str, Any]
    status: str
    n_trials: int
    trials_done: int
    study_name: str
    worker: str | None
    heartbeat_at: str | None
    error: str | None
    created_at: str | None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A SuperNet checkpoint the store knows: its file (absolute path when recorded), SHA-256, header metadata
    (``data``, ``seed``, ... as ``train-supernet`` writes them), the command that recorded it and when the space's
    quality was last evaluated with it (None: never; an export read it)."""

    space: str
    path: str
    sha256: str
    meta: dict[str, Any]
    recorded_by: str
    evaluated_at: str | None
    updated_at: str | None
