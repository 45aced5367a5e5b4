"""The ``zigzag`` backend: real ZigZag simulations of small layers on the shipped NPU and SRAM-CIM presets."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from hwpareto.errors import InvalidValueError
from profilers._base import Backend, Cost, DeviceSpec, SimulatorError, UnmappableLayerError
from profilers._devices import PRESETS_DIR, backend_for, load_device_file
from profilers._zigzag import ZIGZAG_DIR, ZigZagBackend
from supernet import LayerSpec, get_space

pytest.importorskip("zigzag", reason="the zigzag backend needs the zigzag-dse package")

PRESETS = ("npu-tpu", "npu-edgetpu", "cim-sram-analog", "cim-sram-digital")
MAC_LAYERS = {
    "conv": LayerSpec("conv2d", 8, 16, kernel=3, h=8, w=8, bn=True, act="relu"),
    "conv_strided": LayerSpec("conv2d", 8, 16, kernel=3, stride=2, h=9, w=9),
    "depthwise": LayerSpec("conv2d", 16, 16, kernel=3, groups=16, h=8, w=8),
    "pointwise": LayerSpec("conv2d", 16, 32, h=8, w=8),
    "linear": LayerSpec("linear", 32, 64, seq=8, bias=True, act="gelu"),
    "se": LayerSpec("se", 16, hidden=4, h=4, w=4),
}
ATTENTION = LayerSpec("attention", 16, heads=2, hidden=8, seq=8)
VECTOR_LAYERS = {
    "add": LayerSpec("add", 16, h=4, w=4),
    "pool": LayerSpec("pool", 16, kernel=3, stride=2, h=8, w=8),
    "gap": LayerSpec("gap", 16, h=4, w=4),
    "batchnorm": LayerSpec("batchnorm", 16, h=4, w=4, act="relu"),
    "layernorm": LayerSpec("layernorm", 32, seq=8),
    "embedding": LayerSpec("embedding", 100, 32, seq=8),
}
BASE_PARAMS: dict[str, Any] = {
    "hardware": "tpu_like_128",
    "mapping": "tpu_like",
    "clock_ghz": 0.7,
    "vector_lanes": 8,
    "vector_pj_per_op": 1.0,
    "dram_pj_per_byte": 90.0,
}


def preset(name: str) -> Backend:
    return backend_for(load_device_file(PRESETS_DIR / f"{name}.yaml"))


def backend(kind: str = "npu", **params: Any) -> Backend:
    return backend_for(DeviceSpec("zz-test", kind, "zigzag", {**BASE_PARAMS, **params}))


def positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def energy(cost: Cost) -> float:
    assert cost.energy_mj is not None
    return cost.energy_mj


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_presets_simulate_every_op(name: str) -> None:
    spec = load_device_file(PRESETS_DIR / f"{name}.yaml")
    assert spec.backend == "zigzag" and spec.references and spec.kind == name.split("-")[0]
    b = backend_for(spec)
    for label, layer in MAC_LAYERS.items():
        cost = b.measure_layer(layer)
        assert positive(cost.latency_ms) and positive(cost.energy_mj), label
        assert cost.details["fallback"] is None and cost.details["cycles_by_stage"]["zigzag"] > 0, label
        # the workload written for ZigZag has exactly the layer's MACs (padding, stride, groups, se's two GEMMs)
        assert cost.details["zigzag_macs"] == layer.macs, label
    attention = b.measure_layer(ATTENTION).details
    if spec.kind == "cim":
        assert attention["fallback"].startswith("digital MAC array")
        assert attention["cycles_by_stage"]["zigzag"] == 0 and attention["fallback_macs"] == ATTENTION.macs
        assert attention["cycles_by_stage"]["fallback"] == math.ceil(ATTENTION.macs / 256)
    else:
        assert attention["fallback"] is None and attention["zigzag_macs"] == ATTENTION.macs
        assert [layer["name"] for layer in attention["zigzag_layers"]] == ["attention_qk", "attention_av"]
    assert attention["cycles_by_stage"]["vector"] > 0  # softmax
    for label, layer in VECTOR_LAYERS.items():
        cost = b.measure_layer(layer)
        assert positive(cost.latency_ms) and positive(cost.energy_mj), label
        assert cost.details["fallback"].startswith("vector unit") and cost.details["zigzag_layers"] == [], label
    description = b.describe()
    assert description["version"] == metadata.version("zigzag-dse") and len(description["hardware_sha256"]) == 16
    assert description["references"] == list(spec.references)


def test_hand_calculation_on_the_tpu_preset() -> None:
    b = preset("npu-tpu")
    pes, clock_ghz = 128 * 128, 0.7  # data/devices/zigzag/hardware/tpu_like_128.yaml, npu-tpu.yaml
    assert b.describe()["array"]["pes"] == pes and b.describe()["clock_ghz"] == clock_ghz

    # conv 3×3, 64 → 64 channels, 14×14 (same padding): 64·64·9·14·14 = 7,225,344 MACs; at 16384 MACs per cycle the
    # ideal is 441 cycles = 441 / 0.7 GHz = 630 ns. cout = 64 fills at most 64 of the 128 columns (D1 holds K,
    # G = 1), so utilisation cannot exceed 0.5.
    conv = b.measure_layer(LayerSpec("conv2d", 64, 64, kernel=3, h=14, w=14))
    macs = 64 * 64 * 9 * 14 * 14
    assert macs == 7_225_344 == conv.details["macs"] == conv.details["zigzag_macs"]
    assert conv.latency_ms >= macs / pes / (clock_ghz * 1e6) == pytest.approx(630e-6)
    assert conv.latency_ms == conv.details["cycles"] / (clock_ghz * 1e6)
    utilisation = macs / (pes * conv.details["cycles"])
    assert utilisation == conv.details["utilisation"]
    assert 0.1 <= utilisation <= 0.5

    # GEMM 64 rows × 256 → 512: 8,388,608 MACs, ideally 512 cycles. Its 256·512 = 131,072 weight bytes stream from
    # DRAM through the 1024-bit (128 B/cycle) port, at least 1024 cycles: utilisation ≤ 512 / 1024 = 0.5.
    gemm = b.measure_layer(LayerSpec("linear", 256, 512, seq=64))
    macs = 64 * 256 * 512
    assert macs == 8_388_608 == gemm.details["zigzag_macs"]
    assert gemm.details["cycles"] >= max(macs / pes, 256 * 512 / 128) == 1024
    assert gemm.latency_ms == gemm.details["cycles"] / (clock_ghz * 1e6)
    assert 0.25 <= macs / (pes * gemm.details["cycles"]) <= 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["npu-tpu", "cim-sram-analog"])
def test_more_work_never_costs_less(name: str) -> None:
    b = preset(name)
    pairs = [
        (LayerSpec("conv2d", 16, 32, kernel=3, h=8, w=8), LayerSpec("conv2d", 16, 64, kernel=3, h=8, w=8)),
        (LayerSpec("linear", 32, 64, seq=16), LayerSpec("linear", 32, 64, seq=32)),
    ]
    for small, large in pairs:
        a, c = b.measure_layer(small), b.measure_layer(large)
        assert c.latency_ms >= a.latency_ms and energy(c) >= energy(a), (small.key, large.key)
    one, two = b.measure_layer(pairs[0][0], 1), b.measure_layer(pairs[0][0], 2)
    assert two.latency_ms >= one.latency_ms and energy(two) >= energy(one)
    assert two.details["zigzag_macs"] == 2 * one.details["zigzag_macs"]


def test_subnet_is_the_sum_of_its_layers() -> None:
    b = preset("cim-sram-analog")
    space = get_space("gpt")
    config = space.smallest()
    counts = Counter(space.layers(config))
    assert max(counts.values()) > 1  # repeated layers are simulated once and multiplied
    subnet = b.measure_subnet(space, config)
    costs = {spec: b.measure_layer(spec) for spec in counts}
    assert subnet.latency_ms == pytest.approx(sum(n * costs[s].latency_ms for s, n in counts.items()), rel=1e-12)
    assert energy(subnet) == pytest.approx(sum(n * energy(costs[s]) for s, n in counts.items()), rel=1e-12)
    assert subnet.details["layers"] == sum(counts.values()) and subnet.details["distinct_layers"] == len(counts)
    assert subnet.details["fallback_layers"] == sum(n for s, n in counts.items() if s.op != "linear")


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"clock_ghz": 0}, "params.clock_ghz", "[0.001, 100.0]"),
        ({"clock_ghz": "fast"}, "params.clock_ghz", "float"),
        ({"hardware": "tpu_nope"}, "params.hardware", "tpu_like_128"),
        ({"hardware": "missing/file.yaml"}, "params.hardware", "aimc, dimc, edge_tpu_like, tpu_like_128"),
        ({"mapping": 3}, "params.mapping", "imc"),
        ({"in_memory_compute": "yes"}, "params.in_memory_compute", "bool"),
        ({"in_memory_compute": True}, "params.in_memory_compute", "False for hardware tpu_like_128.yaml"),
        ({"vector_lanes": 0}, "params.vector_lanes", "int"),
        ({"dram_pj_per_byte": None}, "params.dram_pj_per_byte", "float"),
        ({"opt": "speed"}, "params.opt", "latency, energy, edp"),
        ({"lpf": 4}, "params.lpf", "lpf_limit"),
        (
            {"hardware": "aimc", "mapping": "imc", "in_memory_compute": True, "precision_bits": 4},
            "params.precision_bits",
            "[8, 8]",
        ),
    ],
)
def test_bad_params_name_the_field(params: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        backend(**params)
    assert info.value.field.endswith(field) and words in str(info.value)


def test_broken_files(tmp_path: Path) -> None:
    hardware = yaml.safe_load((ZIGZAG_DIR / "hardware" / "tpu_like_128.yaml").read_text())
    del hardware["memories"]["dram"]["latency"]
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(yaml.safe_dump(hardware, sort_keys=False))
    with pytest.raises(InvalidValueError, match=r"params\.hardware: expected a valid ZigZag hardware.*latency"):
        backend(hardware=str(invalid))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("- name: Conv\n  spatial_mapping_hint: {D1: [K]}\n")
    with pytest.raises(InvalidValueError, match=r"params\.mapping: .*No default mapping defined"):
        backend(mapping=str(mapping))

    # valid for ZigZag's validator, but a DRAM port without bandwidth fails inside the cost model
    hardware["memories"]["dram"]["latency"] = 1
    hardware["memories"]["dram"]["ports"][0].update(bandwidth_min=0, bandwidth_max=0)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(hardware, sort_keys=False))
    layer = LayerSpec("conv2d", 8, 8, kernel=3, h=8, w=8)
    with pytest.raises(SimulatorError, match=rf"zigzag failed on layer {layer.key}: .*Memory bandwidth not defined"):
        backend(hardware=str(broken)).measure_layer(layer)


def test_unmappable_layers() -> None:
    huge = LayerSpec("linear", 40_000, 40_000)  # 1.6 GB of int8 weights, more than the 1.25 GB DRAM
    with pytest.raises(UnmappableLayerError, match="operand W of linear needs 12800000000 bits") as info:
        preset("npu-edgetpu").measure_layer(huge)
    assert info.value.layer_key == huge.key
    no_fallback = backend("cim", hardware="dimc", mapping="imc", in_memory_compute=True, clock_ghz=0.266)
    with pytest.raises(UnmappableLayerError, match="no digital fallback"):
        no_fallback.measure_layer(ATTENTION)
    with pytest.raises(InvalidValueError, match="batch"):
        no_fallback.measure_layer(MAC_LAYERS["linear"], batch=0)


def test_pickles_and_is_deterministic() -> None:
    b = preset("npu-edgetpu")
    assert isinstance(b, ZigZagBackend) and ZigZagBackend.parallel
    copy = pickle.loads(pickle.dumps(b))
    layer = MAC_LAYERS["conv_strided"]
    first, second, third = b.measure_layer(layer, 2), b.measure_layer(layer, 2), copy.measure_layer(layer, 2)
    assert first == second == third and first.details == second.details == third.details
    assert copy.describe() == b.describe()
