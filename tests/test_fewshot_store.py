"""Few-shot transfer through the store with many devices: which devices count as known (the rule, ``known=``
overrides and their errors), new devices that never become known ones whatever the order they are trained in,
measured values before predictors, and the CLI's report of what was used and skipped."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import InvalidValueError
from hwpareto.store import MeasurementIn, Store
from predictors._service import (
    KNOWN_MIN_SUBNETS,
    choose_known,
    known_latencies,
    load_model,
    predict_table,
    train_latency,
)
from supernet import LayerSpec, get_space

SPACE = get_space("nb201")
ALL = [SPACE.from_index(i) for i in range(15625)]
REFS = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]  # HELP's NB201 references
# (GMAC/s, ns per element moved, ms per layer): full-table known devices and new devices unlike them
KNOWN = {"gpu-a": (400.0, 0.02, 0.05), "cpu-b": (20.0, 0.5, 0.01), "npu-c": (80.0, 2.0, 0.2)}
NEW = {"new-x": (50.0, 1.0, 0.1), "new-y": (150.0, 0.3, 0.02), "new-z": (30.0, 0.1, 0.3)}


def _latency_ms(device: tuple[float, float, float], configs: list) -> np.ndarray:
    """An additive latency model per LayerSpec (compute, memory traffic, per-layer overhead)."""
    gmacs, ns_per_element, per_layer = device
    counts = SPACE.layer_counts(configs)

    def cost(spec: LayerSpec) -> float:
        elements = spec.cin * spec.h * spec.w + (spec.cout or spec.cin) * spec.out_hw[0] * spec.out_hw[1]
        return spec.macs / gmacs / 1e6 + elements * ns_per_element * 1e-6 + per_layer

    return counts.total(np.array([cost(s) for s in counts.specs]))


def _rows(name: str, device: tuple[float, float, float], configs: list) -> list[MeasurementIn]:
    return [
        MeasurementIn(c, "device", name, "latency_ms", float(v))
        for c, v in zip(configs, _latency_ms(device, configs), strict=True)
    ]


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with three known devices measured on every NB201 cell (built once, copied per test)."""
    path = tmp_path_factory.mktemp("fewshot") / "base.db"
    with Store.open(str(path)) as store:
        store.measurements.add([r for name, d in KNOWN.items() for r in _rows(name, d, ALL)], auto_devices=True)
    return path


@pytest.fixture
def store(base_db: Path, tmp_path: Path) -> Store:
    copy = tmp_path / "store.db"
    copy.write_bytes(base_db.read_bytes())
    with Store.open(str(copy)) as opened:
        yield opened


def _add_new(store: Store, name: str) -> None:
    """``name`` measured on HELP's 10 reference cells only."""
    store.measurements.add(_rows(name, NEW[name], [SPACE.from_index(i) for i in REFS]), auto_devices=True)


def _table(store: Store, name: str) -> np.ndarray:
    out = predict_table(store, SPACE, ALL[::25], device=name)
    return out[[c for c in out.columns if c != "config_key"]].to_numpy()


@pytest.mark.slow
def test_new_devices_never_become_known_whatever_the_order(store: Store, base_db: Path, tmp_path: Path) -> None:
    alone = {}
    for name in NEW:  # each new device alone in a store with the known devices
        single = tmp_path / f"{name}.db"
        single.write_bytes(base_db.read_bytes())
        with Store.open(str(single)) as s:
            _add_new(s, name)
            train_latency(s, name, SPACE, few_shot=10)
            alone[name] = _table(s, name)
    for name in NEW:
        _add_new(store, name)
    for order in itertools.permutations(NEW):  # two and three new devices, trained in every order
        for name in order:
            report = train_latency(store, name, SPACE, few_shot=10)
            assert report.known is not None and report.known.used == tuple(sorted(KNOWN))
            assert {d for d, _ in report.known.skipped} == set(NEW) - {name}
            assert all(f"(a known device needs {KNOWN_MIN_SUBNETS}+)" in r for _, r in report.known.skipped)
            np.testing.assert_array_equal(_table(store, name), alone[name])  # identical with or without the others
    truth = _latency_ms(NEW["new-x"], ALL[::25])
    mean = _table(store, "new-x")[:, 0]
    assert np.median(np.abs(mean - truth) / truth) < 0.1


