"""Few-shot latency transfer (FewShotLatency) and the choice of reference SubNets (reference_set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError

from hwpareto.errors import HwparetoError, InvalidValueError
from predictors._fewshot import FewShotLatency, reference_set
from predictors._portable import dumps
from supernet import DeclarativeSpace, Dimension, get_space
from supernet.nb201._space import EDGES, NB201Space


def latency_table(n: int = 80, devices: int = 4, seed: int = 0) -> np.ndarray:
    """Additive synthetic latencies (ms): per-SubNet op counts times per-device op costs, plus an overhead."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(n, 5))
    costs = rng.uniform(0.1, 2.0, size=(5, devices))
    return counts @ costs + rng.uniform(0.5, 2.0, size=devices)


def test_sklearn_contract() -> None:
    model = FewShotLatency()
    assert model.get_params() == {"scale": "auto", "n_devices": None, "n_costs": 0, "robust": True}
    assert is_regressor(model)
    assert clone(model).get_params() == model.get_params()
    x = latency_table()
    y = x @ [0.5, 0.2, 0.0, 0.3] + 0.1
    assert model.fit(x[:10], y[:10]) is model
    assert model.n_features_in_ == 4 and not hasattr(model, "feature_names_in_")
    assert model.scale_ == "linear" and set(model.loo_log_rmse_) == {"log", "linear", "blend"}
    assert model.coef_.shape == (1, 4) and model.intercept_.shape == (1,) and np.all(model.coef_ >= 0)
    assert model.n_devices_ == 4 and model.feature_coef_.shape == (0,) and model.sigma_ >= 0
    pred = model.predict(x)
    assert pred.shape == (80,) and np.all(pred > 0)
    assert model.score(x, y) > 0.99


def test_exact_log_combination_is_recovered() -> None:
    x = latency_table()
    y = 1.7 * x[:, 0] ** 0.6 * x[:, 2] ** 0.4
    for scale in ("auto", "log"):
        model = FewShotLatency(scale=scale).fit(x[:10], y[:10])
        assert model.scale_ == "log"
        np.testing.assert_allclose(model.coef_, [[0.6, 0, 0.4, 0]], atol=1e-9)
        np.testing.assert_allclose(model.predict(x), y, rtol=1e-9)


def test_exact_linear_combination_is_recovered() -> None:
    x = latency_table()
    y = 0.3 + 0.5 * x[:, 1] + 0.25 * x[:, 3]
    model = FewShotLatency().fit(x[:10], y[:10])
    assert model.scale_ == "linear"
    np.testing.assert_allclose(model.coef_, [[0, 0.5, 0, 0.25]], atol=1e-9)
    np.testing.assert_allclose(model.intercept_, [0.3], atol=1e-9)
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-9)


@pytest.mark.parametrize("scale", ["auto", "log", "linear", "blend"])
def test_return_std(scale: str) -> None:
    x = latency_table()
    y = (x @ [0.4, 0.3, 0.2, 0.1]) * np.random.default_rng(1).lognormal(0, 0.05, len(x))
    model = FewShotLatency(scale=scale).fit(x[:10], y[:10])
    mean, std = model.predict(x, return_std=True)
    assert mean.shape == std.shape == (80,)
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    np.testing.assert_array_equal(mean, model.predict(x))
    assert np.median(std / mean) < 0.5


def test_not_fitted() -> None:
    model = FewShotLatency()
    with pytest.raises(NotFittedError):
        model.predict(latency_table())
    with pytest.raises(NotFittedError):
        model.to_bytes()


@pytest.mark.parametrize(("k", "devices"), [(5, 2), (5, 20), (10, 9), (20, 2), (20, 20)])
def test_robust_to_few_points_and_many_devices(k: int, devices: int) -> None:
    x = latency_table(n=300, devices=devices, seed=k + devices)
    rng = np.random.default_rng(devices)
    y = (x @ rng.dirichlet(np.ones(devices)) + 0.5) * rng.lognormal(0, 0.03, len(x))
    mean, std = FewShotLatency().fit(x[:k], y[:k]).predict(x[k:], return_std=True)
    assert np.all(np.isfinite(mean) & (mean > 0) & np.isfinite(std) & (std > 0))
    assert spearmanr(mean, y[k:]).statistic > 0.9
    assert np.median(np.abs(mean / y[k:] - 1)) < 0.1


