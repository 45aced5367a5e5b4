"""The ``reram`` backend: hand-computed mappings and costs, fallbacks, monotonicity, SubNet sums, params, preset."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from hwpareto.errors import InvalidValueError
from profilers._base import Cost, DeviceSpec, UnmappableLayerError
from profilers._devices import PRESETS_DIR, load_device_file
from profilers._reram import MODEL_VERSION, ReRAMBackend, ReRAMParams
from supernet import LayerSpec, get_space

PRESET = PRESETS_DIR / "cim-reram.yaml"
CONV = LayerSpec("conv2d", cin=64, cout=128, kernel=3, h=16, w=16)


def backend(**params: Any) -> ReRAMBackend:
    return ReRAMBackend(DeviceSpec("reram-test", "cim", "reram", params))


@pytest.fixture(scope="module")
def preset() -> ReRAMBackend:
    return ReRAMBackend(load_device_file(PRESET))


def energy(cost: Cost) -> Mapping[str, float]:
    return cost.details["energy_pj"]


# ---------------------------------------------------------------------- preset and hand calculation
def test_preset_loads_with_the_figures_the_hand_calculation_uses(preset: ReRAMBackend) -> None:
    spec = load_device_file(PRESET)
    assert (spec.name, spec.kind, spec.backend) == ("cim-reram", "cim", "reram")
    assert len(spec.references) >= 5 and any("ISAAC" in r for r in spec.references)
    p = preset.p
    assert (p.xbar_rows, p.xbar_cols, p.bits_per_cell, p.weight_bits, p.input_bits, p.bits_per_input_slice) == (
        128,
        128,
        2,
        8,
        8,
        1,
    )
    assert (p.xbar_read_pj, p.xbar_read_ns, p.dac_pj_per_row) == (30.0, 100.0, 0.390625)
    assert (p.adc_pj_per_conversion, p.adc_conversion_ns, p.adc_share) == (1.5625, 0.78125, 128)
    assert (p.shift_add_pj, p.accum_pj_per_add, p.buffer_pj_per_byte) == (0.021, 0.0711, 0.639)
    assert (p.vector_lanes, p.digital_clock_ghz, p.leakage_mw, p.max_crossbars) == (32, 1.2, 0.0, 16128)
    assert p == ReRAMParams()  # the code defaults are the preset


def test_hand_computed_conv(preset: ReRAMBackend) -> None:
    # 3x3 conv 64 -> 128 at 16x16: rows 64*9 = 576 -> 5 row tiles; cols 128 * (8/2 = 4 cells) = 512 -> 4 col tiles
    cost = preset.measure_layer(CONV)
    (m,) = cost.details["matrices"]
    assert (m["rows"], m["cols"], m["row_tiles"], m["col_tiles"], m["crossbars"]) == (576, 512, 5, 4, 20)
    assert cost.details["utilisation"] == pytest.approx(576 * 512 / (20 * 128 * 128))  # 0.9
    steps = 256 * 8  # 16*16 output pixels x 8 one-bit input slices
    assert cost.details["mvms"] == steps * 20 == 40960
    conversions = steps * 512 * 5  # every active column of every crossbar, per MVM
    assert cost.details["adc_conversions"] == conversions == 5_242_880
    e = energy(cost)
    # array: cells 576*512 of a 128*128 full read at 30 pJ (=18 full arrays = 540 pJ) + 576*4 driven rows * 0.390625
    assert e["array"] == pytest.approx(steps * (30 * 18 + 0.390625 * 576 * 4), rel=1e-12)  # 2_949_120
    assert e["adc"] == pytest.approx(conversions * 1.5625, rel=1e-12)  # 8_192_000
    assert e["shift_add"] == pytest.approx(conversions * 0.021, rel=1e-12)  # 110_100.48
    adds = 256 * 128 * (5 - 1)  # partial sums of 5 row tiles merged per output
    assert e["accumulation"] == pytest.approx(adds * 0.0711, rel=1e-12)  # 9_319.2192
    assert e["buffer"] == pytest.approx((64 * 16 * 16 + 128 * 16 * 16) * 0.639, rel=1e-12)  # 31_408.128
    assert e["vector"] == e["fallback"] == e["leakage"] == 0
    total_pj = 2_949_120 + 8_192_000 + 110_100.48 + 9_319.2192 + 31_408.128
    assert cost.energy_mj == pytest.approx(total_pj * 1e-9, rel=1e-9)
    # step = 100 ns read + 128 conversions of the one shared ADC * 0.78125 ns = 200 ns; adds on 32 lanes at 1.2 GHz
    latency_ns = steps * 200 + (adds / 32) / 1.2  # 409_600 + 3_413.33
    assert cost.details["latency_ns"]["crossbar"] == pytest.approx(409_600, rel=1e-12)
    assert cost.latency_ms == pytest.approx(latency_ns * 1e-6, rel=1e-9)
    assert (cost.n, cost.latency_ms_std, cost.energy_mj_std) == (1, 0.0, 0.0)
    assert sum(e.values()) * 1e-9 == pytest.approx(cost.energy_mj, rel=1e-12)


def test_full_mvm_matches_puma_lumped_figure(preset: ReRAMBackend) -> None:
    # one full 128x128 MVM: 30 (cells) + 128*0.390625 (DACs) + 128*1.5625 (ADC) + 128*0.021 (S+A) = 282.688 pJ;
    # PUMA's simulator lumps 2 x 1.37 mW over 100 ns = 274 pJ per MVM, peripherals included
    cost = preset.measure_layer(LayerSpec("linear", cin=128, cout=32))
    e = energy(cost)
    per_mvm = (e["array"] + e["adc"] + e["shift_add"]) / cost.details["mvms"]
    assert per_mvm == pytest.approx(282.688, rel=1e-12)
    assert per_mvm == pytest.approx(274.0, rel=0.05)


def test_linear_mapping(preset: ReRAMBackend) -> None:
    spec = LayerSpec("linear", cin=300, cout=100, seq=10, bias=True)
    cost = preset.measure_layer(spec, batch=2)
    (m,) = cost.details["matrices"]
    assert (m["rows"], m["cols"], m["row_tiles"], m["col_tiles"], m["crossbars"]) == (300, 400, 3, 4, 12)
    vectors = 10 * 2
    assert cost.details["mvms"] == vectors * 8 * 12
    assert cost.details["adc_conversions"] == vectors * 8 * 400 * 3
    assert m["accumulation_adds"] == vectors * 100 * 2
    assert cost.details["vector_ops"] == vectors * 100  # bias adds
    assert cost.details["latency_ns"]["crossbar"] == pytest.approx(vectors * 8 * 200.0)
    assert energy(cost)["buffer"] == pytest.approx(vectors * (300 + 100) * 0.639)
    assert cost.details["fallback"] is None and cost.details["mapping"] == "crossbar"


def test_conv_post_ops_run_on_the_vector_unit(preset: ReRAMBackend) -> None:
    spec = LayerSpec("conv2d", cin=16, cout=32, kernel=3, stride=2, h=32, w=32, act="hswish", bn=True)
    post = preset.measure_layer(spec).details["vector_ops"]
    pre = preset.measure_layer(dataclasses.replace(spec, preact=True)).details["vector_ops"]
    assert post == 32 * 16 * 16 * (1 + 4)  # folded-BN shift and hswish on every output
    assert pre == 32 * 16 * 16 + 16 * 32 * 32 * 4  # pre-activation: hswish on every input


def test_depthwise_is_inefficient(preset: ReRAMBackend) -> None:
    dw = LayerSpec("conv2d", cin=128, cout=128, kernel=3, groups=128, h=16, w=16)
    dense = LayerSpec("conv2d", cin=16, cout=8, kernel=3, h=16, w=16)
    assert dw.macs == dense.macs
    cdw, cdense = preset.measure_layer(dw), preset.measure_layer(dense)
    (m,) = cdw.details["matrices"]
    # each group is 9 rows x 4 cells: min(128 // 9, 128 // 4) = 14 groups packed on the diagonal per crossbar
    assert (m["rows"], m["cols"], m["groups_per_crossbar"], m["crossbars"]) == (9, 4, 14, math.ceil(128 / 14))
    assert cdw.details["utilisation"] == pytest.approx(128 * 9 * 4 / (10 * 128 * 128))
    assert cdw.details["utilisation"] < 0.05 < cdense.details["utilisation"]
    assert m["accumulation_adds"] == 0
    assert cdw.details["adc_conversions"] == 256 * 8 * 128 * 4
    assert m["step_ns"] == pytest.approx(100 + 14 * 4 * 0.78125)  # the fullest crossbar has 56 active columns
    assert (cdw.energy_mj or 0) / dw.macs > 3 * (cdense.energy_mj or 0) / dense.macs


def test_grouped_conv_larger_than_a_crossbar_tiles_each_group() -> None:
    spec = LayerSpec("conv2d", cin=256, cout=256, kernel=3, groups=2, h=4, w=4)
    (m,) = backend().measure_layer(spec).details["matrices"]
    # each group: 128*9 = 1152 rows -> 9 tiles, 128*4 = 512 cols -> 4 tiles
    assert (m["groups_per_crossbar"], m["row_tiles"], m["col_tiles"], m["crossbars"]) == (1, 9, 4, 2 * 9 * 4)


def test_adc_sharing_sets_the_step_time() -> None:
    shared, private = backend().measure_layer(CONV), backend(adc_share=8).measure_layer(CONV)
    assert private.details["matrices"][0]["step_ns"] == pytest.approx(100 + 8 * 0.78125)
    assert private.latency_ms < shared.latency_ms
    assert energy(private)["adc"] == energy(shared)["adc"]


def test_leakage_adds_power_times_latency() -> None:
    cost = backend(leakage_mw=10.0).measure_layer(CONV)
    assert energy(cost)["leakage"] == pytest.approx(10.0 * cost.latency_ms * 1e6)


# ---------------------------------------------------------------------- fallbacks
def test_attention_takes_the_digital_fallback_and_scales(preset: ReRAMBackend) -> None:
    def run(heads: int, seq: int, hidden: int) -> Cost:
        return preset.measure_layer(LayerSpec("attention", cin=heads * hidden, heads=heads, hidden=hidden, seq=seq))

    base = run(2, 64, 32)
    assert base.details["mapping"] == "digital" and base.details["crossbars"] == 0
    assert "digital MAC" in base.details["fallback"]
    assert base.details["fallback_macs"] == 2 * 2 * 64 * 64 * 32
    assert energy(base)["fallback"] == pytest.approx(base.details["fallback_macs"] * 0.2133)
    assert energy(base)["array"] == energy(base)["adc"] == 0
    for scaled, factor in ((run(4, 64, 32), 2), (run(2, 128, 32), 4), (run(2, 64, 64), 2)):
        assert energy(scaled)["fallback"] == pytest.approx(factor * energy(base)["fallback"])
        fallback_ns = scaled.details["latency_ns"]["fallback"]
        assert fallback_ns == pytest.approx(factor * base.details["latency_ns"]["fallback"])


@pytest.mark.parametrize(
    "spec",
    [
        LayerSpec("add", cin=32, h=8, w=8),
        LayerSpec("pool", cin=32, kernel=2, stride=2, h=8, w=8),
        LayerSpec("gap", cin=32, h=8, w=8),
        LayerSpec("batchnorm", cin=32, h=8, w=8, act="relu"),
        LayerSpec("layernorm", cin=128, seq=64),
    ],
)
def test_weightless_ops_run_on_the_vector_unit(preset: ReRAMBackend, spec: LayerSpec) -> None:
    cost = preset.measure_layer(spec)
    assert cost.details["fallback"].startswith("vector unit") and cost.details["crossbars"] == 0
    assert energy(cost)["vector"] > 0 and energy(cost)["buffer"] > 0 and cost.latency_ms > 0


def test_embedding_is_a_buffer_read(preset: ReRAMBackend) -> None:
    cost = preset.measure_layer(LayerSpec("embedding", cin=256, cout=128, seq=64))
    assert cost.details["fallback"].startswith("buffer read")
    assert energy(cost)["buffer"] == pytest.approx(64 * 128 * 2 * 0.639)  # 8-bit weights read, 8-bit activations
    assert cost.details["latency_ns"]["vector"] == pytest.approx(64 * 128 * 2 / 32 / 1.2)


def test_se_maps_two_matrices(preset: ReRAMBackend) -> None:
    cost = preset.measure_layer(LayerSpec("se", cin=240, hidden=64, h=14, w=14))
    fc1, fc2 = cost.details["matrices"]
    assert (fc1["rows"], fc1["cols"], fc2["rows"], fc2["cols"]) == (240, 256, 64, 960)
    assert cost.details["crossbars"] == fc1["crossbars"] + fc2["crossbars"] == 2 * 2 + 8
    assert cost.details["fallback"] is None and energy(cost)["vector"] > 0


# ---------------------------------------------------------------------- monotonicity
def test_more_work_never_costs_less(preset: ReRAMBackend) -> None:
    def cost(**kw: Any) -> Cost:
        return preset.measure_layer(dataclasses.replace(CONV, **kw))

    for key, values in (("cout", (8, 16, 64, 128, 200, 512)), ("h", (4, 8, 16, 33)), ("w", (4, 8, 16, 33))):
        costs = [cost(**{key: v}) for v in values]
        for small, big in itertools.pairwise(costs):
            assert big.latency_ms >= small.latency_ms and (big.energy_mj or 0) >= (small.energy_mj or 0), key
    one, two = preset.measure_layer(CONV, batch=1), preset.measure_layer(CONV, batch=2)
    assert two.latency_ms >= one.latency_ms and (two.energy_mj or 0) >= (one.energy_mj or 0)


def test_bigger_crossbars_need_fewer_tiles() -> None:
    small, big = backend().measure_layer(CONV), backend(xbar_rows=256, xbar_cols=256).measure_layer(CONV)
    assert small.details["crossbars"] == 20
    assert big.details["crossbars"] == math.ceil(576 / 256) * math.ceil(512 / 256) == 6


# ---------------------------------------------------------------------- SubNets
@pytest.mark.parametrize("space_name", ["nb201", "gpt"])
def test_subnet_is_the_sum_of_its_layers(preset: ReRAMBackend, space_name: str) -> None:
    space = get_space(space_name)
    config = space.smallest()
    layers = space.layers(config)
    total = preset.measure_subnet(space, config, batch=2)
    costs = [preset.measure_layer(spec, batch=2) for spec in layers]
    assert total.latency_ms == pytest.approx(sum(c.latency_ms for c in costs), rel=1e-9)
    assert total.energy_mj == pytest.approx(sum(c.energy_mj or 0 for c in costs), rel=1e-9)
    assert sum(energy(total).values()) * 1e-9 == pytest.approx(total.energy_mj, rel=1e-9)
    assert total.details["crossbars"] == sum(c.details["crossbars"] for c in costs)
    assert total.details["fallback_layers"] == sum(1 for c in costs if c.details["fallback"])
    assert total.details["fits_on_chip"]
    if space_name == "gpt":
        assert energy(total)["fallback"] > 0  # the attention core


def test_subnet_footprint_beyond_the_chip_is_reported() -> None:
    space = get_space("nb201")
    config = space.smallest()
    widest = max(backend().measure_layer(s).details["crossbars"] for s in space.layers(config))
    total = backend(max_crossbars=widest).measure_subnet(space, config)
    assert total.details["crossbars"] > widest and not total.details["fits_on_chip"]


def test_layer_beyond_the_chip_is_unmappable() -> None:
    assert backend(max_crossbars=20).measure_layer(CONV).details["crossbars"] == 20
    with pytest.raises(UnmappableLayerError, match="needs 20 crossbars") as info:
        backend(max_crossbars=19).measure_layer(CONV)
    assert info.value.layer_key == CONV.key and CONV.key in str(info.value)


# ---------------------------------------------------------------------- params and API
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("xbar_rows", 0),
        ("weight_bits", 33),
        ("xbar_read_pj", -1.0),
        ("xbar_rows", "128"),
        ("input_bits", 8.0),
        ("adc_share", True),
        ("digital_clock_ghz", 0),
        ("xbar_row", 128),
    ],
)
def test_bad_params_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidValueError, match=rf"params\.{field}") as info:
        backend(**{field: value})
    assert info.value.field.endswith(f"params.{field}")


def test_bad_batch_is_rejected(preset: ReRAMBackend) -> None:
    with pytest.raises(InvalidValueError, match="batch"):
        preset.measure_layer(CONV, batch=0)


def test_wrong_device_kind_is_rejected() -> None:
    with pytest.raises(InvalidValueError, match="kind"):
        ReRAMBackend(DeviceSpec("x", "cpu", "reram"))


def test_describe_and_pickle(preset: ReRAMBackend) -> None:
    info = preset.describe()
    assert info["model"] == MODEL_VERSION and info["backend"] == "reram" and info["device"] == "cim-reram"
    assert info["params"]["adc_pj_per_conversion"] == 1.5625 and len(info["references"]) >= 5
    clone = pickle.loads(pickle.dumps(preset))
    assert clone.measure_layer(CONV) == preset.measure_layer(CONV)
