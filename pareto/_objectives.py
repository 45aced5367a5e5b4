"""Objectives and budgets of a search, and their vectorised evaluation on batches of SubNets.

An objective is written ``METRIC[@SUBJECT][:max|:min]``:

- ``params``, ``macs``, ``flops`` (= 2 × MACs), ``weights_mb``, ``peak_memory_mb`` — analytic, from the space's
  LayerSpecs (fp32 weights; sizes in MiB, 2**20 bytes; peak memory: the weights plus the largest input + output
  activation of any layer, batch 1, plus the KV cache where the space has one);
- ``kv_cache_mb`` — analytic, for spaces with a KV cache (the Llama family): fp32 keys and values of every kept
  layer for ``batch`` × (``prompt_len`` + ``gen_len``) tokens;
- ``latency_ms@DEVICE`` / ``energy_mj@DEVICE`` — the stored predictor ``<metric>:<space>:<device>`` when there is
  one, else its few-shot transfer ``<metric>:<space>:<device>:fewshot<K>`` (largest K), else the device's LUT-sum;
- ``prefill_ms@DEVICE``, ``decode_ms_per_token@DEVICE``, ``energy_mj_per_token@DEVICE`` — LLM spaces: the
  stored predictor of that name when there is one, else the LUT-sum of the prefill layers (time to first token),
  of the decode-step layers (time per output token: one step of every sequence of the batch against the
  representative KV cache), and the decode step's energy divided by ``batch`` (energy per generated token);
- ``<metric>@DATASET`` (e.g. ``test_acc_pct@cifar10``) — the stored accuracy predictor
  ``<metric>:<space>:<dataset>`` (mean and uncertainty).

Which metrics are analytic, device costs or qualities, and their direction, is the metric catalogue's
(:mod:`hwpareto.metrics`: metrics naming an accuracy are maximised, the others minimised) unless ``:max`` or
``:min`` is given; :func:`register_analytic` adds an analytic objective (the built-ins above are registered
through it too). A budget is
``OBJECTIVE <= BOUND`` (or ``>=`` for maximised metrics), evaluated as an Optuna constraint (``value - bound``,
feasible when ``<= 0``), never as a penalty.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hwpareto.errors import InvalidValueError
from hwpareto.metrics import ANALYTIC, DEVICE_COST, MIB, Metric, lookup, metrics, register_metric
from hwpareto.plugins import PluginError, Registry
from hwpareto.predictor_key import PredictorKey
from hwpareto.store import Store
from supernet import LayerCounts, SearchSpace, SubNetConfig

__all__ = [
    "OBJECTIVES",
    "AnalyticFunction",
    "AnalyticObjective",
    "Budget",
    "Evaluator",
    "Objective",
    "cost_metrics",
    "parse_budget",
    "parse_objective",
    "register_analytic",
]

AnalyticFunction = Callable[[SearchSpace, Sequence[SubNetConfig], LayerCounts], np.ndarray]
"""``compute(space, configs, counts)`` → one value per config; ``counts`` is ``space.layer_counts(configs)``."""
_ANALYTIC_FUNCTIONS: dict[str, AnalyticFunction] = {}
"""Each analytic metric's computation, by name: the built-ins (end of this module) and :func:`register_analytic`'s."""


@dataclass(frozen=True, slots=True)
class AnalyticObjective:
    """An analytic objective as a plugin ships it (entry-point group ``hwpareto.objectives``, the entry point named
    as the metric; a zero-argument factory returning one also works): its catalogue entry and its computation."""

    metric: Metric
    compute: AnalyticFunction


def _check_plugin(name: str, obj: object) -> AnalyticObjective:
    made = obj() if callable(obj) else obj
    if not isinstance(made, AnalyticObjective) or made.metric.name != name:
        raise PluginError(
            f"hwpareto.objectives plugin {name!r}: expected an AnalyticObjective of metric {name}, "
            f"got {type(made).__name__}"
        )
    return made


OBJECTIVES: Registry[AnalyticObjective] = Registry("hwpareto.objectives", "objective", _check_plugin)
"""Analytic objectives of installed packages (:func:`parse_objective` loads one on first use of its name)."""
_OBJECTIVE = re.compile(
    r"^(?P<metric>[a-z][a-z0-9_]*)(@(?P<subject>[A-Za-z0-9][A-Za-z0-9_.:+-]*?))?"
    r"(:(?P<direction>max|min))?$"
)
_BUDGET = re.compile(r"^\s*(?P<objective>[^\s<>=]+)\s*(?P<op><=|>=)\s*(?P<bound>\S+)\s*$")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Objective:
    """A named metric with a direction; ``subject`` is the device (costs) or dataset (accuracy)."""

    metric: str
    subject: str | None = None
    direction: Literal["minimize", "maximize"] = "minimize"

    @property
    def name(self) -> str:
        """``metric@subject`` (the column name in results)."""
        return self.metric if self.subject is None else f"{self.metric}@{self.subject}"

    @property
    def info(self) -> Metric:
        """The metric's catalogue entry (unit, direction, valid range, kind)."""
        return lookup(self.metric)

    @property
    def is_cost(self) -> bool:
        """A device cost: latency, energy, a phase of an LLM's generation (the catalogue's kind)."""
        return lookup(self.metric).is_cost