def test_dataframe_columns_are_fixed_at_fit() -> None:
    devices = ["gpu_1", "gpu_32", "cpu", "phone"]
    frame = pd.DataFrame(latency_table(), columns=devices)
    y = frame["gpu_1"] * 0.9 + frame["cpu"] * 0.1
    model = FewShotLatency().fit(frame.iloc[:10], y.iloc[:10])
    assert list(model.feature_names_in_) == devices
    np.testing.assert_allclose(model.predict(frame), y, rtol=1e-6)
    with pytest.raises(InvalidValueError, match=r"^X columns: expected the known devices of fit, in order"):
        model.predict(frame[devices[::-1]])
    with pytest.raises(InvalidValueError, match=r"^X columns: expected 4 known devices \(as at fit\), got 3$"):
        model.predict(frame.to_numpy()[:, :3])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y),
            r"^X\[1, 1\]: expected a finite latency > 0 \(ms\), got nan$",
        ),
        (
            lambda x, y: (x * np.where(np.arange(x.size).reshape(x.shape) == 0, 0, 1), y),
            r"^X\[0, 0\]: expected a finite latency > 0 \(ms\), got 0.0$",
        ),
        (lambda x, y: (x, np.r_[y[:3], -1.0, y[4:]]), r"^y\[3\]: expected a finite latency > 0 \(ms\), got -1.0$"),
        (lambda x, y: (x, np.r_[np.inf, y[1:]]), r"^y\[0\]: expected a finite latency > 0 \(ms\), got inf$"),
        (lambda x, y: (x, y[:9]), r"^y: expected one latency per row of X \(10\), got 9$"),
        (lambda x, y: (x[:2], y[:2]), r"^X rows: expected at least 3 SubNets measured on the new device, got 2$"),
        (lambda x, y: (x[:, 0], y), r"^X: expected a 2-D array of latencies"),
        (lambda x, y: (x, y[:, None]), r"^y: expected a 1-D array of latencies \(ms\), got \(10, 1\)$"),
        (lambda x, y: (x, ["fast"] * 10), r"^y: expected a 1-D array of latencies \(ms\), got \['fast', 'fast', "),
    ],
)
def test_fit_input_errors(change, message: str) -> None:  # type: ignore[no-untyped-def]
    x = latency_table()[:10]
    x_bad, y_bad = change(x, x[:, 0] * 1.1)
    with pytest.raises(InvalidValueError, match=message):
        FewShotLatency().fit(x_bad, y_bad)


def test_parameter_and_predict_errors() -> None:
    x = latency_table()
    with pytest.raises(
        InvalidValueError,
        match=r"^FewShotLatency.scale: expected one of 'auto', 'log', 'linear', 'blend', "
        r"got 'exp'$",
    ):
        FewShotLatency(scale="exp").fit(x[:10], x[:10, 0])
    model = FewShotLatency().fit(x[:10], x[:10, 0] * 2)
    with pytest.raises(InvalidValueError, match=r"^X\[2, 3\]: expected a finite latency > 0 \(ms\), got -1.0$"):
        model.predict(np.where(np.arange(x.size).reshape(x.shape) == 11, -1.0, x))
    with pytest.raises(InvalidValueError, match=r"^X columns: expected 4 known devices \(as at fit\), got 5$"):
        model.predict(np.hstack([x, x[:, :1]]))


def test_persistence_round_trip() -> None:
    frame = pd.DataFrame(latency_table(), columns=["a", "b", "c", "d"])
    y = (frame["a"] * 0.7 + frame["d"] * 0.5) * np.random.default_rng(2).lognormal(0, 0.05, len(frame))
    for scale in ("log", "linear", "blend"):
        model = FewShotLatency(scale=scale).fit(frame.iloc[:12], y.iloc[:12])
        assert model.scale_ == scale
        blob = model.to_bytes()
        assert b"pickle" not in blob and json.loads(blob)["class"] == "FewShotLatency"
        restored = FewShotLatency.from_bytes(blob)
        assert restored.get_params() == model.get_params()
        assert list(restored.feature_names_in_) == ["a", "b", "c", "d"]
        for got, want in zip(
            restored.predict(frame, return_std=True), model.predict(frame, return_std=True), strict=True
        ):
            np.testing.assert_array_equal(got, want)
        assert restored.to_bytes() == blob


