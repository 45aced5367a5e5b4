"""Measured LLM phases: the timed decode step does the right work (same logits as full recompute, against a cache of
prompt_len + gen_len // 2 tokens on every call), ``measure`` stores prefill_ms / decode_ms_per_token rows next to
latency_ms, and predictors learn each phase on top of its phase-filtered LUT-sum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hwpareto.store import Store
from profilers import DeviceSpec, backend_for, measure_subnets
from profilers._cpu import phase_calls
from supernet.llama import HFCausalLMSpace

TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 97,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}


def _space(options: dict[str, Any] | None = None, **config: Any) -> HFCausalLMSpace:
    base = {"prompt_len": [16, 32], "gen_len": [8, 12], "batch": [1, 2]}
    return HFCausalLMSpace("tiny-llama", TINY | config, options=base | (options or {}))


def _fast_cpu(store: Store) -> DeviceSpec:
    """This CPU as device ``cpu-fast``: short timing windows, so tests stay quick."""
    spec = DeviceSpec("cpu-fast", "cpu", "torch-cpu", {"threads": 1, "min_window_ms": 10.0, "warmup_calls": 1})
    store.devices.add(spec.name, spec.kind, spec.to_dict(), backend_for(spec).describe())
    return spec


@pytest.mark.parametrize("batch", [1, 2])
def test_timed_decode_step_is_one_step_against_the_mid_generation_cache(batch: int) -> None:
    sp = _space()
    config = sp.validate(sp.largest().values | {"layer_1": 0, "heads_2": 2, "batch": batch, "gen_len": 12})
    model = sp.extract(sp.supernet(seed=0), config)
    calls_seen: list[tuple[torch.Tensor, int]] = []

    def record(_m: torch.nn.Module, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        calls_seen.append((kwargs["input_ids"], 0 if cache is None else cache.get_seq_length()))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    calls = phase_calls(sp, model, config)
    assert calls is not None and calls.decode is not None
    ((history, cached),) = calls_seen  # the cache is built once, from a fresh forward of the context
    context = int(config["prompt_len"]) + int(config["gen_len"]) // 2
    assert calls.context == context and calls.sequences == batch and cached == 0
    assert tuple(history.shape) == (batch, context)
    outputs = [calls.decode() for _ in range(3)]  # every timed call: the same cache length, the same result
    hook.remove()
    steps = calls_seen[1:]
    assert [tuple(ids.shape) for ids, _ in steps] == [(batch, 1)] * 3
    assert [length for _, length in steps] == [context] * 3
    with torch.no_grad():
        full = model(input_ids=torch.cat([history, steps[0][0]], dim=1), use_cache=False).logits
    for out in outputs:
        assert out.shape == (batch, 1, TINY["vocab_size"])
        torch.testing.assert_close(out[:, -1], full[:, -1], rtol=1e-4, atol=1e-5)
    prefill = calls.prefill()
    assert prefill.shape == (batch, int(config["prompt_len"]), TINY["vocab_size"])  # LM head on every prompt token


def test_no_decode_step_without_generated_tokens() -> None:
    sp = _space({"gen_len": [0]})
    config = sp.largest()
    calls = phase_calls(sp, sp.extract(sp.supernet(seed=0), config), config)
    assert calls is not None and calls.decode is None
    assert all(spec.phase == "prefill" for spec in sp.layers(config))


def test_measure_stores_phase_rows_and_prefill_grows_with_the_prompt(tmp_path: Path) -> None:
    # wide enough that the LM head on 256 prompt tokens dwarfs the per-call overhead of 8 tokens
    sp = _space({"prompt_len": [8, 256], "gen_len": [16], "batch": [1]}, hidden_size=256, vocab_size=2000)
    short = sp.validate(sp.largest().values | {"prompt_len": 8})
    long = sp.validate(sp.largest().values | {"prompt_len": 256})
    with Store.open(str(tmp_path / "s.db")) as store:
        store.spaces.register(sp)
        spec = _fast_cpu(store)
        assert measure_subnets(store, spec, sp, [short, long]) == 2
        df = store.measurements.table(space=sp.name, subject=spec.name)
        values = {(r.config_key, r.metric): float(r.value) for r in df.itertuples()}
    for c in (short, long):
        prefill, decode = values[(c.key, "prefill_ms")], values[(c.key, "decode_ms_per_token")]
        assert prefill > 0 and decode > 0
        assert values[(c.key, "latency_ms")] == pytest.approx(prefill + decode)  # what the LUT-sum models
        assert (c.key, "energy_mj_per_token") not in values  # no energy counter on the CPU
    assert values[(long.key, "prefill_ms")] > 2 * values[(short.key, "prefill_ms")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_phases_with_nvml_energy(tmp_path: Path) -> None:
    pytest.importorskip("pynvml", reason="NVML energy needs nvidia-ml-py")
    sp = _space({"prompt_len": [32], "gen_len": [16], "batch": [2]})
    config = sp.largest()
    spec = DeviceSpec("gpu", "cuda", "torch-cuda", {"energy_window_ms": 200.0, "idle_ms": 200.0})
    with Store.open(str(tmp_path / "s.db")) as store:
        store.devices.add(spec.name, spec.kind, spec.to_dict(), backend_for(spec).describe())
        measure_subnets(store, spec, sp, [config])
        df = store.measurements.table(space=sp.name, subject=spec.name)
        values = {r.metric: float(r.value) for r in df.itertuples()}
    assert values["prefill_ms"] > 0 and values["decode_ms_per_token"] > 0
    assert values["latency_ms"] == pytest.approx(values["prefill_ms"] + values["decode_ms_per_token"])
    assert values["energy_mj_per_token"] >= 0 and values["energy_mj"] >= 2 * values["energy_mj_per_token"]


def _board(store: Store, sp: HFCausalLMSpace) -> None:
    """A fake device ``board`` with a LUT of every layer of ``sp`` (stored in ``store``)."""
    from profilers import build_lut

    spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
    store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
    build_lut(store, spec, sp, workers=1)


@pytest.mark.slow
def test_phase_predictors_learn_on_the_phase_lut_sum_and_are_preferred(tmp_path: Path) -> None:
    from hwpareto.store import MeasurementIn
    from pareto._objectives import Evaluator, parse_objective
    from predictors import load_model, train_latency
    from profilers import Lut

    sp = _space()
    configs = list(dict.fromkeys(sp.sample(np.random.default_rng(i)) for i in range(40)))
    with Store.open(str(tmp_path / "s.db")) as store:
        store.spaces.register(sp)
        _board(store, sp)
        lut = Lut.load(store, "board")
        # "measured" phases: a device 1.5x slower than its LUT on prefill, 2x on decode, plus 2 % noise
        truth = {
            "prefill_ms": 1.5 * lut.sums(sp, configs, "latency", "prefill"),
            "decode_ms_per_token": 2.0 * lut.sums(sp, configs, "latency", "decode"),
        }
        noise = np.random.default_rng(0).normal(1.0, 0.02, len(configs))
        store.measurements.add(
            [
                MeasurementIn(c, "device", "board", metric, float(v * e), source="measured")
                for metric, values in truth.items()
                for c, v, e in zip(configs, values, noise, strict=True)
            ]
        )
        for metric, phase in (("prefill_ms", "prefill"), ("decode_ms_per_token", "decode")):
            report = train_latency(store, "board", sp, metric=metric)
            assert report.name == f"{metric}:{sp.name}:board"
            model = load_model(store, report.name)
            np.testing.assert_allclose(model.features(configs)[:, 0], lut.sums(sp, configs, "latency", phase))
            assert report.validation["mape_pct"] < 5.0  # the phase LUT-sum explains it: only the scale is learned
            assert report.validation["lut_sum_mape_pct"] > 30.0
        objective = parse_objective("decode_ms_per_token@board")
        evaluator = Evaluator(store, sp, [objective])
        assert evaluator.sources[objective] == f"predictor decode_ms_per_token:{sp.name}:board"
        mean, std = evaluator.evaluate(configs[:10])
        np.testing.assert_allclose(mean[:, 0], truth["decode_ms_per_token"][:10], rtol=0.08)
        assert (std[:, 0] > 0).all()


def test_bad_train_metric_names_the_allowed_ones(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hwpareto.cli import app

    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    base = ["train", "latency", "--device", "cpu-local", "--store", url]
    out = runner.invoke(app, [*base, "--space", "nb201", "--metric", "decode_ms"])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "--metric" in out.output and "decode_ms_per_token" in out.output and "'decode_ms'" in out.output
    out = runner.invoke(app, [*base, "--space", "nb201", "--metric", "prefill_ms"])
    assert out.exit_code != 0 and "needs an LLM space" in out.output


def test_llm_features_count_params_and_macs_once() -> None:
    from predictors import SpaceFeatures

    sp = _space()
    configs = [sp.sample(np.random.default_rng(i)) for i in range(8)]
    features = SpaceFeatures(space=sp, canonical=False).fit(configs)
    X, names = features.transform(configs), list(features.get_feature_names_out())
    np.testing.assert_allclose(X[:, names.index("log_params")], np.log1p([sp.params(c) for c in configs]))
    np.testing.assert_allclose(X[:, names.index("log_macs")], np.log1p([sp.macs(c) for c in configs]))
    spec_params = [sum(s.params for s in sp.layers(c)) for c in configs]  # decode specs repeat the weights
    assert all(p > 1.5 * sp.params(c) for p, c in zip(spec_params, configs, strict=True))


def test_thread_clock_leaves_out_time_not_spent_computing() -> None:
    import time

    from hwpareto.errors import InvalidValueError
    from profilers._cpu import CpuBackend

    params = {"threads": 1, "warmup_calls": 0, "min_window_ms": 1.0, "min_samples": 3}
    wall = CpuBackend(DeviceSpec("w", "cpu", "torch-cpu", params))
    thread = CpuBackend(DeviceSpec("t", "cpu", "torch-cpu", params | {"clock": "thread"}))
    assert thread.describe()["clock"] == "thread" and wall.describe()["clock"] == "wall"
    x = torch.randn(256, 256)

    def work() -> None:
        time.sleep(0.03)  # descheduled, as when other jobs hold the cores
        x @ x

    assert wall._cost(work).latency_ms >= 30.0
    assert 0.0 < thread._cost(work).latency_ms < 15.0
    for bad in ({"clock": "cpu"}, {"clock": "thread", "threads": 2}):
        with pytest.raises(InvalidValueError, match=r"params\.clock"):
            CpuBackend(DeviceSpec("t", "cpu", "torch-cpu", params | bad))


def test_cold_weights_cycle_through_copies_larger_than_the_cache() -> None:
    from profilers._cpu import MAX_COPIES, CpuBackend

    layer = torch.nn.Linear(256, 256)  # 0.25 MiB of parameters
    cold = CpuBackend(DeviceSpec("c", "cpu", "torch-cpu", {"cold_weights_mb": 4.0}))
    copies = cold._copies(layer)
    assert len(copies) == 16 and copies[0] is layer
    assert len({c.weight.data_ptr() for c in copies if isinstance(c, torch.nn.Linear)}) == 16  # distinct memory
    x = torch.randn(3, 256)
    with torch.no_grad():
        assert all(torch.equal(c(x), layer(x)) for c in copies)
    assert CpuBackend(DeviceSpec("w", "cpu", "torch-cpu", {}))._copies(layer) == [layer]
    huge = CpuBackend(DeviceSpec("h", "cpu", "torch-cpu", {"cold_weights_mb": 1024.0}))
    assert len(huge._copies(layer)) == MAX_COPIES
    assert huge.describe()["cold_weights_mb"] == 1024.0


def test_correction_is_kept_only_when_it_beats_the_scaled_lut_sum_out_of_fold() -> None:
    from predictors import LatencyPredictor

    rng = np.random.default_rng(0)
    lut = rng.uniform(1, 10, 100)
    X = np.column_stack([lut, rng.normal(size=(100, 40))])  # 40 columns that explain nothing
    noisy = 1.2 * lut * np.exp(rng.normal(0, 0.05, 100))
    model = LatencyPredictor(n_members=2, n_estimators=50).fit(X, noisy)
    assert model.mode_ == "lut-scale"
    np.testing.assert_allclose(model.predict(X), lut * np.exp(np.median(np.log(noisy / lut))))
    assert 0.02 < model.residual_std_ < 0.1  # the scaled LUT-sum's out-of-fold error, about the noise
    shaped = lut * (1.0 + 0.3 * (X[:, 1] > 0))  # a factor a feature explains
    assert LatencyPredictor(n_members=2, n_estimators=50).fit(X, shaped).mode_ == "learned"
