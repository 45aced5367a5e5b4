"""The Fronts page's data: a study's summary, its fronts per device and in projection, axis ranges, hover texts, runtime
settings and the comparison of two studies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hwpareto.errors import InvalidValueError
from supernet import SearchSpace

if TYPE_CHECKING:
    from pareto import StudyResults


__all__ = [
    "FrontView",
    "axis_range",
    "compare_fronts",
    "front_view",
    "hover_texts",
    "projection_front",
    "quality_range",
    "runtime_setting",
    "scales_differ",
    "study_summary",
]


def study_summary(results: StudyResults) -> dict[str, Any]:
    """Space, objectives, budgets, trial and feasible counts of a :class:`pareto.StudyResults`."""
    return {
        "space": results.spec.space,
        "objectives": [o.name for o in results.objectives],
        "budgets": [b.text for b in results.budgets],
        "sampler": results.spec.sampler,
        "trials": len(results.trials),
        "feasible": int(results.trials["feasible"].sum()),
    }


@dataclass(frozen=True)
class FrontView:
    """What the Fronts page draws for one study: the axes, each device's front, the budget bounds."""

    quality: str  # y axis: the first maximised (non-cost) objective
    costs: tuple[str, ...]  # x axes: cost objectives (one per device), or the other objectives
    fronts: dict[str, pd.DataFrame]  # cost objective -> its front rows (sorted by cost)
    knees: dict[str, int | None]
    bounds: dict[str, float]  # objective -> budget bound
    # cost objective -> the 2-D (cost, quality) front of its rows (sorted by cost): the staircase drawn; the other
    # rows of ``fronts`` are non-dominated only over more objectives
    projected: dict[str, pd.DataFrame] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # cost objective -> how many objectives its front is over


def front_view(results: StudyResults) -> FrontView:
    """Fronts of ``results`` per cost objective (per device), against its first quality objective."""
    quality = [o for o in results.objectives if not o.is_cost] or list(results.objectives[:1])
    costs = [o for o in results.objectives if o is not quality[0]]
    if not costs:
        raise InvalidValueError("objectives", "at least two to draw a front", [o.name for o in results.objectives])
    fronts, knees, dims = {}, {}, {}
    devices = [o.subject for o in costs if o.is_cost and o.subject]
    for cost in costs:
        device = cost.subject if cost.is_cost and cost.subject and len(set(devices)) > 1 else None
        front = results.front(device)
        fronts[cost.name] = front.rows.sort_values(cost.name, ignore_index=True)
        knees[cost.name] = front.knee_number
        dims[cost.name] = len(front.objectives)
    bounds = {b.objective.name: float(b.bound) for b in results.budgets}
    projected = {
        c.name: projection_front(fronts[c.name], c.name, quality[0].name, c.direction, quality[0].direction)
        for c in costs
    }
    return FrontView(quality[0].name, tuple(c.name for c in costs), fronts, knees, bounds, projected, dims)


def projection_front(
    rows: pd.DataFrame, x: str, y: str, x_direction: str = "minimize", y_direction: str = "maximize"
) -> pd.DataFrame:
    """The rows non-dominated in the (``x``, ``y``) plane (one per distinct point, sorted by ``x``): the staircase
    of a 2-D projection; rows of a front over more objectives that are dominated in the plane drop out."""
    from pareto import non_dominated_mask

    if rows.empty:
        return rows.copy()
    mask = non_dominated_mask(rows[[x, y]].to_numpy(float), [x_direction, y_direction])
    return rows[mask].drop_duplicates([x, y]).sort_values(x, ignore_index=True)


def scales_differ(fronts: Mapping[str, pd.DataFrame], costs: Sequence[str], ratio: float = 10.0) -> bool:
    """Whether the fronts of ``costs`` lie more than ``ratio`` apart (median cost): then one shared linear axis
    squeezes the cheaper ones to the left edge, so each gets its own panel."""
    medians = [
        float(np.median(v))
        for c in costs
        if len(v := fronts[c][c].to_numpy(float)[np.isfinite(fronts[c][c].to_numpy(float))])
    ]
    medians = [abs(m) for m in medians if m != 0]
    return len(medians) > 1 and max(medians) / min(medians) > ratio


