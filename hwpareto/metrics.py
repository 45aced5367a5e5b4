"""The metric catalogue: every metric as an object (name, unit, direction, valid range, kind), the one source that
the objective parser, the value checks of every store write, the predictors and the dashboard's labels read.

Kinds: ``analytic`` (computed from a SubNet's architecture, the same on every device: an objective without ``@``),
``device cost`` (measured or simulated on a device: ``METRIC@DEVICE``; LLM spaces add one per phase of generation)
and ``quality`` (evaluated on a dataset: ``METRIC@DATASET``, learned by an accuracy predictor).

Units are part of the names. **Memory sizes are MiB** (2**20 bytes): ``weights_mb``, ``kv_cache_mb`` and
``peak_memory_mb`` keep their ``_mb`` names so stored studies and measurements still read, and are shown as MiB.

A name that is not in the catalogue (a dataset's metric such as ``test_acc_pct`` or ``val_ppl``, a column of an
imported table) is a quality metric described by its suffix (:func:`lookup`): ``_ms`` / ``_ms_per_token``
milliseconds, ``_mj`` / ``_mj_per_token`` millijoules (both ``0 < value``, at most :data:`MAX_LATENCY_MS` /
:data:`MAX_ENERGY_MJ`), ``_pct`` and accuracies (``acc`` after ``_`` or at the start) percent in [0, 100], counts
(``_count``, ``_params``, ``_macs``, ``_flops``) in [0, :data:`MAX_COUNT`], perplexities (``ppl``), ``_mb`` MiB;
anything else any finite number. A metric naming an accuracy (``acc`` anywhere in it) is maximised, others
minimised.

A new metric is one :func:`register_metric` call, or an entry point of an installed package (group
``hwpareto.metrics``, named as the metric, its object a :class:`Metric`: added to the catalogue on first use of the
name); an analytic one is searchable once its computation is registered too (:func:`pareto.register_analytic`
does both; entry-point group ``hwpareto.objectives``), a device cost once a backend produces it
(``profilers.Cost.metrics``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Literal

from hwpareto.errors import InvalidValueError
from hwpareto.plugins import PluginError, Registry

__all__ = [
    "ANALYTIC",
    "DEVICE_COST",
    "MAX_COUNT",
    "MAX_ENERGY_MJ",
    "MAX_LATENCY_MS",
    "MIB",
    "NAME",
    "QUALITY",
    "Metric",
    "base_name",
    "lookup",
    "metrics",
    "phase_metrics",
    "register_metric",
]

Kind = Literal["analytic", "device cost", "quality"]
Direction = Literal["minimize", "maximize"]
ANALYTIC: Kind = "analytic"
DEVICE_COST: Kind = "device cost"
QUALITY: Kind = "quality"
MAX_LATENCY_MS = 1e7
"""Upper bound of a time in ms (about 2.8 hours per inference)."""
MAX_ENERGY_MJ = 1e9
"""Upper bound of an energy in mJ (a megajoule)."""
MAX_COUNT = 1e18
MIB = 2**20
"""Bytes per MiB, the unit of every ``*_mb`` metric."""
NAME = re.compile(r"[a-z][a-z0-9_]*")
"""A metric name: lower-case letters, digits and ``_``, starting with a letter (the store's rule)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric (its name of the store's form, see :func:`register_metric`). ``low``/``high``/``low_inclusive``
    bound its values (the upper bound inclusive); ``label`` is what it is on an axis (default: the name without its
    unit suffix); ``phase`` names the LLM generation phase whose layers a device cost sums (``prefill`` or
    ``decode``), None for a whole-SubNet metric."""

    name: str
    unit: str
    kind: Kind
    direction: Direction = "minimize"
    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    label: str = ""
    phase: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (ANALYTIC, DEVICE_COST, QUALITY):
            raise InvalidValueError(f"metric {self.name} kind", f"{ANALYTIC}, {DEVICE_COST} or {QUALITY}", self.kind)
        if self.direction not in ("minimize", "maximize"):
            raise InvalidValueError(f"metric {self.name} direction", "minimize or maximize", self.direction)
        if not self.low <= self.high or math.isnan(self.high) or self.high == -math.inf:
            raise InvalidValueError(f"metric {self.name} range", "low <= high", (self.low, self.high))
        if self.phase not in (None, "prefill", "decode"):
            raise InvalidValueError(f"metric {self.name} phase", "prefill, decode or None", self.phase)
        if not self.label:
            object.__setattr__(self, "label", _label(self.name))

    @property
    def range(self) -> tuple[float, float, bool]:
        """``(low, high, low_inclusive)``: what :func:`supernet.check_metric_value` enforces."""
        return self.low, self.high, self.low_inclusive

    @property
    def is_cost(self) -> bool:
        """A device cost (``METRIC@DEVICE``)."""
        return self.kind == DEVICE_COST


def _check_plugin(name: str, obj: object) -> Metric:
    made = obj() if callable(obj) else obj
    if not isinstance(made, Metric) or made.name != name or made.kind == ANALYTIC:
        got = f"the {made.kind} metric {made.name}" if isinstance(made, Metric) else type(made).__name__
        raise PluginError(
            f"hwpareto.metrics plugin {name!r}: expected a {DEVICE_COST} or {QUALITY} Metric named {name} "
            f"(an analytic one is an hwpareto.objectives plugin), got {got}"
        )
    return made


_PLUGINS: Registry[Metric] = Registry("hwpareto.metrics", "metric", _check_plugin)


def _ms(name: str, unit: str, label: str, phase: str | None = None) -> Metric:
    return Metric(name, unit, DEVICE_COST, "minimize", 0.0, MAX_LATENCY_MS, False, label, phase)


def _mj(name: str, unit: str, label: str, phase: str | None = None) -> Metric:
    return Metric(name, unit, DEVICE_COST, "minimize", 0.0, MAX_ENERGY_MJ, False, label, phase)


def _count(name: str, kind: Kind, unit: str = "count") -> Metric:
    return Metric(name, unit, kind, "minimize", 0.0, MAX_COUNT, True, name)


def _mib(name: str, kind: Kind, label: str) -> Metric:
    return Metric(name, "MiB", kind, "minimize", 0.0, math.inf, True, label)


_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_ms_per_token", "ms/token"),
    ("_mj_per_token", "mJ/token"),
    ("_pct", "%"),
    ("_ms", "ms"),
    ("_mj", "mJ"),
    ("_mb", "MiB"),
)
_COUNTS = ("_count", "_params", "_macs", "_flops")
_PPL_UNIT = "exp of mean token NLL"


def _label(name: str) -> str:
    if name == "ppl" or name.endswith("_ppl"):
        return name.removesuffix("ppl").replace("_", " ") + "perplexity"
    for suffix, _ in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix).replace("_", " ")
    return name.replace("_", " ")


def _infer(name: str) -> Metric:
    """A quality metric described by its name's suffix (the module docstring's rule)."""
    direction: Direction = "maximize" if "acc" in name else "minimize"
    if name.endswith(("_ms", "_ms_per_token")):
        unit = "ms/token" if name.endswith("_per_token") else "ms"
        return Metric(name, unit, QUALITY, direction, 0.0, MAX_LATENCY_MS, False)
    if name.endswith(("_mj", "_mj_per_token")):
        unit = "mJ/token" if name.endswith("_per_token") else "mJ"
        return Metric(name, unit, QUALITY, direction, 0.0, MAX_ENERGY_MJ, False)
    if name.endswith("_pct") or re.search(r"(^|_)acc", name):
        return Metric(name, "%", QUALITY, direction, 0.0, 100.0, True)
    if name.endswith(_COUNTS):
        return Metric(name, "count", QUALITY, direction, 0.0, MAX_COUNT, True)
    if name == "ppl" or name.endswith("_ppl"):
        return Metric(name, _PPL_UNIT, QUALITY, direction)
    unit = next((u for suffix, u in _SUFFIXES if name.endswith(suffix)), "value")
    return Metric(name, unit, QUALITY, direction)


_CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in (
        _ms("latency_ms", "ms", "latency"),
        _mj("energy_mj", "mJ", "energy"),
        _ms("prefill_ms", "ms", "prefill (time to first token)", "prefill"),
        _ms("decode_ms_per_token", "ms/token", "decode", "decode"),
        # 0 allowed: a decode step's energy is the counter's reading minus idle power, clipped at 0 (torch-cuda)
        Metric(
            "energy_mj_per_token",
            "mJ/token",
            DEVICE_COST,
            "minimize",
            0.0,
            MAX_ENERGY_MJ,
            True,
            "energy per token",
            "decode",
        ),
        _count("params", ANALYTIC),
        _count("macs", ANALYTIC, "MACs"),
        _count("flops", ANALYTIC, "FLOPs"),
        _mib("weights_mb", ANALYTIC, "weights"),
        _mib("kv_cache_mb", ANALYTIC, "KV cache"),
        _mib("peak_memory_mb", ANALYTIC, "peak memory"),
    )
}


def base_name(name: str) -> str:
    """The metric of a metric or objective name: ``decode_ms_per_token@board:min`` → ``decode_ms_per_token``."""
    return name.partition("@")[0].split(":")[0]


def lookup(name: str) -> Metric:
    """The catalogue's metric for a metric or objective name (``METRIC[@SUBJECT][:max|:min]``); a name not in the
    catalogue is a quality metric described by its suffix (see the module docstring)."""
    metric = base_name(name)
    return _CATALOGUE.get(metric) or _installed(metric) or _infer(metric)


@functools.cache
def _plugin_names() -> frozenset[str]:
    """The ``hwpareto.metrics`` entry points' names (read once: :func:`lookup` runs for every value written)."""
    return frozenset(_PLUGINS.names())


