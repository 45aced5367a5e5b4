"""Accuracy predictors: SpaceFeatures (encoding, layer-model and NB201 path features) and AccuracyPredictor (fit /
predict contract, calibrated std, pickle-free persistence)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from hwpareto.errors import HwparetoError, InvalidValueError
from predictors._accuracy import AccuracyPredictor
from predictors._features import SpaceFeatures
from predictors._portable import dumps
from supernet import DeclarativeSpace, Dimension, SearchSpace, SubNetConfig, get_space
from supernet.nb201 import NB201Space
from supernet.nb201._cell import EDGE_NAMES, PATHS, live_edges

FAST: dict[str, Any] = {"n_models": 3, "n_estimators": 60, "learning_rate": 0.1, "cv": 3}
"""Small settings for contract tests (the defaults are for quality)."""


def _row(space: SearchSpace, config: SubNetConfig, canonical: bool = True) -> dict[str, float]:
    """The named features of one config."""
    feats = SpaceFeatures(space, canonical=canonical).fit()
    return dict(zip(feats.get_feature_names_out(), feats.transform([config])[0], strict=True))


def _nb201_space() -> NB201Space:
    space = get_space("nb201")
    assert isinstance(space, NB201Space)
    return space


def _nb201(arch_str: str) -> dict[str, float]:
    space = _nb201_space()
    return _row(space, space.from_arch_str(arch_str))


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 6))
    y = 10 * np.sin(3 * X[:, 0]) + 5 * X[:, 1] ** 2 + 3 * X[:, 2] * X[:, 3] + rng.normal(0, 0.5, n)
    return X, y


@pytest.fixture(scope="module")
def fitted() -> tuple[AccuracyPredictor, np.ndarray, np.ndarray]:
    X, y = _synthetic(80, 0)
    return AccuracyPredictor(**FAST).fit(X, y), X, y


# ---------------------------------------------------------------------------------------------------- features
@pytest.mark.parametrize("name", ["mbv3", "gpt", "nb201"])
def test_feature_shapes_and_names(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(20)]
    feats = SpaceFeatures(space)
    X = feats.fit_transform(configs)
    names = list(feats.get_feature_names_out())
    assert X.shape == (20, len(names)) == (20, feats.n_features_out_)
    assert X.dtype == np.float64 and np.isfinite(X).all()
    assert len(set(names)) == len(names) and all(isinstance(n, str) for n in names)
    assert names[: len(space.encoding_names())] == space.encoding_names()
    assert {"log_params", "log_macs", "n_layers", "n_conv2d" if name != "gpt" else "n_attention"} <= set(names)
    # value dicts give the same rows as configs, and transforming twice is deterministic
    np.testing.assert_array_equal(feats.transform([c.values for c in configs]), X)
    np.testing.assert_array_equal(SpaceFeatures(space).fit().transform(configs), X)
    # log params/MACs of the first config match the space's cost model (nb201: of the canonical cell)
    first = configs[0]
    if name == "nb201":  # dead edges read 'none'
        ops = np.array([[first[e] for e in EDGE_NAMES]], dtype=object)
        first = space.validate(dict(zip(EDGE_NAMES, np.where(live_edges(ops), ops, "none")[0], strict=True)))
    assert X[0, names.index("log_params")] == pytest.approx(np.log1p(space.params(first)))
    assert X[0, names.index("log_macs")] == pytest.approx(np.log1p(space.macs(first)))


def test_space_specific_features_mbv3_and_gpt() -> None:
    mbv3 = get_space("mbv3")
    row = _row(mbv3, mbv3.smallest())
    assert row["depth"] == 5 * 2 and row["mean_ks"] == 3 and row["mean_e"] == 3
    gpt = get_space("gpt")
    row = _row(gpt, gpt.largest())
    assert (row["kept_layers"], row["total_heads"], row["total_ffn"]) == (6, 6 * 8, 6 * 1024)
    assert row["n_attention"] == 6


def test_declarative_space_has_encoding_only() -> None:
    toy = DeclarativeSpace("toy-acc", [Dimension("width", choices=(8, 16)), Dimension("act", choices=("a", "b"))])
    feats = SpaceFeatures(toy).fit()
    assert list(feats.get_feature_names_out()) == ["width", "act=a", "act=b"]
    np.testing.assert_array_equal(feats.transform([{"width": 16, "act": "b"}]), [[16.0, 0.0, 1.0]])


def test_nb201_paths() -> None:
    assert [edges for _, edges in PATHS] == [
        ("edge3",),
        ("edge0", "edge4"),
        ("edge1", "edge5"),
        ("edge0", "edge2", "edge5"),
    ]


@pytest.mark.parametrize(
    "arch",
    [
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        # convs on edges 0 and 5, but every route to the output crosses a 'none'
        "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
        "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",
    ],
)
def test_nb201_disconnected_cells(arch: str) -> None:
    row = _nb201(arch)
    assert row["disconnected"] == 1 and row["n_live_paths"] == 0
    assert all(row[f"alive_{p}"] == 0 and row[f"convs_{p}"] == 0 for p in ("0-3", "0-1-3", "0-2-3", "0-1-2-3"))
    assert row["max_conv_depth"] == row["min_conv_depth"] == row["max_path_len"] == row["max_3x3_depth"] == 0
    # canonical form: every edge 'none', so all disconnected cells get the same features
    assert row == _nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_nb201_single_path_and_dead_edges() -> None:
    # only 0->3 is alive (edge3 conv 3x3); the skip on edge0 feeds node 1, which reaches the output through 'none'
    row = _nb201("|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert [row[f"alive_{p}"] for p in ("0-3", "0-1-3", "0-2-3", "0-1-2-3")] == [1, 0, 0, 0]
    assert row["disconnected"] == 0 and row["n_live_paths"] == 1
    assert (row["live_skip_connect"], row["live_nor_conv_3x3"], row["live_nor_conv_1x1"]) == (0, 1, 0)
    assert row["edge0=none"] == 1 and row["edge0=skip_connect"] == 0  # canonical: the dead edge reads 'none'
    assert (row["convs_0-3"], row["max_conv_depth"], row["min_conv_depth"], row["max_path_len"]) == (1, 1, 1, 1)
    assert row == _nb201("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")


def test_nb201_mixed_cell_by_hand() -> None:
    # edge0 conv1x1, edge1 pool, edge2 skip, edge3 skip, edge4 none, edge5 conv3x3:
    # 0-3 alive (skip), 0-1-3 dead (edge4), 0-2-3 alive (pool, conv3), 0-1-2-3 alive (conv1, skip, conv3)
    row = _nb201("|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    assert [row[f"alive_{p}"] for p in ("0-3", "0-1-3", "0-2-3", "0-1-2-3")] == [1, 0, 1, 1]
    assert [row[f"convs_{p}"] for p in ("0-3", "0-1-3", "0-2-3", "0-1-2-3")] == [0, 0, 1, 2]
    assert row["n_live_paths"] == 3 and row["disconnected"] == 0
    live = [row[f"live_{op}"] for op in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")]
    assert live == [2, 1, 1, 1]
    assert (row["max_conv_depth"], row["min_conv_depth"], row["max_3x3_depth"], row["max_path_len"]) == (2, 0, 2, 3)


def test_nb201_all_conv3x3() -> None:
    row = _nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert row["n_live_paths"] == 4 and row["live_nor_conv_3x3"] == 6
    assert [row[f"convs_{p}"] for p in ("0-3", "0-1-3", "0-2-3", "0-1-2-3")] == [1, 2, 2, 3]
    assert (row["max_conv_depth"], row["min_conv_depth"], row["max_3x3_depth"], row["max_path_len"]) == (3, 1, 3, 3)


def test_nb201_canonical_off_keeps_raw_encoding() -> None:
    space = _nb201_space()
    config = space.from_arch_str("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    row = _row(space, config, canonical=False)
    assert row["edge0=nor_conv_3x3"] == 1 and row["live_nor_conv_3x3"] == 0
    canonical = _nb201("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert canonical["log_params"] < row["log_params"]  # the dead conv's weights are not counted


def test_features_bad_inputs() -> None:
    space = get_space("nb201")
    with pytest.raises(NotFittedError):
        SpaceFeatures(space).transform([space.smallest()])
    with pytest.raises(InvalidValueError, match=r"SpaceFeatures\.space"):
        SpaceFeatures("nb201").fit()  # type: ignore[arg-type]
    feats = SpaceFeatures(space).fit()
    with pytest.raises(InvalidValueError, match="a sequence of SubNetConfig"):
        feats.transform(space.smallest())  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="edge2"):
        feats.transform([{**space.smallest().values, "edge2": "conv_5x5"}])
    with pytest.raises(InvalidValueError, match=r"config\.space"):
        feats.transform([get_space("gpt").smallest()])
    assert isinstance(feats.space, SearchSpace) and feats.transform([]).shape == (0, feats.n_features_out_)


# ---------------------------------------------------------------------------------------------------- predictor
def test_fit_predict_contract(fitted: tuple[AccuracyPredictor, np.ndarray, np.ndarray]) -> None:
    model, X, y = fitted
    assert model.n_features_in_ == X.shape[1]
    mean = model.predict(X)
    assert isinstance(mean, np.ndarray) and mean.shape == (len(X),)
    mean2, std = model.predict(X[:7], return_std=True)
    np.testing.assert_allclose(mean2, mean[:7], rtol=1e-10)  # BLAS blocking may differ with the batch size
    assert std.shape == (7,) and np.all(std > 0) and np.isfinite(std).all()
    assert 0 < model.calibration_factor_ < 100 and -1 <= model.cv_kendall_tau_ <= 1
    assert model.score(X, y) > 0.5  # RegressorMixin R² on the training data
    # same random_state, same predictions; clone copies params only
    again = AccuracyPredictor(**FAST).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), mean)
    assert clone(model).get_params() == model.get_params() and not hasattr(clone(model), "ensemble_")


def test_fit_returns_self_and_accepts_column_vector() -> None:
    X, y = _synthetic(30, 1)
    model = AccuracyPredictor(**FAST)
    assert model.fit(X, y[:, None]) is model


@pytest.mark.parametrize("gp_weight", [0.0, 1.0])
def test_single_component_models(gp_weight: float) -> None:
    X, y = _synthetic(40, 2)
    model = AccuracyPredictor(**FAST, gp_weight=gp_weight).fit(X, y)
    std = model.predict(X, return_std=True)[1]
    assert np.all(std > 0)
    restored = AccuracyPredictor.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(restored.predict(X, return_std=True)[1], std)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_loaded_boosters_predict_on_n_jobs_threads(n_jobs: int) -> None:
    """A saved booster keeps no thread count: loaded, it took every core (on a busy machine each small prediction
    was many times slower); it predicts on the estimator's ``n_jobs``, as trained, and predicts the same."""
    X, y = _synthetic(40, 3)
    model = AccuracyPredictor(**FAST, n_jobs=n_jobs).fit(X, y)
    restored = AccuracyPredictor.from_bytes(model.to_bytes())
    for booster in restored.ensemble_.boosters:
        assert json.loads(booster.save_config())["learner"]["generic_param"]["nthread"] == str(n_jobs)
    for a, b in zip(model.predict(X, return_std=True), restored.predict(X, return_std=True), strict=True):
        np.testing.assert_array_equal(a, b)


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        AccuracyPredictor().predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        AccuracyPredictor().to_bytes()


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros(20), np.arange(20.0), r"X shape: expected 2 dimensions \(n_samples, n_features\), got \(20,\)"),
        (np.zeros((20, 3)), np.arange(19.0), r"y length: expected 20 \(one value per row of X\), got 19"),
        (np.zeros((20, 3)), np.r_[np.arange(19.0), np.nan], r"y\[19\]: expected a finite number, got nan"),
        (np.full((20, 3), np.inf), np.arange(20.0), r"X\[0, 0\]: expected a finite number, got inf"),
        (np.zeros((5, 3)), np.arange(5.0), r"X rows: expected at least 10 .*, got 5"),
        (np.zeros((20, 3)), np.ones(20), r"y: expected at least two distinct values, got \[1.0\]"),
        ([["a", "b"]] * 20, np.arange(20.0), r"X: expected a 2-D array of numbers"),
    ],
)
def test_bad_training_data(X: object, y: object, match: str) -> None:
    with pytest.raises(InvalidValueError, match=match):
        AccuracyPredictor(**FAST).fit(X, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_models": 0}, r"AccuracyPredictor.n_models: expected an integer in \[1, 1000\], got 0"),
        ({"gp_weight": 1.5}, r"AccuracyPredictor.gp_weight: expected a number in \[0, 1\], got 1.5"),
        ({"learning_rate": 0}, r"AccuracyPredictor.learning_rate: expected a number in \(0, 1\], got 0"),
        ({"cv": 1}, r"AccuracyPredictor.cv"),
        ({"random_state": None}, r"AccuracyPredictor.random_state"),
        ({"gp_weight": 0.0, "n_models": 1}, r"AccuracyPredictor.n_models: expected at least 2 when gp_weight is 0"),
    ],
)
def test_bad_params(params: dict[str, object], match: str) -> None:
    X, y = _synthetic(20, 3)
    with pytest.raises(InvalidValueError, match=match):
        AccuracyPredictor(**{**FAST, **params}).fit(X, y)  # type: ignore[arg-type]


