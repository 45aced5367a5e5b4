"""The vector-unit cost model shared by the ZigZag and ReRAM backends: every op modelled, both backends charge it."""

from __future__ import annotations

import math

import pytest

from profilers._base import DeviceSpec
from profilers._devices import PRESETS_DIR, backend_for, load_device_file
from profilers._reram import ReRAMBackend
from profilers._vector import attention_operands, vector_work
from supernet import OPS, LayerSpec

LAYERS = (
    LayerSpec("conv2d", 8, 16, kernel=3, h=8, w=8, bn=True, act="hswish"),
    LayerSpec("conv2d", 8, 16, h=8, w=8, act="relu", preact=True),
    LayerSpec("linear", 32, 64, seq=8, bias=True, act="gelu"),
    LayerSpec("se", 16, hidden=4, h=4, w=4),
    LayerSpec("attention", 16, heads=4, kv_heads=2, hidden=8, seq=1, context=12),
    LayerSpec("add", 16, h=4, w=4),
    LayerSpec("pool", 16, kernel=3, stride=2, h=8, w=8),
    LayerSpec("gap", 16, h=4, w=4),
    LayerSpec("batchnorm", 16, h=4, w=4, act="relu"),
    LayerSpec("layernorm", 32, seq=8),
    LayerSpec("rmsnorm", 32, seq=8),
    LayerSpec("rope", 32, heads=4, kv_heads=2, hidden=8, seq=8),
    LayerSpec("swiglu", 32, seq=8),
    LayerSpec("embedding", 100, 32, seq=8),
)
WEIGHTLESS = [s for s in LAYERS if s.op not in ("conv2d", "linear", "se", "attention")]


def test_every_op_has_a_vector_model() -> None:
    assert {s.op for s in LAYERS} == set(OPS)
    for spec in LAYERS:
        one, three = vector_work(spec, 1), vector_work(spec, 3)
        assert (three.ops, three.act_elements, three.weight_elements) == (
            3 * one.ops,
            3 * one.act_elements,
            3 * one.weight_elements,
        ), spec.op
    assert vector_work(LAYERS[0], 1).ops == 16 * 8 * 8 * (1 + 4)  # folded BN 1 + hswish 4 per output
    assert vector_work(LAYERS[1], 1).ops == 8 * 8 * 8  # relu on the input when preact, no bias
    assert vector_work(LAYERS[4], 2).ops == 5 * 2 * 4 * 1 * 12  # softmax per score of the 12-key context
    assert attention_operands(LAYERS[4], 1) == 2 * (4 * 1 + 2 * 12) * 8


@pytest.mark.parametrize("batch", [1, 2])
def test_reram_charges_the_shared_model(batch: int) -> None:
    backend = ReRAMBackend(load_device_file(PRESETS_DIR / "cim-reram.yaml"))
    p = backend.p
    for spec in LAYERS:
        assert backend.measure_layer(spec, batch).details["vector_ops"] == vector_work(spec, batch).ops, spec.op
    # an embedding reads its table's weights into the activations, each value through one lane
    embedding = LayerSpec("embedding", 100, 32, seq=8)
    cost = backend.measure_layer(embedding, batch)
    looked_up = 8 * 32 * batch
    moved = looked_up * (p.weight_bits + p.input_bits) / 8
    assert cost.details["vector_ops"] == looked_up
    assert cost.details["energy_pj"]["vector"] == pytest.approx(looked_up * p.vector_pj_per_op)
    assert cost.details["energy_pj"]["buffer"] == pytest.approx(moved * p.buffer_pj_per_byte)
    cycles = max(math.ceil(looked_up / p.vector_lanes), math.ceil(moved / p.buffer_bytes_per_cycle))
    assert cost.details["latency_ns"]["vector"] == pytest.approx(cycles / p.digital_clock_ghz)


def test_zigzag_charges_the_shared_model() -> None:
    pytest.importorskip("zigzag", reason="the zigzag backend needs the zigzag-dse package")
    params = {"hardware": "tpu_like_128", "mapping": "tpu_like", "clock_ghz": 0.7, "vector_lanes": 8}
    params |= {"vector_pj_per_op": 1.0, "dram_pj_per_byte": 90.0, "precision_bits": 16}
    backend = backend_for(DeviceSpec("zz-vector", "npu", "zigzag", params))
    for spec in WEIGHTLESS:
        work = vector_work(spec, 2)
        details = backend.measure_layer(spec, 2).details
        assert details["vector_ops"] == work.ops and details["dram_bytes"] == work.nbytes(2, 2), spec.op
        assert details["cycles_by_stage"]["vector"] == math.ceil(work.ops / 8), spec.op
