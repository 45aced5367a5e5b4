"""hwpareto's SQL store (SQLite by default, any SQLAlchemy URL otherwise): devices, measurements, LUTs, predictors,
searches and the Optuna studies, in one database, read and written through typed repositories.

The bulk readers and writers of Optuna's tables load on first use, so importing the store does not import Optuna.
"""

import importlib
from typing import TYPE_CHECKING, Any

from hwpareto.store._db import Database, SchemaError, default_store_url, shown_url
from hwpareto.store._measurements import LUT_COLUMNS
from hwpareto.store._models import SEARCH_STATUSES, SOURCES
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
from hwpareto.store._tables import csv_safe, open_table, wide_table, write_wide_csv

if TYPE_CHECKING:
    from hwpareto.store._optuna import (
        CONSTRAINT_PREFIX,
        OPTUNA_TABLES,
        StudyRow,
        TrialRow,
        bulk_add_trials,
        completed_marker,
        completed_trials,
        find_study,
        last_generation,
        load_trials,
        set_study_system_attr,
        studies_with_user_attr,
        study_id,
        trial_system_attr,
        trial_values,
        user_attr_by_number,
    )

_LAZY = {
    name: "hwpareto.store._optuna"
    for name in (
        "CONSTRAINT_PREFIX",
        "OPTUNA_TABLES",
        "StudyRow",
        "TrialRow",
        "bulk_add_trials",
        "completed_marker",
        "completed_trials",
        "find_study",
        "last_generation",
        "load_trials",
        "set_study_system_attr",
        "studies_with_user_attr",
        "study_id",
        "trial_system_attr",
        "trial_values",
        "user_attr_by_number",
    )
}

__all__ = [
    "CONSTRAINT_PREFIX",
    "LUT_COLUMNS",
    "OPTUNA_TABLES",
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
    "StudyRow",
    "TrialRow",
    "WriteResult",
    "bulk_add_trials",
    "completed_marker",
    "completed_trials",
    "csv_safe",
    "default_store_url",
    "find_study",
    "last_generation",
    "load_trials",
    "open_table",
    "set_study_system_attr",
    "shown_url",
    "studies_with_user_attr",
    "study_id",
    "trial_system_attr",
    "trial_values",
    "user_attr_by_number",
    "wide_table",
    "write_wide_csv",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwpareto.store' has no attribute {name!r}")
