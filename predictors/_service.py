"""Predictors over the store: train from stored measurements, save with their held-out error, predict, check drift.

A stored predictor is a portable document (``hwpareto-model``) holding the space, the device or dataset, the
metric, how features are built (space features, plus the device's LUT-sum for cost models when its LUT covers the
training SubNets) and the fitted estimator's own document. Its metadata records the held-out metrics (an 80/20
split before the final fit on all rows), the training-set hash and size, and library versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr
from sklearn.base import clone

from pareto import Store
from predictors._accuracy import AccuracyPredictor
from predictors._features import SpaceFeatures
from predictors._fewshot import FewShotLatency, reference_set
from predictors._latency import LatencyPredictor
from predictors._portable import dumps, loads
from profilers import Lut, MissingLutError
from supernet import HwparetoError, InvalidValueError, SearchSpace, SubNetConfig

__all__ = [
    "Model",
    "TrainReport",
    "check_drift",
    "load_model",
    "metrics",
    "predict_table",
    "train_accuracy",
    "train_latency",
]

MODEL_CLASS = "Model"
MIN_ROWS = 10
HOLDOUT = 0.2
DRIFT_MARGIN = 1.5  # a check flags drift when its MAPE exceeds the recorded one by this factor (plus 2 points)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray | None = None) -> dict[str, float]:
    """Kendall τ-b, Spearman, RMSE, MAPE (%), share within ±10 % (%), and ±1σ coverage (%) when ``y_std``."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ape = np.abs(y_pred - y_true) / np.abs(y_true)
    out = {
        "n": len(y_true),
        "kendall_tau": float(kendalltau(y_pred, y_true).statistic) if len(y_true) > 1 else float("nan"),
        "spearman": float(spearmanr(y_pred, y_true).statistic) if len(y_true) > 1 else float("nan"),
        "rmse": float(np.sqrt(np.mean((y_pred - y_true) ** 2))),
        "mape_pct": float(ape.mean() * 100),
        "within_10pct": float((ape <= 0.10).mean() * 100),
    }
    if y_std is not None:
        out["coverage_1sigma_pct"] = float((np.abs(y_pred - y_true) <= y_std).mean() * 100)
    return out


