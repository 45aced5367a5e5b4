"""Accuracy predictor with calibrated uncertainty: an XGBoost seed ensemble blended with a Gaussian process.

Design (chosen for ranking quality from ~100 samples, see ``benchmarks/bench_accuracy.py``):

- targets are mapped to normal scores (rank-Gaussian, linear beyond the observed range), which keeps the few
  broken networks (e.g. NB201's disconnected cells at 10 %) from dominating a squared loss;
- ``n_models`` XGBoost boosters (row and column subsampling, different seeds) and an exact GP (constant × Matérn-5/2
  + white noise on standardised features, hyper-parameters by marginal likelihood on at most 300 rows) are fitted to
  the normal scores; the prediction is the ``gp_weight`` mixture of the GP posterior and the ensemble, with the
  mixture's variance (each part's variance plus their disagreement);
- mean and ±1 std are mapped back to target units, and the std is multiplied by ``calibration_factor_``: the
  68.27 % quantile of ``|y - mean| / std`` over ``cv``-fold out-of-fold predictions of the whole procedure, so that
  about 68 % of new targets fall within ±1 std.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau, norm, rankdata
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from hwpareto.errors import HwparetoError, InvalidValueError
from predictors._portable import booster_from_state, booster_to_state, dumps, loads

__all__ = ["AccuracyPredictor"]

ONE_SIGMA = math.erf(1 / math.sqrt(2))
"""Probability mass within ±1 standard deviation of a normal distribution (0.6827)."""
MIN_ROWS = 10
_GP_OPT_ROWS = 300
_SUBSAMPLE = 0.8
_COLSAMPLE = 0.7


@functools.cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS to ``n`` threads: the GP's matrices are small, and idle BLAS threads spinning on a busy machine
    can slow a fit many times over."""
    with _threadpools().limit(limits=n, user_api="blas"):
        yield


def _gp_kernel() -> Kernel:
    """Constant × Matérn-5/2 (isotropic) + white noise; hyper-parameter bounds suit standardised features."""
    return ConstantKernel(1.0, (1e-3, 1e3)) * Matern(10.0, (1e-1, 1e4), nu=2.5) + WhiteKernel(0.1, (1e-6, 1e1))


