"""Feature matrices of SubNet configs for accuracy predictors: the space encoding, cheap structural features from the
layer model, and space-specific features (NB201 cell paths, MobileNetV3 depth and mean widths, GPT kept layers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hwpareto.errors import CapabilityError, InvalidValueError
from supernet import OPS, SearchSpace, SubNetConfig, distinct_configs
from supernet.gpt import GPTSpace
from supernet.mbv3 import MobileNetV3Space
from supernet.nb201 import NB201Space
from supernet.nb201._space import EDGES as NB201_EDGES
from supernet.nb201._space import OPS as NB201_OPS

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


def _nb201_live(ops: np.ndarray) -> np.ndarray:
    """Which edges lie on a live input→output path, for each row of edge ops (``EDGES`` order)."""
    column = {name: j for j, (name, _, _) in enumerate(NB201_EDGES)}
    live = np.zeros(ops.shape, dtype=bool)
    for _, names in NB201_PATHS:
        idx = [column[e] for e in names]
        live[:, idx] |= (ops[:, idx] != "none").all(axis=1, keepdims=True)
    return live


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


def _nb201_feature_matrix(ops: np.ndarray) -> np.ndarray:
    """Path structure of cells, one row per row of ``ops`` (edge ops in ``EDGES`` order): which paths are alive,
    op counts on live edges, conv depths per path (the columns of :func:`_nb201_names`)."""
    column = {name: j for j, (name, _, _) in enumerate(NB201_EDGES)}
    edges = [[column[e] for e in names] for _, names in NB201_PATHS]
    alive = np.column_stack([(ops[:, idx] != "none").all(axis=1) for idx in edges])
    convs = np.column_stack([np.isin(ops[:, idx], _CONVS).sum(axis=1) for idx in edges]) * alive
    spatial = np.column_stack([np.isin(ops[:, idx], _SPATIAL).sum(axis=1) for idx in edges])
    lengths = np.array([len(idx) for idx in edges])
    live = _nb201_live(ops)
    any_alive = alive.any(axis=1)
    return np.column_stack(
        [
            alive,
            ~any_alive,
            alive.sum(axis=1),
            *(((ops == op) & live).sum(axis=1) for op in _LIVE_OPS),
            convs,
            np.where(alive, convs, 0).max(axis=1),
            np.where(any_alive, np.where(alive, convs, np.iinfo(np.int64).max).min(axis=1), 0),
            np.where(alive, spatial, 0).max(axis=1),
            np.where(alive, lengths, 0).max(axis=1),
        ]
    ).astype(np.float64)


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
            raise InvalidValueError(
                "SpaceFeatures.space", "a SearchSpace (e.g. supernet.get_space('nb201'))", type(self.space).__name__
            )
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
            raise InvalidValueError(
                f"SpaceFeatures of space {space.name!r}",
                "distinct feature names",
                sorted({n for n in names if names.count(n) > 1}),
            )
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(names)
        return self

    def transform(self, X: Sequence[SubNetConfig | Mapping[str, Any]]) -> np.ndarray:
        """The ``(len(X), n_features_out_)`` float64 feature matrix of the configs ``X``.

        Vectorised: each distinct (canonical) config is featurised once, layer features come from one
        :meth:`~supernet.SearchSpace.layer_counts` call."""
        check_is_fitted(self, "feature_names_out_")
        if isinstance(X, (str, bytes, Mapping, SubNetConfig)) or not isinstance(X, Sequence):
            raise InvalidValueError(
                "SpaceFeatures.transform X", "a sequence of SubNetConfig or value mappings", type(X).__name__
            )
        space = self.space
        configs = [space.validate(c) for c in X]
        if not configs:
            return np.empty((0, self.n_features_out_), dtype=np.float64)
        nb201 = isinstance(space, NB201Space)
        edge_names = [name for name, _, _ in NB201_EDGES]
        if nb201 and self.canonical:
            code = {op: i for i, op in enumerate(NB201_OPS)}
            raw = np.array([[code[str(c[e])] for e in edge_names] for c in configs], dtype=np.intp)
            live = _nb201_live(np.asarray(NB201_OPS, dtype=object)[raw])
            ops, inverse = np.unique(np.where(live, raw, code["none"]), axis=0, return_inverse=True)
            unique = [
                space.validate(dict(zip(edge_names, (NB201_OPS[i] for i in row), strict=True))) for row in ops.tolist()
            ]
        else:
            unique, inverse = distinct_configs(configs)
        blocks = [np.stack([space.encode(c) for c in unique])]
        if self.op_kinds_ is not None:
            counts = space.layer_counts(unique)
            per_op = np.array([[spec.op == op for op in self.op_kinds_] for spec in counts.specs], dtype=np.float64)
            blocks += [
                np.log1p(counts.total(np.array([spec.params for spec in counts.specs], dtype=np.float64)))[:, None],
                np.log1p(counts.total(np.array([spec.macs for spec in counts.specs], dtype=np.float64)))[:, None],
                np.asarray(counts.matrix.sum(axis=1), dtype=np.float64).reshape(-1, 1),
                np.asarray(counts.matrix @ per_op.reshape(len(counts.specs), -1), dtype=np.float64),
            ]
        if nb201:
            blocks.append(_nb201_feature_matrix(np.array([[c[e] for e in edge_names] for c in unique], dtype=object)))
        elif isinstance(space, MobileNetV3Space):
            blocks.append(np.array([_mbv3_features(space, c) for c in unique], dtype=np.float64))
        elif isinstance(space, GPTSpace):
            blocks.append(np.array([_gpt_features(space, c) for c in unique], dtype=np.float64))
        return np.hstack(blocks)[np.asarray(inverse).reshape(-1)]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names (object array of str), as listed in the class docstring."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()