def test_predict_wrong_width(fitted: tuple[AccuracyPredictor, np.ndarray, np.ndarray]) -> None:
    model, X, _ = fitted
    with pytest.raises(InvalidValueError, match=r"X features: expected 6 \(as in fit\), got 5"):
        model.predict(X[:, :5])


# ---------------------------------------------------------------------------------------------------- persistence
def test_round_trip_identical(fitted: tuple[AccuracyPredictor, np.ndarray, np.ndarray]) -> None:
    model, X, _ = fitted
    blob = model.to_bytes()
    assert b"pickle" not in blob and json.loads(blob)["class"] == "AccuracyPredictor"
    restored = AccuracyPredictor.from_bytes(blob)
    assert restored.get_params() == model.get_params()
    assert restored.calibration_factor_ == model.calibration_factor_
    X_new = np.random.default_rng(9).uniform(-0.5, 1.5, size=(50, X.shape[1]))  # extrapolation included
    for a, b in zip(model.predict(X_new, return_std=True), restored.predict(X_new, return_std=True), strict=True):
        np.testing.assert_array_equal(a, b)
    assert restored.to_bytes() == blob


def _tampered(blob: bytes, edit: object) -> bytes:
    doc = json.loads(blob)
    edit(doc)  # type: ignore[operator]
    return json.dumps(doc).encode()


