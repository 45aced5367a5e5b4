"""Feature matrices of SubNet configs for accuracy predictors: the space encoding, cheap structural features from the
layer model, and space-specific features (NB201 cell paths, MobileNetV3 depth and mean widths, GPT kept layers)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from supernet import OPS, CapabilityError, InvalidValueError, SearchSpace, SubNetConfig
from supernet.gpt import GPTSpace
from supernet.mbv3 import MobileNetV3Space
from supernet.nb201 import NB201Space
from supernet.nb201._space import EDGES as NB201_EDGES

__all__ = ["NB201_PATHS", "SpaceFeatures", "nb201_canonical"]


def _cell_paths() -> tuple[tuple[tuple[int, ...], tuple[str, ...]], ...]:
    """Every input→output path of the NB201 cell as (nodes, edge names), shortest first."""
    out_node = max(to for _, to, _ in NB201_EDGES)

    Route = tuple[tuple[int, ...], tuple[str, ...]]

    def walk(node: int, nodes: tuple[int, ...], edges: tuple[str, ...]) -> list[Route]:
        if node == out_node:
            return [(nodes, edges)]
        return [p for name, to, frm in NB201_EDGES if frm == node for p in walk(to, (*nodes, to), (*edges, name))]

    return tuple(sorted(walk(0, (0,), ()), key=lambda p: (len(p[0]), p[0])))


NB201_PATHS = _cell_paths()
"""The four NB201 cell paths ``0→3``, ``0→1→3``, ``0→2→3``, ``0→1→2→3`` as (nodes, edge names)."""
_PATH_NAMES = tuple("-".join(map(str, nodes)) for nodes, _ in NB201_PATHS)
_CONVS = ("nor_conv_1x1", "nor_conv_3x3")
_SPATIAL = ("nor_conv_3x3", "avg_pool_3x3")
_LIVE_OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nb201_canonical(ops: Mapping[str, Any]) -> dict[str, str]:
    """Edge ops with every edge that lies on no live input→output path (one without ``none``) set to ``none``.

    Such edges do not change what the cell computes, so cells that differ only there are the same network.
    """
    live = {e for _, edges in NB201_PATHS if all(ops[e] != "none" for e in edges) for e in edges}
    return {name: str(ops[name]) if name in live else "none" for name, _, _ in NB201_EDGES}


def _nb201_names() -> list[str]:
    return [
        *(f"alive_{p}" for p in _PATH_NAMES),
        "disconnected",
        "n_live_paths",
        *(f"live_{op}" for op in _LIVE_OPS),
        *(f"convs_{p}" for p in _PATH_NAMES),
        "max_conv_depth",
        "min_conv_depth",
        "max_3x3_depth",
        "max_path_len",
    ]


def _nb201_features(config: SubNetConfig) -> list[float]:
    """Path structure of a cell: which paths are alive, op counts on live edges, conv depths per path."""
    live_ops = nb201_canonical(config.values)
    alive = [all(config[e] != "none" for e in edges) for _, edges in NB201_PATHS]
    convs = [sum(config[e] in _CONVS for e in edges) * a for (_, edges), a in zip(NB201_PATHS, alive, strict=True)]
    live = [edges for (_, edges), a in zip(NB201_PATHS, alive, strict=True) if a]
    live_convs = [c for c, a in zip(convs, alive, strict=True) if a]
    return [
        *map(float, alive),
        float(not live),
        float(len(live)),
        *(float(sum(live_op == op for live_op in live_ops.values())) for op in _LIVE_OPS),
        *map(float, convs),
        float(max(live_convs, default=0)),
        float(min(live_convs, default=0)),
        float(max((sum(config[e] in _SPATIAL for e in edges) for edges in live), default=0)),
        float(max(map(len, live), default=0)),
    ]


def _mbv3_features(space: MobileNetV3Space, config: SubNetConfig) -> list[float]:
    """Total depth and mean kernel size and expand ratio of the active blocks."""
    active = sorted(space.active_blocks(config))
    return [
        float(len(active)),
        float(np.mean([float(config[f"ks_{i}"]) for i in active])),
        float(np.mean([float(config[f"e_{i}"]) for i in active])),
    ]


def _gpt_features(space: GPTSpace, config: SubNetConfig) -> list[float]:
    """Kept layers and their total heads and FFN width."""
    kept = [i for i in range(space.n_layers) if config[f"layer_{i}"]]
    return [
        float(len(kept)),
        float(sum(int(config[f"heads_{i}"]) for i in kept)),
        float(sum(int(config[f"ffn_{i}"]) for i in kept)),
    ]


class SpaceFeatures(TransformerMixin, BaseEstimator):
    """Float feature matrix of SubNet configs of ``space`` (deterministic; no statistics are learned).

    Columns, in order:

    - the space encoding (``space.encode``; names from ``space.encoding_names``). With ``canonical`` (default),
      NB201 cells are encoded in canonical form (:func:`nb201_canonical`), as MobileNetV3 and GPT encodings
      already zero inactive blocks and skipped layers;
    - when the space has a layer model: ``log_params`` and ``log_macs`` (``log1p``), ``n_layers`` and ``n_<op>``
      (LayerSpecs per op kind the space can produce), of the canonical config;
    - NB201: per path (``0-3``, ``0-1-3``, ``0-2-3``, ``0-1-2-3``) ``alive_<path>`` (no ``none`` on it) and
      ``convs_<path>`` (convs on it when alive), ``disconnected``, ``n_live_paths``, ``live_<op>`` (ops on live
      edges), ``max_conv_depth`` / ``min_conv_depth`` (most / fewest convs over live paths: the effective depth
      and the shortest route), ``max_3x3_depth`` (most 3×3 convs and pools on a live path) and ``max_path_len``;
    - MobileNetV3: ``depth``, ``mean_ks`` and ``mean_e`` over active blocks; GPT: ``kept_layers``,
      ``total_heads`` and ``total_ffn``.

    ``transform`` takes a sequence of :class:`SubNetConfig` or value mappings (validated by the space).
    """

    def __init__(self, space: SearchSpace, canonical: bool = True) -> None:
        self.space = space
        self.canonical = canonical

    def fit(self, X: Any = None, y: Any = None) -> SpaceFeatures:
        """Work out the columns from the space alone (``X`` and ``y`` are ignored)."""
        if not isinstance(self.space, SearchSpace):
            raise InvalidValueError("SpaceFeatures.space", "a SearchSpace (e.g. supernet.get_space('nb201'))",
                                    type(self.space).__name__)
        if not isinstance(self.canonical, bool):
            raise InvalidValueError("SpaceFeatures.canonical", "True or False", self.canonical)
        space = self.space
        try:
            space.layers(space.smallest())
        except CapabilityError:
            self.op_kinds_: tuple[str, ...] | None = None
        else:
            try:
                seen = {spec.op for spec in space.layer_universe()}
            except CapabilityError:
                seen = set(OPS)
            self.op_kinds_ = tuple(op for op in OPS if op in seen)
        names = list(space.encoding_names())
        if self.op_kinds_ is not None:
            names += ["log_params", "log_macs", "n_layers", *(f"n_{op}" for op in self.op_kinds_)]
        if isinstance(space, NB201Space):
            names += _nb201_names()
        elif isinstance(space, MobileNetV3Space):
            names += ["depth", "mean_ks", "mean_e"]
        elif isinstance(space, GPTSpace):
            names += ["kept_layers", "total_heads", "total_ffn"]
        if len(set(names)) != len(names):
            raise InvalidValueError(f"SpaceFeatures of space {space.name!r}", "distinct feature names",
                                    sorted({n for n in names if names.count(n) > 1}))
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(names)
        return self

    def transform(self, X: Sequence[SubNetConfig | Mapping[str, Any]]) -> np.ndarray:
        """The ``(len(X), n_features_out_)`` float64 feature matrix of the configs ``X``."""
        check_is_fitted(self, "feature_names_out_")
        if isinstance(X, (str, bytes, Mapping, SubNetConfig)) or not isinstance(X, Sequence):
            raise InvalidValueError("SpaceFeatures.transform X", "a sequence of SubNetConfig or value mappings",
                                    type(X).__name__)
        out = np.empty((len(X), self.n_features_out_), dtype=np.float64)
        for i, config in enumerate(X):
            out[i] = self._row(config)
        return out

    def _row(self, config: SubNetConfig | Mapping[str, Any]) -> list[float]:
        space = self.space
        config = space.validate(config)
        if self.canonical and isinstance(space, NB201Space):
            config = space.validate(nb201_canonical(config.values))
        row = list(space.encode(config))
        if self.op_kinds_ is not None:
            specs = space.layers(config)
            counts = dict.fromkeys(self.op_kinds_, 0)
            for spec in specs:
                if spec.op in counts:
                    counts[spec.op] += 1
            row += [math.log1p(sum(s.params for s in specs)), math.log1p(sum(s.macs for s in specs)),
                    float(len(specs)), *map(float, counts.values())]
        if isinstance(space, NB201Space):
            row += _nb201_features(config)
        elif isinstance(space, MobileNetV3Space):
            row += _mbv3_features(space, config)
        elif isinstance(space, GPTSpace):
            row += _gpt_features(space, config)
        return row

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names (object array of str), as listed in the class docstring."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()
