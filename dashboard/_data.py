"""What the dashboard pages show, as data: tables and summaries computed by ``pareto``, ``profilers`` and
``predictors`` (no Streamlit here, so every function is testable and benchmarkable on its own)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store, completed_marker, studies_with_user_attr
from supernet import SearchSpace

if TYPE_CHECKING:
    from pareto import SearchSpec
    from profilers import DeviceSpec

__all__ = [
    "MANIFEST_FILE",
    "FrontView",
    "PredictorQuality",
    "axis_range",
    "budget_input_format",
    "bundle_zip",
    "compare_fronts",
    "config_document",
    "default_space",
    "device_table",
    "front_view",
    "hover_texts",
    "hwpareto_studies",
    "import_upload",
    "lut_by_op",
    "lut_coverage",
    "lut_layers",
    "make_spec",
    "operating_point_frame",
    "parse_fixed",
    "predictor_quality",
    "profile_progress",
    "projection_front",
    "quality_objectives",
    "quality_range",
    "runtime_setting",
    "scales_differ",
    "search_progress",
    "shown_name",
    "space_choices",
    "study_marker",
    "study_summary",
    "typical_costs",
    "validate_device_upload",
]


# ---------------------------------------------------------------------------------------------------- devices
def device_table(store: Store) -> pd.DataFrame:
    """The device registry: one row per device with its kind, backend, provenance and LUT/measurement counts."""
    rows = []
    for d in store.devices.list():
        spec, provenance = d.spec, d.provenance
        rows.append(
            {
                "device": d.name,
                "kind": d.kind,
                "backend": spec.get("backend", "-"),
                "lut_entries": d.lut_entries,
                "measurements": d.measurements,
                "description": spec.get("description", ""),
                "provenance": ", ".join(f"{k}: {v}" for k, v in provenance.items() if not isinstance(v, dict | list))
                or "-",
                "registered": d.created_at,
            }
        )
    columns = ["device", "kind", "backend", "lut_entries", "measurements", "description", "provenance", "registered"]
    return pd.DataFrame(rows, columns=columns)


def lut_coverage(store: Store, device: str) -> pd.DataFrame:
    """Per space with a model: distinct layers in ``device``'s LUT, distinct layers of the space, coverage (%)."""
    from profilers import lut_entries_per_space

    spaces = [s for s in store.spaces.load_all()[0] if s.has_model]  # a broken space plugin: left out
    have = lut_entries_per_space(store, device, spaces)
    rows = []
    for space in spaces:
        total = len(space.layer_universe())
        rows.append(
            {
                "space": space.name,
                "layers_in_lut": have.get(space.name, 0),
                "layers_in_space": total,
                "coverage_pct": round(100.0 * have.get(space.name, 0) / total, 1) if total else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["space", "layers_in_lut", "layers_in_space", "coverage_pct"])


def lut_layers(store: Store, device: str) -> pd.DataFrame:
    """``device``'s LUT (batch 1): op, shape (the cost-relevant sizes of the layer key), latency (ms) and energy
    (mJ) per layer."""
    lut = store.luts.get(device)
    frame = pd.DataFrame(
        {
            "op": lut["op"],
            "shape": [k.partition(":")[2] or k for k in lut["layer_key"]],
            "latency_ms": lut["latency_ms_mean"].astype(float),
            "energy_mj": pd.to_numeric(lut["energy_mj_mean"], errors="coerce"),
            "source": lut["source"],
        }
    )
    return frame


def lut_by_op(layers: pd.DataFrame) -> pd.DataFrame:
    """Per op: number of layers, mean and max latency (ms), mean energy (mJ)."""
    if layers.empty:
        return pd.DataFrame(columns=["op", "layers", "latency_ms_mean", "latency_ms_max", "energy_mj_mean"])
    grouped = layers.groupby("op")
    return (
        pd.DataFrame(
            {
                "layers": grouped.size(),
                "latency_ms_mean": grouped["latency_ms"].mean(),
                "latency_ms_max": grouped["latency_ms"].max(),
                "energy_mj_mean": grouped["energy_mj"].mean(),
            }
        )
        .reset_index()
        .sort_values("latency_ms_mean", ascending=False, ignore_index=True)
    )


@dataclass(frozen=True)
class PredictorQuality:
    """A cost predictor of one device checked on that device's stored measurements."""

    name: str
    space: str
    metric: str
    points: pd.DataFrame  # config_key, measured, predicted
    metrics: dict[str, float]  # held-out metrics recorded at training (Kendall τ, MAPE, ...)


def predictor_quality(store: Store, device: str) -> list[PredictorQuality]:
    """Every latency/energy predictor of ``device``: predicted vs measured on its stored measurements, with the
    held-out metrics recorded when it was trained."""
    from predictors import load_model

    out = []
    for p in store.predictors.list():
        if p.device != device:
            continue
        space = store.spaces.get(p.space)
        measured = store.measurements.table(space=space.name, subject=device, subject_kind="device", metric=p.metric)
        measured = (
            measured[measured["source"] != "predicted"]
            .groupby("config_key", as_index=False)
            .agg(config_json=("config_json", "first"), measured=("value", "median"))
        )
        if measured.empty:
            continue
        configs = [space.validate(json.loads(c)) for c in measured["config_json"]]
        mean, _ = load_model(store, p.name).predict(configs)
        points = pd.DataFrame(
            {"config_key": measured["config_key"], "measured": measured["measured"], "predicted": mean}
        )
        out.append(PredictorQuality(p.name, space.name, p.metric, points, dict(p.meta.get("validation") or {})))
    return out


def profile_progress(store: Store, device: str, space_name: str) -> tuple[int, int]:
    """(distinct layers of ``space_name`` in ``device``'s LUT, distinct layers of the space)."""
    from profilers import lut_entries_per_space

    space = store.spaces.get(space_name)
    try:
        done = lut_entries_per_space(store, device, [space]).get(space.name, 0)
    except InvalidValueError:  # not registered yet: the profile job registers it
        done = 0
    return done, len(space.layer_universe())


UPLOAD_FILE = "upload"
"""The name an upload is written under in its temporary folder (its own name may be '..', empty or too long)."""
_MARKDOWN = "\\`*_{}[]<>#|~$"  # characters the pages' Markdown would act on, shown escaped


def shown_name(filename: str) -> str:
    """An uploaded file's name as messages show it: its last path part cut to 80 characters (the middle elided), then
    control characters escaped (one line) and Markdown characters backslash-escaped; ``(unnamed upload)`` when
    empty."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > 80:
        name = f"{name[:50]}…{name[-20:]}"
    escaped = (
        f"\\{c}" if c in _MARKDOWN else c if c.isprintable() else repr(c)[1:-1].replace("\\", "\\\\") for c in name
    )
    return "".join(escaped) or "(unnamed upload)"


@contextlib.contextmanager
def _uploaded(filename: str, data: bytes) -> Iterator[Path]:
    """``data`` written to a temporary file of a fixed name; a message that names it (the CLI's functions name the
    file they read) names :func:`shown_name` of ``filename`` instead, and a write that fails is one line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / UPLOAD_FILE
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise HwparetoError(
                f"upload {shown_name(filename)}: cannot write a temporary copy ({exc.strerror})"
            ) from None
        try:
            yield path
        except HwparetoError as exc:
            raise HwparetoError(str(exc).replace(str(path), shown_name(filename)).replace(f"{tmp}/", "")) from None


def validate_device_upload(filename: str, data: bytes) -> DeviceSpec:
    """Parse an uploaded device YAML exactly as ``hwpareto device add FILE`` does (safe YAML, no code)."""
    from profilers import load_device_file

    with _uploaded(filename, data) as path:
        return load_device_file(path)


def import_upload(
    store: Store,
    filename: str,
    data: bytes,
    *,
    space: str,
    subject_kind: str,
    subject: str,
    metric: str,
    columns: Sequence[str],
    source: str = "imported",
    batch: int = 1,
) -> dict[str, Any]:
    """Import an uploaded CSV exactly as ``hwpareto import CSV --space ... --column ...`` does."""
    from pareto import import_table, parse_columns

    if subject_kind not in ("device", "dataset"):
        raise InvalidValueError("--device/--dataset", "device or dataset", subject_kind)
    kind = cast(Literal["device", "dataset"], subject_kind)
    with _uploaded(filename, data) as path:
        report = import_table(
            store,
            path,
            space=store.spaces.get(space),
            columns=parse_columns(list(columns), subject),
            subject_kind=kind,
            metric=metric,
            defaults={},
            source=source,
            batch=batch,
            where={},
        )
    w = report.written
    return {
        "rows": report.rows,
        "subnets": report.subnets,
        "inserted": w.inserted,
        "updated": w.updated,
        "unchanged": w.unchanged,
        "new_devices": list(w.new_devices),
    }


# ---------------------------------------------------------------------------------------------------- spaces
def space_choices(store: Store) -> tuple[list[SearchSpace], list[str]]:
    """The spaces a page lists (in the store's order) and, for each broken space plugin left out, a warning with
    its one-line error: one broken third-party plugin spoils no page."""
    spaces, broken = store.spaces.load_all()
    return spaces, [f"space {name!r} left out: broken plugin: {error}" for name, error in broken.items()]


# ---------------------------------------------------------------------------------------------------- search
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


def search_progress(store: Store, name: str, results: Any | None = None) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------------- fronts
def hwpareto_studies(store: Store) -> list[str]:
    """Names of the studies in the store that hwpareto ran, newest first (one query: Optuna's own summaries
    read every trial)."""
    from pareto import SPEC_ATTR

    return [study.name for study in studies_with_user_attr(store, SPEC_ATTR, count=False)]


def study_marker(store: Store, study: str) -> tuple[int, int]:
    """(completed trials, newest trial id) of ``study``: changes whenever trials are added (a cache key)."""
    return completed_marker(store, study)


def study_summary(results: Any) -> dict[str, Any]:
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


def front_view(results: Any) -> FrontView:
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


def runtime_setting(space: SearchSpace, results: Any, numbers: Sequence[int]) -> list[str]:
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


def hover_texts(results: Any, numbers: Sequence[int], limit: int = 500) -> dict[int, str]:
    """Trial number → its config as ``dim=value`` text (for the first ``limit`` trials asked; fronts are small)."""
    numbers = [int(n) for n in numbers][:limit]
    results.configs.prefetch(numbers)
    out = {}
    for n in numbers:
        values = results.configs[int(n)]
        items = [f"{k}={v}" for k, v in values.items()]
        out[int(n)] = "<br>".join(" ".join(items[i : i + 8]) for i in range(0, len(items), 8))
    return out


def compare_fronts(a: Any, b: Any, cost: str, quality: str) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
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


def operating_point_frame(results: Any, cost: str, k: int) -> pd.DataFrame:
    """The operating-point table of ``cost`` (:meth:`pareto.StudyResults.operating_points`: ``k`` SubNets spanning
    the range of ``cost`` on its device's front, each the best quality for the budgets it covers; bounds named by
    the metric, e.g. ``max_decode_ms_per_token``), configs as JSON text."""
    objective = next(o for o in results.objectives if o.name == cost)
    devices = {o.subject for o in results.objectives if o.is_cost}
    device = objective.subject if objective.is_cost and len(devices) > 1 else None
    table = results.operating_points(device, k, cost)
    return pd.DataFrame([row | {"config": json.dumps(row["config"])} for row in table])


def config_document(store: Store, results: Any, number: int) -> dict[str, Any]:
    """Trial ``number``'s config as ``{"space", "key", "values"}`` (what ``hwpareto validate`` accepts),
    validated against its space."""
    if number not in results.configs:
        raise InvalidValueError("trial", f"a completed trial number of study {results.spec.name!r}", number)
    config = store.spaces.get(results.spec.space).validate(results.configs[number])
    return {"space": results.spec.space, "key": config.key, "values": config.values}


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MANIFEST_FILE = "manifest.json"
"""The bundle zip's manifest, beside the bundle folder (inside it, ``verify-bundle`` would count it as unlisted)."""
_STORED = (".safetensors", ".onnx", ".data", ".bin")  # weights barely compress: stored, not deflated


def _file_rows(folder: Path) -> list[dict[str, Any]]:
    """Every regular file under ``folder`` (recursively, sorted; a symlink is refused): its path relative to the
    folder, size in bytes and SHA-256 (read from disk, not taken from the bundle's own record)."""
    import hashlib

    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            got = "a symlink" if path.is_symlink() else "a special file"
            raise HwparetoError(f"bundle file {path.relative_to(folder)}: expected a regular file, got {got}")
        if path.is_dir():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        rows.append(
            {
                "file": path.relative_to(folder).as_posix(),
                "size_bytes": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return rows


def bundle_zip(
    store: Store, study: str, number: int, *, weights: bool = True, random_weights: bool = False
) -> tuple[bytes, pd.DataFrame, dict[str, Any]]:
    """Export trial ``number`` (:func:`pareto.export_trial`: config, metrics, weights, ONNX; an LLM's ``model/``
    folder) and zip the whole bundle folder under ``STUDY-TRIAL/`` with :data:`MANIFEST_FILE` beside it; returns the
    zip, its manifest (every file: path in the bundle, size in bytes, SHA-256) and the metrics and provenance it
    records."""
    from pareto import export_trial

    folder = f"{_SAFE.sub('-', study)}-{number}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / folder
        info = export_trial(store, study, number, root, weights=weights, onnx=weights, random_weights=random_weights)
        rows = _file_rows(root)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for row in rows:
                stored = row["file"].endswith(_STORED)
                archive.write(
                    root / row["file"],
                    f"{folder}/{row['file']}",
                    compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                )
            archive.writestr(MANIFEST_FILE, json.dumps({"bundle": folder, "files": rows}, indent=2) + "\n")
    metrics = {k: info[k] for k in ("objectives", "predicted", "measured", "provenance", "notes")}
    return buffer.getvalue(), pd.DataFrame(rows, columns=["file", "size_bytes", "sha256"]), metrics
