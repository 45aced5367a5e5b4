"""Latency predictor contract, training/serving predictors over the store, few-shot transfer, drift checks, CLI,
and loading a predictor saved by an earlier version (committed fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import MeasurementIn, Store
from predictors import (
    LatencyPredictor,
    check_drift,
    load_model,
    predict_table,
    train_accuracy,
    train_latency,
)
from profilers import DeviceSpec, backend_for, build_lut, measure_subnets
from supernet import get_space

FIXTURES = Path(__file__).parent / "fixtures"
MBV3_SMALL = {"r": [160], "w": [1.0]}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(str(tmp_path / "store.db")) as opened:
        yield opened


def fake_device(store: Store, name: str, **params: float) -> DeviceSpec:
    spec = DeviceSpec(name, "fake", "fake", params)
    store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe(), replace=True)
    return spec


def mbv3_configs(n: int, seed: int) -> list:
    space = get_space("mbv3")
    rng = np.random.default_rng(seed)
    return [space.validate({**space.sample(rng).values, "r": 160, "w": 1.0}) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------- estimator
def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(1, 10, size=(n, 5))
    lut = X[:, 0]
    y = lut * (1.3 + 0.05 * X[:, 1]) * np.exp(rng.normal(0, 0.01, n))  # LUT-sum off by a feature-dependent factor
    return X, y


def test_latency_predictor_contract() -> None:
    X, y = synthetic(200)
    model = LatencyPredictor(n_members=3, n_estimators=100)
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert model.fit(X[:150], y[:150]) is model
    mean, std = model.predict(X[150:], return_std=True)
    assert mean.shape == std.shape == (50,) and np.all(std > 0)
    ape = np.abs(mean - y[150:]) / y[150:]
    lut_ape = np.abs(X[150:, 0] - y[150:]) / y[150:]
    assert ape.mean() < 0.05 < lut_ape.mean()  # the learned correction removes the LUT-sum's bias
    assert model.mode_ == "learned" and model.n_features_in_ == 5 and model.calibration_ > 0
    coverage = np.mean(np.abs(mean - y[150:]) <= std)  # calibrated on out-of-fold residuals: about 68 %
    assert 0.4 < coverage < 0.95


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((30, 3)), np.full(30, np.nan), "y: expected positive finite costs"),
        (np.ones((30, 3)), -np.ones(30), "y: expected positive finite costs, got -1.0"),
        (np.ones((30, 3)), np.ones(29), "y: expected 30 values"),
        (np.ones(30), np.ones(30), "X: expected a 2-D array"),
        (np.full((30, 3), np.inf), np.ones(30), "X: expected finite values"),
        (-np.ones((30, 3)), np.ones(30), r"X\[:, 0\] \(LUT-sum\): expected positive finite values"),
    ],
)
def test_latency_predictor_bad_input(X: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        LatencyPredictor().fit(X, y)


def test_few_rows_fall_back_to_scaled_lut_sum() -> None:
    X, y = synthetic(8)
    model = LatencyPredictor().fit(X, y)
    assert model.mode_ == "lut-scale"
    ratio = np.median(np.log(y / X[:, 0]))
    np.testing.assert_allclose(model.predict(X), X[:, 0] * np.exp(ratio))
    assert model.residual_std_ > 0  # the stated error (leave-one-out)
    with pytest.raises(InvalidValueError, match="at least min_rows=20 without a LUT"):
        LatencyPredictor(lut_column=None).fit(X, y)


def test_latency_predictor_persistence() -> None:
    X, y = synthetic(120)
    model = LatencyPredictor(n_members=2, n_estimators=50).fit(X, y)
    again = LatencyPredictor.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_array_equal(again.predict(X, return_std=True)[1], model.predict(X, return_std=True)[1])
    blob = model.to_bytes()
    assert b"pickle" not in blob and blob.startswith(b'{"format":"hwpareto-predictor"')
    for bad in (
        b"\x80\x04\x95 pickle bytes",
        b'{"format":"other"}',
        blob.replace(b'"version":1', b'"version":9'),
        blob.replace(b'"xgboost_ubj":"', b'"xgboost_ubj":"!!'),
    ):
        with pytest.raises(HwparetoError):
            LatencyPredictor.from_bytes(bad)


def test_predictor_saved_by_an_earlier_version_loads() -> None:
    """``tests/fixtures/latency_predictor_v1.json`` was written by hwpareto 0.1.0 (see make_fixtures.py); this
    and every later version must load it and reproduce its recorded predictions."""
    doc = json.loads((FIXTURES / "latency_predictor_v1.json").read_text())
    model = LatencyPredictor.from_bytes(json.dumps(doc["predictor"]).encode())
    mean, std = model.predict(np.asarray(doc["X"]), return_std=True)
    np.testing.assert_allclose(mean, doc["mean"], rtol=1e-6)
    np.testing.assert_allclose(std, doc["std"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- service
@pytest.mark.slow
def test_train_latency_with_lut_beats_lut_sum(store: Store) -> None:
    spec = fake_device(store, "edge", gmacs_per_s=4.0, fusion_discount=0.8, subnet_overhead_ms=1.5)
    space = get_space("mbv3")
    build_lut(store, spec, space, restrict=MBV3_SMALL, workers=1)
    measure_subnets(store, spec, space, mbv3_configs(60, seed=0))
    report = train_latency(store, "edge", space)
    v = report.validation
    assert report.name == "latency_ms:mbv3:edge" and report.n_train == 60
    assert v["mape_pct"] < v["lut_sum_mape_pct"]  # the correction beats raw LUT-sums on held-out SubNets
    stored = store.predictors.list("mbv3")[0]
    assert stored.device == "edge" and stored.meta["features"] == "lut_sum + space"
    assert stored.meta["versions"]["xgboost"] and len(stored.meta["train_keys"]) == 60
    fresh = mbv3_configs(5, seed=9)
    table = predict_table(store, space, fresh, device="edge")
    truth = [backend_for(spec).measure_subnet(space, c).latency_ms for c in fresh]
    assert np.all(np.abs(table["latency_ms:mbv3:edge"] - truth) / truth < 0.25)
    assert np.all(table["latency_ms:mbv3:edge_std"] > 0)


@pytest.mark.slow
def test_train_without_lut_on_imported_measurements(store: Store) -> None:
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    configs = [space.from_index(int(i)) for i in rng.choice(15625, 100, replace=False)]
    rows = [MeasurementIn(c, "device", "phone", "latency_ms", 2.0 + space.macs(c) / 1e7) for c in configs]
    store.measurements.add(rows, auto_devices=True)
    report = train_latency(store, "phone", space)
    assert store.predictors.list()[0].meta["features"] == "space"
    assert report.validation["mape_pct"] < 5 and report.validation["n"] == 20
    assert "lut_sum_mape_pct" not in report.validation


def test_train_errors(store: Store) -> None:
    space = get_space("nb201")
    with pytest.raises(InvalidValueError, match="device: expected"):
        train_latency(store, "nope", space)
    fake_device(store, "edge")
    with pytest.raises(
        InvalidValueError,
        match=r"measured latency_ms of nb201 SubNets on edge: expected at least 25 "
        r"without a LUT covering them \(hwpareto measure --device edge",
    ):
        train_latency(store, "edge", space)
    with pytest.raises(InvalidValueError, match="--dataset"):
        train_accuracy(store, space, metric="test_acc_pct")
    assert store.predictors.list() == []  # nothing stored half-way


@pytest.mark.slow
def test_few_shot_transfer_through_the_store(store: Store) -> None:
    space = get_space("nb201")
    rng = np.random.default_rng(1)
    configs = [space.from_index(int(i)) for i in rng.choice(15625, 150, replace=False)]
    for name, speed, per_element in (("gpu-a", 40.0, 0.05), ("cpu-b", 2.0, 1.0), ("npu-c", 10.0, 3.0)):
        measure_subnets(store, fake_device(store, name, gmacs_per_s=speed, ns_per_element=per_element), space, configs)
    new = fake_device(store, "new-board", gmacs_per_s=6.0, ns_per_element=1.5)
    measure_subnets(store, new, space, configs)
    report = train_latency(store, "new-board", space, few_shot=10)
    assert report.name == "latency_ms:nb201:new-board:fewshot10" and report.n_train == 10
    assert report.validation["spearman"] > 0.95 and report.validation["n"] == 140
    model = load_model(store, report.name)
    assert model.known == ("cpu-b", "gpu-a", "npu-c")
    # 150 of 15,625 cells measured: their own predictors (trained, and said so) fill in the rest
    assert report.known is not None and report.known.predicted == model.known
    unseen = [space.from_index(i) for i in (3, 30, 300)]
    mean, std = model.predict(unseen)
    truth = np.array([backend_for(new).measure_subnet(space, c).latency_ms for c in unseen])
    assert np.all(np.abs(mean - truth) / truth < 0.2) and np.all(std >= 0)
    with pytest.raises(InvalidValueError, match="--few-shot: expected at least 3"):
        train_latency(store, "new-board", space, few_shot=2)


@pytest.mark.slow
def test_train_accuracy_and_uncertainty(store: Store) -> None:
    space = get_space("nb201")
    rng = np.random.default_rng(2)
    configs = [space.from_index(int(i)) for i in rng.choice(15625, 80, replace=False)]
    acc = [60 + 5 * np.log(space.params(c)) / np.log(10) + rng.normal(0, 0.5) for c in configs]
    store.measurements.add(
        [MeasurementIn(c, "dataset", "toyset", "test_acc_pct", a) for c, a in zip(configs, acc, strict=True)]
    )
    report = train_accuracy(store, space, metric="test_acc_pct")
    assert report.name == "test_acc_pct:nb201:toyset" and report.validation["kendall_tau"] > 0.5
    mean, std = load_model(store, report.name).predict([space.largest(), space.smallest()])
    assert mean[0] > mean[1] and np.all(std > 0)


@pytest.mark.slow
def test_drift_check_flags_a_changed_device(store: Store) -> None:
    space = get_space("mbv3")
    spec = fake_device(store, "edge", gmacs_per_s=4.0)
    build_lut(store, spec, space, restrict=MBV3_SMALL, workers=1)
    measure_subnets(store, spec, space, mbv3_configs(40, seed=0))
    name = train_latency(store, "edge", space).name
    fresh = mbv3_configs(8, seed=5)
    same = np.array([backend_for(spec).measure_subnet(space, c).latency_ms for c in fresh])
    assert check_drift(store, name, fresh, same)["drift"] is False
    slower = backend_for(DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 1.0}))  # e.g. thermal throttling
    result = check_drift(store, name, fresh, np.array([slower.measure_subnet(space, c).latency_ms for c in fresh]))
    assert result["drift"] is True and result["mape_pct"] > result["recorded_mape_pct"]
    assert [c["drift"] for c in store.predictors.load(name).meta["checks"]] == [False, True]


def test_corrupt_stored_model_is_refused(store: Store) -> None:
    store.predictors.save("bad", kind="latency", space="nb201", metric="latency_ms", blob=b"\x80\x04pickle", meta={})
    with pytest.raises(HwparetoError, match="not an hwpareto predictor document"):
        load_model(store, "bad")


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_predictor_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    url = str(tmp_path / "cli.db")

    def run(*args: object, ok: bool = True) -> str:
        result = runner.invoke(app, [str(a) for a in args] + ["--store", url])
        assert (result.exit_code == 0) == ok, result.output + result.stderr
        return result.stdout if ok else result.stderr

    with Store.open(url) as store:
        space = get_space("mbv3")
        spec = fake_device(store, "edge", gmacs_per_s=4.0)
        build_lut(store, spec, space, workers=1)  # full LUT: check samples SubNets anywhere in the space
        measure_subnets(store, spec, space, mbv3_configs(40, seed=0))
    out = json.loads(run("train", "latency", "--device", "edge", "--space", "mbv3", "--json"))
    assert out["name"] == "latency_ms:mbv3:edge" and out["validation"]["n"] == 8
    listed = run("predictors")
    assert "latency_ms:mbv3:edge" in listed and "held-out" in listed
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(mbv3_configs(1, seed=3)[0].values))
    assert "latency_ms:mbv3:edge = " in run("predict", "--space", "mbv3", cfg)
    configs = mbv3_configs(4, seed=4)
    table = tmp_path / "in.csv"
    records = [space.to_record(c) for c in configs]
    table.write_text("ks,e,d,r,w\n" + "".join(f"{r['ks']},{r['e']},{r['d']},{r['r']},{r['w']}\n" for r in records))
    run("predict", "--space", "mbv3", "--device", "edge", "--in", table, "--out", tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == 5 and "latency_ms:mbv3:edge_std" in lines[0]
    checked = json.loads(run("check", "--device", "edge", "--space", "mbv3", "-n", "4", "--json"))
    assert checked["n"] == 4 and checked["drift"] in (True, False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(configs[0].values) + "\n" + json.dumps({**configs[0].values, "r": 999}) + "\n")
    assert "row 2: mbv3.r: expected one of 128" in run("predict", "--space", "mbv3", "--in", bad, ok=False)
    assert "row 1: gpt config: expected values for embed_dim" in run(
        "predict", "--space", "gpt", "--in", bad, ok=False
    )  # configs of the wrong space
