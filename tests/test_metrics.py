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
from hwpareto.plugins import PluginError
from hwpareto.store import MeasurementIn, Store
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
    for metric, low in (("decode_ms_per_token", "(0"), ("energy_mj_per_token", "[0")):
        with pytest.raises(InvalidValueError, match=rf"^v: expected {metric} in \{low}, "):
            check_metric_value("v", metric, -1.0)
        assert check_metric_value("v", metric, 0.0, per_layer=True) == 0.0
    assert check_metric_value("v", "energy_mj_per_token", 0.0) == 0.0  # measured idle-corrected energy may be 0


def test_dashboard_labels_come_from_the_catalogue(scratch_catalogue: None) -> None:
    assert _figures.axis_title("peak_memory_mb") == "peak memory (MiB)"
    register_metric(Metric("power_mw", "mW", "device cost", low=0.0, high=1e9, label="power"))
    assert _figures.axis_title("power_mw@board") == "power on board (mW)"
    assert parse_objective("power_mw@board").is_cost and "power_mw" in cost_metrics(get_space("nb201"))


def test_a_new_device_cost_is_searched_through_its_predictor(scratch_catalogue: None, tmp_path: Path) -> None:
    from pareto._objectives import Evaluator
    from predictors import train_latency
    from profilers import DeviceSpec, backend_for, build_lut

    register_metric(Metric("power_mw", "mW", "device cost", low=0.0, high=1e9, label="power"))
    space = get_space("nb201")
    configs = [space.from_index(i) for i in range(0, 15625, 250)]
    with Store.open(str(tmp_path / "s.db")) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, workers=1)
        with pytest.raises(InvalidValueError, match=r"predictor power_mw:nb201:board \(a LUT-sum gives latency_ms"):
            Evaluator(store, space, [parse_objective("power_mw@board")])  # its LUT sums latencies, not power
        with pytest.raises(InvalidValueError, match=r"value: expected power_mw in \[0, 1e\+09\], got -1.0"):
            store.measurements.add([MeasurementIn(configs[0], "device", "board", "power_mw", -1.0)])
        rows = [MeasurementIn(c, "device", "board", "power_mw", 100.0 + space.macs(c) / 1e6) for c in configs]
        store.measurements.add(rows)
        report = train_latency(store, "board", space, metric="power_mw")
        assert report.name == "power_mw:nb201:board"
        assert store.predictors.load(report.name).meta["features"] == "space"  # no LUT-sum of latencies as a feature
        evaluator = Evaluator(store, space, [parse_objective("power_mw@board")])
        assert evaluator.sources[parse_objective("power_mw@board")] == "predictor power_mw:nb201:board"


def _layer_count(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    return counts.total(np.ones(len(counts.specs)))


def test_a_new_analytic_metric_is_one_registration(scratch_catalogue: None, tmp_path: Path) -> None:
    from pareto._objectives import Evaluator
    from pareto.analysis._analysis import study_results
    from pareto.search._search import SearchSpec, run_surrogate

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


def test_the_built_in_analytic_metrics_are_registered_as_a_new_one_is(scratch_catalogue: None, tmp_path: Path) -> None:
    from pareto._objectives import Evaluator

    functions = pareto._objectives._ANALYTIC_FUNCTIONS
    assert {m.name for m in catalogue.metrics("analytic")} <= set(functions)
    with pytest.raises(InvalidValueError, match=r"^metric params: expected a name whose computation is not yet regi"):
        register_analytic(lookup("params"), _layer_count)
    assert register_analytic(lookup("params"), functions["params"]) == lookup("params")  # the same again: a no-op
    space = get_space("nb201")
    configs = [space.from_index(i) for i in (0, 7, 15624)]
    with Store.open(str(tmp_path / "s.db")) as store:
        params = Evaluator(store, space, [parse_objective("params")]).evaluate(configs)[0][:, 0]
        assert params.tolist() == [float(space.params(c)) for c in configs]
        functions["params"] = _layer_count  # the evaluator computes a built-in through its registration
        layers = Evaluator(store, space, [parse_objective("params")]).evaluate(configs)[0][:, 0]
    assert layers.tolist() == [float(len(space.layers(c))) for c in configs]


PLUGIN = """
import numpy as np

from hwpareto.metrics import Metric
from pareto import AnalyticObjective


def _depth(space, configs, counts):
    return counts.total(np.ones(len(counts.specs)))


DEPTH = AnalyticObjective(Metric("plugin_depth", "layers", "analytic", low=0.0, label="depth"), _depth)
"""


def test_an_installed_analytic_objective_is_found_by_its_name(
    scratch_catalogue: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pareto._objectives import OBJECTIVES, Evaluator

    (tmp_path / "hwp_depth.py").write_text(PLUGIN)
    info = tmp_path / "hwp_depth-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hwp_depth\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hwpareto.objectives]\nplugin_depth = hwp_depth:DEPTH\nmisnamed_depth = hwp_depth:DEPTH\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(OBJECTIVES, "_loaded", {})
    objective = parse_objective("plugin_depth")
    assert (objective.info.kind, objective.info.unit, _figures.axis_title("plugin_depth")) == (
        "analytic",
        "layers",
        "depth (layers)",
    )
    space = get_space("nb201")
    configs = [space.from_index(i) for i in (0, 7, 15624)]
    with Store.open(str(tmp_path / "s.db")) as store:
        mean, _ = Evaluator(store, space, [objective]).evaluate(configs)
    assert mean[:, 0].tolist() == [float(len(space.layers(c))) for c in configs]
    with pytest.raises(PluginError, match="'misnamed_depth': expected an AnalyticObjective of metric misnamed_depth"):
        parse_objective("misnamed_depth")


def test_an_installed_metric_joins_the_catalogue_by_its_name(
    scratch_catalogue: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hwp_power.py").write_text(
        "from hwpareto.metrics import Metric\n"
        "POWER = Metric('board_power_mw', 'mW', 'device cost', low=0.0, high=1e6, label='power')\n"
        "SIZE = Metric('size_mb', 'MiB', 'analytic', low=0.0)\n"
    )
    info = tmp_path / "hwp_power-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hwp_power\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hwpareto.metrics]\nboard_power_mw = hwp_power:POWER\nsize_mb = hwp_power:SIZE\nother_mw = hwp_power:POWER\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(catalogue._PLUGINS, "_loaded", {})
    catalogue._plugin_names.cache_clear()
    try:
        power = lookup("board_power_mw@board")
        assert (power.kind, power.unit, power.range) == ("device cost", "mW", (0.0, 1e6, True))
        assert parse_objective("board_power_mw@board").is_cost and _figures.axis_title("board_power_mw") == "power (mW)"
        with pytest.raises(InvalidValueError, match=r"expected board_power_mw in \[0, 1e\+06\], got -1.0"):
            check_metric_value("value", "board_power_mw", -1.0)
        with pytest.raises(PluginError, match="'size_mb': expected a device cost or quality Metric named size_mb"):
            lookup("size_mb")  # an analytic metric needs its computation: an hwpareto.objectives plugin
        with pytest.raises(PluginError, match="'other_mw': expected a device cost or quality Metric named other_mw"):
            lookup("other_mw")
    finally:
        catalogue._plugin_names.cache_clear()
