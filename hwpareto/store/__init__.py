"""hwpareto's SQL store (SQLite by default, any SQLAlchemy URL otherwise): devices, measurements, LUTs, predictors,
searches and the Optuna studies, in one database."""

from hwpareto.store._models import DEVICE_KINDS, SOURCES
from hwpareto.store._store import MeasurementIn, SchemaError, Store, WriteResult, default_store_url

__all__ = ["DEVICE_KINDS", "SOURCES", "MeasurementIn", "SchemaError", "Store", "WriteResult", "default_store_url"]
