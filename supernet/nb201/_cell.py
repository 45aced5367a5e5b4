"""The NAS-Bench-201 cell: candidate ops, edges and input→output paths (shared by the space and its PyTorch
modules), and the cell-structure columns of the space's predictor features."""

from __future__ import annotations

import numpy as np

__all__ = ["CELL_FEATURES", "EDGES", "EDGE_NAMES", "OPS", "PATHS", "cell_features", "live_edges"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Candidate ops of every edge, in NAS-Bench-201's order."""

EDGES = (("edge0", 1, 0), ("edge1", 2, 0), ("edge2", 2, 1), ("edge3", 3, 0), ("edge4", 3, 1), ("edge5", 3, 2))
"""``(dimension, to node, from node)`` of the six cell edges, in arch-string order."""

EDGE_NAMES = tuple(name for name, _, _ in EDGES)

Path = tuple[tuple[int, ...], tuple[str, ...]]


def _paths() -> tuple[Path, ...]:
    """Every input→output path of the cell as (nodes, edge names), shortest first."""
    out_node = max(to for _, to, _ in EDGES)

    def walk(node: int, nodes: tuple[int, ...], edges: tuple[str, ...]) -> list[Path]:
        if node == out_node:
            return [(nodes, edges)]
        return [p for name, to, frm in EDGES if frm == node for p in walk(to, (*nodes, to), (*edges, name))]

    return tuple(sorted(walk(0, (0,), ()), key=lambda p: (len(p[0]), p[0])))


PATHS = _paths()
"""The four cell paths ``0→3``, ``0→1→3``, ``0→2→3``, ``0→1→2→3`` as (nodes, edge names)."""
_PATH_NAMES = tuple("-".join(map(str, nodes)) for nodes, _ in PATHS)
_CONVS = ("nor_conv_1x1", "nor_conv_3x3")
_SPATIAL = ("nor_conv_3x3", "avg_pool_3x3")
_LIVE_OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

CELL_FEATURES = (
    *(f"alive_{p}" for p in _PATH_NAMES),
    "disconnected",
    "n_live_paths",
    *(f"live_{op}" for op in _LIVE_OPS),
    *(f"convs_{p}" for p in _PATH_NAMES),
    "max_conv_depth",
    "min_conv_depth",
    "max_3x3_depth",
    "max_path_len",
)
"""Column names of :func:`cell_features`."""


def live_edges(ops: np.ndarray) -> np.ndarray:
    """Which edges lie on a live input→output path (one without ``none``), for each row of edge ops (``EDGES``
    order). The other edges do not change what the cell computes."""
    column = {name: j for j, name in enumerate(EDGE_NAMES)}
    live = np.zeros(ops.shape, dtype=bool)
    for _, names in PATHS:
        idx = [column[e] for e in names]
        live[:, idx] |= (ops[:, idx] != "none").all(axis=1, keepdims=True)
    return live


def cell_features(ops: np.ndarray) -> np.ndarray:
    """Path structure of cells, one float row per row of ``ops`` (edge ops in ``EDGES`` order), columns
    :data:`CELL_FEATURES`: per path ``alive_<path>`` (no ``none`` on it) and ``convs_<path>`` (convs on it when
    alive), ``disconnected``, ``n_live_paths``, ``live_<op>`` (ops on live edges), ``max_conv_depth`` /
    ``min_conv_depth`` (most / fewest convs over live paths: the effective depth and the shortest route),
    ``max_3x3_depth`` (most 3×3 convs and pools on a live path) and ``max_path_len``."""
    column = {name: j for j, name in enumerate(EDGE_NAMES)}
    edges = [[column[e] for e in names] for _, names in PATHS]
    alive = np.column_stack([(ops[:, idx] != "none").all(axis=1) for idx in edges])
    convs = np.column_stack([np.isin(ops[:, idx], _CONVS).sum(axis=1) for idx in edges]) * alive
    spatial = np.column_stack([np.isin(ops[:, idx], _SPATIAL).sum(axis=1) for idx in edges])
    lengths = np.array([len(idx) for idx in edges])
    live = live_edges(ops)
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
