"""Predictors over the store: train from stored measurements, save with their held-out error, predict, check drift.

A stored predictor is a portable document (``hwpareto-model``) holding the space, the device or dataset, the
metric, how features are built (space features, plus the device's LUT-sum for cost models when its LUT covers the
training SubNets) and the fitted estimator's own document. Its metadata records the held-out metrics (an 80/20
split before the final fit on all rows), the training-set hash and size, and library versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr
from sklearn.base import clone

from hwpareto import metrics as catalogue
from hwpareto.errors import CapabilityError, HwparetoError, InvalidValueError
from hwpareto.predictor_key import PredictorKey
from hwpareto.store import Store
from predictors._accuracy import AccuracyPredictor
from predictors._features import SpaceFeatures, additive_cost_names, additive_costs
from predictors._fewshot import FewShotLatency, reference_set
from predictors._latency import LatencyPredictor
from predictors._portable import dumps, loads
from profilers import LUT_METRICS, Lut, MissingLutError
from supernet import SearchSpace, SubNetConfig

__all__ = [
    "KNOWN_MIN_SUBNETS",
    "KnownDevices",
    "KnownLatencies",
    "Model",
    "TrainReport",
    "check_drift",
    "choose_known",
    "known_latencies",
    "load_model",
    "metrics",
    "predict_table",
    "suggest_references",
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
    """A trained predictor over configs of one space: ``predict(configs) -> (mean, std)``. What its features read
    from the store (the device's LUT, the known devices' latencies) is captured once, by :func:`load_model` (or
    :meth:`bind`), so predicting reads nothing from the store."""

    kind: str  # latency | energy | accuracy
    space: SearchSpace
    metric: str
    device: str | None
    dataset: str | None
    use_lut: bool
    estimator: Any
    known: tuple[str, ...] = ()  # few-shot: the known devices, in the estimator's column order
    lut: Lut | None = None
    """The device's LUT (a cost model on its LUT-sum), captured by :meth:`bind`."""
    known_values: KnownLatencies | None = None
    """The known devices' values (few-shot), captured by :meth:`bind`."""

    def bind(self, store: Store) -> Model:
        """This model with what its features need read from ``store`` now (the LUT, the known devices' values)."""
        lut = None
        if self.use_lut:
            assert self.device is not None
            lut = Lut.load(store, self.device)
        known = KnownLatencies.load(store, self.space, self.metric, self.known) if self.known else None
        return replace(self, lut=lut, known_values=known)

    def features(self, configs: Sequence[SubNetConfig]) -> np.ndarray:
        """The feature matrix: the known devices' latencies (few-shot), or the device's LUT-sum (cost models with
        a LUT), then space features. Vectorised: one LUT product and one feature pass over all configs."""
        # cost models see the literal network (dead NB201 edges still run); accuracy models its canonical form
        base = SpaceFeatures(space=self.space, canonical=self.kind == "accuracy").fit_transform(list(configs))
        if self.known:
            assert self.known_values is not None, "a few-shot model is bound to its store (bind) before use"
            known = self.known_values(configs)
            costs = additive_costs(self.space, base) if self.estimator.n_costs else base[:, :0]
            return np.hstack([known, base, costs])
        if not self.use_lut:
            return base
        assert self.lut is not None, "a LUT-corrected model is bound to its store (bind) before use"
        return np.column_stack([self.lut.metric_sums(self.space, configs, self.metric), base])

    def predict(self, configs: Sequence[SubNetConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and 1-sigma uncertainty for each config (one batched estimator call)."""
        configs = [self.space.validate(c) for c in configs]
        if not configs:
            return np.empty(0), np.empty(0)
        mean, std = self.estimator.predict(self.features(configs), return_std=True)
        return np.asarray(mean, float), np.asarray(std, float)

    def to_bytes(self) -> bytes:
        """Portable document (the estimator's own document nested as JSON)."""
        params = {
            "kind": self.kind,
            "space": self.space.name,
            "metric": self.metric,
            "device": self.device,
            "dataset": self.dataset,
            "use_lut": self.use_lut,
            "known": list(self.known),
            "estimator_class": type(self.estimator).__name__,
        }
        return dumps(MODEL_CLASS, params, {"estimator": json.loads(self.estimator.to_bytes())})


def lut_sums(store: Store, device: str, space: SearchSpace, configs: Sequence[SubNetConfig], metric: str) -> np.ndarray:
    """The LUT-sum ``metric`` stands on (:meth:`profilers.Lut.metric_sums`, as the objectives of the same names)."""
    return Lut.load(store, device).metric_sums(space, configs, metric)


def _check_metric(space: SearchSpace, metric: str) -> None:
    """``metric`` is a cost :func:`train_latency` can learn for ``space``: a device cost of the metric catalogue,
    whole-SubNet or (LLM spaces only) one phase of generation."""
    if not catalogue.lookup(metric).is_cost:
        costs = ", ".join(m.name for m in catalogue.metrics(catalogue.DEVICE_COST))
        raise InvalidValueError("--metric", f"one of {costs}", metric)
    if catalogue.lookup(metric).phase is not None:
        try:
            phased = any(spec.phase for spec in space.layers(space.smallest()))
        except CapabilityError:
            phased = False
        if not phased:
            raise InvalidValueError(
                "--metric", f"latency_ms or energy_mj for {space.name} ({metric} needs an LLM space)", metric
            )


def known_latencies(
    store: Store, space: SearchSpace, metric: str, devices: Sequence[str], configs: Sequence[SubNetConfig]
) -> np.ndarray:
    """``(len(configs), len(devices))`` values of ``metric`` on the known ``devices`` (:class:`KnownLatencies`)."""
    return KnownLatencies.load(store, space, metric, devices)(configs)


@dataclass(frozen=True, eq=False)
class KnownLatencies:
    """The values of ``metric`` on the known ``devices`` of a few-shot model, read from the store once: measured
    (median) where the store has them, else from the device's own predictor ``<metric>:<space>:<device>`` (loaded
    for the devices that have not measured the whole space). Called on configs, it reads nothing."""

    space: SearchSpace
    metric: str
    devices: tuple[str, ...]
    measured: pd.DataFrame
    """Config key x device, NaN where not measured."""
    models: dict[str, Model]
    """The predictors of the devices that have not measured the whole space (those that have one)."""

    @classmethod
    def load(cls, store: Store, space: SearchSpace, metric: str, devices: Sequence[str]) -> KnownLatencies:
        measured = store.measurements.measured_table(space.name, metric, devices)
        counts = measured.notna().sum()
        partial = [d for d in devices if counts.get(d, 0) < space.size()]
        stored = {p.name for p in store.predictors.list(space.name)} if partial else set()
        names = {d: PredictorKey(metric, space.name, d).name for d in partial}
        models = {d: load_model(store, name) for d, name in names.items() if name in stored}
        return cls(space, metric, tuple(devices), measured, models)

    def __call__(self, configs: Sequence[SubNetConfig]) -> np.ndarray:
        """``(len(configs), len(devices))`` values; a SubNet that is neither measured nor predictable raises
        :class:`~hwpareto.errors.HwparetoError`."""
        keys = [c.key for c in configs]
        out = self.measured.reindex(keys).to_numpy(dtype=np.float64, copy=True)
        for j, device in enumerate(self.devices):
            missing = np.flatnonzero(np.isnan(out[:, j]))
            if not len(missing):
                continue
            name = PredictorKey(self.metric, self.space.name, device).name
            if device not in self.models:
                raise HwparetoError(
                    f"{len(missing)} SubNet(s) (e.g. {keys[missing[0]]}) are not measured on known "
                    f"device {device} and it has no predictor {name}: run hwpareto train latency "
                    f"--device {device} --space {self.space.name}"
                    + ("" if self.metric == "latency_ms" else f" --metric {self.metric}")
                )
            out[missing, j] = self.models[device].predict([configs[int(i)] for i in missing])[0]
        return out


def _known_device(entry: str, metric: str, space: str) -> str:
    """A known device of a stored few-shot document (older documents name the device's predictor instead)."""
    key = PredictorKey.of(entry, space=space)
    return key.subject if key is not None and key.metric == metric and key.fewshot_k is None else entry


ESTIMATORS = {cls.__name__: cls for cls in (LatencyPredictor, AccuracyPredictor, FewShotLatency)}


def load_model(store: Store, name: str) -> Model:
    """Rebuild stored predictor ``name`` (its blob is parsed as JSON; nothing is unpickled), bound to what its
    features read from ``store`` (:meth:`Model.bind`)."""
    record = store.predictors.load(name)
    _, params, state = loads(record.blob, MODEL_CLASS)
    cls = ESTIMATORS.get(params.get("estimator_class", ""))
    if cls is None:
        raise HwparetoError(f"predictor {name!r}: unknown estimator class {params.get('estimator_class')!r}")
    estimator = cls.from_bytes(json.dumps(state.get("estimator", {})).encode())
    known = tuple(_known_device(str(k), params["metric"], params["space"]) for k in params.get("known", ()))
    return Model(
        params["kind"],
        store.spaces.get(params["space"]),
        params["metric"],
        params.get("device"),
        params.get("dataset"),
        bool(params.get("use_lut")),
        estimator,
        known,
    ).bind(store)


# ---------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True, slots=True)
class KnownDevices:
    """The known devices of a few-shot transfer: those used, those skipped (with the reason) and the used ones
    whose own predictor fills in SubNets they have not measured."""

    used: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    predicted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrainReport:
    """A stored predictor's name, training size and held-out metrics (and, few-shot, its known devices and what the
    transfer fitted: ``{"mix": scale, "op_correction": kept, "op_cost_weight": 0, 0.5 or 1, "set_aside": references
    set aside as outliers, each {"config_key", "config", "metric", "measured", "predicted"}}``)."""

    name: str
    n_train: int
    validation: dict[str, Any]
    known: KnownDevices | None = None
    model: dict[str, Any] | None = None


Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called as training steps that can take long start and finish."""


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


def _fit_and_store(
    store: Store, name: str, model: Model, configs: list[SubNetConfig], y: np.ndarray, seed: int, extra: dict[str, Any]
) -> TrainReport:
    X = model.bind(store).features(configs)
    train, test = _split(len(y), seed)
    held_out = clone(model.estimator).fit(X[train], y[train])
    mean, std = held_out.predict(X[test], return_std=True)
    validation = {"split": f"{len(train)} train / {len(test)} held out (seed {seed})", **metrics(y[test], mean, std)}
    if model.use_lut:
        raw = metrics(y[test], X[test, 0])
        validation["lut_sum_mape_pct"], validation["lut_sum_kendall_tau"] = raw["mape_pct"], raw["kendall_tau"]
    model.estimator.fit(X, y)
    meta = {
        "n_train": len(y),
        "training_hash": _training_hash([c.key for c in configs], y),
        "train_keys": [c.key for c in configs],
        "features": "lut_sum + space" if model.use_lut else "space",
        "validation": validation,
        "versions": _versions(),
        "checks": [],
        **extra,
    }
    store.predictors.save(
        name,
        kind=model.kind,
        space=model.space.name,
        metric=model.metric,
        blob=model.to_bytes(),
        meta=meta,
        device=model.device,
        dataset=model.dataset,
    )
    return TrainReport(name, len(y), validation)


def _measured(store: Store, space: SearchSpace, subject: str, kind: str, metric: str) -> pd.DataFrame:
    df = store.measurements.table(space=space.name, subject=subject, subject_kind=kind, metric=metric)
    df = df[df["source"] != "predicted"]
    return df.groupby("config_key", as_index=False).agg(config_json=("config_json", "first"), value=("value", "median"))


def _rows_needed(min_train: int) -> int:
    """Measured SubNets needed so that the training part of the held-out split has ``min_train`` rows."""
    n = min_train
    while n - len(_split(n, 0)[1]) < min_train:
        n += 1
    return n


def train_latency(
    store: Store,
    device: str,
    space: SearchSpace,
    *,
    metric: str = "latency_ms",
    name: str | None = None,
    few_shot: int | None = None,
    known: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainReport:
    """Fit a cost predictor of ``device`` on its stored measurements: ``metric`` a device cost of the metric
    catalogue (:mod:`hwpareto.metrics`); the LUT-sum feature of a phase metric is that phase's (:func:`lut_sums`).

    With ``few_shot=K`` only K of the device's measurements are used (the :func:`reference_set` of them),
    transferred from known devices (:func:`choose_known`, or exactly ``known``); the rest of the device's
    measurements, if any, become the held-out set.
    """
    _check_metric(space, metric)
    store.devices.get(device)
    kind = "energy" if metric.startswith("energy") else "latency"
    if few_shot is not None and few_shot < 3:
        raise InvalidValueError("--few-shot", "at least 3 measurements", few_shot)
    name = name or PredictorKey(metric, space.name, device, few_shot).name
    data = _measured(store, space, device, "device", metric)
    if few_shot is not None:
        return _train_few_shot(store, device, space, metric, kind, name, few_shot, data, known, seed, progress)
    if known is not None:
        raise InvalidValueError("--known", "only with --few-shot K", ",".join(known))
    configs = _configs(space, data)
    use_lut = len(data) > 0 and _lut_covers(store, device, space, configs, metric)
    needed = MIN_ROWS if use_lut else _rows_needed(LatencyPredictor().min_rows)
    if len(data) < needed:
        how = "with its LUT" if use_lut else "without a LUT covering them"
        raise InvalidValueError(
            f"measured {metric} of {space.name} SubNets on {device}",
            f"at least {needed} {how} (hwpareto measure --device {device} --space {space.name} "
            f"-n {needed}, or --few-shot K to transfer from known devices)",
            len(data),
        )
    model = Model(
        kind,
        space,
        metric,
        device,
        None,
        use_lut,
        LatencyPredictor(lut_column=0 if use_lut else None, random_state=seed),
    )
    return _fit_and_store(store, name, model, configs, data["value"].to_numpy(float), seed, {})


def _lut_covers(store: Store, device: str, space: SearchSpace, configs: Sequence[SubNetConfig], metric: str) -> bool:
    if metric not in LUT_METRICS or not store.devices.get(device).lut_entries:  # a LUT sums only these
        return False
    try:
        lut_sums(store, device, space, configs, metric)
    except MissingLutError:
        return False
    return True


KNOWN_MIN_SUBNETS = 100
"""A device becomes a known device of a few-shot transfer only with at least this many measured SubNets."""


def choose_known(
    store: Store, device: str, space: SearchSpace, metric: str, keys: Sequence[str], known: Sequence[str] | None = None
) -> KnownDevices:
    """The known devices of a few-shot transfer to ``device``, whose measured SubNets are ``keys``.

    Rule: every other device with ``metric`` measurements of ``space`` is used when it has measured at least
    :data:`KNOWN_MIN_SUBNETS` SubNets and every SubNet in ``keys`` (so the transfer is fitted on measured values
    only); the others are skipped with the reason. ``known`` overrides the rule: exactly those devices, each
    registered, with a table of the space that covers ``keys``. A used device that has not measured the whole
    space is listed in ``predicted``: its own predictor fills in the SubNets it lacks.
    """
    table = store.measurements.measured_table(space.name, metric)
    stored = {p.name for p in store.predictors.list(space.name)}
    counts = table.notna().sum()
    covered = table.reindex(list(keys)).notna().sum()
    used: list[str] = []
    skipped: list[tuple[str, str]] = []
    if known is not None:
        if not known:
            raise InvalidValueError("--known", "one or more device names, comma-separated", "")
        needed = _rows_needed(LatencyPredictor().min_rows)
        for other in dict.fromkeys(known):
            store.devices.get(other)  # unknown names: the error lists the registered devices
            field = f"--known {other}"
            if other == device:
                raise InvalidValueError(field, f"a device other than the new device {device}", other)
            if not counts.get(other, 0):
                raise InvalidValueError(field, f"a device with measured {metric} of {space.name} SubNets", "none")
            if covered.get(other, 0) < len(keys):
                raise InvalidValueError(
                    field,
                    f"a device that has measured all {len(keys)} SubNets measured on {device}",
                    f"{int(covered.get(other, 0))} of them",
                )
            if counts[other] < min(space.size(), needed) and PredictorKey(metric, space.name, other).name not in stored:
                raise InvalidValueError(
                    field,
                    f"a device with a table of every {space.name} SubNet, a predictor, "
                    f"or at least {needed} measured SubNets to train one",
                    f"{int(counts[other])} measured SubNets",
                )
            used.append(other)
    else:
        for other in table.columns:
            if other == device:
                continue
            if counts[other] < KNOWN_MIN_SUBNETS:
                skipped.append(
                    (other, f"{int(counts[other])} measured SubNets (a known device needs {KNOWN_MIN_SUBNETS}+)")
                )
            elif covered[other] < len(keys):
                skipped.append(
                    (other, f"has measured {int(covered[other])} of the {len(keys)} SubNets measured on {device}")
                )
            else:
                used.append(other)
        if not used:
            why = "; ".join(f"{d}: {r}" for d, r in skipped) or "no other device has measurements"
            raise InvalidValueError(
                f"known devices for a few-shot transfer to {device} on {space.name}",
                f"at least one other device with {KNOWN_MIN_SUBNETS}+ measured {metric} SubNets "
                f"covering {device}'s (or --known D1,D2)",
                f"none ({why})",
            )
    size = space.size()
    predicted = tuple(d for d in used if counts[d] < size)
    return KnownDevices(tuple(used), tuple(skipped), predicted)


def suggest_references(
    store: Store, space: SearchSpace, k: int, *, metric: str = "latency_ms", seed: int = 0
) -> tuple[list[SubNetConfig], tuple[str, ...]]:
    """The ``k`` SubNets to measure on a new device before ``train latency --few-shot k``, and the devices that
    chose them: :func:`~predictors.reference_set` over the measured table of the devices with at least
    :data:`KNOWN_MIN_SUBNETS` measured SubNets (among the SubNets all of them measured), so the references span
    what makes the known devices differ; without such devices, over the cost proxies of sampled SubNets."""
    table = store.measurements.measured_table(space.name, metric)
    known = tuple(str(d) for d in table.columns if table[d].notna().sum() >= KNOWN_MIN_SUBNETS)
    if not known:
        return reference_set(space, k, seed=seed), ()
    complete = table[list(known)].dropna()
    rows = _measured(store, space, known[0], "device", metric)
    candidates = _configs(space, rows[rows["config_key"].isin(complete.index)])
    return reference_set(space, k, known=complete, candidates=candidates, seed=seed), known


def _train_few_shot(
    store: Store,
    device: str,
    space: SearchSpace,
    metric: str,
    kind: str,
    name: str,
    k: int,
    data: pd.DataFrame,
    known: Sequence[str] | None,
    seed: int,
    progress: Progress | None,
) -> TrainReport:
    if len(data) < k:
        raise InvalidValueError(
            f"measured {metric} of {space.name} SubNets on {device}",
            f"at least {k} for --few-shot {k} (hwpareto measure --device {device} --space {space.name} -n {k})",
            len(data),
        )
    candidates = _configs(space, data)
    choice = choose_known(store, device, space, metric, [c.key for c in candidates], known)
    stored = {p.name for p in store.predictors.list(space.name)}
    untrained = [d for d in choice.predicted if PredictorKey(metric, space.name, d).name not in stored]
    for i, other in enumerate(untrained):  # said, with progress: their predictors fill in what they lack
        if progress is not None:
            progress(i, len(untrained), PredictorKey(metric, space.name, other).name)
        train_latency(store, other, space, metric=metric, seed=seed)
    if progress is not None and untrained:
        progress(len(untrained), len(untrained), "")
    n_costs = len(additive_cost_names(space))
    estimator = FewShotLatency(n_devices=len(choice.used), n_costs=n_costs)
    model = Model(kind, space, metric, device, None, False, estimator, choice.used)
    X_all = model.bind(store).features(candidates)
    y_all = data["value"].to_numpy(float)
    known_frame = pd.DataFrame(
        X_all[:, : len(choice.used)], index=[c.key for c in candidates], columns=list(choice.used)
    )
    refs = reference_set(space, k, known=known_frame, candidates=candidates, seed=seed)
    row = {c.key: i for i, c in enumerate(candidates)}
    ref_rows = np.array([row[r.key] for r in refs])
    estimator.fit(X_all[ref_rows], y_all[ref_rows])
    rest = np.setdiff1d(np.arange(len(y_all)), ref_rows)
    validation: dict[str, Any] = {"split": f"{k} reference SubNets / {len(rest)} held out"}
    if len(rest) >= 2:
        mean, std = estimator.predict(X_all[rest], return_std=True)
        validation.update(metrics(y_all[rest], mean, std))
    set_aside = [
        {
            "config_key": refs[i].key,
            "config": refs[i].values,
            "metric": metric,
            "measured": float(y_all[ref_rows[i]]),
            "predicted": float(estimator.predict(X_all[ref_rows[i : i + 1]])[0]),
        }
        for i in estimator.outliers_
    ]
    fitted = {
        "mix": estimator.scale_,
        "op_correction": bool(np.any(estimator.feature_coef_)),
        "op_cost_weight": estimator.cost_weight_,
        "set_aside": set_aside,
    }
    meta = {
        "n_train": k,
        "training_hash": _training_hash([c.key for c in refs], y_all[ref_rows]),
        "train_keys": [c.key for c in refs],
        "features": "known devices: " + ", ".join(choice.used) + " + space" + (" + additive costs" if n_costs else ""),
        "model": fitted,
        "known": {
            "used": list(choice.used),
            "skipped": [list(s) for s in choice.skipped],
            "predicted": list(choice.predicted),
        },
        "validation": validation,
        "versions": _versions(),
        "checks": [],
    }
    store.predictors.save(
        name, kind=kind, space=space.name, metric=metric, blob=model.to_bytes(), meta=meta, device=device
    )
    return TrainReport(name, k, validation, choice, fitted)


def train_accuracy(
    store: Store, space: SearchSpace, *, metric: str, dataset: str | None = None, name: str | None = None, seed: int = 0
) -> TrainReport:
    """Fit an accuracy predictor with uncertainty on ``metric`` evaluated on ``dataset`` (or the only dataset
    holding that metric for the space)."""
    df = store.measurements.table(space=space.name, subject_kind="dataset", metric=metric)
    datasets = sorted(df["subject"].unique())
    if dataset is None:
        if len(datasets) != 1:
            raise InvalidValueError(
                "--dataset",
                "one of " + ", ".join(datasets)
                if datasets
                else f"a dataset with {metric} measurements of {space.name} (import one first)",
                None,
            )
        dataset = datasets[0]
    data = _measured(store, space, dataset, "dataset", metric)
    if len(data) < MIN_ROWS:
        raise InvalidValueError(
            f"measurements of {metric} for {space.name} on {dataset}", f"at least {MIN_ROWS}", len(data)
        )
    name = name or PredictorKey(metric, space.name, dataset).name
    model = Model("accuracy", space, metric, None, dataset, False, AccuracyPredictor(random_state=seed))
    return _fit_and_store(store, name, model, _configs(space, data), data["value"].to_numpy(float), seed, {})


# ---------------------------------------------------------------------------------------------------- using
def predict_table(
    store: Store, space: SearchSpace, configs: Sequence[SubNetConfig], device: str | None = None
) -> pd.DataFrame:
    """Predictions of every stored predictor of ``space`` (cost models restricted to ``device`` when given):
    one row per config, columns ``<predictor>`` and ``<predictor>_std``."""
    records = [p for p in store.predictors.list(space.name) if device is None or p.device in (None, device)]
    if not records:
        raise InvalidValueError(
            f"predictors of {space.name}" + (f" for {device}" if device else ""),
            "at least one (hwpareto train ...)",
            "none",
        )
    out = pd.DataFrame({"config_key": [c.key for c in configs]})
    for record in records:
        mean, std = load_model(store, record.name).predict(configs)
        out[record.name] = mean
        out[record.name + "_std"] = std
    return out


def check_drift(store: Store, name: str, configs: Sequence[SubNetConfig], measured: np.ndarray) -> dict[str, Any]:
    """Compare predictor ``name`` with fresh measurements, append the result to its metadata, flag drift when
    the MAPE exceeds the recorded held-out MAPE × 1.5 + 2 points."""
    model = load_model(store, name)
    mean, std = model.predict(configs)
    result = metrics(measured, mean, std)
    with store.transaction() as conn:  # read, append, write: no concurrent check is lost
        record = store.predictors.load(name, conn=conn)
        recorded = record.meta.get("validation", {}).get("mape_pct")
        result["recorded_mape_pct"] = recorded
        result["drift"] = bool(recorded is not None and result["mape_pct"] > recorded * DRIFT_MARGIN + 2.0)
        meta = {**record.meta, "checks": [*record.meta.get("checks", []), result]}
        store.predictors.update_meta(name, meta, conn=conn)
    return result