def test_foreign_or_corrupt_bytes() -> None:
    x = latency_table()
    blob = FewShotLatency().fit(x[:10], x[:10, 1]).to_bytes()
    doc = json.loads(blob)

    def edited(**changes: object) -> bytes:
        return json.dumps({**doc, **changes}).encode()

    bad = [
        b"\x80\x04\x95 pickled",
        blob[: len(blob) // 2],
        b'{"format": "something-else"}',
        edited(**{"class": "XGBLatency"}),
        edited(version=99),
        edited(params={"scale": "auto", "alpha": 1.0}),
        edited(state={**doc["state"], "coef_": [1.0, 2.0]}),
        edited(state={**doc["state"], "feature_coef_": "oops"}),
        edited(state={**doc["state"], "n_devices_": 5}),
        edited(state={**doc["state"], "sigma_": -1.0}),
        edited(state={**doc["state"], "scale_": "cubic"}),
        edited(state={k: v for k, v in doc["state"].items() if k != "intercept_"}),
    ]
    for corrupt in bad:
        with pytest.raises(HwparetoError, match=r"^predictor blob: "):
            FewShotLatency.from_bytes(corrupt)


# ---------------------------------------------------------------------- reference_set
def _known_frame(n: int = 120, seed: int = 0) -> tuple[list, pd.DataFrame]:  # type: ignore[type-arg]
    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    configs = list({c.key: c for c in (space.sample(rng) for _ in range(n))}.values())
    latency = latency_table(len(configs), devices=3, seed=seed)
    return configs, pd.DataFrame(latency, index=pd.Index(configs, dtype=object), columns=["d0", "d1", "d2"])


def test_reference_set_from_known_table() -> None:
    space = get_space("nb201")
    configs, frame = _known_frame()
    chosen = reference_set(space, 10, frame)
    assert len(chosen) == 10 and len({c.key for c in chosen}) == 10
    assert chosen == reference_set(space, 10, frame)
    speed = frame.rank().mean(axis=1).to_numpy()
    assert chosen[:2] == [configs[int(np.argmin(speed))], configs[int(np.argmax(speed))]]
    # spread: the chosen rows are farther apart (in quantile space) than random picks of the same size
    quant = frame.rank().to_numpy() / len(frame)
    position = {c.key: i for i, c in enumerate(configs)}

    def min_gap(rows: list[int]) -> float:
        q = quant[rows]
        return float(np.min([np.linalg.norm(q[i] - q[j]) for i in range(len(q)) for j in range(i)]))

    rng = np.random.default_rng(0)
    random_gaps = [min_gap(list(rng.choice(len(configs), 10, replace=False))) for _ in range(20)]
    assert min_gap([position[c.key] for c in chosen]) > max(random_gaps)


def test_reference_set_keys_candidates_and_gaps() -> None:
    space = get_space("nb201")
    configs, frame = _known_frame()
    by_key = frame.set_axis(pd.Index([c.key for c in configs]), axis=0)
    assert reference_set(space, 6, by_key, candidates=configs) == reference_set(space, 6, frame)
    subset = configs[:30]
    assert {c.key for c in reference_set(space, 6, frame, candidates=subset)} <= {c.key for c in subset}
    gaps = frame.copy()
    gaps.iloc[:50, 0] = np.nan
    assert {c.key for c in reference_set(space, 10, gaps)}.isdisjoint(c.key for c in configs[:50])
    with pytest.raises(
        InvalidValueError,
        match=r"^known index: expected SubNetConfig rows, or SubNet keys found in "
        r"candidates, got '[0-9a-f]{16}'$",
    ):
        reference_set(space, 6, by_key)


def test_reference_set_without_table() -> None:
    space = get_space("nb201")
    chosen = reference_set(space, 8, seed=3)
    assert len({c.key for c in chosen}) == 8 and chosen == reference_set(space, 8, seed=3)
    pool = [space.sample(np.random.default_rng(i)) for i in range(200)]
    picked = reference_set(space, 8, candidates=pool)
    macs = sorted(space.macs(c) for c in pool)
    chosen_macs = [space.macs(c) for c in picked]
    assert min(chosen_macs) <= macs[10] and max(chosen_macs) >= macs[-10]  # both ends of the cost range
    flat = DeclarativeSpace("flat", [Dimension(f"x{i}", choices=(1, 2, 3)) for i in range(4)])
    plain = reference_set(flat, 5, seed=1)
    assert len({c.key for c in plain}) == 5 and plain == reference_set(flat, 5, seed=1)


def test_reference_set_errors() -> None:
    space = get_space("nb201")
    configs, frame = _known_frame(n=20)
    for k in (0, -1, 2.5, True):
        with pytest.raises(InvalidValueError, match=r"^k: expected an integer >= 1"):
            reference_set(space, k, frame)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=rf"^k: expected at most {len(configs)} \(the eligible SubNets\)"):
        reference_set(space, len(configs) + 1, frame)
    bad = frame.copy()
    bad.iloc[3, 1] = 0.0
    with pytest.raises(InvalidValueError, match=rf"^known\[{configs[3].key}, d1\]: expected a latency > 0"):
        reference_set(space, 5, bad)
    with pytest.raises(InvalidValueError, match=r"^known: expected a pandas DataFrame"):
        reference_set(space, 5, frame.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"^candidates: expected at least one SubNet config"):
        reference_set(space, 5, candidates=[])
    other = get_space("mbv3").sample(np.random.default_rng(0))
    with pytest.raises(InvalidValueError, match=r"^config.space"):
        reference_set(space, 1, candidates=[other])


# ---------------------------------------------------------------------- third-party data
HELP_TRAIN = [
    "1080ti_1",
    "1080ti_32",
    "1080ti_256",
    "silver_4114",
    "silver_4210r",
    "samsung_a50",
    "pixel3",
    "essential_ph_1",
    "samsung_s7",
]
NB201_REFS = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]


