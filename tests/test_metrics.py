"""The metric catalogue: each metric's unit, direction, range and kind; names with a subject, a direction or an
LLM phase; the suffix rule for metrics it does not list; MiB said once; and a new analytic metric registered in one
place and searched on as an objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import pareto._objectives
from dashboard import _figures
from hwpareto import metrics as catalogue
from hwpareto.errors import InvalidValueError
from hwpareto.metrics import Metric, lookup, register_metric
from hwpareto.store import Store
from pareto import cost_metrics, parse_objective, register_analytic
from supernet import PHASE_METRICS, LayerCounts, SearchSpace, SubNetConfig, check_metric_value, get_space, metric_range


@pytest.fixture
def scratch_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations of one test only (the catalogue and the evaluator's analytic functions restored after it)."""
    monkeypatch.setattr(catalogue, "_CATALOGUE", dict(catalogue._CATALOGUE))
    monkeypatch.setattr(pareto._objectives, "_ANALYTIC_FUNCTIONS", dict(pareto._objectives._ANALYTIC_FUNCTIONS))


def test_each_metric_is_an_object() -> None:
    latency = lookup("latency_ms@cpu-local")
    assert (latency.unit, latency.kind, latency.direction, latency.range) == (
        "ms",
        "device cost",
        "minimize",
        (0.0, 1e7, False),
    )
    assert lookup("energy_mj").range == (0.0, 1e9, False) and lookup("params:max").kind == "analytic"
    decode = lookup("decode_ms_per_token@board:min")
    assert (decode.name, decode.unit, decode.phase, decode.is_cost) == (
        "decode_ms_per_token",
        "ms/token",
        "decode",
        True,
    )
    assert PHASE_METRICS == {"prefill_ms": "prefill", "decode_ms_per_token": "decode", "energy_mj_per_token": "decode"}
    assert {m.name for m in catalogue.metrics("analytic")} == {
        "params", "macs", "flops", "weights_mb", "kv_cache_mb", "peak_memory_mb"
    }  # fmt: skip
    # sizes are MiB (2**20 bytes), whatever their stored names say
    assert {lookup(m).unit for m in ("weights_mb", "kv_cache_mb", "peak_memory_mb")} == {
        "MiB"
    } and catalogue.MIB == 2**20


@pytest.mark.parametrize(
    ("name", "unit", "kind", "direction", "bounds"),
    [
        ("test_acc_pct", "%", "quality", "maximize", (0.0, 100.0, True)),
        ("cifar10_test_acc", "%", "quality", "maximize", (0.0, 100.0, True)),
        ("val_ppl", "exp of mean token NLL", "quality", "minimize", (-math.inf, math.inf, True)),
        ("board_ms", "ms", "quality", "minimize", (0.0, 1e7, False)),
        ("other_mj_per_token", "mJ/token", "quality", "minimize", (0.0, 1e9, False)),
        ("block_macs", "count", "quality", "minimize", (0.0, 1e18, True)),
        ("score", "value", "quality", "minimize", (-math.inf, math.inf, True)),
    ],
)
def test_other_names_follow_their_suffix(
    name: str, unit: str, kind: str, direction: str, bounds: tuple[float, float, bool]
) -> None:
    m = lookup(f"{name}@somewhere")
    assert (m.unit, m.kind, m.direction, m.range) == (unit, kind, direction, bounds)
    assert metric_range(name) == bounds and parse_objective(f"{name}@data").direction == direction


def test_per_token_costs_are_checked_in_their_unit() -> None:
    # the per-token costs end in _token: the old suffix rule left them unchecked
    for metric in ("decode_ms_per_token", "energy_mj_per_token"):
        with pytest.raises(InvalidValueError, match=rf"^v: expected {metric} in \(0, "):
            check_metric_value("v", metric, -1.0)
        assert check_metric_value("v", metric, 0.0, per_layer=True) == 0.0


def test_dashboard_labels_come_from_the_catalogue(scratch_catalogue: None) -> None:
    assert _figures.axis_title("peak_memory_mb") == "peak memory (MiB)"
    register_metric(Metric("power_mw", "mW", "device cost", low=0.0, high=1e9, label="power"))
    assert _figures.axis_title("power_mw@board") == "power on board (mW)"
    assert parse_objective("power_mw@board").is_cost and "power_mw" in cost_metrics(get_space("nb201"))


def test_a_registration_is_refused_when_it_redefines_a_metric(scratch_catalogue: None) -> None:
    register_metric(lookup("latency_ms"))  # the same definition again: nothing changes
    with pytest.raises(InvalidValueError, match=r"^metric latency_ms: expected its registered definition"):
        register_metric(Metric("latency_ms", "s", "device cost"))
    with pytest.raises(InvalidValueError, match=r"^metric name: expected a-z"):
        register_metric(Metric("Power", "W", "device cost"))
    with pytest.raises(InvalidValueError, match=r"^metric params: expected a name other than the built-in"):
        register_analytic(lookup("params"), lambda space, configs, counts: np.zeros(len(configs)))


def _layer_count(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    return counts.total(np.ones(len(counts.specs)))


def test_a_new_analytic_metric_is_one_registration(scratch_catalogue: None, tmp_path: Path) -> None:
    from pareto._analysis import study_results
    from pareto._objectives import Evaluator
    from pareto._search import SearchSpec, run_surrogate

    space = get_space("nb201")
    with pytest.raises(InvalidValueError, match="layer_count@DEVICE or layer_count@DATASET"):
        parse_objective("layer_count")
    register_analytic(Metric("layer_count", "layers", "analytic", low=0.0, label="layers run"), _layer_count)
    objective = parse_objective("layer_count")
    assert objective.direction == "minimize" and _figures.axis_title("layer_count") == "layers run (layers)"
    configs = [space.from_index(i) for i in range(0, 15625, 500)]
    with Store.open(str(tmp_path / "s.db")) as store:
        mean, std = Evaluator(store, space, [objective]).evaluate(configs)
        assert mean[:, 0].tolist() == [float(len(space.layers(c))) for c in configs] and not std.any()
        run_surrogate(
            store,
            SearchSpec(
                name="few-layers", space="nb201", objectives=("layer_count", "params:max"), n_trials=40, population=20
            ),
        )
        trials = study_results(store, "few-layers").trials
        assert len(trials) > 0 and trials["layer_count"].min() >= 1
