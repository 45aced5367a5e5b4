"""Search, Pareto analytics, import and export over hwpareto's store (whose types are :mod:`hwpareto.store`'s).

Every public name loads its module on first use, so ``import pareto`` does not import Optuna (the CLI starts
fast); the ``TYPE_CHECKING`` imports give type checkers the same names, typed (``tests/test_layers.py`` checks
that both lists agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pareto._demo import describe_demo, run_demo
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
    from pareto.analysis._analysis import Front, StudyResults, export_trial, study_results
    from pareto.analysis._catalog import STUDY_ONLY, delete_study, list_all_searches, studies_using, study_trial_counts
    from pareto.analysis._pareto import (
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
    from pareto.bundles._export import export_subnet, load_subnet, load_supernet, record_checkpoint, verify_bundle
    from pareto.search._budgeted import BudgetedAcquisition, budgeted_search
    from pareto.search._budgeted_study import run_budgeted
    from pareto.search._search import SPEC_ATTR, SearchResult, SearchSpec, load_trials, run_surrogate
    from pareto.search._strategies import STRATEGIES, AskTell, Problem, Strategy, register_strategy
    from pareto.search._worker import run_now, run_worker, submit, validate_spec

_LAZY = {
    "SPEC_ATTR": "pareto.search._search",
    "SearchSpec": "pareto.search._search",
    "SearchResult": "pareto.search._search",
    "run_surrogate": "pareto.search._search",
    "load_trials": "pareto.search._search",
    "Objective": "pareto._objectives",
    "Budget": "pareto._objectives",
    "Evaluator": "pareto._objectives",
    "parse_objective": "pareto._objectives",
    "cost_metrics": "pareto._objectives",
    "parse_budget": "pareto._objectives",
    "register_analytic": "pareto._objectives",
    "AnalyticObjective": "pareto._objectives",
    "StudyResults": "pareto.analysis._analysis",
    "Front": "pareto.analysis._analysis",
    "study_results": "pareto.analysis._analysis",
    "export_trial": "pareto.analysis._analysis",
    "STUDY_ONLY": "pareto.analysis._catalog",
    "delete_study": "pareto.analysis._catalog",
    "list_all_searches": "pareto.analysis._catalog",
    "studies_using": "pareto.analysis._catalog",
    "study_trial_counts": "pareto.analysis._catalog",
    "describe_demo": "pareto._demo",
    "run_demo": "pareto._demo",
    "export_subnet": "pareto.bundles._export",
    "load_subnet": "pareto.bundles._export",
    "load_supernet": "pareto.bundles._export",
    "record_checkpoint": "pareto.bundles._export",
    "verify_bundle": "pareto.bundles._export",
    "ColumnMap": "pareto._importer",
    "ImportReport": "pareto._importer",
    "import_table": "pareto._importer",
    "parse_columns": "pareto._importer",
    "run_now": "pareto.search._worker",
    "submit": "pareto.search._worker",
    "run_worker": "pareto.search._worker",
    "validate_spec": "pareto.search._worker",
    "run_budgeted": "pareto.search._budgeted_study",
    "STRATEGIES": "pareto.search._strategies",
    "Strategy": "pareto.search._strategies",
    "Problem": "pareto.search._strategies",
    "register_strategy": "pareto.search._strategies",
    "AskTell": "pareto.search._strategies",
    "budgeted_search": "pareto.search._budgeted",
    "BudgetedAcquisition": "pareto.search._budgeted",
    "non_dominated_mask": "pareto.analysis._pareto",
    "nondominated_sort": "pareto.analysis._pareto",
    "hypervolume": "pareto.analysis._pareto",
    "hypervolume_history": "pareto.analysis._pareto",
    "igd_plus": "pareto.analysis._pareto",
    "front_recall": "pareto.analysis._pareto",
    "knee_point": "pareto.analysis._pareto",
    "operating_points": "pareto.analysis._pareto",
    "operating_point_table": "pareto.analysis._pareto",
    "front_for_budget": "pareto.analysis._pareto",
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