@pytest.fixture(scope="module")
def nb201(shared_data: Path) -> pd.DataFrame:
    """NB201 latencies (index arch_index) of the cells whose input reaches the output."""
    frame = pd.read_csv(shared_data / "nb201_accuracy_latency.csv").set_index("arch_index")
    reach = {0: pd.Series(True, index=frame.index)}
    for name, to, frm in EDGES:
        reach[to] = reach.get(to, pd.Series(False, index=frame.index)) | ((frame[name] != "none") & reach[frm])
    return frame[reach[3]]


def test_help_protocol_on_nb201(nb201: pd.DataFrame) -> None:
    rest = nb201.drop(index=NB201_REFS)
    for new in ("titanx_1", "gold_6240"):
        model = FewShotLatency().fit(nb201.loc[NB201_REFS, HELP_TRAIN], nb201.loc[NB201_REFS, new])
        pred, std = model.predict(rest[HELP_TRAIN], return_std=True)
        assert spearmanr(pred, rest[new]).statistic > 0.93  # HELP's published mean: 0.932
        assert np.mean(np.abs(pred / rest[new] - 1)) < 0.10
        assert 0.4 < np.mean(np.abs(pred - rest[new]) <= std) < 0.95


def test_reference_set_on_nb201(nb201: pd.DataFrame) -> None:
    space = NB201Space()
    known = nb201[HELP_TRAIN].set_axis(pd.Index([space.from_index(int(i)) for i in nb201.index], dtype=object))
    chosen = reference_set(space, 10, known)
    refs = [space.index_of(c) for c in chosen]
    assert len(set(refs)) == 10
    model = FewShotLatency().fit(nb201.loc[refs, HELP_TRAIN], nb201.loc[refs, "titanx_32"])
    rest = nb201.drop(index=refs)
    assert spearmanr(model.predict(rest[HELP_TRAIN]), rest["titanx_32"]).statistic > 0.93


def test_fbnet_leave_one_device_out_beats_a_single_device(shared_data: Path) -> None:
    """Mean Spearman over the 13 devices, each new once: the combination beats the known device that best fits
    the same 10 references after linear scaling (0.90 vs 0.86 in benchmarks/results/fewshot.md)."""
    frame = pd.read_csv(shared_data / "fbnet_latency.csv").set_index("arch_id").drop(columns="op_idx_list")
    refs = [3328, 3790, 3313, 890, 3052, 2538, 1640, 2514, 457, 2100]
    rest = frame.drop(index=refs)
    ours, single = [], []
    for new in frame.columns:
        known = [c for c in frame.columns if c != new]
        pred = FewShotLatency().fit(frame.loc[refs, known], frame.loc[refs, new]).predict(rest[known])
        ours.append(spearmanr(pred, rest[new]).statistic)
        fits = {c: np.polyfit(frame.loc[refs, c], frame.loc[refs, new], 1, full=True)[1][0] for c in known}
        single.append(spearmanr(rest[min(fits, key=fits.__getitem__)], rest[new]).statistic)
    assert np.mean(ours) > np.mean(single) + 0.02


# ---------------------------------------------------------------------- op-level correction from SubNet features
def op_level_device(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known devices with additive costs of ops 0-3, SubNet op counts (ops 0-4), and a new device that is a mix of
    the known ones times a cost of op 4 that no known device has (so no mix can explain it)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(n, 5)).astype(float)
    known = counts[:, :4] @ rng.uniform(0.1, 2.0, size=(4, 4)) + rng.uniform(0.5, 2.0, size=4)
    new = (0.6 * known[:, 0] + 0.4 * known[:, 2]) * np.exp(0.12 * counts[:, 4])
    return known, counts, new


@pytest.mark.parametrize("seed", range(5))
def test_op_level_correction_recovers_what_the_mix_cannot(seed: int) -> None:
    known, counts, y = op_level_device(seed=seed)
    mix = FewShotLatency().fit(known[:10], y[:10])
    model = FewShotLatency(n_devices=4).fit(np.hstack([known, counts])[:10], y[:10])
    assert model.n_devices_ == 4 and model.coef_.shape[1:] == (4,) and model.feature_coef_.shape == (5,)
    assert model.loo_log_rmse_["correction"] <= 0.9 * model.loo_log_rmse_[model.scale_]
    assert int(np.argmax(np.abs(model.feature_coef_))) == 4
    pred = model.predict(np.hstack([known, counts])[10:])
    error, mix_error = np.abs(np.log(pred / y[10:])), np.abs(np.log(mix.predict(known[10:]) / y[10:]))
    assert np.sqrt(np.mean(error**2)) < 0.75 * np.sqrt(np.mean(mix_error**2))
    assert spearmanr(pred, y[10:]).statistic > spearmanr(mix.predict(known[10:]), y[10:]).statistic + 0.01


