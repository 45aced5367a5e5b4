"""Few-shot latency transfer: predict a new device's latency table from K measured SubNets and known devices.

A new device is described by the latencies of only K SubNets (HELP's protocol uses K = 10); the store holds full
tables of known devices. :class:`FewShotLatency` explains the new device as a non-negative combination of the
known devices fitted on the K points, optionally corrected per op from SubNet features, or, for a device unlike
the known ones (an accelerator whose latency adds up over layers), with an op-cost model of the SubNets' additive
costs; :func:`reference_set` picks which K SubNets to measure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from hwpareto.errors import CapabilityError, HwparetoError, InvalidValueError
from predictors._portable import dumps, loads
from supernet import SearchSpace, SubNetConfig

__all__ = ["FewShotLatency", "reference_set"]

_SCALES = ("auto", "log", "linear", "blend")
_MIXES = {"log": ("log",), "linear": ("linear",), "blend": ("log", "linear")}
"""The single-scale mixes whose geometric mean each fitted ``scale_`` predicts (the rows of ``coef_``)."""
_SINGLE = 0.5
"""``scale="auto"`` uses one scale alone only when its LOO RMSE of log latency is at most this share of the other's,
else the blend (tuned on the tuning columns of ``benchmarks/bench_fewshot.py``: LOO choice between the two on
10 points is noisy, and their geometric mean beat it on every split)."""
_MIN_ROWS = 3
_MIN_GAIN = 0.9
"""The op-level correction is kept only if its LOO RMSE of log latency is at most this share of the mix's (tuned
on the tuning columns of ``benchmarks/bench_fewshot.py``)."""
_RIDGE_GRID = np.logspace(-2, 3, 11)
"""Ridge penalties tried for the correction, relative to the mean squared norm of a standardised feature row."""
_CONSTANT = 1e-9
"""A feature whose std over the K points is below this share of its magnitude is treated as constant (unused)."""
_MAD_TO_STD = 1.4826
"""Median absolute deviation to standard deviation for a normal distribution."""
_OUTLIER_SIGMAS = 3.0
"""A reference is set aside when the others predict it more than this many robust stds of their LOO errors off ..."""
_OUTLIER_LOG_FLOOR = float(np.log(1.25))
"""... and more than 25 % off (chosen over 10 % on the tuning columns of ``benchmarks/bench_fewshot.py``: a
near-exact fit's tiny spread would otherwise set sound extreme references aside)."""
_OUTLIER_SHARE = 10
"""At most one reference in this many is set aside."""
_N_SAMPLED = 2000
"""SubNets sampled by :func:`reference_set` when it is given neither a known table nor candidates."""


class FewShotLatency(RegressorMixin, BaseEstimator):
    """Latency on a new device: a non-negative combination of known devices, plus an optional op-level correction
    from SubNet features, and an optional op-cost model of additive costs, all fitted on the K measured SubNets.

    ``X`` (one row per SubNet) holds first the latencies (ms) of the SubNets on ``n_devices`` known devices, then
    any numeric SubNet features (e.g. ``SpaceFeatures(space, canonical=False)`` output: encoding, op counts), then
    ``n_costs`` non-negative additive costs (e.g. :func:`~predictors.additive_costs`: MACs, parameters, layers per
    op kind); ``y`` the new device's latencies of the K measured SubNets. The column layout is fixed at fit.

    1. **Device mix**, solved by non-negative least squares (NNLS), which keeps the fit from extrapolating with
       opposite-signed weights and selects few devices, so it does not overfit 10 points however many are known:

       - ``"log"``: ``log y = b + sum_d w_d log x_d`` with ``w >= 0`` and a free ``b`` (a weighted geometric mix);
       - ``"linear"``: ``y = b + sum_d w_d x_d`` with ``w, b >= 0`` (latency is a sum over ops, so a device whose
         op costs are a non-negative mix of known devices' costs is exactly such a mix);
       - ``"blend"``: the geometric mean of the two.

       ``scale="auto"`` uses one scale alone when its leave-one-out (LOO) RMSE of log latency on the K points is at
       most half the other's (an exact mix in that scale), else the blend: on the measured tables the blend beat
       choosing by LOO (leave-one-device-out Spearman +0.001 to +0.009, see ``benchmarks/bench_fewshot.py``).
    2. **Op-level correction** (when there are feature columns): ridge regression of the mix's LOO log residuals
       on the standardised features, a log-latency term per feature (per op, for op counts or one-hot op
       choices) that no mix of the known devices explains. Its strength is chosen from a fixed grid by exact LOO;
       the correction is kept only if it cuts the LOO RMSE of log latency to at most ``_MIN_GAIN`` (0.9) of the
       mix's, else the mix is used alone. With ~10 points a correction only pays for a strong op-level effect:
       on the measured tables the guard keeps it off (0.9 was chosen on the tuning columns, see
       ``benchmarks/bench_fewshot.py``, where accepting any LOO gain lost Spearman).
    3. **Op-cost model** (when ``n_costs``): ``y = b + sum_j v_j c_j`` with ``v, b >= 0`` over the additive
       costs (NNLS on columns scaled to their maximum): what a device whose latency is a sum of per-layer costs
       (an NPU or compute-in-memory simulator, an accelerator) follows exactly and no mix of GPUs, CPUs and phones
       does. As for the scales, its LOO RMSE of log latency decides: at most ``_SINGLE`` (half) of the previous
       step's, it is used alone; at least twice, not at all; in between, the geometric mean of the two. Leave-one-
       device-out on NB201 with the space's layer-model costs (``benchmarks/bench_fewshot.py``, every reference
       kept): the 13 measured columns 0.957 → 0.963 mean Spearman (within ±10 % 73.7 → 77.2 %), five simulated
       accelerators 0.949 → 0.987 (65.0 → 98.2 %); OFA-MBv3's 9 GPU columns, read as ``mbv3`` configs, 0.866 →
       0.889.
    4. **Outlying references** (``robust``): the reference whose removal leaves the others' LOO errors smallest
       is set aside, and everything refitted without it, when the others predict it more than 3 robust stds of
       their LOO errors and more than 25 % off (a glitch of the measurement, e.g. a throttled phone); at most one
       reference in ten. The band is kept no narrower than all K points gave. Leave-one-device-out with HELP's
       10 references (``benchmarks/bench_fewshot.py``), what ``train latency --few-shot`` fits: NB201, all 13
       columns, 0.963 → 0.965 mean Spearman and 77.2 → 79.7 % within ±10 %; FBNet 0.902 → 0.904 and 89.7 →
       92.5 %; OFA-MBv3 0.889 → 0.891 and 78.7 → 79.3 %; it can also set aside a sound reference the others do
       not explain (the simulated cim-reram: 95.7 → 87.6 % within ±10 %).
    5. **Spread**: the relative error is log-normal with ``sigma_`` = 1.4826 x the median absolute LOO log error of
       the final model (a robust, outlier-insensitive estimate of the error the K points show on points left
       out); ``predict(X, return_std=True)`` returns the std (ms) of the log-normal whose median is the
       prediction.

    No held-out data of the new device is ever looked at: every choice comes from LOO on the K points.

    Parameters
    ----------
    scale : {"auto", "log", "linear", "blend"}
        The device mix (see above).
    n_devices : int or None
        How many leading columns of ``X`` are known-device latencies (finite, > 0); the rest are SubNet features
        (finite, any sign). ``None``: every column is a device latency.
    n_costs : int
        How many trailing columns of ``X`` are additive costs (finite, >= 0) for the op-cost model; 0: none.
    robust : bool
        Set outlying references aside (step 4).

    Attributes
    ----------
    scale_ : str
        The mix used, ``"log"``, ``"linear"`` or ``"blend"``.
    coef_ : ndarray of shape (1 or 2, n_devices_)
        Non-negative weight of each known device, one row per single-scale mix of ``scale_`` (blend: log, linear).
    intercept_ : ndarray of shape (1 or 2,)
        ``b`` of each row (log ms in log scale, ms in linear scale).
    feature_coef_ : ndarray of shape (n_features_in_ - n_devices_,)
        Op-level correction: log-latency change per unit of each feature (all zero when not kept).
    feature_intercept_ : float
        Constant of the correction (log ms).
    cost_coef_ : ndarray of shape (n_costs,)
        ms per unit of each additive cost in the op-cost model.
    cost_intercept_ : float
        ``b`` of the op-cost model (ms).
    cost_weight_ : float
        Share of the op-cost model in the log prediction: 0 (not used), 0.5 (geometric mean) or 1 (alone).
    outliers_ : ndarray of int
        Rows of the fit's ``X`` set aside as outlying references (step 4), in the order found.
    sigma_ : float
        Log-scale std of the prediction error.
    loo_log_rmse_ : dict
        LOO RMSE of log latency per model tried (``"log"``, ``"linear"``, ``"blend"``, ``"correction"``).
    n_devices_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.
    """

    def __init__(
        self, scale: str = "auto", n_devices: int | None = None, n_costs: int = 0, robust: bool = True
    ) -> None:
        self.scale = scale
        self.n_devices = n_devices
        self.n_costs = n_costs
        self.robust = robust

    def fit(self, X: Any, y: Any) -> FewShotLatency:
        """Fit on the K measured SubNets: ``X`` (K, n_devices + n_features + n_costs) and ``y`` (K,) latencies in
        ms."""
        if self.scale not in _SCALES:
            raise InvalidValueError("FewShotLatency.scale", "one of " + ", ".join(map(repr, _SCALES)), self.scale)
        if not isinstance(self.robust, (bool, np.bool_)):
            raise InvalidValueError("FewShotLatency.robust", "True or False", self.robust)
        x, f, c = _split(self, X, reset=True)
        t = _latencies_1d(y)
        if len(t) != len(x):
            raise InvalidValueError("y", f"one latency per row of X ({len(x)})", len(t))
        if len(x) < _MIN_ROWS:
            raise InvalidValueError("X rows", f"at least {_MIN_ROWS} SubNets measured on the new device", len(x))
        sigma = _MAD_TO_STD * float(np.median(np.abs(self._fit_points(x, f, c, t))))
        keep = np.ones(len(t), bool)
        while self.robust and np.sum(~keep) < len(t) // _OUTLIER_SHARE:
            rows = np.flatnonzero(keep)
            worst = self._outlier(x[rows], f[rows], c[rows], t[rows])
            if worst is None:
                break
            keep[rows[worst]] = False
        if not np.all(keep):  # refitted without them; the band stays at least as wide as all K points showed
            loo_error = self._fit_points(x[keep], f[keep], c[keep], t[keep])
            sigma = max(sigma, _MAD_TO_STD * float(np.median(np.abs(loo_error))))
        self.outliers_ = np.flatnonzero(~keep)
        self.sigma_ = sigma
        return self

    def _outlier(self, x: np.ndarray, f: np.ndarray, c: np.ndarray, t: np.ndarray) -> int | None:
        """The point whose removal leaves the others' LOO errors smallest, if they predict it as an outlier (step
        4)."""
        best: tuple[float, int, float] | None = None
        trial = clone(self)  # fitted on each subset in turn; this model keeps its own fit
        for i in range(len(t)):
            rest = np.arange(len(t)) != i
            loo = trial._fit_points(x[rest], f[rest], c[rest], t[rest])
            centre = float(np.median(loo))
            miss = abs(float(np.log(t[i])) - trial._log_predict(x[i : i + 1], f[i : i + 1], c[i : i + 1])[0] - centre)
            bound = max(_OUTLIER_SIGMAS * _MAD_TO_STD * float(np.median(np.abs(loo - centre))), _OUTLIER_LOG_FLOOR)
            if best is None or _rms(loo) < best[0]:
                best = (_rms(loo), i, miss / bound)
        assert best is not None
        return best[1] if best[2] > 1.0 else None

    def _log_predict(self, x: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
        log_pred = _log_blend(x, self.scale_, self.coef_, self.intercept_) + f @ self.feature_coef_
        log_pred += self.feature_intercept_
        if self.cost_weight_:
            costs = _log_costs(c, self.cost_coef_, self.cost_intercept_)
            log_pred = (1.0 - self.cost_weight_) * log_pred + self.cost_weight_ * costs
        return log_pred

    def _fit_points(self, x: np.ndarray, f: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Fit the mix, correction and op-cost model on these points; their LOO log errors (of the final model)."""
        single = ("log", "linear") if self.scale in ("auto", "blend") else (self.scale,)
        fits = {scale: _fit_with_loo(x, t, scale) for scale in single}
        if len(fits) == 2:
            fits["blend"] = (
                np.vstack([fits["log"][0], fits["linear"][0]]),
                np.concatenate([fits["log"][1], fits["linear"][1]]),
                (fits["log"][2] + fits["linear"][2]) / 2,
            )
        self.loo_log_rmse_ = {scale: _rms(fit[2]) for scale, fit in fits.items()}
        self.scale_ = self.scale if self.scale != "auto" else _auto_scale(self.loo_log_rmse_)
        self.coef_, self.intercept_, loo_error = fits[self.scale_]
        self.feature_coef_, self.feature_intercept_ = np.zeros(f.shape[1]), 0.0
        if f.shape[1]:
            coef, offset, corrected = _correction(f, loo_error)
            self.loo_log_rmse_["correction"] = _rms(corrected)
            if _rms(corrected) <= _MIN_GAIN * _rms(loo_error):
                self.feature_coef_, self.feature_intercept_, loo_error = coef, offset, corrected
        self.cost_coef_, self.cost_intercept_, self.cost_weight_ = np.zeros(c.shape[1]), 0.0, 0.0
        if c.shape[1]:
            self.cost_coef_, self.cost_intercept_, cost_error = _fit_costs_with_loo(c, t)
            self.loo_log_rmse_["costs"] = _rms(cost_error)
            self.cost_weight_ = _cost_weight(_rms(loo_error), _rms(cost_error))
            loo_error = (1.0 - self.cost_weight_) * loo_error + self.cost_weight_ * cost_error
        return loo_error

    @overload
    def predict(self, X: Any, return_std: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def predict(self, X: Any, return_std: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Latency (ms) on the new device of each row of ``X`` (fit's columns); with ``return_std`` also the
        standard deviation (ms)."""
        check_is_fitted(self)
        pred = np.exp(self._log_predict(*_split(self, X, reset=False)))
        if not return_std:
            return pred
        var = self.sigma_**2
        return pred, pred * np.sqrt(np.exp(var) * np.expm1(var))

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Portable JSON bytes of the parameters and fitted state (no pickle); see :meth:`from_bytes`."""
        check_is_fitted(self)
        state: dict[str, Any] = {
            "scale_": self.scale_,
            "coef_": self.coef_,
            "intercept_": self.intercept_,
            "feature_coef_": self.feature_coef_,
            "feature_intercept_": self.feature_intercept_,
            "cost_coef_": self.cost_coef_,
            "cost_intercept_": self.cost_intercept_,
            "cost_weight_": self.cost_weight_,
            "sigma_": self.sigma_,
            "outliers_": self.outliers_,
            "loo_log_rmse_": self.loo_log_rmse_,
            "n_devices_": self.n_devices_,
            "n_features_in_": self.n_features_in_,
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(name) for name in self.feature_names_in_]
        return dumps(type(self).__name__, self.get_params(), state)

    @classmethod
    def from_bytes(cls, blob: bytes) -> FewShotLatency:
        """Rebuild a fitted model from :meth:`to_bytes` output; foreign or corrupt bytes raise
        :class:`~hwpareto.errors.HwparetoError`."""
        _, params, state = loads(blob, expected_class=cls.__name__)
        if "loo_coef_" in state and "sigma_" not in state:  # the jackknife-spread model of earlier versions
            raise HwparetoError(
                f"predictor blob: a {cls.__name__} written by an earlier hwpareto (before SubNet "
                "features and the LOO spread): retrain it with hwpareto train latency --few-shot K"
            )
        try:
            model = cls(**params)
            d, n = int(state["n_features_in_"]), int(state["n_devices_"])
            costs = int(model.n_costs)
            if not (1 <= n <= d and 0 <= costs <= d - n):
                raise ValueError(f"n_devices_ {n} and n_costs {costs} of {d} columns")
            model.scale_ = str(state["scale_"])
            rows = len(_MIXES.get(model.scale_, ()))
            if np.ndim(state["coef_"]) == 1:  # one mix as a flat list: written before the blend
                model.coef_ = _array(state["coef_"], (n,))[None]
                model.intercept_ = np.array([float(state["intercept_"])])
            else:
                model.coef_ = _array(state["coef_"], (rows, n))
                model.intercept_ = _array(state["intercept_"], (rows,))
            model.feature_coef_ = _array(state["feature_coef_"], (d - n - costs,))
            model.feature_intercept_ = float(state["feature_intercept_"])
            # written before the op-cost model: none
            model.cost_coef_ = _array(state.get("cost_coef_", [0.0] * costs), (costs,))
            model.cost_intercept_ = float(state.get("cost_intercept_", 0.0))
            model.cost_weight_ = float(state.get("cost_weight_", 0.0))
            model.sigma_ = float(state["sigma_"])
            outliers = _array(state.get("outliers_", []), (None,))  # written before outliers were set aside: none
            if not np.all((outliers >= 0) & (outliers == np.round(outliers))):
                raise ValueError("outliers_ must be row numbers")
            model.outliers_ = outliers.astype(np.int64)
            model.loo_log_rmse_ = {str(k): float(v) for k, v in dict(state["loo_log_rmse_"]).items()}
            if "feature_names_in_" in state:
                model.feature_names_in_ = np.asarray([str(n) for n in state["feature_names_in_"]], dtype=object)
                if len(model.feature_names_in_) != d:
                    raise ValueError("feature_names_in_ length")
        except (KeyError, TypeError, ValueError) as exc:
            raise HwparetoError(f"predictor blob: corrupt {cls.__name__} state ({exc})") from None
        if (
            model.scale_ not in _MIXES
            or not isinstance(model.robust, bool)
            or len(model.coef_) != len(_MIXES[model.scale_])
            or not (np.isfinite(model.sigma_) and model.sigma_ >= 0)
            or model.cost_weight_ not in (0.0, 0.5, 1.0)
            or not (np.isfinite(model.cost_intercept_) and model.cost_intercept_ >= 0 and np.all(model.cost_coef_ >= 0))
        ):
            raise HwparetoError(
                f"predictor blob: corrupt {cls.__name__} state (scale_, sigma_, robust or the op-cost model)"
            )
        model.n_devices_, model.n_features_in_ = n, d
        return model


def _array(value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """A float array of ``shape`` (None = any length) from a JSON list; ValueError otherwise."""
    out = np.asarray(value, dtype=np.float64)
    if out.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, out.shape, strict=True)):
        raise ValueError(f"shape {out.shape}, expected {shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError("non-finite values")
    return out


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


def _auto_scale(loo_log_rmse: dict[str, float]) -> str:
    """``"log"`` or ``"linear"`` when its LOO RMSE is at most ``_SINGLE`` of the other's, else ``"blend"``."""
    log, linear = loo_log_rmse["log"], loo_log_rmse["linear"]
    return "log" if log <= _SINGLE * linear else "linear" if linear <= _SINGLE * log else "blend"


def _log_blend(x: np.ndarray, scale: str, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Log latency predicted by the mix(es) of ``scale`` (rows of ``coef``/``intercept``), averaged."""
    return np.mean([_log_mix(x, s, c, b) for s, c, b in zip(_MIXES[scale], coef, intercept, strict=True)], axis=0)


def _transform(values: np.ndarray, scale: str) -> np.ndarray:
    return np.log(values) if scale == "log" else values


def _log_mix(x: np.ndarray, scale: str, coef: np.ndarray, intercept: np.ndarray | float) -> np.ndarray:
    """Log latency predicted by the device mix (rows of ``coef``/``intercept`` may pair with rows of ``x``)."""
    z = _transform(x, scale)
    mix = np.einsum("ij,ij->i", z, coef) if coef.ndim == 2 else z @ coef
    mix = mix + intercept
    return mix if scale == "log" else np.log(np.maximum(mix, np.finfo(np.float64).tiny))


def _nnls(z: np.ndarray, t: np.ndarray, scale: str) -> tuple[np.ndarray, float]:
    """Weights ``w >= 0`` and intercept of ``t ~ b + z @ w`` (``b`` free in log scale, ``b >= 0`` in linear)."""
    if scale == "log":
        mu = z.mean(axis=0)
        w, _ = nnls(z - mu, t - t.mean())
        return w, float(t.mean() - mu @ w)
    wb, _ = nnls(np.column_stack([z, np.ones(len(t))]), t)
    return wb[:-1], float(wb[-1])


def _fit_with_loo(x: np.ndarray, y: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full fit of the mix (as one row of ``coef_`` and ``intercept_``) and its leave-one-out errors of log
    latency on the K points."""
    z, t = _transform(x, scale), _transform(y, scale)
    coef, intercept = _nnls(z, t, scale)
    k = len(t)
    loo_coef, loo_intercept = np.empty((k, z.shape[1])), np.empty(k)
    for i in range(k):
        keep = np.arange(k) != i
        loo_coef[i], loo_intercept[i] = _nnls(z[keep], t[keep], scale)
    return coef[None], np.array([intercept]), np.log(y) - _log_mix(x, scale, loo_coef, loo_intercept)


def _correction(f: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Ridge fit ``residual ~ c + f @ beta`` on the standardised features, the penalty chosen from
    ``_RIDGE_GRID`` (relative to the mean squared norm of a row) by exact leave-one-out; returns ``beta`` in the
    raw features' units, ``c`` and the LOO errors at the chosen penalty."""
    k = len(residual)
    mean, scale = f.mean(axis=0), f.std(axis=0)
    used = scale > _CONSTANT * np.maximum(np.abs(mean), 1.0)
    if not used.any():
        return np.zeros(f.shape[1]), 0.0, residual
    z = (f[:, used] - mean[used]) / scale[used]
    gram = z @ z.T
    centred = residual - residual.mean()
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for ratio in _RIDGE_GRID:
        inverse = np.linalg.inv(gram + ratio * np.trace(gram) / k * np.eye(k))
        hat = gram @ inverse + 1.0 / k  # features are centred, so the intercept's hat matrix adds 1/k
        loo = (residual - hat @ residual) / (1.0 - np.diag(hat))
        if best is None or _rms(loo) < _rms(best[2]):
            best = (ratio, inverse @ centred, loo)
    assert best is not None
    beta = np.zeros(f.shape[1])
    beta[used] = z.T @ best[1] / scale[used]
    return beta, float(residual.mean() - mean @ beta), best[2]


def _cost_weight(mix_rmse: float, cost_rmse: float) -> float:
    """Share of the op-cost model: 1 when its LOO RMSE is at most ``_SINGLE`` of the mix's, 0 when the mix's is at
    most ``_SINGLE`` of its, else 0.5."""
    return 1.0 if cost_rmse <= _SINGLE * mix_rmse else 0.0 if mix_rmse <= _SINGLE * cost_rmse else 0.5


def _nnls_costs(c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``v >= 0`` and ``b >= 0`` of ``y ~ b + c @ v`` (columns scaled to their maximum for the solver)."""
    top = c.max(axis=0)
    top[top <= 0] = 1.0
    w, _ = nnls(np.column_stack([c / top, np.ones(len(y))]), y)
    return w[:-1] / top, float(w[-1])


def _log_costs(c: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return np.log(np.maximum(c @ coef + intercept, np.finfo(np.float64).tiny))


def _fit_costs_with_loo(c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """The op-cost model fitted on every point and its leave-one-out errors of log latency."""
    coef, intercept = _nnls_costs(c, y)
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        v, b = _nnls_costs(c[keep], y[keep])
        loo[i] = np.log(y[i]) - _log_costs(c[i : i + 1], v, b)[0]
    return coef, intercept, loo


def _split(model: FewShotLatency, X: Any, reset: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float (n, n_devices) finite positive latencies, (n, n_features) finite features and (n, n_costs)
    finite non-negative additive costs; at fit validates ``n_devices`` and ``n_costs`` and sets the columns, later
    checks them."""
    if not reset:
        names = getattr(model, "feature_names_in_", None)
        columns = getattr(X, "columns", None)
        if names is not None and columns is not None and list(map(str, columns)) != list(names):
            raise InvalidValueError(
                "X columns", "the known devices of fit, in order: " + ", ".join(names), list(map(str, columns))
            )
        shape = np.shape(X)
        if len(shape) == 2 and shape[1] != model.n_features_in_:
            n, d = model.n_devices_, model.n_features_in_
            costs = int(model.n_costs)
            layout = "known devices" if n == d else f"columns: {n} known devices + {d - n - costs} SubNet features"
            layout += f" + {costs} additive costs" if costs else ""
            raise InvalidValueError("X columns", f"{d} {layout} (as at fit)", shape[1])
    try:
        x = validate_data(model, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
    except (TypeError, ValueError):
        raise InvalidValueError(
            "X",
            "a 2-D array of latencies (n_subnets, n_known_devices [+ n_features])",
            getattr(X, "shape", type(X).__name__),
        ) from None
    if reset:
        n = model.n_devices
        if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= x.shape[1]):
            raise InvalidValueError(
                "FewShotLatency.n_devices", f"None or an integer from 1 to {x.shape[1]} (the columns of X)", n
            )
        model.n_devices_ = x.shape[1] if n is None else int(n)
        costs = model.n_costs
        free = x.shape[1] - model.n_devices_
        if not isinstance(costs, (int, np.integer)) or isinstance(costs, bool) or not 0 <= costs <= free:
            raise InvalidValueError(
                "FewShotLatency.n_costs", f"an integer from 0 to {free} (the columns of X after the devices)", costs
            )
    n, end = model.n_devices_, x.shape[1] - int(model.n_costs)
    _check_positive(x[:, :n], "X")
    bad = np.argwhere(~np.isfinite(x[:, n:]))
    if len(bad):
        raise InvalidValueError(
            f"X[{bad[0][0]}, {bad[0][1] + n}]", "a finite SubNet feature", float(x[bad[0][0], bad[0][1] + n])
        )
    negative = np.argwhere(x[:, end:] < 0)
    if len(negative):
        i, j = negative[0]
        raise InvalidValueError(f"X[{i}, {j + end}]", "an additive cost >= 0", float(x[i, j + end]))
    return x[:, :n], x[:, n:end], x[:, end:]


def _latencies_1d(y: Any) -> np.ndarray:
    try:
        t = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidValueError("y", "a 1-D array of latencies (ms)", y) from None
    if t.ndim != 1:
        raise InvalidValueError("y", "a 1-D array of latencies (ms)", t.shape)
    _check_positive(t, "y")
    return t


def _check_positive(values: np.ndarray, field: str) -> None:
    bad = np.argwhere(~(np.isfinite(values) & (values > 0)))
    if len(bad):
        where = ", ".join(map(str, bad[0]))
        raise InvalidValueError(f"{field}[{where}]", "a finite latency > 0 (ms)", float(values[tuple(bad[0])]))


# ---------------------------------------------------------------------- reference set
def reference_set(
    space: SearchSpace,
    k: int,
    known: pd.DataFrame | None = None,
    candidates: Iterable[SubNetConfig] | None = None,
    seed: int = 0,
) -> list[SubNetConfig]:
    """The ``k`` SubNets to measure on a new device, spread over what makes latencies differ.

    With ``known`` (rows = SubNets as :class:`~supernet.SubNetConfig` or their keys, columns = known devices,
    latencies in ms), a SubNet is described by its quantile (standardised rank) on each known device; rows with a
    missing latency are skipped. Without it, by the quantiles of its MACs, parameters and layer count (where the
    space has a layer model) together with its standardised encoding, the two blocks weighted equally.

    Selection is greedy farthest-point (maximin) in that feature space, started from the fastest and the slowest
    SubNet (mean quantile; for spaces with encodings only, from the SubNet farthest from the centroid), so the K
    points span the range and the distinct latency profiles that :class:`FewShotLatency` solves its weights from.
    Quantiles rather than log latencies spread the points evenly over each device's distribution instead of
    chasing outliers (leave-one-device-out on NB201, FBNet and OFA: better than random and than standardised log
    latencies at K = 5, 10, 20). ``candidates`` restricts the choice (and resolves key rows of ``known``); without
    either, 2,000 SubNets are sampled from ``space`` with ``seed``, the only randomness (ties go to the first
    row). Degenerate SubNets (e.g. NB201 cells whose input does not reach the output) are best left out of
    ``candidates``. Returns the configs in the order chosen.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InvalidValueError("k", "an integer >= 1", k)
    pool = None if candidates is None else _unique(_config(space, c) for c in candidates)
    if pool is not None and not pool:
        raise InvalidValueError("candidates", "at least one SubNet config", [])
    latency = None
    if known is not None:
        configs, latency = _known_rows(space, known, pool)
    elif pool is None:
        rng = np.random.default_rng(seed)
        configs = _unique(space.sample(rng) for _ in range(_N_SAMPLED))
    else:
        configs = pool
    if k > len(configs):
        raise InvalidValueError("k", f"at most {len(configs)} (the eligible SubNets)", k)
    if latency is not None:
        cost, encoding = _quantiles(latency), np.empty((len(configs), 0))
    else:
        cost = _cost_proxies(space, configs)
        encoding = _standardise(np.stack([space.encode(c) for c in configs]))
        encoding *= np.sqrt(cost.shape[1] / encoding.shape[1]) if cost.shape[1] and encoding.shape[1] else 1.0
    features = np.hstack([cost, encoding])
    if cost.shape[1]:
        speed = cost.mean(axis=1)
        start = list(dict.fromkeys([int(np.argmin(speed)), int(np.argmax(speed))]))
    else:
        start = [int(np.argmax(np.sum((features - features.mean(axis=0)) ** 2, axis=1)))]
    return [configs[i] for i in _farthest_points(features, k, start)]


def _config(space: SearchSpace, config: Any) -> SubNetConfig:
    """``config`` validated by ``space`` (a SubNetConfig already of this space is taken as is: they are immutable
    and built validated)."""
    return config if isinstance(config, SubNetConfig) and config.space == space.name else space.validate(config)


def _unique(configs: Iterable[SubNetConfig]) -> list[SubNetConfig]:
    """``configs`` without repeats (first occurrence kept, order preserved)."""
    out: dict[str, SubNetConfig] = {}
    for config in configs:
        out.setdefault(config.key, config)
    return list(out.values())


def _known_rows(
    space: SearchSpace, known: Any, pool: list[SubNetConfig] | None
) -> tuple[list[SubNetConfig], np.ndarray]:
    """Configs and latencies of the usable rows of ``known`` (in ``pool`` when given, complete, first of repeats)."""
    if not isinstance(known, pd.DataFrame) or known.shape[1] == 0:
        raise InvalidValueError(
            "known",
            "a pandas DataFrame (rows = SubNets, columns = devices)",
            getattr(known, "shape", type(known).__name__),
        )
    by_key = {c.key: c for c in pool or ()}
    try:
        values = known.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidValueError("known", "numeric latencies (ms)", list(map(str, known.dtypes))) from None
    configs: list[SubNetConfig] = []
    rows: list[int] = []
    seen: set[str] = set()
    for i, label in enumerate(known.index):
        if isinstance(label, SubNetConfig):
            config = _config(space, label)
        elif isinstance(label, str) and label in by_key:
            config = by_key[label]
        else:
            raise InvalidValueError("known index", "SubNetConfig rows, or SubNet keys found in candidates", label)
        if (pool is not None and config.key not in by_key) or config.key in seen or np.isnan(values[i]).any():
            continue
        bad = np.flatnonzero(~(np.isfinite(values[i]) & (values[i] > 0)))
        if len(bad):
            raise InvalidValueError(
                f"known[{config.key}, {known.columns[bad[0]]}]", "a latency > 0 (ms)", float(values[i, bad[0]])
            )
        seen.add(config.key)
        configs.append(config)
        rows.append(i)
    return configs, values[rows]


def _cost_proxies(space: SearchSpace, configs: Sequence[SubNetConfig]) -> np.ndarray:
    """Quantiles of MACs, parameters and layer count; no columns for spaces without a layer model."""
    try:
        layers = [space.layers(c) for c in configs]
    except CapabilityError:
        return np.empty((len(configs), 0))
    raw = [(sum(s.macs for s in specs), sum(s.params for s in specs), len(specs)) for specs in layers]
    return _quantiles(np.asarray(raw, dtype=np.float64))


def _quantiles(features: np.ndarray) -> np.ndarray:
    """Each column replaced by its standardised ranks (ties averaged); constant columns dropped."""
    return _standardise(rankdata(features, axis=0))


def _standardise(features: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance; constant columns dropped."""
    std = features.std(axis=0)
    keep = std > 0
    return (features[:, keep] - features[:, keep].mean(axis=0)) / std[keep]


def _farthest_points(features: np.ndarray, k: int, start: list[int]) -> list[int]:
    """Greedy maximin: ``start``, then repeatedly the row farthest from everything chosen so far."""
    chosen = start[:k]
    dist = np.min([np.sum((features - features[i]) ** 2, axis=1) for i in chosen], axis=0)
    dist[chosen] = -np.inf
    while len(chosen) < k:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.sum((features - features[i]) ** 2, axis=1))
        dist[i] = -np.inf
    return chosen