def axis_range(
    values: Sequence[float] | np.ndarray,
    *,
    log: bool = False,
    margin: float = 0.08,
) -> tuple[float, float] | None:
    """A default axis range around ``values`` (a front's, not the outliers'), widened by ``margin`` of the span
    on each side; in log10 units for a log axis (Plotly's convention); None without finite (positive) values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = (float(np.log10(v.min())), float(np.log10(v.max()))) if log else (float(v.min()), float(v.max()))
    span = hi - lo or (0.1 if log else abs(hi) * 0.1 or 1.0)
    return lo - margin * span, hi + margin * span


def quality_range(
    trials: pd.DataFrame,
    front: pd.DataFrame,
    cost: str,
    quality: str,
    x_range: tuple[float, float] | None,
    *,
    log: bool = False,
    margin: float = 0.08,
) -> tuple[float, float] | None:
    """The quality axis' default range: the front's values and the central 90 % of the trials within the cost
    range (so far-off trials don't stretch it), widened by ``margin``."""
    values = list(front[quality].to_numpy(float))
    if x_range is not None:
        x = trials[cost].to_numpy(float)
        lo, hi = (10 ** x_range[0], 10 ** x_range[1]) if log else x_range
        inside = trials[quality].to_numpy(float)[(x >= lo) & (x <= hi)]
        inside = inside[np.isfinite(inside)]
        if len(inside):
            values += [float(np.quantile(inside, 0.05)), float(np.quantile(inside, 0.95))]
    return axis_range(values, margin=margin)


def runtime_setting(space: SearchSpace, results: StudyResults, numbers: Sequence[int]) -> list[str]:
    """The runtime dimensions of ``space`` (group ``runtime``: an LLM's batch, prompt and generated lengths), each as
    ``name (what): values``, the values those of the SubNets ``numbers`` (e.g. the front); ``(fixed)`` when the search
    or the space allows one value only. Empty for a space without runtime dimensions."""
    dims = [d for d in space.dimensions if d.group == "runtime"]
    if not dims:
        return []
    numbers = [int(n) for n in numbers]
    results.configs.prefetch(numbers)
    out = []
    for d in dims:
        seen = sorted({results.configs[n][d.name] for n in numbers if d.name in results.configs[n]}, key=float)
        fixed = d.name in (results.spec.fixed or {}) or len(d.choices) == 1
        what = f" ({d.description})" if d.description else ""
        out.append(f"{d.name}{what}: {', '.join(str(v) for v in seen) or '-'}{' (fixed)' if fixed else ''}")
    return out


def hover_texts(results: StudyResults, numbers: Sequence[int], limit: int = 500) -> dict[int, str]:
    """Trial number → its config as ``dim=value`` text (for the first ``limit`` trials asked; fronts are small)."""
    numbers = [int(n) for n in numbers][:limit]
    results.configs.prefetch(numbers)
    out = {}
    for n in numbers:
        values = results.configs[int(n)]
        items = [f"{k}={v}" for k, v in values.items()]
        out[int(n)] = "<br>".join(" ".join(items[i : i + 8]) for i in range(0, len(items), 8))
    return out


def compare_fronts(
    a: StudyResults, b: StudyResults, cost: str, quality: str
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The (cost, quality) fronts of two studies and their hypervolumes against one shared reference point
    (the worst value over both fronts, pushed 10 % outwards)."""
    from pareto import hypervolume

    fronts: dict[str, pd.DataFrame] = {}
    for results in (a, b):
        if cost not in results.trials or quality not in results.trials:
            raise InvalidValueError(
                f"study {results.spec.name!r}",
                f"objectives {cost} and {quality} to compare",
                [o.name for o in results.objectives],
            )
        view = front_view(results)
        fronts[results.spec.name] = (
            view.fronts[cost] if cost in view.fronts else pd.DataFrame(columns=["number", cost, quality])
        )
    both = pd.concat(list(fronts.values()))
    maximise = next(o.direction for o in a.objectives if o.name == quality) == "maximize"  # accuracy, not ppl
    directions = ["minimize", "maximize" if maximise else "minimize"]
    span = (both[[cost, quality]].max() - both[[cost, quality]].min()).replace(0, 1).to_numpy(float)
    worst = both[quality].min() - 0.1 * span[1] if maximise else both[quality].max() + 0.1 * span[1]
    reference = np.array([both[cost].max() + 0.1 * span[0], worst])
    rows = [
        {
            "study": name,
            "front_size": len(front),
            "hypervolume": hypervolume(front[[cost, quality]].to_numpy(float), reference, directions)
            if len(front)
            else 0.0,
            f"best {quality}": (front[quality].max() if maximise else front[quality].min()) if len(front) else np.nan,
            f"lowest {cost}": front[cost].min() if len(front) else np.nan,
        }
        for name, front in fronts.items()
    ]
    return fronts, pd.DataFrame(rows)
