"""hwpareto's SQL store (SQLite by default, any SQLAlchemy URL otherwise): devices, measurements, LUTs, predictors,
searches and the Optuna studies, in one database, read and written through typed repositories."""

from hwpareto.store._db import Database, SchemaError, default_store_url
from hwpareto.store._measurements import LUT_COLUMNS
from hwpareto.store._models import DEVICE_KINDS, SEARCH_STATUSES, SOURCES
from hwpareto.store._records import (
    CheckpointRecord,
    DeviceRecord,
    MeasurementCount,
    MeasurementIn,
    PredictorBlob,
    PredictorRecord,
    SearchRecord,
    WriteResult,
)
from hwpareto.store._store import Store

__all__ = [
    "DEVICE_KINDS",
    "LUT_COLUMNS",
    "SEARCH_STATUSES",
    "SOURCES",
    "CheckpointRecord",
    "Database",
    "DeviceRecord",
    "MeasurementCount",
    "MeasurementIn",
    "PredictorBlob",
    "PredictorRecord",
    "SchemaError",
    "SearchRecord",
    "Store",
    "WriteResult",
    "default_store_url",
]
