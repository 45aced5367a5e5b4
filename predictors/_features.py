"""Feature matrices of SubNet configs for predictors: a scikit-learn transformer over the space's own features
(:meth:`supernet.SearchSpace.features`), so that predictors work for any space, built-in or plugin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hwpareto.errors import InvalidValueError
from supernet import OPS, SearchSpace, SubNetConfig, distinct_configs

__all__ = ["SpaceFeatures", "additive_costs"]

_LOG_COSTS = ("log_params", "log_macs")


class SpaceFeatures(TransformerMixin, BaseEstimator):
    """Float feature matrix of SubNet configs of ``space`` (deterministic; no statistics are learned).

    The columns are the space's :meth:`~supernet.SearchSpace.feature_names`: the space encoding, layer-model
    columns when the space has a layer model, then space-specific columns (NB201 cell paths, MobileNetV3 depth and
    mean widths, GPT kept layers). ``canonical`` (default) describes what a SubNet computes, as accuracy models
    need; cost models pass False (see :meth:`~supernet.SearchSpace.features`).

    ``transform`` takes a sequence of :class:`SubNetConfig` or value mappings (validated by the space).

    A space that overrides :meth:`~supernet.SearchSpace.params` / :meth:`~supernet.SearchSpace.macs` (the Llama
    family: its LayerSpecs are a prefill plus one representative decode step, which repeat the weights) has those
    counts in ``log_params`` / ``log_macs`` instead of the sums over its LayerSpecs, as the analytic objectives do.
    """

    def __init__(self, space: SearchSpace, canonical: bool = True) -> None:
        self.space = space
        self.canonical = canonical

    def fit(self, X: Any = None, y: Any = None) -> SpaceFeatures:
        """Read the columns from the space alone (``X`` and ``y`` are ignored)."""
        if not isinstance(self.space, SearchSpace):
            raise InvalidValueError(
                "SpaceFeatures.space", "a SearchSpace (e.g. supernet.get_space('nb201'))", type(self.space).__name__
            )
        if not isinstance(self.canonical, bool):
            raise InvalidValueError("SpaceFeatures.canonical", "True or False", self.canonical)
        names = list(self.space.feature_names())
        if len(set(names)) != len(names):
            raise InvalidValueError(
                f"SpaceFeatures of space {self.space.name!r}",
                "distinct feature names",
                sorted({n for n in names if names.count(n) > 1}),
            )
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(names)
        return self

    def transform(self, X: Sequence[SubNetConfig | Mapping[str, Any]]) -> np.ndarray:
        """The ``(len(X), n_features_out_)`` float64 feature matrix of the configs ``X`` (each distinct config is
        featurised once)."""
        check_is_fitted(self, "feature_names_out_")
        if isinstance(X, (str, bytes, Mapping, SubNetConfig)) or not isinstance(X, Sequence):
            raise InvalidValueError(
                "SpaceFeatures.transform X", "a sequence of SubNetConfig or value mappings", type(X).__name__
            )
        space = self.space
        configs = [space.validate(c) for c in X]
        if not configs:
            return np.empty((0, self.n_features_out_), dtype=np.float64)
        unique, inverse = distinct_configs(configs)
        matrix = np.array(space.features(unique, canonical=self.canonical), dtype=np.float64)
        if matrix.shape != (len(unique), self.n_features_out_):
            raise InvalidValueError(
                f"space {space.name!r} features", f"shape ({len(unique)}, {self.n_features_out_})", matrix.shape
            )
        names = list(self.feature_names_out_)
        for column, method in (("log_params", "params"), ("log_macs", "macs")):
            if column in names and getattr(type(space), method) is not getattr(SearchSpace, method):
                count = getattr(space, method)
                matrix[:, names.index(column)] = np.log1p([float(count(c)) for c in unique])
        return matrix[inverse]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names (object array of str): the space's :meth:`~supernet.SearchSpace.feature_names`."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()


def additive_costs(space: SearchSpace, features: np.ndarray) -> np.ndarray:
    """The columns of ``features`` (``SpaceFeatures(space, canonical=False)`` output) that add up over a SubNet's
    layers, in linear units: parameters, MACs, layers in all and per op kind; ``(n, 0)`` for a space without a
    layer model. The op-cost model of :class:`~predictors.FewShotLatency` is fitted on them."""
    names = list(space.feature_names())
    wanted = additive_cost_names(space)
    costs = np.array(features, dtype=np.float64)[:, [names.index(n) for n in wanted]]
    for j, name in enumerate(wanted):
        if name in _LOG_COSTS:
            costs[:, j] = np.expm1(costs[:, j])
    return costs


def additive_cost_names(space: SearchSpace) -> list[str]:
    """The feature names :func:`additive_costs` takes, in its column order (empty without a layer model)."""
    names = set(space.feature_names())
    return [n for n in (*_LOG_COSTS, "n_layers", *(f"n_{op}" for op in OPS)) if n in names]