@dataclass(frozen=True, slots=True)
class Budget:
    """``objective <= bound`` (``>=`` for maximised metrics)."""

    objective: Objective
    bound: float

    @property
    def text(self) -> str:
        op = ">=" if self.objective.direction == "maximize" else "<="
        return f"{self.objective.name} {op} {self.bound:g}"

    def violation(self, values: np.ndarray) -> np.ndarray:
        """Optuna constraint values: <= 0 where the budget holds."""
        return self.bound - values if self.objective.direction == "maximize" else values - self.bound


def parse_objective(text: str) -> Objective:
    """Parse ``METRIC[@SUBJECT][:max|:min]``; errors name the form expected."""
    match = _OBJECTIVE.match(text.strip())
    if not match:
        raise InvalidValueError("objective", "METRIC[@DEVICE_OR_DATASET][:max|:min], e.g. latency_ms@cpu-local", text)
    metric, subject, direction = match["metric"], match["subject"], match["direction"]
    if subject is None and lookup(metric).kind != ANALYTIC and metric in OBJECTIVES:  # a plugin's, on first use
        plugin = OBJECTIVES.get(metric)
        register_analytic(plugin.metric, plugin.compute)
    analytic = lookup(metric).kind == ANALYTIC
    if analytic and subject is not None:
        raise InvalidValueError(f"objective {text!r}", f"{metric} without @ (it does not depend on a device)", text)
    if not analytic and subject is None:
        names = ", ".join(m.name for m in metrics(ANALYTIC))
        raise InvalidValueError(f"objective {text!r}", f"{metric}@DEVICE or {metric}@DATASET (or one of {names})", text)
    chosen: Literal["minimize", "maximize"] = "maximize" if direction == "max" else "minimize"
    if direction is None:
        chosen = lookup(metric).direction
    return Objective(metric, subject, chosen)


def parse_budget(text: str) -> Budget:
    """Parse ``OBJECTIVE <= BOUND`` / ``OBJECTIVE >= BOUND``."""
    match = _BUDGET.match(text)
    if not match:
        raise InvalidValueError("budget", "OBJECTIVE <= BOUND, e.g. 'latency_ms@cpu-local <= 20'", text)
    objective = parse_objective(match["objective"])
    # a plain decimal number: float() would also take 1_0 and other scripts' digits (５)
    bound = float(match["bound"]) if _DECIMAL.fullmatch(match["bound"]) else math.nan
    if not math.isfinite(bound):  # inf, nan and numbers beyond float range (1e999) alike
        raise InvalidValueError(f"budget {text!r} bound", "a finite number", match["bound"])
    expected = ">=" if objective.direction == "maximize" else "<="
    if match["op"] != expected:
        raise InvalidValueError(f"budget {text!r}", f"'{expected}' for a {objective.direction}d metric", match["op"])
    return Budget(objective, bound)