def test_uninformative_features_leave_the_mix_alone() -> None:
    kept = 0
    for seed in range(20):
        x = latency_table(n=40, seed=seed)
        rng = np.random.default_rng(seed)
        y = (x @ [0.5, 0.2, 0.0, 0.3] + 0.1) * rng.lognormal(0, 0.05, len(x))
        features = rng.normal(size=(len(x), 30))
        model = FewShotLatency(n_devices=4).fit(np.hstack([x, features])[:10], y[:10])
        mix = FewShotLatency().fit(x[:10], y[:10])
        if np.any(model.feature_coef_ != 0):
            kept += 1
        else:
            np.testing.assert_array_equal(model.predict(np.hstack([x, features])), mix.predict(x))
    assert kept <= 5  # the 0.9 guard: a spurious correction from 30 noise features is rare


def test_std_covers_about_68_percent_of_noise() -> None:
    coverage = []
    for seed in range(40):
        x = latency_table(n=400, seed=seed)
        rng = np.random.default_rng(seed)
        y = (x @ rng.dirichlet(np.ones(4)) + 0.3) * rng.lognormal(0, 0.1, len(x))
        mean, std = FewShotLatency().fit(x[:10], y[:10]).predict(x[10:], return_std=True)
        coverage.append(np.mean(np.abs(mean - y[10:]) <= std))
    assert 0.58 < np.mean(coverage) < 0.78


@pytest.mark.parametrize("n_devices", [0, 6, -1, 2.5, True, "3"])
def test_n_devices_errors(n_devices: object) -> None:
    known, counts, y = op_level_device()
    x = np.hstack([known, counts[:, :1]])
    with pytest.raises(
        InvalidValueError,
        match=r"^FewShotLatency.n_devices: expected None or an integer from 1 to 5 "
        r"\(the columns of X\), got ",
    ):
        FewShotLatency(n_devices=n_devices).fit(x[:10], y[:10])  # type: ignore[arg-type]


def test_feature_columns_may_have_any_sign_but_must_be_finite() -> None:
    known, counts, y = op_level_device()
    x = np.hstack([known, counts - 3, np.zeros((len(y), 1))])  # negative and constant features are fine
    model = FewShotLatency(n_devices=4).fit(x[:10], y[:10])
    assert model.feature_coef_[5] == 0 and np.all(np.isfinite(model.predict(x)))
    bad = x.copy()
    bad[1, 6] = np.nan
    with pytest.raises(InvalidValueError, match=r"^X\[1, 6\]: expected a finite SubNet feature, got nan$"):
        FewShotLatency(n_devices=4).fit(bad[:10], y[:10])
    with pytest.raises(InvalidValueError, match=r"^X\[1, 6\]: expected a finite SubNet feature, got nan$"):
        model.predict(bad)
    with pytest.raises(InvalidValueError, match=r"^X\[0, 0\]: expected a finite latency > 0 \(ms\), got -1.0$"):
        model.predict(np.where(np.arange(x.size).reshape(x.shape) == 0, -1.0, x))
    with pytest.raises(
        InvalidValueError,
        match=r"^X columns: expected 10 columns: 4 known devices \+ 6 SubNet "
        r"features \(as at fit\), got 9$",
    ):
        model.predict(x[:, :9])


def test_blend_is_the_geometric_mean_of_the_log_and_linear_mixes() -> None:
    x = latency_table()
    y = (x @ [0.4, 0.3, 0.2, 0.1]) * np.random.default_rng(3).lognormal(0, 0.1, len(x))
    log, linear = (FewShotLatency(scale=s).fit(x[:10], y[:10]) for s in ("log", "linear"))
    blend = FewShotLatency(scale="blend").fit(x[:10], y[:10])
    np.testing.assert_allclose(blend.coef_, np.vstack([log.coef_, linear.coef_]))
    np.testing.assert_allclose(blend.predict(x), np.sqrt(log.predict(x) * linear.predict(x)), rtol=1e-12)
    assert blend.loo_log_rmse_["blend"] <= max(blend.loo_log_rmse_["log"], blend.loo_log_rmse_["linear"])
    auto = FewShotLatency().fit(x[:10], y[:10])  # 10 % noise: neither scale fits twice as well as the other
    assert auto.scale_ == "blend" and max(auto.loo_log_rmse_["log"], auto.loo_log_rmse_["linear"]) * 0.5 < min(
        auto.loo_log_rmse_["log"], auto.loo_log_rmse_["linear"]
    )
    np.testing.assert_array_equal(auto.predict(x), blend.predict(x))


