"""Search, Pareto analytics, import and export over hwpareto's store (whose types are :mod:`hwpareto.store`'s).

Every public name loads its module on first use, so ``import pareto`` does not import Optuna (the CLI starts
fast); the ``TYPE_CHECKING`` imports give type checkers the same names, typed (``tests/test_layers.py`` checks
that both lists agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pareto._analysis import Front, StudyResults, export_trial, study_results
    from pareto._budgeted import BudgetedAcquisition, budgeted_search
    from pareto._budgeted_study import run_budgeted
    from pareto._catalog import STUDY_ONLY, delete_study, list_all_searches, studies_using, study_trial_counts
    from pareto._demo import describe_demo, run_demo
    from pareto._export import export_subnet, load_subnet, load_supernet, record_checkpoint, verify_bundle
    from pareto._importer import ColumnMap, ImportReport, import_table, parse_columns
    from pareto._objectives import (
        AnalyticObjective,
        Budget,
        Evaluator,
        Objective,
        cost_metrics,
        parse_budget,
        parse_objective,
        register_analytic,
    )
    from pareto._pareto import (
        front_for_budget,
        front_recall,
        hypervolume,
        hypervolume_history,
        igd_plus,
        knee_point,
        non_dominated_mask,
        nondominated_sort,
        operating_point_table,
        operating_points,
    )
    from pareto._search import SPEC_ATTR, SearchResult, SearchSpec, load_trials, run_surrogate
    from pareto._strategies import STRATEGIES, AskTell, Problem, Strategy, register_strategy
    from pareto._worker import run_now, run_worker, submit, validate_spec

_LAZY = {
    "SPEC_ATTR": "pareto._search",
    "SearchSpec": "pareto._search",
    "SearchResult": "pareto._search",
    "run_surrogate": "pareto._search",
    "load_trials": "pareto._search",
    "Objective": "pareto._objectives",
    "Budget": "pareto._objectives",
    "Evaluator": "pareto._objectives",
    "parse_objective": "pareto._objectives",
    "cost_metrics": "pareto._objectives",
    "parse_budget": "pareto._objectives",
    "register_analytic": "pareto._objectives",
    "AnalyticObjective": "pareto._objectives",
    "StudyResults": "pareto._analysis",
    "Front": "pareto._analysis",
    "study_results": "pareto._analysis",
    "export_trial": "pareto._analysis",
    "STUDY_ONLY": "pareto._catalog",
    "delete_study": "pareto._catalog",
    "list_all_searches": "pareto._catalog",
    "studies_using": "pareto._catalog",
    "study_trial_counts": "pareto._catalog",
    "describe_demo": "pareto._demo",
    "run_demo": "pareto._demo",
    "export_subnet": "pareto._export",
    "load_subnet": "pareto._export",
    "load_supernet": "pareto._export",
    "record_checkpoint": "pareto._export",
    "verify_bundle": "pareto._export",
    "ColumnMap": "pareto._importer",
    "ImportReport": "pareto._importer",
    "import_table": "pareto._importer",
    "parse_columns": "pareto._importer",
    "run_now": "pareto._worker",
    "submit": "pareto._worker",
    "run_worker": "pareto._worker",
    "validate_spec": "pareto._worker",
    "run_budgeted": "pareto._budgeted_study",
    "STRATEGIES": "pareto._strategies",
    "Strategy": "pareto._strategies",
    "Problem": "pareto._strategies",
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
    "SPEC_ATTR",
    "STRATEGIES",
    "STUDY_ONLY",
    "AnalyticObjective",
    "AskTell",
    "Budget",
    "BudgetedAcquisition",
    "ColumnMap",
    "Evaluator",
    "Front",
    "ImportReport",
    "Objective",
    "Problem",
    "SearchResult",
    "SearchSpec",
    "Strategy",
    "StudyResults",
    "budgeted_search",
    "cost_metrics",
    "delete_study",
    "describe_demo",
    "export_subnet",
    "export_trial",
    "front_for_budget",
    "front_recall",
    "hypervolume",
    "hypervolume_history",
    "igd_plus",
    "import_table",
    "knee_point",
    "list_all_searches",
    "load_subnet",
    "load_supernet",
    "load_trials",
    "non_dominated_mask",
    "nondominated_sort",
    "operating_point_table",
    "operating_points",
    "parse_budget",
    "parse_columns",
    "parse_objective",
    "record_checkpoint",
    "register_analytic",
    "register_strategy",
    "run_budgeted",
    "run_demo",
    "run_now",
    "run_surrogate",
    "run_worker",
    "studies_using",
    "study_results",
    "study_trial_counts",
    "submit",
    "validate_spec",
    "verify_bundle",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pareto' has no attribute {name!r}")