def _installed(metric: str) -> Metric | None:
    """The installed package's metric named ``metric``, added to the catalogue; None when no package declares it."""
    return register_metric(_PLUGINS.get(metric)) if metric in _plugin_names() else None


def metrics(kind: Kind | None = None) -> tuple[Metric, ...]:
    """The catalogue's metrics (of one ``kind``), installed packages' included, in the order they were registered."""
    for name in sorted(_plugin_names() - _CATALOGUE.keys()):
        _installed(name)
    return tuple(m for m in _CATALOGUE.values() if kind is None or m.kind == kind)


def phase_metrics() -> dict[str, str]:
    """Device costs of one LLM generation phase: metric name → ``prefill`` or ``decode``."""
    return {m.name: m.phase for m in _CATALOGUE.values() if m.phase is not None}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the catalogue (registering the same definition again is a no-op; another definition of a
    name already registered is refused)."""
    if not isinstance(metric.name, str) or not NAME.fullmatch(metric.name) or len(metric.name) > 64:
        raise InvalidValueError("metric name", "a-z, 0-9 and _, starting with a letter (max 64)", metric.name)
    known = _CATALOGUE.get(metric.name)
    if known is not None and known != metric:
        raise InvalidValueError(f"metric {metric.name}", f"its registered definition {known}", metric)
    _CATALOGUE[metric.name] = metric
    return metric
