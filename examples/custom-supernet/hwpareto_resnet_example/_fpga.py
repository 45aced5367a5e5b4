"""A new device kind and a new device cost: the ``toy-fpga`` backend simulates an FPGA accelerator (device kind
``fpga``, declared by the backend and nowhere else) and reports, besides latency and energy, the board's average
power while it runs a SubNet, the device cost ``power_mw`` that this package adds to hwpareto's metric catalogue.

A toy model, for the example only: its figures describe no real board.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hwpareto.metrics import Metric
from profilers import Backend, Cost, DeviceSpec, param
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["POWER_MW", "ToyFpgaBackend"]

POWER_MW = Metric("power_mw", "mW", "device cost", low=0.0, high=1e6, label="power")
"""Average board power while a SubNet runs (entry point ``power_mw`` of the group ``hwpareto.metrics``)."""


class ToyFpgaBackend(Backend):
    """latency = MACs / throughput + a fixed per-layer setup time; energy = MACs × pJ/MAC + static power × latency;
    power = energy / latency. Every layer maps (the model reads only a spec's MACs)."""

    name = "toy-fpga"
    kinds = ("fpga",)
    measures = False  # a model: its rows are stored as simulated

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        p, owner = device.params, f"device {device.name!r} params"
        self.gmacs_per_s: float = param(p, "gmacs_per_s", float, 50.0, low=1e-3, owner=owner)
        self.layer_setup_us: float = param(p, "layer_setup_us", float, 20.0, low=0.0, owner=owner)
        self.pj_per_mac: float = param(p, "pj_per_mac", float, 4.0, low=0.0, owner=owner)
        self.static_mw: float = param(p, "static_mw", float, 300.0, low=0.0, owner=owner)

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        macs = spec.macs * batch
        latency_ms = macs / (self.gmacs_per_s * 1e6) + self.layer_setup_us * 1e-3
        energy_mj = macs * self.pj_per_mac * 1e-9 + self.static_mw * latency_ms * 1e-3
        return Cost(latency_ms, 0.0, energy_mj, 0.0)

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        total = Cost(0.0, 0.0, 0.0, 0.0)
        for spec, count in Counter(space.layers(config)).items():
            layer = self.measure_layer(spec, batch)
            total = total + Cost(layer.latency_ms * count, 0.0, (layer.energy_mj or 0.0) * count, 0.0)
        power_mw = 1e3 * (total.energy_mj or 0.0) / total.latency_ms  # mJ per ms is W
        return Cost(total.latency_ms, 0.0, total.energy_mj, 0.0, metrics={POWER_MW.name: power_mw})

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "note": "toy FPGA model of an example", "params": dict(self.device.params)}