def _array(value: Any, where: str, ndim: int) -> np.ndarray:
    """``value`` as a finite float64 array with ``ndim`` dimensions, or :class:`InvalidValueError`."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidValueError(where, f"a {ndim}-D array of numbers", type(value).__name__) from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise InvalidValueError(f"{where} shape", f"{ndim} dimensions {shape}", arr.shape)
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        index = ", ".join(str(int(i)) for i in bad[0])
        raise InvalidValueError(f"{where}[{index}]", "a finite number", float(arr[tuple(bad[0])]))
    return arr


@dataclass(frozen=True)
class _RankGauss:
    """Monotone map of targets to normal scores: piecewise linear through (unique target, mean normal score of its
    ranks), extended linearly with the slope of the outer tenth of the knots at each end."""

    knots_y: np.ndarray
    knots_z: np.ndarray
    slope_lo: float
    slope_hi: float

    @classmethod
    def fit(cls, y: np.ndarray) -> _RankGauss:
        knots_y, first = np.unique(y, return_index=True)
        knots_z = norm.ppf((rankdata(y)[first] - 0.5) / len(y))  # ties share their mean rank
        if len(knots_y) == 1:
            return cls(knots_y, knots_z, 1.0, 1.0)
        k = max(1, (len(knots_y) - 1) // 10)
        return cls(
            knots_y,
            knots_z,
            float((knots_z[k] - knots_z[0]) / (knots_y[k] - knots_y[0])),
            float((knots_z[-1] - knots_z[-1 - k]) / (knots_y[-1] - knots_y[-1 - k])),
        )

    def forward(self, y: np.ndarray) -> np.ndarray:
        return _interp(y, self.knots_y, self.knots_z, self.slope_lo, self.slope_hi)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return _interp(z, self.knots_z, self.knots_y, 1 / self.slope_lo, 1 / self.slope_hi)

    def to_state(self) -> dict[str, Any]:
        return {"knots_y": self.knots_y, "knots_z": self.knots_z, "slope_lo": self.slope_lo, "slope_hi": self.slope_hi}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _RankGauss:
        knots_y, knots_z = (_array(state[k], f"predictor blob {k}", 1) for k in ("knots_y", "knots_z"))
        slopes = float(state["slope_lo"]), float(state["slope_hi"])
        if len(knots_y) != len(knots_z) or not len(knots_y) or min(slopes) <= 0 or not np.all(np.diff(knots_y) > 0):
            raise HwparetoError("predictor blob: malformed target transform")
        return cls(knots_y, knots_z, *slopes)


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, slope_lo: float, slope_hi: float) -> np.ndarray:
    """``np.interp`` continued linearly below ``xp[0]`` and above ``xp[-1]`` with the given slopes."""
    out = np.interp(x, xp, fp)
    out = np.where(x < xp[0], fp[0] + (x - xp[0]) * slope_lo, out)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * slope_hi, out)


@dataclass
class _Ensemble:
    """One fitted set of models (the final one, or one per cross-validation fold); predicts uncalibrated."""

    target: _RankGauss
    boosters: list[Any]
    gp: GaussianProcessRegressor | None
    gp_targets: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    gp_weight: float
    n_jobs: int

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, est: AccuracyPredictor, seed: int) -> _Ensemble:
        import xgboost as xgb

        target = _RankGauss.fit(y)
        z = target.forward(y)
        boosters = []
        if est.gp_weight < 1:
            dtrain = xgb.DMatrix(X, label=z, nthread=est.n_jobs)
            for k in range(est.n_models):
                params = {
                    "objective": "reg:squarederror",
                    "eta": est.learning_rate,
                    "max_depth": est.max_depth,
                    "subsample": _SUBSAMPLE,
                    "colsample_bytree": _COLSAMPLE,
                    "tree_method": "hist",
                    "nthread": est.n_jobs,
                    "seed": seed * 1000 + k,
                    "verbosity": 0,
                }
                boosters.append(xgb.train(params, dtrain, num_boost_round=est.n_estimators))
        x_mean, x_scale = X.mean(axis=0), X.std(axis=0)
        x_scale[x_scale == 0] = 1.0
        gp = None
        if est.gp_weight > 0:
            Xs = (X - x_mean) / x_scale
            rows = np.random.default_rng(seed).permutation(len(X))[:_GP_OPT_ROWS]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                tuned = GaussianProcessRegressor(_gp_kernel(), normalize_y=True).fit(Xs[rows], z[rows])
            gp = _exact_gp(tuned.kernel_, Xs, z)
        return cls(target, boosters, gp, z, x_mean, x_scale, est.gp_weight, est.n_jobs)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (uncalibrated) std in target units."""
        w = self.gp_weight
        mean_x = spread_x = mean_g = std_g = np.zeros(len(X))
        if self.boosters:  # the boosters predict on n_jobs threads (set when trained or loaded)
            members = np.stack([b.inplace_predict(X) for b in self.boosters]).astype(np.float64)
            mean_x, spread_x = members.mean(axis=0), members.std(axis=0)
        if self.gp is not None:
            mean_g, std_g = self.gp.predict((X - self.x_mean) / self.x_scale, return_std=True)
        mean = w * mean_g + (1 - w) * mean_x
        std = np.sqrt(w * std_g**2 + (1 - w) * spread_x**2 + w * (1 - w) * (mean_g - mean_x) ** 2)
        lo, mid, hi = (self.target.inverse(mean + k * std) for k in (-1, 0, 1))
        return mid, np.maximum((hi - lo) / 2, np.finfo(np.float64).tiny)

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "target": self.target.to_state(),
            "boosters": [booster_to_state(b) for b in self.boosters],
        }
        if self.gp is not None:
            state["gp"] = {
                "X_train": self.gp.X_train_,
                "y_train": self.gp_targets,
                "theta": self.gp.kernel_.theta,
                "alpha": self.gp.alpha_,
                "x_mean": self.x_mean,
                "x_scale": self.x_scale,
            }
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], est: AccuracyPredictor, n_features: int) -> _Ensemble:
        target = _RankGauss.from_state(state["target"])
        boosters = [
            booster_from_state(b, f"predictor blob boosters[{i}]", est.n_jobs) for i, b in enumerate(state["boosters"])
        ]
        expected = est.n_models if est.gp_weight < 1 else 0
        if len(boosters) != expected or any(b.num_features() != n_features for b in boosters):
            raise HwparetoError(f"predictor blob: expected {expected} boosters of {n_features} features")
        gp, y_train, x_mean, x_scale = None, np.zeros(0), np.zeros(n_features), np.ones(n_features)
        if est.gp_weight > 0:
            g = state["gp"]
            X_train = _array(g["X_train"], "predictor blob X_train", 2)
            y_train, x_mean, x_scale, theta, alpha = (
                _array(g[k], f"predictor blob {k}", 1) for k in ("y_train", "x_mean", "x_scale", "theta", "alpha")
            )
            template = _gp_kernel()
            if (
                X_train.shape[1] != n_features
                or len(y_train) != len(X_train)
                or len(alpha) != len(X_train)
                or len(theta) != len(template.theta)
                or len(x_mean) != n_features
                or len(x_scale) != n_features
            ):
                raise HwparetoError("predictor blob: GP arrays of inconsistent shapes")
            gp = _exact_gp(template.clone_with_theta(theta), X_train, y_train)
            if not np.allclose(gp.alpha_, alpha, rtol=1e-6, atol=1e-9):
                raise HwparetoError("predictor blob: GP weights do not match its training data and kernel")
        return cls(target, boosters, gp, y_train, x_mean, x_scale, est.gp_weight, est.n_jobs)


