"""Search, Pareto analytics, import and export over hwpareto's store.

The store's types are re-exported from :mod:`hwpareto.store` for convenience; search and analytics (which pull
in Optuna) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from hwpareto.store import DEVICE_KINDS, SOURCES, MeasurementIn, SchemaError, Store, WriteResult, default_store_url

_LAZY = {
    "SearchSpec": "pareto._search",
    "SearchResult": "pareto._search",
    "run_surrogate": "pareto._search",
    "load_trials": "pareto._search",
    "Objective": "pareto._objectives",
    "Budget": "pareto._objectives",
    "parse_objective": "pareto._objectives",
    "cost_metrics": "pareto._objectives",
    "parse_budget": "pareto._objectives",
    "StudyResults": "pareto._analysis",
    "Front": "pareto._analysis",
    "study_results": "pareto._analysis",
    "export_trial": "pareto._analysis",
    "delete_study": "pareto._catalog",
    "submit": "pareto._worker",
    "run_worker": "pareto._worker",
    "run_budgeted": "pareto._budgeted_study",
    "Strategy": "pareto._strategies",
    "register_strategy": "pareto._strategies",
    "AskTell": "pareto._strategies",
    "budgeted_search": "pareto._budgeted",
    "BudgetedAcquisition": "pareto._budgeted",
    "non_dominated_mask": "pareto._pareto",
    "nondominated_sort": "pareto._pareto",
    "hypervolume": "pareto._pareto",
    "hypervolume_history": "pareto._pareto",
    "igd_plus": "pareto._pareto",
    "front_recall": "pareto._pareto",
    "knee_point": "pareto._pareto",
    "operating_points": "pareto._pareto",
    "operating_point_table": "pareto._pareto",
    "front_for_budget": "pareto._pareto",
}

__all__ = [
    "DEVICE_KINDS",
    "SOURCES",
    "MeasurementIn",
    "SchemaError",
    "Store",
    "WriteResult",
    "default_store_url",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pareto' has no attribute {name!r}")
