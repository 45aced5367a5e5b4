"""The contract every backend honours, run on every shipped preset, the local CPU and the fake device."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from profilers import Cost, backend_for, local_cpu_spec, presets
from profilers._base import DeviceSpec
from supernet import LayerSpec, get_space

SMALL_LAYERS = [
    LayerSpec("conv2d", cin=8, cout=16, kernel=3, stride=2, h=16, w=16, act="relu", bn=True),
    LayerSpec("conv2d", cin=16, cout=16, kernel=5, groups=16, h=8, w=8, act="hswish", bn=True),
    LayerSpec("conv2d", cin=16, cout=16, kernel=3, h=8, w=8, act="relu", preact=True, bn=True),
    LayerSpec("batchnorm", cin=16, h=8, w=8, act="relu"),
    LayerSpec("se", cin=16, hidden=8, h=8, w=8),
    LayerSpec("add", cin=16, h=8, w=8),
    LayerSpec("add", cin=32, seq=16),
    LayerSpec("pool", cin=16, kernel=3, h=8, w=8),
    LayerSpec("pool", cin=16, kernel=2, stride=2, h=8, w=8),
    LayerSpec("gap", cin=16, h=8, w=8),
    LayerSpec("linear", cin=32, cout=64, seq=16, bias=True, act="gelu"),
    LayerSpec("layernorm", cin=32, seq=16),
    LayerSpec("embedding", cin=100, cout=32, seq=16),
    LayerSpec("attention", cin=32, heads=2, hidden=16, seq=16),
]
FAST_CPU = DeviceSpec("cpu-fast", "cpu", "torch-cpu", {"threads": 1, "min_window_ms": 2.0, "min_samples": 3})
FAKE = DeviceSpec("fake-dev", "fake", "fake", {})
DEVICES = {"cpu-fast": FAST_CPU, "fake-dev": FAKE, **presets()}


def test_every_issue_preset_ships() -> None:
    assert {"npu-tpu", "npu-edgetpu", "cim-sram-analog", "cim-sram-digital", "cim-reram"} <= set(presets())
    assert local_cpu_spec().name == "cpu-local"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEVICES))
def test_backend_contract(name: str) -> None:
    spec = DEVICES[name]
    backend = backend_for(spec)
    info = backend.describe()
    assert info and isinstance(info, dict)
    simulated = spec.kind in ("npu", "cim", "fake")
    for layer in SMALL_LAYERS:
        cost = backend.measure_layer(layer)
        assert isinstance(cost, Cost) and cost.latency_ms > 0 and math.isfinite(cost.latency_ms), layer.key
        if simulated:
            assert cost.energy_mj is not None and cost.energy_mj > 0, layer.key
            assert backend.measure_layer(layer) == cost  # simulators are deterministic
    space = get_space("nb201")
    cfg = space.smallest()
    total = backend.measure_subnet(space, cfg)
    assert total.latency_ms > 0
    if spec.kind in ("npu", "cim"):  # simulators: a SubNet is the sum of its layers
        expected = sum(backend.measure_layer(s).latency_ms * n for s, n in Counter(space.layers(cfg)).items())
        assert total.latency_ms == pytest.approx(expected, rel=1e-9)
