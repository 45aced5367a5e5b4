"""The Search page's data: the quality objectives and default space offered, the search form as a
:class:`pareto.SearchSpec`, typical costs for the budget input, and a search's progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from supernet import SearchSpace

if TYPE_CHECKING:
    from pareto import SearchSpec, StudyResults


__all__ = [
    "budget_input_format",
    "default_space",
    "make_spec",
    "parse_fixed",
    "quality_objectives",
    "search_progress",
    "typical_costs",
]


def quality_objectives(store: Store, space: str) -> list[str]:
    """Quality objectives of a search of ``space``: each accuracy predictor's metric@dataset (accuracy maximised,
    perplexity and loss minimised), then analytic proxies."""
    names = [f"{p.metric}@{p.dataset}" for p in store.predictors.list(space) if p.kind == "accuracy" and p.dataset]
    return [*dict.fromkeys(names), "params:max", "macs:max"]


def default_space(store: Store, devices: Sequence[str]) -> str:
    """The space a new search most likely wants: the newest search's, else the first one ``devices`` have LUT
    entries for, else the first space."""
    from profilers import lut_entries_per_space

    loaded = store.spaces.load_all()[0]  # a broken space plugin: left out
    names = [s.name for s in loaded]
    searches = store.searches.list()
    if searches and searches[0].space in names:
        return searches[0].space
    spaces = [s for s in loaded if s.has_model]
    for device in devices:
        covered = lut_entries_per_space(store, device, spaces)
        if covered:
            return max(covered, key=covered.__getitem__)
    return names[0]


def parse_fixed(text: str, space: SearchSpace) -> dict[str, Any]:
    """``"r=224, w=1.0"`` → validated values of fixed dimensions (the ``--fix DIM=VALUE`` of the CLI)."""
    fixed: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValueError("fixed dimensions", "DIM=VALUE, separated by commas", item)
        dim = space.dimension(name.strip())
        raw: Any = value.strip()
        try:
            number = float(raw)
            raw = int(number) if number.is_integer() and "." not in raw else number
        except ValueError:
            pass
        fixed[dim.name] = dim.coerce(raw, space.name)
    return fixed


def make_spec(
    store: Store,
    *,
    name: str,
    space: str,
    quality: str,
    metric: str,
    devices: Sequence[str],
    budget: float | None,
    sampler: str,
    n_trials: int,
    population: int,
    seed: int,
    fixed: str = "",
    mode: str = "surrogate",
) -> SearchSpec:
    """A :class:`pareto.SearchSpec` from the search form: ``quality`` vs ``metric``@device for every device,
    with the budget (if any) on the first device. ``mode`` ``budgeted`` evaluates ``quality`` against its stored
    table (at most ``n_trials`` evaluations, with the default :class:`hwpareto.options.BudgetedOptions`) instead of
    predicting it."""
    from pareto import SearchSpec

    if not devices:
        raise InvalidValueError("devices", "at least one device", [])
    from pareto import cost_metrics

    allowed = cost_metrics(store.spaces.get(space))
    if metric not in allowed:
        raise InvalidValueError("cost metric", " or ".join(allowed), metric)
    if mode not in ("surrogate", "budgeted"):
        raise InvalidValueError("mode", "surrogate or budgeted", mode)
    objectives = (quality, *(f"{metric}@{d}" for d in devices))
    budgets = (f"{metric}@{devices[0]} <= {budget:g}",) if budget else ()
    return SearchSpec(
        name=name.strip(),
        space=space,
        objectives=objectives,
        budgets=budgets,
        sampler=sampler,
        n_trials=n_trials,
        population=population,
        seed=seed,
        mode=mode,
        fixed=parse_fixed(fixed, store.spaces.get(space)),
    )


def search_progress(store: Store, name: str, results: StudyResults | None = None) -> dict[str, Any]:
    """A search's queue row plus, once its study has trials (``results``, loaded here when not given), the
    stored trial count, feasible count and hypervolume history."""
    row = store.searches.get(name)
    from pareto import study_results

    out: dict[str, Any] = {**asdict(row), "feasible": 0, "stored": 0, "hypervolume": np.empty(0)}
    if results is None:
        try:
            results = study_results(store, name)
        except InvalidValueError:  # no study yet (queued, or failed before writing)
            return out
    out["stored"] = len(results.trials)
    if len(results.trials):
        out["feasible"] = int(results.trials["feasible"].sum())
        out["hypervolume"] = results.hypervolume_history()[0]
    return out


def budget_input_format(values: Sequence[float] | np.ndarray) -> tuple[float, str]:
    """Step and printf format of a budget field for costs like ``values`` (a device's typical latencies): step =
    10^floor(log10(median)) / 10, and enough decimals to show a step (0.004-0.01 ms: step 0.0001, ``%.5f``)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return 1.0, "%.2f"
    step = 10.0 ** np.floor(np.log10(float(np.median(v)))) / 10
    return float(step), f"%.{max(1, 1 - int(np.floor(np.log10(step))))}f"


def typical_costs(store: Store, device: str, space: str, metric: str = "latency_ms", n: int = 32) -> np.ndarray:
    """Typical whole-network costs of ``space`` on ``device``: its measured values, else what a search would use
    (the stored predictor, else the LUT-sum) for ``n`` sampled SubNets (seed 0); empty when neither is there."""
    measured = store.measurements.table(space=space, subject=device, metric=metric)
    values = measured["value"].to_numpy(float)
    if len(values):
        return values
    try:
        from pareto import Evaluator, Objective

        sp = store.spaces.get(space)
        rng = np.random.default_rng(0)
        mean, _ = Evaluator(store, sp, [Objective(metric, device)]).evaluate([sp.sample(rng) for _ in range(n)])
        return mean[:, 0]
    except Exception:  # no LUT, a partial one, or no model to sum: the field keeps its default step
        return np.array([], float)