class Evaluator:
    """Evaluates objectives (and budget metrics) on batches of configs: ``evaluate(configs) -> (mean, std)``
    arrays of shape (n, n_metrics), in the order of ``metrics``. Results are cached per config key. What it needs
    from the store (predictors, LUTs) is read when it is built: evaluating reads nothing."""

    def __init__(self, store: Store, space: SearchSpace, metrics: Sequence[Objective]) -> None:
        from predictors import load_model
        from profilers import LUT_METRICS, Lut

        self.space = space
        self.metrics = list(dict.fromkeys(metrics))
        self.sources: dict[Objective, str] = {}
        self.predictors: dict[Objective, PredictorKey] = {}
        """The stored predictor each predicted metric uses (a device's few-shot transfer included)."""
        self._models: dict[Objective, Any] = {}
        self._luts: dict[Objective, Any] = {}
        stored = {p.name for p in store.predictors.list(space.name)}
        keys = [k for k in (PredictorKey.of(p, space=space.name) for p in sorted(stored)) if k is not None]
        for m in self.metrics:
            if m.info.kind == ANALYTIC:
                if m.metric not in _ANALYTIC_FUNCTIONS:
                    raise InvalidValueError(
                        f"objective {m.name}", "an analytic metric with its computation registered", "none"
                    )
                if not space.has_model:
                    raise InvalidValueError(f"objective {m.name}", "a metric of a space with a layer model", space.name)
                if m.metric == "kv_cache_mb" and _kv_cache_mb(space) is None:
                    raise InvalidValueError(
                        f"objective {m.name}",
                        "a metric of a space with a KV cache (a space from hwpareto space from-hf)",
                        space.name,
                    )
                self.sources[m] = "analytic"
                continue
            predictor = PredictorKey(m.metric, space.name, str(m.subject))
            few_shot = [k for k in keys if k.fewshot_k and k.plain == predictor]
            if predictor.name not in stored and m.is_cost and few_shot:  # a device known from K measurements only
                predictor = max(few_shot, key=lambda k: k.fewshot_k or 0)
            if predictor.name in stored:
                self._models[m] = load_model(store, predictor.name)
                self.sources[m] = f"predictor {predictor}"
                self.predictors[m] = predictor
            elif m.is_cost and m.subject is not None:
                if m.metric not in LUT_METRICS:
                    raise InvalidValueError(
                        f"objective {m.name}",
                        f"a trained predictor {predictor} (a LUT-sum gives {', '.join(LUT_METRICS)} only)",
                        "none",
                    )
                if m.info.phase is not None and not _has_phases(space):
                    raise InvalidValueError(
                        f"objective {m.name}",
                        "a metric of an LLM space (from hwpareto space from-hf); latency_ms@DEVICE or energy_mj@DEVICE",
                        space.name,
                    )
                device = store.devices.get(m.subject)
                if not device.lut_entries:
                    raise InvalidValueError(
                        f"objective {m.name}",
                        f"a LUT or a trained predictor for {m.subject} "
                        f"(hwpareto profile --device {m.subject} --space {space.name})",
                        "none",
                    )
                self._luts[m] = Lut.load(store, m.subject)
                self.sources[m] = f"LUT-sum of {m.subject}"
            else:
                known = sorted(k.name for k in keys if k.metric == m.metric)
                raise InvalidValueError(
                    f"objective {m.name}",
                    f"a trained predictor {predictor} (train one with "
                    f"hwpareto train accuracy; stored: {', '.join(known) or 'none'})",
                    "none",
                )
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(self, configs: Sequence[SubNetConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and 1-sigma arrays (n, n_metrics); analytic metrics and LUT-sums have zero uncertainty."""
        todo = [c for c in dict.fromkeys(configs) if c.key not in self._cache]
        if todo:
            mean = np.zeros((len(todo), len(self.metrics)))
            std = np.zeros_like(mean)
            # one layer-count matrix for every analytic metric and LUT-sum of the batch (OFA block LUTs use none)
            shared = any(m.info.kind == ANALYTIC for m in self.metrics) or any(
                lut.scheme != "ofa-block" for lut in self._luts.values()
            )
            counts = self.space.layer_counts(todo) if shared else None
            for j, m in enumerate(self.metrics):
                if m in self._models:
                    mean[:, j], std[:, j] = self._models[m].predict(todo)
                elif m in self._luts:
                    # a missing layer raises MissingLutError naming the SubNet, the layer and the profile command
                    mean[:, j] = self._luts[m].metric_sums(self.space, todo, m.metric, counts)
                else:
                    assert counts is not None
                    mean[:, j] = _ANALYTIC_FUNCTIONS[m.metric](self.space, todo, counts)
            for i, c in enumerate(todo):
                self._cache[c.key] = (mean[i], std[i])
        rows = [self._cache[c.key] for c in configs]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def cost_metrics(space: SearchSpace) -> tuple[str, ...]:
    """The device-cost metrics ``space`` can be searched on: the catalogue's whole-SubNet costs (``latency_ms``,
    ``energy_mj``...), plus its phase metrics on LLM spaces."""
    phases = _has_phases(space)
    return tuple(m.name for m in metrics(DEVICE_COST) if phases or m.phase is None)


def register_analytic(metric: Metric, compute: AnalyticFunction) -> Metric:
    """Make ``metric`` (kind ``analytic``) an objective: its catalogue entry (:func:`hwpareto.metrics.register_metric`)
    and its computation, ``compute(space, configs, counts)`` → one value per config (the recipe: CONTRIBUTING.md).
    A name whose computation is registered (the built-ins included) is refused with another computation."""
    if metric.kind != ANALYTIC:
        raise InvalidValueError(f"metric {metric.name} kind", ANALYTIC, metric.kind)
    if _ANALYTIC_FUNCTIONS.get(metric.name, compute) is not compute:
        raise InvalidValueError(f"metric {metric.name}", "a name whose computation is not yet registered", metric.name)
    register_metric(metric)
    _ANALYTIC_FUNCTIONS[metric.name] = compute
    return metric


def _has_phases(space: SearchSpace) -> bool:
    """Whether the space's LayerSpecs split into a prefill and a decode phase (an LLM space)."""
    return any(spec.phase for spec in space.layers(space.smallest()))


def _kv_cache_mb(space: SearchSpace) -> Any:
    """The space's ``kv_cache_mb(config)`` method, or None for spaces without a KV cache."""
    return getattr(space, "kv_cache_mb", None)


# ---------------------------------------------------------------------------------------- built-in analytic metrics
# Counted from the space's LayerSpecs (fp32 weights, sizes in MiB), except where the space overrides
# SearchSpace.params / macs with its own count (the Llama space: its layers are a prefill and one representative
# decode step, whose specs repeat the weights), which is then authoritative.
def _params(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    if type(space).params is not SearchSpace.params:
        return np.array([float(space.params(c)) for c in configs])
    return counts.total(np.array([s.params for s in counts.specs], dtype=np.float64))


def _macs(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    if type(space).macs is not SearchSpace.macs:
        return np.array([float(space.macs(c)) for c in configs])
    return counts.total(np.array([s.macs for s in counts.specs], dtype=np.float64))


def _flops(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    return _macs(space, configs, counts) * 2.0


def _weights_mb(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    return 4.0 * _params(space, configs, counts) / MIB


def _kv_cache(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    kv_cache = _kv_cache_mb(space)  # the Evaluator offers kv_cache_mb only on spaces with a KV cache
    return np.array([float(kv_cache(c)) for c in configs])


def _peak_memory_mb(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    """The weights plus the largest input + output activation of any layer (batch 1), plus the KV cache where the
    space has one."""
    specs = counts.specs
    activations = np.array(
        [s.cin * s.h * s.w * s.seq + (s.cout or s.cin) * s.out_hw[0] * s.out_hw[1] * s.seq for s in specs],
        dtype=np.float64,
    )
    matrix = counts.matrix.tocsr()
    largest = np.array(
        [activations[matrix.indices[a:b]].max(initial=0.0) for a, b in itertools.pairwise(matrix.indptr)]
    )
    peak = 4.0 * (_params(space, configs, counts) + largest) / MIB
    return peak if _kv_cache_mb(space) is None else peak + _kv_cache(space, configs, counts)


for _name, _compute in (
    ("params", _params),
    ("macs", _macs),
    ("flops", _flops),
    ("weights_mb", _weights_mb),
    ("kv_cache_mb", _kv_cache),
    ("peak_memory_mb", _peak_memory_mb),
):
    register_analytic(lookup(_name), _compute)