def test_a_model_written_before_the_blend_still_loads() -> None:
    """Blobs of one mix with a flat ``coef_`` and a scalar ``intercept_`` (before the blend) load unchanged."""
    x = latency_table()
    model = FewShotLatency(scale="log").fit(x[:10], x[:10] @ [0.2, 0.3, 0.1, 0.4])
    doc = json.loads(model.to_bytes())
    state = {**doc["state"], "coef_": doc["state"]["coef_"][0], "intercept_": doc["state"]["intercept_"][0]}
    restored = FewShotLatency.from_bytes(json.dumps({**doc, "state": state}).encode())
    assert restored.coef_.shape == (1, 4)
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    wrong = {**doc["state"], "scale_": "blend"}  # one row of weights for a two-mix scale
    with pytest.raises(HwparetoError, match=r"^predictor blob: corrupt FewShotLatency state"):
        FewShotLatency.from_bytes(json.dumps({**doc, "state": wrong}).encode())


def test_persistence_round_trip_with_features() -> None:
    known, counts, y = op_level_device()
    frame = pd.DataFrame(
        np.hstack([known, counts]), columns=[*(f"dev{i}" for i in range(4)), *(f"n_op{i}" for i in range(5))]
    )
    model = FewShotLatency(n_devices=4).fit(frame.iloc[:10], y[:10])
    assert np.any(model.feature_coef_ != 0)
    blob = model.to_bytes()
    restored = FewShotLatency.from_bytes(blob)
    assert restored.get_params() == {"scale": "auto", "n_devices": 4, "n_costs": 0, "robust": True}
    assert restored.n_devices_ == 4
    for got, want in zip(restored.predict(frame, return_std=True), model.predict(frame, return_std=True), strict=True):
        np.testing.assert_array_equal(got, want)
    assert restored.to_bytes() == blob
    doc = json.loads(blob)
    corrupt = json.dumps({**doc, "state": {**doc["state"], "feature_coef_": [0.0] * 4}}).encode()
    with pytest.raises(HwparetoError, match=r"^predictor blob: corrupt FewShotLatency state"):
        FewShotLatency.from_bytes(corrupt)


def test_fast_on_a_full_table() -> None:
    import time

    rng = np.random.default_rng(0)
    x = np.hstack([latency_table(n=15_625, devices=12), rng.integers(0, 2, size=(15_625, 60)).astype(float)])
    y = x[:, :12] @ rng.dirichlet(np.ones(12)) * np.exp(0.05 * x[:, 12])
    start = time.perf_counter()
    model = FewShotLatency(n_devices=12).fit(x[:10], y[:10])
    fitted = time.perf_counter()
    model.predict(x, return_std=True)
    assert fitted - start < 1.0 and time.perf_counter() - fitted < 0.5


def test_a_model_of_an_earlier_version_asks_to_be_retrained() -> None:
    """Documents written before the SubNet features (jackknife spread, no ``sigma_``) are refused, saying why."""
    state = {
        "scale_": "log",
        "coef_": [1.0],
        "intercept_": 0.0,
        "loo_coef_": [[1.0]] * 3,
        "loo_intercept_": [0.0] * 3,
        "noise_var_": 0.01,
        "loo_log_rmse_": {"log": 0.1},
        "n_features_in_": 1,
    }
    blob = dumps("FewShotLatency", {"scale": "auto"}, state)
    with pytest.raises(HwparetoError, match=r"written by an earlier hwpareto .* --few-shot K"):
        FewShotLatency.from_bytes(blob)


# ---------------------------------------------------------------------- op-cost model from additive costs
def accelerator(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known devices whose latency is not additive in the SubNets' costs (each op's cost saturates differently),
    the costs (op counts), and a new device that is exactly a sum of per-op costs (an accelerator simulator)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(n, 5)).astype(float)
    saturating = np.sqrt(counts + 1) @ rng.uniform(0.5, 2.0, size=(5, 4))
    known = saturating * np.exp(0.15 * counts[:, :4] - 0.1 * counts[:, 4:])
    new = 0.3 + counts @ [0.2, 1.5, 0.0, 0.7, 3.0]
    return known, counts, new


@pytest.mark.parametrize("seed", range(5))
def test_op_costs_follow_a_device_no_mix_explains(seed: int) -> None:
    known, counts, y = accelerator(seed=seed)
    x = np.hstack([known, counts])
    model = FewShotLatency(n_devices=4, n_costs=5).fit(x[:10], y[:10])
    assert model.cost_weight_ == 1.0 and model.loo_log_rmse_["costs"] < 1e-6
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-6)
    mix = FewShotLatency(n_devices=4).fit(x[:10], y[:10])  # the same columns without costs: no op-cost model
    assert mix.cost_weight_ == 0.0 and "costs" not in mix.loo_log_rmse_
    assert np.max(np.abs(np.log(mix.predict(x[10:]) / y[10:]))) > 0.05  # no mix and correction explain it
    mean, std = model.predict(x, return_std=True)
    assert np.all(std >= 0) and np.all(std <= 1e-3 * mean)  # exact on every point left out: a narrow band