def test_a_device_with_a_table_becomes_known_once_it_has_enough(store: Store) -> None:
    _add_new(store, "new-x")
    _add_new(store, "new-y")
    keys = [SPACE.from_index(i).key for i in REFS]
    store.measurements.add(_rows("new-y", NEW["new-y"], ALL[1000 : 1000 + KNOWN_MIN_SUBNETS - 11]))
    choice = choose_known(store, "new-x", SPACE, "latency_ms", keys)
    assert "new-y" not in choice.used and dict(choice.skipped)["new-y"].startswith(f"{KNOWN_MIN_SUBNETS - 1} ")
    store.measurements.add(_rows("new-y", NEW["new-y"], ALL[2000:2001]))
    choice = choose_known(store, "new-x", SPACE, "latency_ms", keys)
    assert "new-y" in choice.used and choice.predicted == ("new-y",)  # its predictor fills in the rest
    uncovered = choose_known(store, "new-x", SPACE, "latency_ms", [*keys, ALL[-1].key])
    assert dict(uncovered.skipped)["new-y"] == "has measured 10 of the 11 SubNets measured on new-x"


@pytest.mark.slow
def test_known_override_and_its_errors(store: Store) -> None:
    _add_new(store, "new-x")
    _add_new(store, "new-y")
    store.devices.add("empty-board", "imported", {}, {})
    report = train_latency(store, "new-x", SPACE, few_shot=10, known=["cpu-b", "gpu-a"])
    assert report.known is not None and report.known.used == ("cpu-b", "gpu-a") and report.known.skipped == ()
    assert load_model(store, report.name).known == ("cpu-b", "gpu-a")
    before = store.predictors.list()
    cases = [
        (["nope"], r"device: expected one of .*gpu-a.*, got 'nope'"),
        (
            ["empty-board"],
            r"--known empty-board: expected a device with measured latency_ms of nb201 SubNets, "
            r"got 'none'",
        ),
        (
            ["new-y"],
            r"--known new-y: expected a device with a table of every nb201 SubNet, a predictor, or at "
            r"least 25 measured SubNets to train one, got '10 measured SubNets'",
        ),
        (["new-x"], r"--known new-x: expected a device other than the new device new-x"),
        ([], r"--known: expected one or more device names"),
    ]
    for known, message in cases:
        with pytest.raises(InvalidValueError, match=message):
            train_latency(store, "new-x", SPACE, few_shot=10, known=known)
    with pytest.raises(InvalidValueError, match="--known: expected only with --few-shot K"):
        train_latency(store, "new-x", SPACE, known=["gpu-a"])
    assert store.predictors.list() == before  # nothing stored by a refused command


