"""Pareto analysis and hwpareto's SQL store (SQLite by default, any SQLAlchemy URL otherwise)."""

from pareto._models import DEVICE_KINDS, SOURCES
from pareto._store import MeasurementIn, SchemaError, Store, WriteResult, default_store_url

__all__ = ["DEVICE_KINDS", "SOURCES", "MeasurementIn", "SchemaError", "Store", "WriteResult", "default_store_url"]
