"""``pareto.study_results`` (the one study reader: bulk queries, configs on demand) against a reference read through
Optuna's own API, on each backend, including a trial written by Optuna alone (no config, no constraint)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto import SearchSpec, run_surrogate, study_results
from tests.dashboard_store import add_fake


def _reference(store: Store, name: str, spec: SearchSpec) -> pd.DataFrame:
    """The trials table built trial by trial from ``optuna.load_study``."""
    objectives, budgets = spec.parsed()
    study = optuna.load_study(study_name=name, storage=store.optuna_storage())
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        row: dict[str, object] = {"number": t.number, "config_key": t.user_attrs.get("config_key")}
        row |= {o.name: float(v) for o, v in zip(objectives, t.values, strict=True)}
        row |= {f"budget:{b.text}": float(t.system_attrs.get(f"constraints:{b.text}", math.nan)) for b in budgets}
        row["feasible"] = all(row[f"budget:{b.text}"] <= 0 for b in budgets)  # type: ignore[operator]
        rows.append(row)
    return pd.DataFrame(rows)


def test_study_results_matches_optunas_reading(store: Store) -> None:
    add_fake(store, "edge")
    spec = SearchSpec(
        name="s",
        space="nb201",
        objectives=("params:max", "latency_ms@edge"),
        budgets=("latency_ms@edge <= 5",),
        n_trials=60,
        population=20,
    )
    run_surrogate(store, spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.load_study(study_name="s", storage=store.optuna_storage()).add_trial(
        optuna.trial.create_trial(values=[1.0, 2.0])
    )
    results = study_results(store, "s")
    reference = _reference(store, "s", spec)
    pd.testing.assert_frame_equal(results.trials, reference, check_dtype=False)
    assert results.trials["feasible"].sum() < 61 and not results.trials["feasible"].iloc[-1]
    assert list(results.configs) == list(range(61)) and 60 in results.configs
    study = optuna.load_study(study_name="s", storage=store.optuna_storage())
    assert results.configs[59] == study.trials[59].user_attrs["config"]
    assert results.configs.get(60) is None  # stored without its config
    assert np.isnan(results.trials["budget:latency_ms@edge <= 5"].iloc[-1])
    with pytest.raises(HwparetoError, match="study: expected an existing study in the store, got 'nope'"):
        study_results(store, "nope")