def test_corrupt_and_foreign_blobs(fitted: tuple[AccuracyPredictor, np.ndarray, np.ndarray]) -> None:
    model, _, _ = fitted
    blob = model.to_bytes()

    def booster(doc: dict) -> None:
        doc["state"]["ensemble"]["boosters"][0] = {"xgboost_ubj": base64.b64encode(b"not a model").decode()}

    def alpha(doc: dict) -> None:
        doc["state"]["ensemble"]["gp"]["alpha"][0] += 1.0

    def params(doc: dict) -> None:
        doc["params"]["n_models"] = -1

    def missing(doc: dict) -> None:
        del doc["state"]["ensemble"]["target"]

    def unknown_param(doc: dict) -> None:
        doc["params"]["colour"] = "red"

    bad = [b"\x80\x04garbage", blob[: len(blob) // 2], b"{}", dumps("LatencyPredictor", {}, {})]
    bad += [_tampered(blob, f) for f in (booster, alpha, params, missing, unknown_param)]
    for item in bad:
        with pytest.raises(HwparetoError):
            AccuracyPredictor.from_bytes(item)
    with pytest.raises(HwparetoError, match="blob"):
        AccuracyPredictor.from_bytes("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- calibration
def test_calibration_on_held_out_synthetic() -> None:
    X, y = _synthetic(1200, 4)
    model = AccuracyPredictor(n_models=3, n_estimators=100, learning_rate=0.1).fit(X[:200], y[:200])
    mean, std = model.predict(X[200:], return_std=True)
    coverage = float(np.mean(np.abs(y[200:] - mean) <= std))
    assert 0.5 <= coverage <= 0.85, coverage
    assert kendalltau(mean, y[200:]).statistic > 0.7


def test_nb201_subset_ranking_and_calibration(shared_data: Path) -> None:
    table = pd.read_csv(shared_data / "nb201_accuracy_latency.csv", usecols=["arch_str", "cifar10_test_acc"])
    space = _nb201_space()
    order = np.random.default_rng(0).permutation(len(table))
    train, test = order[:150], order[150:2150]
    X = SpaceFeatures(space).fit_transform([space.from_arch_str(a) for a in table["arch_str"].iloc[order[:2150]]])
    y = table["cifar10_test_acc"].to_numpy()
    model = AccuracyPredictor(n_models=3, n_estimators=150, learning_rate=0.1).fit(X[:150], y[train])
    mean, std = model.predict(X[150:], return_std=True)
    assert kendalltau(mean, y[test]).statistic > 0.65
    coverage = float(np.mean(np.abs(y[test] - mean) <= std))
    assert 0.5 <= coverage <= 0.85, coverage
