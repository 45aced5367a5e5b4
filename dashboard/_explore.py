"""The Trials page, as data: a study's trials with their config values (filterable in pandas), parameter importance
per objective, a parallel-coordinates view of the front, and study deletion (no Streamlit here)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hwpareto.store import Store, completed_trials, find_study
from pareto import delete_study

__all__ = [
    "budget_columns",
    "config_frame",
    "delete_study",
    "filter_trials",
    "front_parallel_figure",
    "importance_figure",
    "param_importances",
    "range_label",
    "range_steps",
    "trial_frame",
    "varied_columns",
]

CONFIG_PREFIX = "cfg:"  # config dims in the trial frame: "cfg:edge0", ...


def config_frame(store: Store, study: str) -> pd.DataFrame:
    """``number`` and one ``cfg:NAME`` column per config dim of ``study``'s completed trials (one query; list values
    JSON-encoded so every cell is a scalar)."""
    found = find_study(store, study)
    rows = [] if found is None else completed_trials(store, found[0], "config")
    records = []
    for _, number, doc in rows:
        if doc is None:
            continue
        config = json.loads(doc)
        records.append(
            {
                "number": int(number),
                **{CONFIG_PREFIX + k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in config.items()},
            }
        )
    return pd.DataFrame.from_records(records, columns=None if records else ["number"])


def trial_frame(trials: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """The study's trial frame (objectives, budgets, ``feasible``) with its config columns, by trial number."""
    return trials.merge(configs, on="number", how="left", sort=False)


def budget_columns(trials: pd.DataFrame, budgets: Sequence[Any], device: str | None = None) -> list[str]:
    """The ``budget:…`` columns of ``budgets`` (all, or those on ``device``'s costs)."""
    return [
        f"budget:{b.text}"
        for b in budgets
        if f"budget:{b.text}" in trials and (device is None or b.objective.subject == device)
    ]


def varied_columns(frame: pd.DataFrame) -> list[str]:
    """The config columns of ``frame`` with more than one value."""
    return [c for c in frame.columns if c.startswith(CONFIG_PREFIX) and frame[c].nunique(dropna=True) > 1]