def test_an_exact_mix_keeps_the_op_costs_out() -> None:
    known, counts, _ = accelerator()
    y = 0.7 * known[:, 1] + 0.2 * known[:, 3]
    x = np.hstack([known, counts])
    model = FewShotLatency(n_devices=4, n_costs=5).fit(x[:10], y[:10])
    assert model.cost_weight_ == 0.0 and model.loo_log_rmse_["costs"] > 2 * model.loo_log_rmse_[model.scale_]
    np.testing.assert_array_equal(model.predict(x), FewShotLatency().fit(known[:10], y[:10]).predict(known))


def test_half_and_half_is_the_geometric_mean() -> None:
    known, counts, acc = accelerator(seed=2)
    y = acc**0.3 * (0.5 * known[:, 0] + 0.5 * known[:, 2]) ** 0.7 * np.random.default_rng(1).lognormal(0, 0.1, 300)
    x = np.hstack([known, counts])
    model = FewShotLatency(n_devices=4, n_costs=5).fit(x[:10], y[:10])
    if model.cost_weight_ != 0.5:  # the data decide; this one is built to sit between the two
        pytest.fail(f"cost_weight_ {model.cost_weight_}, LOO {model.loo_log_rmse_}")
    mix = FewShotLatency(n_devices=4).fit(x[:10], y[:10])
    costs = np.maximum(counts @ model.cost_coef_ + model.cost_intercept_, 1e-300)
    np.testing.assert_allclose(model.predict(x), np.sqrt(mix.predict(x) * costs), rtol=1e-10)


@pytest.mark.parametrize("n_costs", [-1, 2.0, True, "1", 6])
def test_n_costs_errors(n_costs: object) -> None:
    known, counts, y = accelerator()
    x = np.hstack([known, counts[:, :2]])
    with pytest.raises(
        InvalidValueError,
        match=r"^FewShotLatency.n_costs: expected an integer from 0 to 2 \(the columns of X after the devices\), got ",
    ):
        FewShotLatency(n_devices=4, n_costs=n_costs).fit(x[:10], y[:10])  # type: ignore[arg-type]


def test_additive_costs_must_not_be_negative() -> None:
    known, counts, y = accelerator()
    x = np.hstack([known, counts])
    x[3, 6] = -1.0
    with pytest.raises(InvalidValueError, match=r"^X\[3, 6\]: expected an additive cost >= 0, got -1.0$"):
        FewShotLatency(n_devices=4, n_costs=5).fit(x[:10], y[:10])
    model = FewShotLatency(n_devices=4, n_costs=2).fit(x[:10], y[:10])  # column 6 is a free feature here
    assert model.feature_coef_.shape == (3,) and model.cost_coef_.shape == (2,)
    with pytest.raises(
        InvalidValueError,
        match=r"^X columns: expected 9 columns: 4 known devices \+ 3 SubNet features \+ 2 additive costs "
        r"\(as at fit\), got 8$",
    ):
        model.predict(x[:, :8])


def test_persistence_round_trip_with_costs_and_older_blobs() -> None:
    known, counts, y = accelerator(seed=3)
    x = np.hstack([known, counts])
    model = FewShotLatency(n_devices=4, n_costs=5).fit(x[:10], y[:10])
    blob = model.to_bytes()
    restored = FewShotLatency.from_bytes(blob)
    assert restored.get_params() == {"scale": "auto", "n_devices": 4, "n_costs": 5, "robust": True}
    for got, want in zip(restored.predict(x, return_std=True), model.predict(x, return_std=True), strict=True):
        np.testing.assert_array_equal(got, want)
    assert restored.to_bytes() == blob
    doc = json.loads(blob)
    bad = (("cost_weight_", 0.25), ("cost_coef_", [-1.0] * 5), ("cost_coef_", [1.0] * 4), ("outliers_", [0.5]))
    for field, value in bad:
        corrupt = json.dumps({**doc, "state": {**doc["state"], field: value}}).encode()
        with pytest.raises(HwparetoError, match=r"^predictor blob: corrupt FewShotLatency state"):
            FewShotLatency.from_bytes(corrupt)
    corrupt = json.dumps({**doc, "params": {**doc["params"], "robust": "yes"}}).encode()
    with pytest.raises(HwparetoError, match=r"^predictor blob: corrupt FewShotLatency state \(.*robust"):
        FewShotLatency.from_bytes(corrupt)
    mix = FewShotLatency(n_devices=4).fit(x[:10], y[:10])  # a blob written before the op-cost model
    old = json.loads(mix.to_bytes())
    for param in ("n_costs", "robust"):
        old["params"].pop(param)
    for field in ("cost_coef_", "cost_intercept_", "cost_weight_", "outliers_"):
        old["state"].pop(field)
    loaded = FewShotLatency.from_bytes(json.dumps(old).encode())
    assert loaded.n_costs == 0 and loaded.cost_weight_ == 0.0 and loaded.outliers_.tolist() == []
    np.testing.assert_array_equal(loaded.predict(x), mix.predict(x))


