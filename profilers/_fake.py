"""The ``fake`` backend, for tests only: deterministic analytical costs so everything above the profilers can be
tested without hardware. Its numbers describe no real device."""

from __future__ import annotations

from collections import Counter
from typing import Any

from profilers._base import Backend, Cost, DeviceSpec, param
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["FakeBackend"]


class FakeBackend(Backend):
    """latency = MACs / throughput + elements × per-element time + per-layer overhead; energy = MACs × pJ/MAC +
    elements × pJ/element. A SubNet costs the sum of its layers plus ``subnet_overhead_ms`` and a
    ``fusion_discount`` on elementwise layers, so that LUT-sum and end-to-end differ as on real devices."""

    name = "fake"
    kinds = ("fake",)
    measures = False
    parallel = True

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        p, owner = device.params, f"device {device.name!r} params"
        self.gmacs_per_s: float = param(p, "gmacs_per_s", float, 20.0, low=1e-6, owner=owner)
        self.ns_per_element: float = param(p, "ns_per_element", float, 0.5, low=0.0, owner=owner)
        self.overhead_us: float = param(p, "overhead_us", float, 5.0, low=0.0, owner=owner)
        self.pj_per_mac: float = param(p, "pj_per_mac", float, 2.0, low=0.0, owner=owner)
        self.pj_per_element: float = param(p, "pj_per_element", float, 5.0, low=0.0, owner=owner)
        self.subnet_overhead_ms: float = param(p, "subnet_overhead_ms", float, 0.2, low=0.0, owner=owner)
        self.fusion_discount: float = param(p, "fusion_discount", float, 0.5, low=0.0, high=1.0, owner=owner)

    @staticmethod
    def _elements(spec: LayerSpec) -> int:
        return spec.cin * spec.h * spec.w * spec.seq * max(spec.heads, 1)

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        macs, elements = spec.macs * batch, self._elements(spec) * batch
        latency = macs / (self.gmacs_per_s * 1e6) + elements * self.ns_per_element * 1e-6 + self.overhead_us * 1e-3
        energy = (macs * self.pj_per_mac + elements * self.pj_per_element) * 1e-9
        return Cost(latency, 0.0, energy, 0.0, 1, {"macs": macs, "elements": elements})

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        total = Cost(self.subnet_overhead_ms, 0.0, 0.0, 0.0, 1)
        for spec, count in Counter(space.layers(config)).items():
            c = self.measure_layer(spec, batch)
            scale = count * ((1 - self.fusion_discount) if spec.macs == 0 else 1.0)
            total = total + Cost(c.latency_ms * scale, 0.0, (c.energy_mj or 0.0) * count, 0.0, 1)
        return total

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "note": "analytical fake device for tests; not a real device",
            "params": dict(self.device.params),
        }
