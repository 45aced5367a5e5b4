"""Latency/energy predictor: LUT-sum (when the device has a LUT) corrected by a learned model.

Target: ``log(y / lut_sum)`` when column ``lut_column`` of X holds the LUT-sum, else ``log(y)``. Model, in log
space: a ridge regression on standardised features (the additive part: per-op costs, FLOPs) plus an ensemble of
XGBoost regressors on its residuals (interactions, fusion, launch overheads). Members differ in seed and row
subsample; their spread, rescaled on out-of-fold residuals, is the uncertainty. With fewer than ``min_rows``
measurements and a LUT, the model is the LUT-sum times the median measured/LUT ratio (``mode_ = "lut-scale"``),
its error estimated by leave-one-out on those rows; without a LUT that is an error. With more rows and a LUT, the
learned correction is kept only when its out-of-fold error (the calibration folds) is below that of the scaled
LUT-sum on the same folds; otherwise the model is the scaled LUT-sum (a correction that does not generalise, e.g.
noisy measurements of few SubNets in a wide space, would only add error for a search to exploit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from hwpareto.errors import HwparetoError, InvalidValueError
from predictors._portable import booster_from_state, booster_to_state, dumps, loads

__all__ = ["LatencyPredictor"]


class LatencyPredictor(RegressorMixin, BaseEstimator):
    """Predicts a positive cost (latency_ms, energy_mj) from a feature matrix; ``predict(X, return_std=True)``
    also returns a 1-sigma uncertainty in the same unit."""

    def __init__(
        self,
        lut_column: int | None = 0,
        n_members: int = 5,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        ridge_alpha: float = 1.0,
        min_rows: int = 20,
        random_state: int = 0,
    ) -> None:
        self.lut_column = lut_column
        self.n_members = n_members
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.ridge_alpha = ridge_alpha
        self.min_rows = min_rows
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> LatencyPredictor:
        """Fit on features ``X`` (n_samples, n_features) and positive targets ``y``."""
        X, y = self._check_xy(X, y)
        self.n_features_in_ = X.shape[1]
        base = self._base(X)
        target = np.log(y) - base
        if len(y) < self.min_rows:
            if self.lut_column is None:
                raise InvalidValueError("training rows", f"at least min_rows={self.min_rows} without a LUT", len(y))
            self.mode_ = "lut-scale"
            self.offset_ = float(np.median(target))
            loo = np.array([np.median(np.delete(target, i)) for i in range(len(y))]) if len(y) > 1 else target
            self.residual_std_ = float(np.std(target - loo)) if len(y) > 1 else float("nan")
            self.calibration_ = 1.0
            return self
        self.calibration_, learned, scaled = self._calibrate(X, target)
        if self.lut_column is not None and np.mean(scaled**2) <= np.mean(learned**2):
            self.mode_ = "lut-scale"
            self.offset_ = float(np.median(target))
            self.residual_std_, self.calibration_ = float(np.std(scaled)), 1.0
            return self
        self.mode_ = "learned"
        self.residual_std_ = float(np.std(learned))
        self.mean_, self.scale_, self.ridge_, self.members_ = self._fit_core(X, target, self.n_members)
        return self

    def _fit_core(self, X: np.ndarray, target: np.ndarray, n_members: int) -> tuple[Any, Any, Ridge, list[Any]]:
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
        ridge = Ridge(alpha=self.ridge_alpha).fit((X - mean) / scale, target)
        members = self._fit_members(X, target - ridge.predict((X - mean) / scale), n_members)
        return mean, scale, ridge, members

    def _fit_members(self, X: np.ndarray, residual: np.ndarray, n_members: int) -> list[Any]:
        import xgboost as xgb

        members = []
        for m in range(n_members):
            params = {
                "max_depth": self.max_depth,
                "eta": self.learning_rate,
                "subsample": self.subsample,
                "colsample_bytree": 0.8,
                "objective": "reg:squarederror",
                "seed": self.random_state + m,
                "nthread": 1,
                "verbosity": 0,
            }
            members.append(xgb.train(params, xgb.DMatrix(X, label=residual), num_boost_round=self.n_estimators))
        return members

    def _calibrate(self, X: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Scale member spread so that out-of-fold errors are ~1 sigma (same ensemble size as the final model, so
        the spreads compare); also the out-of-fold errors (log units) of the learned model and, on the same
        folds, of the scaled LUT-sum (the training folds' median target)."""
        folds = KFold(n_splits=min(5, len(target)), shuffle=True, random_state=self.random_state)
        errors, spreads, scaled = [], [], []
        for train, test in folds.split(X):
            mean, scale, ridge, members = self._fit_core(X[train], target[train], self.n_members)
            linear, boost_mean, boost_std = _combine(X[test], mean, scale, ridge, members)
            errors.append(target[test] - linear - boost_mean)
            spreads.append(boost_std)
            scaled.append(target[test] - np.median(target[train]))
        err, spread = np.concatenate(errors), np.concatenate(spreads)
        ratio = np.abs(err) / np.maximum(spread, 1e-6)
        return float(np.quantile(ratio, 0.6827)), err, np.concatenate(scaled)

    # ------------------------------------------------------------------ prediction
    def _base(self, X: np.ndarray) -> np.ndarray:
        if self.lut_column is None:
            return np.zeros(len(X))
        lut = X[:, self.lut_column]
        if np.any(~np.isfinite(lut)) or np.any(lut <= 0):
            raise InvalidValueError(
                f"X[:, {self.lut_column}] (LUT-sum)",
                "positive finite values",
                float(lut[~(np.isfinite(lut) & (lut > 0))][0]),
            )
        return np.log(lut)

    def _predict_log(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted log target (base added) and the raw member spread (log units)."""
        base = self._base(X)
        if self.mode_ == "lut-scale":
            return base + self.offset_, np.full(len(X), self.residual_std_)
        linear, boost_mean, boost_std = _combine(X, self.mean_, self.scale_, self.ridge_, self.members_)
        return base + linear + boost_mean, boost_std

    def predict(self, X: Any, return_std: bool = False) -> Any:
        """Predicted cost; with ``return_std`` also a calibrated 1-sigma uncertainty (same unit)."""
        check_is_fitted(self, "mode_")
        X = self._check_x(X)
        log_mean, spread = self._predict_log(X)
        mean = np.exp(log_mean)
        if not return_std:
            return mean
        sigma = spread * self.calibration_ if self.mode_ == "learned" else spread
        return mean, mean * np.nan_to_num(sigma, nan=0.0)

    # ------------------------------------------------------------------ validation
    def _check_x(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise InvalidValueError("X", "a 2-D array (n_samples, n_features)", f"shape {arr.shape}")
        if hasattr(self, "n_features_in_") and arr.shape[1] != self.n_features_in_:
            raise InvalidValueError("X", f"{self.n_features_in_} features, as seen in fit", arr.shape[1])
        if not np.all(np.isfinite(arr)):
            raise InvalidValueError("X", "finite values", "NaN or inf")
        return arr

    def _check_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        for name, value, low in (
            ("n_members", self.n_members, 1),
            ("n_estimators", self.n_estimators, 1),
            ("max_depth", self.max_depth, 1),
            ("min_rows", self.min_rows, 2),
        ):
            if not isinstance(value, int) or value < low:
                raise InvalidValueError(f"LatencyPredictor.{name}", f"an integer >= {low}", value)
        arr = self._check_x(X)
        target = np.asarray(y, dtype=np.float64).ravel()
        if len(target) != len(arr):
            raise InvalidValueError("y", f"{len(arr)} values (one per row of X)", len(target))
        bad = ~np.isfinite(target) | (target <= 0)
        if bad.any():
            raise InvalidValueError("y", "positive finite costs", float(target[bad][0]))
        if len(target) < 2:
            raise InvalidValueError("training rows", "at least 2", len(target))
        if self.lut_column is not None and not 0 <= self.lut_column < arr.shape[1]:
            raise InvalidValueError(
                "LatencyPredictor.lut_column", f"a column index < {arr.shape[1]} or None", self.lut_column
            )
        return arr, target

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Portable JSON document (XGBoost boosters as UBJSON, ridge as arrays); never pickle."""
        check_is_fitted(self, "mode_")
        state: dict[str, Any] = {
            "mode": self.mode_,
            "n_features_in": self.n_features_in_,
            "calibration": self.calibration_,
            "residual_std": self.residual_std_,
        }
        if self.mode_ == "lut-scale":
            state["offset"] = self.offset_
        else:
            state.update(
                mean=self.mean_,
                scale=self.scale_,
                ridge_coef=self.ridge_.coef_,
                ridge_intercept=float(self.ridge_.intercept_),
                members=[booster_to_state(m) for m in self.members_],
            )
        return dumps(type(self).__name__, self.get_params(), state)

    @classmethod
    def from_bytes(cls, blob: bytes) -> LatencyPredictor:
        """Rebuild a predictor written by :meth:`to_bytes`."""
        _, params, state = loads(blob, cls.__name__)
        try:
            model = cls(**params)
            model.mode_ = state["mode"]
            model.n_features_in_ = int(state["n_features_in"])
            model.calibration_ = float(state["calibration"])
            model.residual_std_ = float(state["residual_std"])
            if model.mode_ == "lut-scale":
                model.offset_ = float(state["offset"])
            else:
                model.mean_ = np.asarray(state["mean"], dtype=np.float64)
                model.scale_ = np.asarray(state["scale"], dtype=np.float64)
                model.ridge_ = Ridge(alpha=model.ridge_alpha)
                model.ridge_.coef_ = np.asarray(state["ridge_coef"], dtype=np.float64)
                model.ridge_.intercept_ = float(state["ridge_intercept"])
                model.ridge_.n_features_in_ = model.n_features_in_
                model.members_ = [booster_from_state(m, f"member {i}") for i, m in enumerate(state["members"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise HwparetoError(f"predictor blob: incomplete LatencyPredictor state ({exc!r})") from None
        return model


def _combine(
    X: np.ndarray, mean: np.ndarray, scale: np.ndarray, ridge: Ridge, members: list[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge part, mean and spread of the boosted residual members, in log units."""
    import xgboost as xgb

    dm = xgb.DMatrix(X)
    boosts = np.stack([m.predict(dm) for m in members])
    return ridge.predict((X - mean) / scale), boosts.mean(axis=0), boosts.std(axis=0)