def test_op_costs_on_nb201_follow_a_simulated_accelerator(tmp_path: Path, shared_data: Path) -> None:
    """NB201 with its 13 measured devices known and a ZigZag-simulated NPU (its LUT-sums over the space's layers)
    as the new device, HELP's 10 references: the op-cost model on the space's additive costs is chosen and ranks
    the cells far better than the mix alone (benchmarks/bench_fewshot.py: 0.941 -> 0.999 Spearman)."""
    from hwpareto.store import Store
    from predictors import SpaceFeatures, additive_costs
    from predictors._service import lut_sums
    from profilers import build_lut, device_spec

    space = NB201Space()
    frame = pd.read_csv(shared_data / "nb201_accuracy_latency.csv").set_index("arch_index")
    devices = [c for c in frame.columns if c[:4] != "edge" and not c.endswith("_acc") and c != "arch_str"]
    rows = frame.index[::25].union(NB201_REFS)  # 635 cells keep the test short
    configs = [space.from_index(int(i)) for i in rows]
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        build_lut(store, device_spec(store, "npu-edgetpu"), space)
        y = lut_sums(store, "npu-edgetpu", space, configs, "latency_ms")
    features = SpaceFeatures(space, canonical=False).fit_transform(configs)
    costs = additive_costs(space, features)
    assert costs.shape == (len(configs), 9) and np.all(costs >= 0)
    x = np.hstack([frame.loc[rows, devices].to_numpy(float), features, costs])
    refs = rows.get_indexer(NB201_REFS)
    rest = np.setdiff1d(np.arange(len(rows)), refs)
    model = FewShotLatency(n_devices=len(devices), n_costs=costs.shape[1]).fit(x[refs], y[refs])
    mix = FewShotLatency(n_devices=len(devices)).fit(x[refs, : -costs.shape[1]], y[refs])
    assert model.cost_weight_ == 1.0
    ours = spearmanr(model.predict(x[rest]), y[rest]).statistic
    theirs = spearmanr(mix.predict(x[rest, : -costs.shape[1]]), y[rest]).statistic
    assert ours > 0.99 and ours > theirs + 0.03


@pytest.mark.parametrize("seed", range(5))
def test_an_outlying_reference_is_set_aside(seed: int) -> None:
    """One of 10 references measured 1.8x too slow (a throttled phone): it is set aside and the fit of the other
    nine is kept (its band no narrower than the 10 points'); without ``robust`` it drags the whole table. Sound
    references (2 % noise) are all kept."""
    rng = np.random.default_rng(seed)
    x = latency_table(n=200, seed=seed)
    y = (x @ [0.3, 0.2, 0.4, 0.1]) * np.exp(rng.normal(0.0, 0.02, len(x)))
    assert FewShotLatency().fit(x[:10], y[:10]).outliers_.tolist() == []
    glitch, bad = y[:10].copy(), 3 + seed
    glitch[bad] *= 1.8
    robust = FewShotLatency().fit(x[:10], glitch)
    assert robust.outliers_.tolist() == [bad]
    nine = FewShotLatency(robust=False).fit(np.delete(x[:10], bad, 0), np.delete(y[:10], bad))
    np.testing.assert_array_equal(robust.predict(x[10:]), nine.predict(x[10:]))
    plain = FewShotLatency(robust=False).fit(x[:10], glitch)
    assert plain.outliers_.tolist() == []
    assert robust.sigma_ == max(plain.sigma_, nine.sigma_)  # never narrower than all 10 points showed

    def median_error(model: FewShotLatency) -> float:
        return float(np.median(np.abs(np.log(model.predict(x[10:]) / y[10:]))))

    assert median_error(robust) < 0.05 < median_error(plain)


def test_at_most_one_reference_in_ten_is_set_aside() -> None:
    x = latency_table(n=40)
    y = x @ [0.3, 0.2, 0.4, 0.1]
    for k, glitches, expected in ((9, [2], 0), (10, [2, 5], 1), (20, [2, 5, 11], 2)):
        t = y[:k].copy()
        t[glitches] *= 2.0
        assert len(FewShotLatency().fit(x[:k], t).outliers_) == expected
    with pytest.raises(InvalidValueError, match=r"^FewShotLatency\.robust: expected True or False, got 'yes'$"):
        FewShotLatency(robust="yes").fit(x[:10], y[:10])  # type: ignore[arg-type]
