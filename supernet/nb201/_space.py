"""The NAS-Bench-201 cell search space, mapped exactly onto the NAS-Bench-201 tables (arch strings and indices)."""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwpareto.errors import InvalidValueError
from supernet._space import LayerTerm, SearchSpace
from supernet._types import Dimension, LayerSpec, SubNetConfig
from supernet.nb201._cell import CELL_FEATURES, EDGE_NAMES, EDGES, OPS, cell_features, live_edges
from supernet.preprocessing import HWPARETO_IMAGES

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["EDGES", "N_ARCHS", "OPS", "NB201Space"]

N_ARCHS = len(OPS) ** len(EDGES)
_PATTERN = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
_CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


@functools.cache
def _index_table() -> tuple[tuple[tuple[str, ...], ...], dict[tuple[str, ...], int]]:
    """NAS-Bench-201's arch order (all op tuples, shuffled with seed 88) and its inverse."""
    archs = list(itertools.product(OPS, repeat=len(EDGES)))
    random.Random(88).shuffle(archs)
    return tuple(archs), {arch: i for i, arch in enumerate(archs)}


class NB201Space(SearchSpace):
    """NAS-Bench-201: one cell of 4 nodes and 6 edges, each edge one of five ops, repeated in 3 stages.

    ``arch_index`` and ``arch_str`` match the NAS-Bench-201 / NATS-Bench tables; the SuperNet is the
    TinyNetwork with a mixed op per edge (one weight set per cell, edge and op, shared by all architectures).
    """

    name = "nb201"
    preprocessing = HWPARETO_IMAGES
    description = "NAS-Bench-201 cell space (6 edges x 5 ops, 15,625 cells) on 32x32 images"

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 5,
        n_classes: int = 10,
        resolution: int = 32,
        *,
        name: str = "nb201",
    ) -> None:
        self.name = name
        for field, value in (("channels", channels), ("cells_per_stage", cells_per_stage), ("n_classes", n_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidValueError(f"NB201Space.{field}", "a positive integer", value)
        if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 4 or resolution % 4:
            raise InvalidValueError("NB201Space.resolution", "a positive multiple of 4", resolution)
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.n_classes = n_classes
        self.resolution = resolution
        super().__init__(
            [
                Dimension(name, choices=OPS, group=f"node {to}", description=f"op of the edge node {frm} -> node {to}")
                for name, to, frm in EDGES
            ]
        )

    def smallest(self) -> SubNetConfig:
        """Every edge ``none`` (fewest parameters and MACs)."""
        return self.validate(dict.fromkeys(EDGE_NAMES, "none"))

    def largest(self) -> SubNetConfig:
        """Every edge ``nor_conv_3x3`` (most parameters and MACs)."""
        return self.validate(dict.fromkeys(EDGE_NAMES, "nor_conv_3x3"))

    # ------------------------------------------------------------------ arch strings and indices
    def summary(self, config: SubNetConfig) -> str:
        return self.to_arch_str(config)

    def to_arch_str(self, config: SubNetConfig) -> str:
        """The NAS-Bench-201 arch string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        config = self.validate(config)
        nodes = ["|" + "|".join(f"{config[name]}~{frm}" for name, t, frm in EDGES if t == to) + "|" for to in (1, 2, 3)]
        return "+".join(nodes)

    def from_arch_str(self, arch_str: str) -> SubNetConfig:
        """Parse a NAS-Bench-201 arch string (strict: exact pattern, known ops, input indices in order)."""
        groups = arch_str.split("+") if isinstance(arch_str, str) else []
        if len(groups) != 3 or any(len(g) < 2 or g[0] != "|" or g[-1] != "|" for g in groups):
            raise InvalidValueError("arch_str", f"the pattern {_PATTERN} (3 nodes, 6 edges)", arch_str)
        entries = [entry for g in groups for entry in g[1:-1].split("|")]
        if [len(g[1:-1].split("|")) for g in groups] != [1, 2, 3] or any(e.count("~") != 1 for e in entries):
            raise InvalidValueError("arch_str", f"the pattern {_PATTERN} (3 nodes, 6 edges)", arch_str)
        values: dict[str, str] = {}
        for (name, to, frm), entry in zip(EDGES, entries, strict=True):
            op, index = entry.split("~")
            if op not in OPS:
                allowed = ", ".join(OPS)
                raise InvalidValueError("arch_str", f"edge ops among {allowed} ({name} is {op!r})", arch_str)
            if index != str(frm):
                raise InvalidValueError(
                    "arch_str", f"{name} to read op~{frm} (node {to} <- node {frm}) as in {_PATTERN}", arch_str
                )
            values[name] = op
        return self.validate(values)

    def index_of(self, config: SubNetConfig) -> int:
        """The NAS-Bench-201 ``arch_index`` of ``config``."""
        config = self.validate(config)
        return _index_table()[1][tuple(str(config[name]) for name in EDGE_NAMES)]

    def from_index(self, index: int) -> SubNetConfig:
        """The config with NAS-Bench-201 ``arch_index`` ``index`` (0 <= index < 15,625)."""
        if not isinstance(index, numbers.Integral) or isinstance(index, bool) or not 0 <= index < N_ARCHS:
            raise InvalidValueError("arch_index", f"an integer in [0, {N_ARCHS - 1}]", index)
        return self.validate(dict(zip(EDGE_NAMES, _index_table()[0][int(index)], strict=True)))

    # ------------------------------------------------------------------ external formats
    def from_record(self, record: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> SubNetConfig:
        """Parse a table row from ``arch_str``, ``edge0..edge5`` or ``arch_index`` (all that are present must agree).

        Blank cells (None/NaN) count as absent; ``defaults`` fill edge columns a row lacks.
        """
        found: dict[str, SubNetConfig] = {}
        if _present(record, "arch_str"):
            found["arch_str"] = self.from_arch_str(_text(record["arch_str"]))
        edges = {name: _text(record[name]) for name in EDGE_NAMES if _present(record, name)}
        if _present(record, "arch_index"):
            found["arch_index"] = self.from_index(_parse_index(record["arch_index"]))
        if edges or (defaults and not found):
            found["edge0..edge5"] = self.validate({**(defaults or {}), **edges})
        if not found:
            raise InvalidValueError(
                "nb201 record", "a column arch_str, edge0..edge5 or arch_index", sorted(map(str, record))
            )
        (first, config), *rest = found.items()
        for column, other in rest:
            if other != config:
                raise InvalidValueError(
                    "nb201 record",
                    f"columns {first} and {column} describing the same architecture",
                    f"{first} -> {self.to_arch_str(config)}, {column} -> {self.to_arch_str(other)}",
                )
        return config

    def to_record(self, config: SubNetConfig) -> dict[str, Any]:
        """``arch_index``, ``arch_str`` and ``edge0..edge5``."""
        config = self.validate(config)
        return {"arch_index": self.index_of(config), "arch_str": self.to_arch_str(config), **config.values}

    def record_columns(self) -> list[list[str]]:
        """``[["arch_str"], ["edge0", ..., "edge5"], ["arch_index"]]``."""
        return [["arch_str"], list(EDGE_NAMES), ["arch_index"]]

    # ------------------------------------------------------------------ cost model
    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        """LayerSpecs of the extracted SubNet at batch 1 (stem, cells, reduction blocks, head)."""
        config = self.validate(config)
        stem, reductions, head = self._fixed
        specs = list(stem)
        for stage, (c, h) in enumerate(self._stage_shapes()):
            if stage:
                specs += reductions[stage - 1]
            cell = [spec for to in (1, 2, 3) for spec in _node_layers(self._node_ops(config, to), c, h)]
            specs += cell * self.cells_per_stage
        return [*specs, *head]

    def layer_terms(self) -> list[LayerTerm]:
        """The fixed layers (stem, reduction blocks, head), then one term per cell node: the ops of the edges
        into it, at every stage and cell."""
        stem, reductions, head = self._fixed
        fixed = [*stem, *(spec for block in reductions for spec in block), *head]
        return [
            ((), lambda _: fixed),
            *((tuple(name for name, t, _ in EDGES if t == to), self._node_term) for to in (1, 2, 3)),
        ]

    def _node_term(self, ops: tuple[Any, ...]) -> list[LayerSpec]:
        return [
            spec for c, h in self._stage_shapes() for spec in _node_layers(tuple(map(str, ops)), c, h)
        ] * self.cells_per_stage

    def _stage_shapes(self) -> list[tuple[int, int]]:
        """``(channels, pixels)`` of the cells of each stage."""
        return [(self.channels * 2**stage, self.resolution // 2**stage) for stage in range(3)]

    @staticmethod
    def _node_ops(config: SubNetConfig, to: int) -> tuple[str, ...]:
        return tuple(str(config[name]) for name, t, _ in EDGES if t == to)

    @functools.cached_property
    def _fixed(self) -> tuple[list[LayerSpec], list[list[LayerSpec]], list[LayerSpec]]:
        """The stem, the two reduction blocks and the head (the same for every cell)."""
        (c0, h0), *later = self._stage_shapes()
        stem = [LayerSpec("conv2d", cin=3, cout=c0, kernel=3, h=h0, w=h0, bn=True)]
        reductions, cin = [], c0
        for c, h in later:
            reductions.append(
                [
                    _relu_conv_bn(cin, c, 3, 2 * h, stride=2),
                    _relu_conv_bn(c, c, 3, h),
                    LayerSpec("pool", cin=cin, kernel=2, stride=2, h=2 * h, w=2 * h),
                    LayerSpec("conv2d", cin=cin, cout=c, kernel=1, h=h, w=h),
                    LayerSpec("add", cin=c, h=h, w=h),
                ]
            )
            cin = c
        c, h = self._stage_shapes()[-1]
        head = [
            LayerSpec("batchnorm", cin=c, h=h, w=h, act="relu"),
            LayerSpec("gap", cin=c, h=h, w=h),
            LayerSpec("linear", cin=c, cout=self.n_classes, bias=True),
        ]
        return stem, reductions, head

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec of any cell: the union over the five single-op cells covers each op at every
        stage and every add (the network's shape does not change with the cell)."""
        self._restrict(restrict, set())
        specs: dict[LayerSpec, None] = {}
        for op in OPS:
            specs.update(dict.fromkeys(self.layers(self.validate(dict.fromkeys(EDGE_NAMES, op)))))
        return list(specs)

    # ------------------------------------------------------------------ predictor features
    def feature_names(self) -> list[str]:
        """The default columns, then the cell's path structure (:data:`~supernet.nb201._cell.CELL_FEATURES`)."""
        return [*super().feature_names(), *CELL_FEATURES]

    def features(self, configs: Sequence[SubNetConfig], canonical: bool = True) -> np.ndarray:
        """The default columns and the cell's path structure. With ``canonical`` every edge on no live
        input→output path reads ``none`` (such edges do not change what the cell computes; they still run, so
        cost models pass ``canonical=False``). Vectorised: each distinct cell is featurised once."""
        configs = [self.validate(c) for c in configs]
        if not configs:
            return np.empty((0, len(self.feature_names())), dtype=np.float64)
        code = {op: i for i, op in enumerate(OPS)}
        raw = np.array([[code[str(c[e])] for e in EDGE_NAMES] for c in configs], dtype=np.intp)
        if canonical:
            raw = np.where(live_edges(np.asarray(OPS, dtype=object)[raw]), raw, code["none"])
        cells, inverse = np.unique(raw, axis=0, return_inverse=True)
        ops = np.asarray(OPS, dtype=object)[cells]
        unique = [self.validate(dict(zip(EDGE_NAMES, row, strict=True))) for row in ops.tolist()]
        matrix = np.hstack([super().features(unique, canonical=False), cell_features(ops)])
        return matrix[inverse.reshape(-1)]

    # ------------------------------------------------------------------ models
    def supernet(self, seed: int = 0) -> nn.Module:
        """The one-shot TinyNetwork SuperNet (deterministic for ``seed``; global RNG untouched), all convs active."""
        from supernet.nb201._model import NB201SuperNet

        return NB201SuperNet(self.channels, self.cells_per_stage, self.n_classes, seed=seed)

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> nn.Module:
        """A standalone :class:`NB201SubNet` holding copies of the weights of the ops ``config`` selects."""
        from supernet.nb201._model import NB201SuperNet

        if not isinstance(supernet, NB201SuperNet) or supernet.shape != self._shape:
            raise InvalidValueError(
                "supernet",
                f"an NB201SuperNet with (channels, cells_per_stage, n_classes) = {self._shape}",
                getattr(supernet, "shape", type(supernet).__name__),
            )
        return supernet.extract(self._ops(config))

    def subnet(self, config: SubNetConfig) -> nn.Module:
        """An untrained :class:`NB201SubNet` of ``config`` (same state_dict keys and shapes as :meth:`extract`)."""
        from supernet.nb201._model import NB201SubNet

        return NB201SubNet(self.channels, self.cells_per_stage, self.n_classes, self._ops(config))

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Standard-normal images ``(batch, 3, resolution, resolution)`` drawn from a generator seeded with ``seed``."""
        import torch

        self.validate(config)
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 3, self.resolution, self.resolution, generator=generator)

    @property
    def _shape(self) -> tuple[int, int, int]:
        return self.channels, self.cells_per_stage, self.n_classes

    def _ops(self, config: SubNetConfig) -> tuple[str, ...]:
        config = self.validate(config)
        return tuple(str(config[name]) for name in EDGE_NAMES)


def _relu_conv_bn(cin: int, cout: int, kernel: int, h: int, stride: int = 1) -> LayerSpec:
    return LayerSpec(
        "conv2d", cin=cin, cout=cout, kernel=kernel, stride=stride, h=h, w=h, act="relu", preact=True, bn=True
    )


@functools.cache
def _node_layers(ops: tuple[str, ...], c: int, h: int) -> tuple[LayerSpec, ...]:
    """One cell node at ``c`` channels and ``h x h`` pixels: the ops of its incoming edges (``none`` runs nothing),
    then ``m - 1`` adds for ``m`` live inputs."""
    specs: list[LayerSpec] = []
    live = [op for op in ops if op != "none"]
    for op in live:
        if op in _CONV_KERNEL:
            specs.append(_relu_conv_bn(c, c, _CONV_KERNEL[op], h))
        elif op == "avg_pool_3x3":
            specs.append(LayerSpec("pool", cin=c, kernel=3, stride=1, h=h, w=h))
    return (*specs, *[LayerSpec("add", cin=c, h=h, w=h)] * max(len(live) - 1, 0))


def _present(record: Mapping[str, Any], column: str) -> bool:
    value = record.get(column)
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _parse_index(raw: Any) -> Any:
    """An ``arch_index`` cell as an int (from text, float or numpy integer); left unchanged when not integral."""
    if isinstance(raw, bool):
        return raw
    try:
        number = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        return raw
    return int(number) if number.is_integer() else raw