@dataclass
class Model:
    """A trained predictor over configs of one space: ``predict(configs) -> (mean, std)``."""

    kind: str  # latency | energy | accuracy
    space: SearchSpace
    metric: str
    device: str | None
    dataset: str | None
    use_lut: bool
    estimator: Any
    known: tuple[str, ...] = ()  # few-shot: predictors of the known devices, in the estimator's column order

    def features(self, store: Store, configs: Sequence[SubNetConfig]) -> np.ndarray:
        """The feature matrix: the device's LUT-sum first (cost models with a LUT), then space features."""
        # cost models see the literal network (dead NB201 edges still run); accuracy models its canonical form
        base = SpaceFeatures(space=self.space, canonical=self.kind == "accuracy").fit_transform(list(configs))
        if not self.use_lut:
            return base
        assert self.device is not None
        lut = Lut.load(store, self.device)
        sums = [lut.energy_sum_mj(self.space, c) if self.kind == "energy" else lut.latency_sum_ms(self.space, c)
                for c in configs]
        return np.column_stack([np.asarray(sums, float), base])

    def predict(self, store: Store, configs: Sequence[SubNetConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and 1-sigma uncertainty for each config."""
        configs = [self.space.validate(c) for c in configs]
        if self.known:
            columns = [load_model(store, name).predict(store, configs)[0] for name in self.known]
            X = np.column_stack(columns)
        else:
            X = self.features(store, configs)
        mean, std = self.estimator.predict(X, return_std=True)
        return np.asarray(mean, float), np.asarray(std, float)

    def to_bytes(self) -> bytes:
        """Portable document (the estimator's own document nested as JSON)."""
        params = {"kind": self.kind, "space": self.space.name, "metric": self.metric, "device": self.device,
                  "dataset": self.dataset, "use_lut": self.use_lut, "known": list(self.known),
                  "estimator_class": type(self.estimator).__name__}
        return dumps(MODEL_CLASS, params, {"estimator": json.loads(self.estimator.to_bytes())})


ESTIMATORS = {cls.__name__: cls for cls in (LatencyPredictor, AccuracyPredictor, FewShotLatency)}


def load_model(store: Store, name: str) -> Model:
    """Rebuild stored predictor ``name`` (its blob is parsed as JSON; nothing is unpickled)."""
    record = store.load_predictor(name)
    _, params, state = loads(record["blob"], MODEL_CLASS)
    cls = ESTIMATORS.get(params.get("estimator_class", ""))
    if cls is None:
        raise HwparetoError(f"predictor {name!r}: unknown estimator class {params.get('estimator_class')!r}")
    estimator = cls.from_bytes(json.dumps(state.get("estimator", {})).encode())
    return Model(params["kind"], store.space(params["space"]), params["metric"], params.get("device"),
                 params.get("dataset"), bool(params.get("use_lut")), estimator, tuple(params.get("known", ())))


# ---------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True, slots=True)
class TrainReport:
    """A stored predictor's name, training size and held-out metrics."""

    name: str
    n_train: int
    validation: dict[str, Any]


def _configs(space: SearchSpace, frame: pd.DataFrame) -> list[SubNetConfig]:
    return [space.validate(json.loads(text)) for text in frame["config_json"]]


def _versions() -> dict[str, str]:
    out = {}
    for package in ("hwpareto", "xgboost", "scikit-learn", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def _training_hash(keys: Sequence[str], values: np.ndarray) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(zip(keys, values.tolist(), strict=True)):
        digest.update(f"{key}:{value!r};".encode())
    return digest.hexdigest()[:16]


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(2, round(n * HOLDOUT))
    return order[n_test:], order[:n_test]


def _fit_and_store(store: Store, name: str, model: Model, configs: list[SubNetConfig], y: np.ndarray,
                   seed: int, extra: dict[str, Any]) -> TrainReport:
    X = model.features(store, configs)
    train, test = _split(len(y), seed)
    held_out = clone(model.estimator).fit(X[train], y[train])
    mean, std = held_out.predict(X[test], return_std=True)
    validation = {"split": f"{len(train)} train / {len(test)} held out (seed {seed})",
                  **metrics(y[test], mean, std)}
    if model.use_lut:
        raw = metrics(y[test], X[test, 0])
        validation["lut_sum_mape_pct"], validation["lut_sum_kendall_tau"] = raw["mape_pct"], raw["kendall_tau"]
    model.estimator.fit(X, y)
    meta = {"n_train": len(y), "training_hash": _training_hash([c.key for c in configs], y),
            "train_keys": [c.key for c in configs], "features": "lut_sum + space" if model.use_lut else "space",
            "validation": validation, "versions": _versions(), "checks": [], **extra}
    store.save_predictor(name, kind=model.kind, space=model.space.name,
                         metric=model.metric, blob=model.to_bytes(), meta=meta, device=model.device,
                         dataset=model.dataset)
    return TrainReport(name, len(y), validation)


def _measured(store: Store, space: SearchSpace, subject: str, kind: str, metric: str) -> pd.DataFrame:
    df = store.measurements(space=space.name, subject=subject, subject_kind=kind, metric=metric)
    df = df[df["source"] != "predicted"]
    return df.groupby("config_key", as_index=False).agg(config_json=("config_json", "first"),
                                                       value=("value", "median"))


def train_latency(store: Store, device: str, space: SearchSpace, *, metric: str = "latency_ms",
                  name: str | None = None, few_shot: int | None = None, seed: int = 0) -> TrainReport:
    """Fit a cost predictor (``latency_ms`` or ``energy_mj``) of ``device`` on its stored measurements.

    With ``few_shot=K`` only K of the device's measurements are used (the :func:`reference_set` of them), with
    the other devices measured on this space as known devices; the rest of the device's measurements, if any,
    become the held-out set.
    """
    store.get_device(device)
    kind = "energy" if metric.startswith("energy") else "latency"
    name = name or f"{metric}:{space.name}:{device}" + (f":fewshot{few_shot}" if few_shot else "")
    data = _measured(store, space, device, "device", metric)
    if few_shot is not None:
        return _train_few_shot(store, device, space, metric, kind, name, few_shot, data, seed)
    if len(data) < MIN_ROWS:
        raise InvalidValueError(f"measurements of {metric} for {space.name} on {device}",
                                f"at least {MIN_ROWS} (run hwpareto measure --device {device} --space {space.name})",
                                len(data))
    configs = _configs(space, data)
    use_lut = _lut_covers(store, device, space, configs, kind)
    model = Model(kind, space, metric, device, None, use_lut,
                  LatencyPredictor(lut_column=0 if use_lut else None, random_state=seed))
    return _fit_and_store(store, name, model, configs, data["value"].to_numpy(float), seed, {})


def _lut_covers(store: Store, device: str, space: SearchSpace, configs: Sequence[SubNetConfig], kind: str) -> bool:
    if not store.get_device(device)["lut_entries"]:
        return False
    lut = Lut.load(store, device)
    try:
        for c in configs:
            lut.energy_sum_mj(space, c) if kind == "energy" else lut.latency_sum_ms(space, c)
    except MissingLutError:
        return False
    return True


def _train_few_shot(store: Store, device: str, space: SearchSpace, metric: str, kind: str, name: str, k: int,
                    data: pd.DataFrame, seed: int) -> TrainReport:
    if k < 3:
        raise InvalidValueError("--few-shot", "at least 3 measurements", k)
    if len(data) < k:
        raise InvalidValueError(f"measurements of {metric} for {space.name} on {device}", f"at least {k}",
                                len(data))
    known = [d["name"] for d in store.list_devices() if d["name"] != device]
    tables = {d: _measured(store, space, d, "device", metric) for d in known}
    tables = {d: t for d, t in tables.items() if len(t) >= MIN_ROWS}
    if not tables:
        raise InvalidValueError(f"known devices with {metric} of {space.name}",
                                f"at least one other device with {MIN_ROWS}+ measurements", "none")
    for other in tables:  # the known devices' own predictors feed the transfer at prediction time
        other_name = f"{metric}:{space.name}:{other}"
        if other_name not in {p["name"] for p in store.list_predictors(space.name)}:
            train_latency(store, other, space, metric=metric, seed=seed)
    names = tuple(f"{metric}:{space.name}:{other}" for other in tables)
    candidates = _configs(space, data)
    known_models = [load_model(store, n) for n in names]
    X_all = np.column_stack([m.predict(store, candidates)[0] for m in known_models])
    y_all = data["value"].to_numpy(float)
    known_frame = pd.DataFrame(X_all, index=[c.key for c in candidates], columns=list(tables))
    refs = reference_set(space, k, known=known_frame, candidates=candidates, seed=seed)
    ref_rows = np.array([[c.key for c in candidates].index(r.key) for r in refs])
    estimator = FewShotLatency().fit(X_all[ref_rows], y_all[ref_rows])
    rest = np.setdiff1d(np.arange(len(y_all)), ref_rows)
    validation: dict[str, Any] = {"split": f"{k} reference SubNets / {len(rest)} held out"}
    if len(rest) >= 2:
        mean, std = estimator.predict(X_all[rest], return_std=True)
        validation.update(metrics(y_all[rest], mean, std))
    model = Model(kind, space, metric, device, None, False, estimator, names)
    meta = {"n_train": k, "training_hash": _training_hash([c.key for c in refs], y_all[ref_rows]),
            "train_keys": [c.key for c in refs], "features": "known devices: " + ", ".join(tables),
            "validation": validation, "versions": _versions(), "checks": []}
    store.save_predictor(name, kind=kind, space=space.name, metric=metric, blob=model.to_bytes(), meta=meta,
                         device=device)
    return TrainReport(name, k, validation)


def train_accuracy(store: Store, space: SearchSpace, *, metric: str, dataset: str | None = None,
                   name: str | None = None, seed: int = 0) -> TrainReport:
    """Fit an accuracy predictor with uncertainty on ``metric`` evaluated on ``dataset`` (or the only dataset
    holding that metric for the space)."""
    df = store.measurements(space=space.name, subject_kind="dataset", metric=metric)
    datasets = sorted(df["subject"].unique())
    if dataset is None:
        if len(datasets) != 1:
            raise InvalidValueError("--dataset", "one of " + ", ".join(datasets) if datasets else
                                    f"a dataset with {metric} measurements of {space.name} (import one first)",
                                    None)
        dataset = datasets[0]
    data = _measured(store, space, dataset, "dataset", metric)
    if len(data) < MIN_ROWS:
        raise InvalidValueError(f"measurements of {metric} for {space.name} on {dataset}", f"at least {MIN_ROWS}",
                                len(data))
    name = name or f"{metric}:{space.name}:{dataset}"
    model = Model("accuracy", space, metric, None, dataset, False, AccuracyPredictor(random_state=seed))
    return _fit_and_store(store, name, model, _configs(space, data), data["value"].to_numpy(float), seed, {})


# ---------------------------------------------------------------------------------------------------- using
def predict_table(store: Store, space: SearchSpace, configs: Sequence[SubNetConfig],
                  device: str | None = None) -> pd.DataFrame:
    """Predictions of every stored predictor of ``space`` (cost models restricted to ``device`` when given):
    one row per config, columns ``<predictor>`` and ``<predictor>_std``."""
    records = [p for p in store.list_predictors(space.name) if device is None or p["device"] in (None, device)]
    if not records:
        raise InvalidValueError(f"predictors of {space.name}" + (f" for {device}" if device else ""),
                                "at least one (hwpareto train ...)", "none")
    out = pd.DataFrame({"config_key": [c.key for c in configs]})
    for record in records:
        mean, std = load_model(store, record["name"]).predict(store, configs)
        out[record["name"]] = mean
        out[record["name"] + "_std"] = std
    return out


def check_drift(store: Store, name: str, configs: Sequence[SubNetConfig], measured: np.ndarray) -> dict[str, Any]:
    """Compare predictor ``name`` with fresh measurements, append the result to its metadata, flag drift when
    the MAPE exceeds the recorded held-out MAPE × 1.5 + 2 points."""
    model = load_model(store, name)
    mean, std = model.predict(store, configs)
    result = metrics(measured, mean, std)
    record = store.load_predictor(name)
    recorded = record["meta"].get("validation", {}).get("mape_pct")
    result["recorded_mape_pct"] = recorded
    result["drift"] = bool(recorded is not None and result["mape_pct"] > recorded * DRIFT_MARGIN + 2.0)
    meta = {**record["meta"], "checks": [*record["meta"].get("checks", []), result]}
    store.update_predictor_meta(name, meta)
    return result
