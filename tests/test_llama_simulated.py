"""LLM phases on the simulated accelerators: through ZigZag, a decode step is memory-bound (weights stream past
a nearly idle MAC array, so its time barely moves with the tokens it serves) while a long prefill is
compute-bound. (``cim-reram`` is not a ZigZag device: its model keeps every weight programmed in its crossbars,
so no weights move and its decode is not memory-bound by construction.)"""

from __future__ import annotations

from typing import Any

import pytest

from profilers import backend_for
from profilers._devices import PRESETS_DIR, load_device_file
from supernet.llama import HFCausalLMSpace

pytest.importorskip("zigzag", reason="the zigzag backend needs the zigzag-dse package")

ZIGZAG_PRESETS = ("npu-tpu", "npu-edgetpu", "cim-sram-digital", "cim-sram-analog")
# Layer shapes of a small Llama (a 2-layer slice with 1B-class ratios: 8 query / 2 KV heads, FFN 3 x hidden).
CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}


def _space() -> HFCausalLMSpace:
    options = {"prompt_len": [64, 256, 512], "gen_len": [16], "batch": [1, 2], "uniform": True}
    return HFCausalLMSpace("llama-512", CONFIG, options=options)


def _phase(backend: Any, sp: HFCausalLMSpace, phase: str, **values: Any) -> tuple[float, float]:
    """``(latency_ms, MAC-array utilisation)`` of one phase of the largest SubNet with ``values`` changed."""
    config = sp.validate(sp.largest().values | values)
    latency_ms, macs, pe_cycles = 0.0, 0, 0.0
    for spec in sp.layers(config):
        if spec.phase != phase:
            continue
        cost = backend.measure_layer(spec)
        latency_ms += cost.latency_ms
        if spec.op == "linear":
            macs += cost.details["zigzag_macs"]
            pe_cycles += cost.details["pes"] * cost.details["cycles_by_stage"]["zigzag"]
    return latency_ms, macs / pe_cycles


@pytest.mark.slow
@pytest.mark.parametrize("preset", ZIGZAG_PRESETS)
def test_decode_is_memory_bound_and_prefill_compute_bound(preset: str) -> None:
    backend = backend_for(load_device_file(PRESETS_DIR / f"{preset}.yaml"))
    sp = _space()
    decode_1, decode_util = _phase(backend, sp, "decode", batch=1, prompt_len=64)
    decode_2, _ = _phase(backend, sp, "decode", batch=2, prompt_len=64)
    prefill_256, prefill_util = _phase(backend, sp, "prefill", batch=1, prompt_len=256)
    prefill_512, _ = _phase(backend, sp, "prefill", batch=1, prompt_len=512)
    # Memory-bound decode: twice the tokens per step cost almost nothing more, and the array idles ...
    assert decode_2 < 1.25 * decode_1, (decode_1, decode_2)
    assert decode_util < 0.05, decode_util
    # ... while a long prefill scales with its tokens and keeps the array many times busier.
    assert prefill_512 > 1.6 * prefill_256, (prefill_256, prefill_512)
    assert prefill_util > 10 * decode_util, (prefill_util, decode_util)
    # a one-token decode step is cheaper than a 256-token prefill but far dearer than 1/256 of it
    assert 10 * prefill_256 / 256 < decode_1 < prefill_256, (prefill_256, decode_1)
