"""Evaluator: analytic metrics and LUT-sums computed for a batch at once equal the per-SubNet definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwpareto.store import Store
from pareto._objectives import Evaluator, parse_objective
from profilers import DeviceSpec, Lut, MissingLutError, backend_for, build_lut
from supernet import get_space


def _peak_memory_mb(space, config) -> float:  # type: ignore[no-untyped-def]
    specs = space.layers(config)
    activations = max(s.cin * s.h * s.w * s.seq + (s.cout or s.cin) * s.out_hw[0] * s.out_hw[1] * s.seq for s in specs)
    return 4.0 * (sum(s.params for s in specs) + activations) / 2**20


@pytest.mark.parametrize("name", ["nb201", "mbv3-digits", "gpt-stdlib"])
def test_batched_metrics_equal_per_subnet_definitions(name: str, tmp_path: Path) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(40)]
    with Store.open(str(tmp_path / "s.db")) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, workers=1)
        metrics = [
            parse_objective(m)
            for m in ("params", "macs", "flops", "peak_memory_mb", "latency_ms@board", "energy_mj@board", "weights_mb")
        ]
        mean, std = Evaluator(store, space, metrics).evaluate(configs)
        lut = Lut.load(store, "board")
        expected = np.array(
            [
                [
                    space.params(c),
                    space.macs(c),
                    2.0 * space.macs(c),
                    _peak_memory_mb(space, c),
                    lut.latency_sum_ms(space, c),
                    lut.energy_sum_mj(space, c),
                    4.0 * sum(s.params for s in space.layers(c)) / 2**20,
                ]
                for c in configs
            ]
        )
        np.testing.assert_allclose(mean, expected, rtol=1e-12)
        assert not std.any()


def test_missing_lut_layer_names_subnet_layer_and_command(tmp_path: Path) -> None:
    space = get_space("nb201")
    with Store.open(str(tmp_path / "s.db")) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, get_space("mbv3-digits"), workers=1)  # a LUT, but of another space's layers
        with pytest.raises(
            MissingLutError,
            match=rf"SubNet {space.largest().key}, e\.g\. conv2d:.*: run hwpareto "
            r"profile --device board --space nb201",
        ):
            Evaluator(store, space, [parse_objective("latency_ms@board")]).evaluate([space.largest()])


def test_kv_cache_is_refused_for_a_space_without_one(tmp_path: Path) -> None:
    from hwpareto.errors import InvalidValueError

    with Store.open(str(tmp_path / "s.db")) as store, pytest.raises(InvalidValueError, match="KV cache") as info:
        Evaluator(store, get_space("nb201"), [parse_objective("kv_cache_mb")])
    assert "nb201" in str(info.value) and "kv_cache_mb" in str(info.value)