def test_no_known_device_names_what_was_skipped(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.db")) as store:
        _add_new(store, "new-x")
        _add_new(store, "new-y")
        with pytest.raises(
            InvalidValueError,
            match=r"known devices for a few-shot transfer to new-x on nb201: "
            r"expected .* got 'none \(new-y: 10 measured SubNets",
        ):
            train_latency(store, "new-x", SPACE, few_shot=10)


@pytest.mark.slow
def test_measured_values_first_then_the_known_devices_own_predictor(store: Store) -> None:
    partial = [*ALL[::50], *(SPACE.from_index(i) for i in REFS)]  # enough to be a known device, not the space
    store.measurements.add(_rows("board-p", NEW["new-z"], partial), auto_devices=True)
    _add_new(store, "new-x")
    configs = [ALL[0], ALL[1], ALL[50], ALL[100]]  # 0, 50 and 100 measured on board-p; 1 not
    with pytest.raises(
        Exception,
        match=r"1 SubNet\(s\) \(e\.g\. .*\) are not measured on known device board-p "
        r"and it has no predictor latency_ms:nb201:board-p",
    ):
        known_latencies(store, SPACE, "latency_ms", ["gpu-a", "board-p"], configs)
    calls: list[tuple[int, int, str]] = []
    report = train_latency(store, "new-x", SPACE, few_shot=10, progress=lambda *a: calls.append(a))
    assert report.known is not None and report.known.predicted == ("board-p",)
    assert calls == [(0, 1, "latency_ms:nb201:board-p"), (1, 1, "")]  # what is trained is said, with progress
    values = known_latencies(store, SPACE, "latency_ms", ["gpu-a", "board-p"], configs)
    measured = store.measurements.measured_table("nb201", "latency_ms", ["gpu-a", "board-p"])
    np.testing.assert_array_equal(values[:, 0], measured.loc[[c.key for c in configs], "gpu-a"])
    np.testing.assert_array_equal(values[[0, 2, 3], 1], measured.loc[[configs[i].key for i in (0, 2, 3)], "board-p"])
    predicted = load_model(store, "latency_ms:nb201:board-p").predict([ALL[1]])[0]
    assert values[1, 1] == predicted[0]
    again: list[tuple[int, int, str]] = []
    train_latency(store, "new-x", SPACE, few_shot=10, progress=lambda *a: again.append(a))
    assert again == []  # its predictor is stored: nothing is trained a second time


def test_too_few_rows_names_device_space_rows_and_need(store: Store) -> None:
    _add_new(store, "new-x")
    with pytest.raises(
        InvalidValueError,
        match=r"measured latency_ms of nb201 SubNets on new-x: expected at least "
        r"25 without a LUT covering them .* got 10",
    ):
        train_latency(store, "new-x", SPACE)
    with pytest.raises(InvalidValueError, match=r"on new-x: expected at least 12 for --few-shot 12 .* got 10"):
        train_latency(store, "new-x", SPACE, few_shot=12)


@pytest.mark.slow
def test_cli_reports_known_devices(store: Store) -> None:
    _add_new(store, "new-x")
    _add_new(store, "new-y")
    runner = CliRunner()
    url = store.url
    result = runner.invoke(
        app, ["train", "latency", "--device", "new-x", "--space", "nb201", "--few-shot", "10", "--store", url]
    )
    assert result.exit_code == 0, result.output
    assert "known devices used: cpu-b, gpu-a, npu-c" in result.stdout
    assert "skipped new-y: 10 measured SubNets (a known device needs 100+)" in result.stdout
    fitted = store.predictors.load("latency_ms:nb201:new-x:fewshot10").meta["model"]
    costs = {0.0: "not used", 0.5: "blended with the mix", 1.0: "used alone"}[fitted["op_cost_weight"]]
    correction = ", op-level correction" if fitted["op_correction"] else ""
    assert f"  transfer: device mix ({fitted['mix']}){correction}; op-cost model {costs}\n" in result.stdout
    result = runner.invoke(
        app,
        [
            "train",
            "latency",
            "--device",
            "new-y",
            "--space",
            "nb201",
            "--few-shot",
            "10",
            "--known",
            "gpu-a,new-x",
            "--json",
            "--store",
            url,
        ],
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --known new-x: expected")
    result = runner.invoke(
        app,
        [
            "train",
            "latency",
            "--device",
            "new-y",
            "--space",
            "nb201",
            "--few-shot",
            "10",
            "--known",
            "gpu-a, npu-c",
            "--json",
            "--store",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    assert reported["known"] == {"used": ["gpu-a", "npu-c"], "predicted": [], "skipped": []}
    assert reported["model"] == store.predictors.load(reported["name"]).meta["model"]


def test_a_search_objective_on_a_new_device_uses_its_transfer(store: Store) -> None:
    from pareto._objectives import Evaluator, parse_objective

    _add_new(store, "new-x")
    train_latency(store, "new-x", SPACE, few_shot=5, name="latency_ms:nb201:new-x:fewshot5")
    train_latency(store, "new-x", SPACE, few_shot=10)
    evaluator = Evaluator(store, SPACE, [parse_objective("latency_ms@new-x")])
    assert evaluator.sources[parse_objective("latency_ms@new-x")] == "predictor latency_ms:nb201:new-x:fewshot10"
    mean, _ = evaluator.evaluate(ALL[:50])
    expected = load_model(store, "latency_ms:nb201:new-x:fewshot10").predict(ALL[:50])[0]
    np.testing.assert_array_equal(mean[:, 0], expected)


def test_a_bundle_lists_the_few_shot_predictor_it_used(store: Store, tmp_path: Path) -> None:
    from pareto.analysis._analysis import export_trial
    from pareto.search._search import SearchSpec, run_surrogate

    _add_new(store, "new-x")
    train_latency(store, "new-x", SPACE, few_shot=10)
    search = SearchSpec(name="fs", space="nb201", objectives=("params:max", "latency_ms@new-x"), n_trials=20)
    run_surrogate(store, search)
    export_trial(store, "fs", 3, tmp_path / "bundle", weights=False, onnx=False)
    provenance = json.loads((tmp_path / "bundle" / "config.json").read_text())["metrics"]["provenance"]
    assert provenance["sources"]["latency_ms@new-x"] == "predictor latency_ms:nb201:new-x:fewshot10"
    listed = provenance["predictors"]["latency_ms:nb201:new-x:fewshot10"]
    assert listed["validation"] == store.predictors.load("latency_ms:nb201:new-x:fewshot10").meta["validation"]


@pytest.mark.slow
def test_reference_set_file_round_trip_to_a_transfer(store: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    refs = tmp_path / "refs.csv"
    result = runner.invoke(
        app, ["reference-set", "--space", "nb201", "-k", "10", "--out", str(refs), "--store", store.url]
    )
    assert result.exit_code == 0, result.output
    assert "chosen from the measured latency_ms of cpu-b, gpu-a, npu-c" in result.stdout

    frame = pd.read_csv(refs)
    assert len(frame) == 10 and frame["latency_ms"].isna().all() and frame["config_key"].is_unique
    configs = [SPACE.from_arch_str(a) for a in frame["arch_str"]]
    assert [c.key for c in configs] == list(frame["config_key"])
    frame["latency_ms"] = _latency_ms(NEW["new-z"], configs)  # the lab fills in what it measured
    frame.to_csv(refs, index=False)
    result = runner.invoke(
        app,
        [
            "import",
            str(refs),
            "--space",
            "nb201",
            "--device",
            "lab-z",
            "--metric",
            "latency_ms",
            "--column",
            "latency_ms",
            "--store",
            store.url,
        ],
    )
    assert result.exit_code == 0, result.output
    report = train_latency(store, "lab-z", SPACE, few_shot=10)
    assert sorted(store.predictors.load(report.name).meta["train_keys"]) == sorted(frame["config_key"])
    truth = _latency_ms(NEW["new-z"], ALL[::25])
    mean = _table(store, "lab-z")[:, 0]
    assert np.median(np.abs(mean - truth) / truth) < 0.1


def test_measure_takes_a_configs_file(tmp_path: Path) -> None:
    from profilers import DeviceSpec, backend_for

    with Store.open(str(tmp_path / "s.db")) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        url = store.url
    configs = tmp_path / "c.jsonl"
    configs.write_text("".join(json.dumps(SPACE.from_index(i).values) + "\n" for i in REFS[:4]))
    result = CliRunner().invoke(
        app, ["measure", "--device", "board", "--space", "nb201", "--in", str(configs), "--store", url]
    )
    assert result.exit_code == 0, result.output
    with Store.open(url) as store:
        measured = store.measurements.measured_table("nb201", "latency_ms", ["board"])
    assert sorted(measured.index) == sorted(SPACE.from_index(i).key for i in REFS[:4])


def test_references_are_chosen_without_the_new_devices_values(store: Store) -> None:
    """With more measured SubNets than K, the K references depend on the known devices only: two new devices that
    measured the same 40 cells with unrelated latencies get the same references, retraining gives them again, and
    the held-out rest is scored."""
    cells = [SPACE.from_index(i) for i in range(100, 4100, 100)]
    store.measurements.add(_rows("new-x", NEW["new-x"], cells), auto_devices=True)
    scrambled = np.random.default_rng(0).permutation(_latency_ms(NEW["new-z"], cells))
    store.measurements.add(
        [MeasurementIn(c, "device", "new-z", "latency_ms", float(v)) for c, v in zip(cells, scrambled, strict=True)],
        auto_devices=True,
    )
    keys = {}
    for name in ("new-x", "new-z", "new-x"):
        report = train_latency(store, name, SPACE, few_shot=10)
        assert report.validation["split"] == "10 reference SubNets / 30 held out"
        chosen = store.predictors.load(report.name).meta["train_keys"]
        assert len(set(chosen)) == 10 and set(chosen) <= {c.key for c in cells}
        keys.setdefault(name, chosen)
        assert chosen == keys[name] == keys["new-x"]


def test_the_transfer_fits_its_op_cost_model_on_the_space_costs(store: Store) -> None:
    from scipy.stats import spearmanr

    from predictors import SpaceFeatures, additive_costs

    _add_new(store, "new-z")
    report = train_latency(store, "new-z", SPACE, few_shot=10)
    stored = store.predictors.load(report.name).meta
    model = load_model(store, report.name)
    configs = ALL[::25]
    costs = additive_costs(SPACE, SpaceFeatures(SPACE, canonical=False).fit_transform(configs))
    assert model.estimator.n_costs == costs.shape[1] == 9
    assert stored["features"].endswith("+ space + additive costs")
    assert stored["model"] == {
        "mix": model.estimator.scale_,
        "op_correction": bool(np.any(model.estimator.feature_coef_)),
        "op_cost_weight": model.estimator.cost_weight_,
        "set_aside": [],
    }
    np.testing.assert_array_equal(model.features(configs)[:, -9:], costs)
    pred = model.predict(configs)[0]
    assert spearmanr(pred, _latency_ms(NEW["new-z"], configs)).statistic > 0.999


def test_an_outlying_reference_is_set_aside_and_reported(store: Store) -> None:
    """One of the 10 references measured twice too slow: the CLI names it with the two values, the stored meta
    records it, and the rest of the table is what the other nine give."""
    configs = [SPACE.from_index(i) for i in REFS]
    values = _latency_ms(NEW["new-x"], configs)
    values[4] *= 2.0
    store.measurements.add(
        [MeasurementIn(c, "device", "new-x", "latency_ms", float(v)) for c, v in zip(configs, values, strict=True)],
        auto_devices=True,
    )
    result = CliRunner().invoke(
        app, ["train", "latency", "--device", "new-x", "--space", "nb201", "--few-shot", "10", "--store", store.url]
    )
    assert result.exit_code == 0, result.output
    [aside] = store.predictors.load("latency_ms:nb201:new-x:fewshot10").meta["model"]["set_aside"]
    assert aside["config_key"] == configs[4].key and aside["measured"] == values[4] and aside["metric"] == "latency_ms"
    assert 0.9 < values[4] / 2 / aside["predicted"] < 1.1  # the others predict the true value
    assert aside["config"] == configs[4].values
    assert (
        f"  set aside reference {configs[4].key} {json.dumps(configs[4].values, separators=(',', ':'))}: measured "
        f"{values[4]:.4g}, the other references predict {aside['predicted']:.4g} (latency_ms); an outlier, "
        "remeasure it\n"
    ) in result.stdout
    truth = _latency_ms(NEW["new-x"], ALL[::25])
    assert np.median(np.abs(_table(store, "new-x")[:, 0] - truth) / truth) < 0.02