def filter_trials(
    frame: pd.DataFrame,
    *,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    feasible: bool | None = None,
    budgets: Sequence[str] | None = None,
    config: Mapping[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """The rows of ``frame`` with each ``ranges`` column within [lo, hi], meeting (``feasible=True``) or missing
    (``False``) the budgets (``budgets``: the ``budget:…`` columns that count; None: the ``feasible`` column), and each
    ``config`` column among its allowed values (an empty list allows all)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, (lo, hi) in (ranges or {}).items():
        values = frame[column].to_numpy(float)
        mask &= (values >= lo) & (values <= hi)
    if feasible is not None:
        met = (
            (frame[list(budgets)].to_numpy(float) <= 0).all(axis=1)
            if budgets is not None
            else frame["feasible"].to_numpy(bool)
        )
        mask &= met if feasible else ~met
    for column, allowed in (config or {}).items():
        if allowed:
            mask &= frame[column].isin(list(allowed)).to_numpy()
    return frame[mask]


def range_steps(values: Sequence[float] | np.ndarray, steps: int = 200) -> list[float]:
    """The values a range filter of ``values`` offers, from their exact minimum to their exact maximum: every
    distinct value when there are at most ``steps`` + 1, else ``steps`` equal steps (in the values' own unit, whatever
    its scale); empty without two distinct finite values. The ends are the data's, so the full range hides nothing."""
    v = np.asarray(values, float)
    v = np.unique(v[np.isfinite(v)])
    if len(v) < 2:
        return []
    if len(v) <= steps + 1:
        return [float(x) for x in v]
    grid = np.linspace(v[0], v[-1], steps + 1)
    grid[0], grid[-1] = v[0], v[-1]
    return [float(x) for x in grid]


def range_label(options: Sequence[float]) -> str:
    """A ``%``-format that tells every option of :func:`range_steps` apart (the fewest significant digits, 3 to
    17)."""
    for digits in range(3, 18):
        fmt = f"%.{digits}g"
        if len({fmt % x for x in options}) == len(options):
            return fmt
    return "%r"


def _distribution(values: pd.Series) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return FloatDistribution(float(values.min()), float(values.max()))
    return CategoricalDistribution(sorted({str(v) for v in values}))


def param_importances(
    frame: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str] | None = None,
    *,
    sample: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Objective -> (config dim -> importance, summing to 1) by PED-ANOVA (Optuna's ``PedAnovaImportanceEvaluator``:
    which dims matter to reach the objective's best 10%) over at most ``sample`` trials drawn with ``seed``; one entry
    per config dim varied in the sample, the same on every run. ``directions``: per objective (default minimize)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    rows = frame[np.isfinite(frame[list(objectives)].to_numpy(float)).all(axis=1)]
    if len(rows) > sample:
        rows = rows.sample(sample, random_state=seed).sort_values("number")
    params = varied_columns(rows)
    if len(rows) < 2 or not params:
        return {o: {} for o in objectives}
    dists = {c[len(CONFIG_PREFIX) :]: _distribution(rows[c]) for c in params}
    numeric = {c: not isinstance(d, optuna.distributions.CategoricalDistribution) for c, d in dists.items()}
    values = rows[list(objectives)].to_numpy(float)
    cols = {c[len(CONFIG_PREFIX) :]: rows[c].to_numpy() for c in params}
    trials = [
        optuna.trial.create_trial(
            params={c: float(v[i]) if numeric[c] else str(v[i]) for c, v in cols.items()},
            distributions=dists,
            values=list(values[i]),
        )
        for i in range(len(rows))
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"] * len(objectives))
    study.add_trials(trials)
    out = {}
    for j, o in enumerate(objectives):
        sign = -1.0 if directions is not None and directions[j] == "maximize" else 1.0

        def target(t: optuna.trial.FrozenTrial, j: int = j, sign: float = sign) -> float:
            return sign * float(t.values[j])

        with warnings.catch_warnings():  # "assumes minimization": the target is signed above
            warnings.simplefilter("ignore", UserWarning)
            found = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), params=list(dists), target=target
            )
        out[o] = {CONFIG_PREFIX + k: float(v) for k, v in found.items()}
    return out


def importance_figure(importances: Mapping[str, float], objective: str) -> go.Figure:
    """Horizontal bars of one objective's parameter importances (largest on top)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k[len(CONFIG_PREFIX) :] for k, _ in items], orientation="h"))
    fig.update_layout(
        title=f"importance for {objective}",
        xaxis_title="PED-ANOVA importance",
        height=120 + 24 * len(items),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def front_parallel_figure(front: pd.DataFrame, objectives: Sequence[str]) -> go.Figure:
    """Parallel coordinates over the front members' objectives and their varied config dims (non-numeric dims as
    codes labelled with their values); one line per row of ``front``."""
    dims: list[dict[str, Any]] = [{"label": o, "values": front[o].to_numpy(float)} for o in objectives]
    for c in varied_columns(front):
        values = front[c]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            dims.append({"label": c[len(CONFIG_PREFIX) :], "values": values.to_numpy(float)})
        else:
            labels = sorted({str(v) for v in values})
            codes = values.astype(str).map({v: i for i, v in enumerate(labels)}).to_numpy(float)
            dims.append(
                {
                    "label": c[len(CONFIG_PREFIX) :],
                    "values": codes,
                    "tickvals": list(range(len(labels))),
                    "ticktext": labels,
                }
            )
    color = front[objectives[0]].to_numpy(float) if objectives else None
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": color, "colorscale": "Viridis", "showscale": True}))
    fig.update_layout(margin={"l": 60, "r": 60, "t": 40, "b": 20}, height=420)
    return fig
