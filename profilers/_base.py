"""The profiler extension point: one :class:`Backend` per kind of device (runner + parser, as nn-Meter's)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet import NAME_CHARS, LayerSpec, SearchSpace, SubNetConfig

__all__ = ["Backend", "Cost", "DeviceSpec", "SimulatorError", "UnmappableLayerError"]

DEVICE_NAME_CHARS = NAME_CHARS  # kept for importers; the rule lives in hwpareto.checks


class UnmappableLayerError(HwparetoError):
    """A backend cannot map this layer (e.g. an op the simulated array has no dataflow for)."""

    def __init__(self, backend: str, spec: LayerSpec, reason: str) -> None:
        self.layer_key = spec.key
        super().__init__(f"backend {backend} cannot map layer {spec.key}: {reason}")


class SimulatorError(HwparetoError):
    """A simulator failed on a layer it should handle; the message carries the simulator's own reason."""


@dataclass(frozen=True, slots=True)
class Cost:
    """Cost of one layer or SubNet at one batch size.

    ``latency_ms`` is the robust centre (median for measurements, exact for simulations), ``latency_ms_std`` the
    spread (0 for deterministic simulators); energy is ``None`` where the device cannot report it. ``n`` is the
    number of timed repetitions behind the figures (1 for a simulation). ``metrics``: further device costs of a
    SubNet by catalogue name (``power_mw``: a metric of :mod:`hwpareto.metrics`, range-checked when stored), which
    :func:`profilers.measure_subnets` stores beside its latency; a sum of costs keeps none.
    """

    latency_ms: float
    latency_ms_std: float = 0.0
    energy_mj: float | None = None
    energy_mj_std: float | None = None
    n: int = 1
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_ms_std", "energy_mj", "energy_mj_std"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise SimulatorError(f"cost.{name}: expected a finite non-negative number, got {value!r}")

    def __add__(self, other: Cost) -> Cost:
        energy = None if self.energy_mj is None or other.energy_mj is None else self.energy_mj + other.energy_mj
        return Cost(
            self.latency_ms + other.latency_ms,
            math.hypot(self.latency_ms_std, other.latency_ms_std),
            energy,
            None,
            min(self.n, other.n),
        )


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device as registered: ``name``, ``kind`` (one of its backend's ``kinds``: cpu, cuda, npu, cim, fake, or a
    plugin's), the ``backend`` that models or measures it, backend ``params``, free-form ``references`` (sources
    of the figures a model uses) and the deployment ``runtime`` its SubNets run in (a ``hwpareto.runtimes`` name;
    ``torch``, PyTorch eager, unless the device says otherwise: a hardware is a device per runtime)."""

    name: str
    kind: str
    backend: str
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    references: tuple[str, ...] = ()
    runtime: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON document :func:`profilers.device_from_dict` reads back (``runtime`` only when not ``torch``,
        so the documents stored before runtimes existed are still this one's)."""
        doc = {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "description": self.description,
            "params": dict(self.params),
            "references": list(self.references),
        }
        return doc if self.runtime == "torch" else {**doc, "runtime": self.runtime}


class Backend(ABC):
    """Measures or simulates layers and SubNets on one device.

    Contract for a backend (built-in or a plugin of the ``hwpareto.backends`` entry-point group, whose object is
    the class; or registered in code with :func:`profilers.register_backend`):

    - required: ``name`` (the ``backend`` value in device YAML, equal to the entry-point name), ``kinds`` (the
      device kinds it serves: any names, a new kind such as ``fpga`` is declared here and nowhere else),
      ``measures`` (True when it times real hardware, so its rows are stored as ``measured``; False for a
      simulator or model: ``simulated``), :meth:`measure_layer`, :meth:`measure_subnet` and :meth:`describe`;
      ``__init__(device)``
      validates ``device.params`` with :class:`~hwpareto.errors.InvalidValueError` naming ``params.<field>``
      (it runs whenever a device spec is read, so it must be cheap and must not touch the device);
    - optional: :meth:`check` (is the device usable here), ``parallel`` (True when layers may be simulated in
      separate ``spawn`` processes: then the backend must be picklable and stateless across calls) and
      ``takes_runtime`` (True when it lowers and times in the device's ``runtime``, a :class:`profilers.Runtime`;
      a backend without it takes only devices of runtime ``torch``, the default).

    Measuring backends are not thread-safe: time one thing at a time.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    measures: ClassVar[bool]
    parallel: ClassVar[bool] = False
    takes_runtime: ClassVar[bool] = False

    @property
    def source(self) -> str:
        """The source its LUT rows and measurements are stored under: ``measured`` or ``simulated``."""
        return "measured" if self.measures else "simulated"

    def __init__(self, device: DeviceSpec) -> None:
        if device.kind not in self.kinds:
            raise InvalidValueError(
                f"device {device.name!r}.kind", f"one of {', '.join(self.kinds)} for backend {self.name}", device.kind
            )
        if device.runtime != "torch" and not self.takes_runtime:
            raise InvalidValueError(
                f"device {device.name!r}.runtime", f"torch (backend {self.name} takes no other runtime)", device.runtime
            )
        self.device = device

    @abstractmethod
    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        """Cost of one layer at ``batch``. Raises :class:`UnmappableLayerError` for layers the device cannot run
        and :class:`SimulatorError` when a simulator fails."""

    @abstractmethod
    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        """End-to-end cost of a SubNet (measured backends run the extracted module; simulators sum layers)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance: host, versions, threads, simulator version, preset, cited figures."""

    def check(self) -> None:  # noqa: B027 - an optional hook, a no-op for backends always usable
        """Raise :class:`~hwpareto.errors.HwparetoError` when the device is not usable here (no GPU, no simulator)."""


def param(
    params: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    owner: str = "params",
) -> Any:
    """Read and check one backend parameter (type and range), with an error naming ``params.<name>``."""
    value = params.get(name, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    numeric = any(k in (int, float) for k in kinds)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    elif float in kinds and isinstance(value, int):
        value, ok = float(value), True
    else:
        ok = isinstance(value, kinds)
    if ok and numeric and isinstance(value, (int, float)):
        ok = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        bounds = (
            ""
            if low is None and high is None
            else f" in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        )
        raise InvalidValueError(f"{owner}.{name}", f"{names}{bounds}", value)
    return value