def _exact_gp(kernel: Kernel, X: np.ndarray, z: np.ndarray) -> GaussianProcessRegressor:
    """A GP with ``kernel`` fixed, conditioned on all of (X, z)."""
    return GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True).fit(X, z)


class AccuracyPredictor(RegressorMixin, BaseEstimator):
    """Predicts accuracy (or any score) from a feature matrix (e.g. :class:`~predictors.SpaceFeatures`), with a
    calibrated standard deviation for acquisition functions; see the module docstring for the model.

    Parameters: ``n_models`` boosters of ``n_estimators`` trees (``learning_rate``, ``max_depth``); ``gp_weight``
    (0: boosters only, 1: GP only); ``cv`` folds for calibrating the std; ``random_state`` (int) fixes every seed;
    ``n_jobs`` XGBoost and BLAS threads. Fitted attributes: ``n_features_in_``, ``ensemble_``, ``calibration_factor_``
    (multiplies the raw std) and ``cv_kendall_tau_`` (Kendall τ-b of the out-of-fold means: expected ranking
    quality on new configs).
    """

    def __init__(
        self,
        n_models: int = 4,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        gp_weight: float = 0.5,
        cv: int = 5,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_models = n_models
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.gp_weight = gp_weight
        self.cv = cv
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        for name, low, high in (
            ("n_models", 1, 1000),
            ("n_estimators", 1, 100_000),
            ("max_depth", 1, 16),
            ("cv", 2, 100),
            ("random_state", 0, 2**31 - 1),
            ("n_jobs", 1, 1024),
        ):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= int(value) <= high:
                raise InvalidValueError(f"AccuracyPredictor.{name}", f"an integer in [{low}, {high}]", value)
        for name, low_open in (("learning_rate", True), ("gp_weight", False)):
            value = getattr(self, name)
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not 0 <= float(value) <= 1
                or (low_open and value == 0)
            ):
                raise InvalidValueError(
                    f"AccuracyPredictor.{name}", f"a number in {'(' if low_open else '['}0, 1]", value
                )
        if self.gp_weight == 0 and self.n_models < 2:
            raise InvalidValueError(
                "AccuracyPredictor.n_models",
                "at least 2 when gp_weight is 0 (the ensemble spread is then the only uncertainty)",
                self.n_models,
            )

    def fit(self, X: Any, y: Any) -> AccuracyPredictor:
        """Fit the models on all rows, then calibrate the std on ``cv``-fold out-of-fold predictions."""
        self._check_params()
        X = _array(X, "X", 2)
        y = _array(np.ravel(y) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else y, "y", 1)
        if len(y) != len(X):
            raise InvalidValueError("y length", f"{len(X)} (one value per row of X)", len(y))
        needed = max(MIN_ROWS, 2 * self.cv)
        if len(X) < needed:
            raise InvalidValueError("X rows", f"at least {needed} (max({MIN_ROWS}, 2 × cv))", len(X))
        if np.ptp(y) == 0:
            raise InvalidValueError("y", "at least two distinct values", [float(y[0])])
        seed = int(self.random_state)
        mean, std = np.empty(len(y)), np.empty(len(y))
        with _blas_threads(self.n_jobs):
            for k, (train, held_out) in enumerate(KFold(self.cv, shuffle=True, random_state=seed).split(X)):
                fold = _Ensemble.fit(X[train], y[train], self, seed + 1 + k)
                mean[held_out], std[held_out] = fold.predict(X[held_out])
            self.ensemble_ = _Ensemble.fit(X, y, self, seed)
        self.calibration_factor_ = float(max(np.quantile(np.abs(y - mean) / std, ONE_SIGMA), 1e-6))
        self.cv_kendall_tau_ = float(np.nan_to_num(kendalltau(mean, y).statistic))  # 0 for constant means
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted mean, or ``(mean, std)`` with the calibrated standard deviation when ``return_std``."""
        check_is_fitted(self, "ensemble_")
        X = _array(X, "X", 2)
        if X.shape[1] != self.n_features_in_:
            raise InvalidValueError("X features", f"{self.n_features_in_} (as in fit)", X.shape[1])
        with _blas_threads(self.n_jobs):
            mean, std = self.ensemble_.predict(X)
        return (mean, std * self.calibration_factor_) if return_std else mean

    def to_bytes(self) -> bytes:
        """Pickle-free serialisation (JSON; boosters in XGBoost's UBJSON format, the GP as plain arrays)."""
        check_is_fitted(self, "ensemble_")
        state = {
            "n_features_in_": self.n_features_in_,
            "calibration_factor_": self.calibration_factor_,
            "cv_kendall_tau_": self.cv_kendall_tau_,
            "ensemble": self.ensemble_.to_state(),
        }
        return dumps(type(self).__name__, self.get_params(), state)

    @classmethod
    def from_bytes(cls, blob: bytes) -> AccuracyPredictor:
        """Inverse of :meth:`to_bytes`; foreign or corrupt bytes raise :class:`HwparetoError`."""
        if not isinstance(blob, (bytes, bytearray)):
            raise InvalidValueError("blob", "bytes from AccuracyPredictor.to_bytes", type(blob).__name__)
        _, params, state = loads(bytes(blob), expected_class=cls.__name__)
        try:
            est = cls(**params)
            est._check_params()
            n_features = int(state["n_features_in_"])
            with _blas_threads(est.n_jobs):
                est.ensemble_ = _Ensemble.from_state(state["ensemble"], est, n_features)
            est.calibration_factor_ = float(state["calibration_factor_"])
            est.cv_kendall_tau_ = float(state["cv_kendall_tau_"])
            est.n_features_in_ = n_features
        except HwparetoError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HwparetoError(f"predictor blob: malformed {cls.__name__} ({type(exc).__name__}: {exc})") from None
        if not math.isfinite(est.calibration_factor_) or est.calibration_factor_ <= 0:
            raise HwparetoError("predictor blob: calibration_factor_ must be a positive number")
        return est
