"""Once-for-All MobileNetV3 search space (elastic depth, kernel, expand ratio, width and resolution)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hwpareto.errors import InvalidValueError
from supernet._space import LayerTerm, SearchSpace
from supernet._types import Dimension, LayerSpec, SubNetConfig
from supernet.mbv3._arch import (
    N_STAGES,
    OFA_BASE_WIDTHS,
    STAGE_ACTS,
    STAGE_SE,
    STAGE_STRIDES,
    make_divisible,
    mid_channels,
    se_channels,
)
from supernet.preprocessing import HWPARETO_IMAGES

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["MobileNetV3Space", "make_divisible"]


class MobileNetV3Space(SearchSpace):
    """OFA MobileNetV3: 5 stages of up to ``max(depth_choices)`` MBConv blocks.

    Dimensions ``ks_i``/``e_i`` (kernel size / expand ratio of block i, 20 blocks), ``d_s`` (depth of stage s),
    ``r`` (input resolution) and ``w`` (width multiplier). Configs round-trip OFA's ``ks``/``e``/``d``/``r``
    encoding; blocks beyond a stage's depth keep their values (OFA does too) but are inactive.
    The first conv, first block (expand 1, kernel 3) and head follow OFA's ``OFAMobileNetV3``.
    """

    def __init__(
        self,
        *,
        name: str = "mbv3",
        n_classes: int = 1000,
        base_widths: Sequence[int] = OFA_BASE_WIDTHS,
        width_choices: Sequence[float] = (1.0, 1.2),
        ks_choices: Sequence[int] = (3, 5, 7),
        expand_choices: Sequence[int] = (3, 4, 6),
        depth_choices: Sequence[int] = (2, 3, 4),
        resolution_choices: Sequence[int] = tuple(range(128, 225, 4)),
        default_width: float = 1.0,
        description: str = "",
    ) -> None:
        if len(base_widths) != 9:
            raise InvalidValueError(
                "mbv3 base_widths", "9 widths (first conv, first block, 5 stages, head)", list(base_widths)
            )
        self.name = name
        self.description = description or (
            "Once-for-All MobileNetV3: elastic depth {2,3,4}/stage, kernel {3,5,7} and expand {3,4,6}/block, "
            "resolution 128-224, width 1.0/1.2"
        )
        self.n_classes = n_classes
        self.base_widths = tuple(base_widths)
        self.width_choices = tuple(sorted(width_choices))
        self.ks_choices = tuple(sorted(ks_choices))
        self.expand_choices = tuple(sorted(expand_choices))
        self.depth_choices = tuple(sorted(depth_choices))
        self.resolution_choices = tuple(sorted(resolution_choices))
        self.max_depth = self.depth_choices[-1]
        self.n_blocks = N_STAGES * self.max_depth
        self.default_width = default_width
        self._blocks: dict[tuple[Any, ...], tuple[tuple[LayerSpec, ...], int]] = {}
        self._shapes: dict[tuple[int, ...], list[tuple[int, int, int]]] = {}
        self._by_depths: dict[tuple[int, ...], _Blocks] = {}
        dims: list[Dimension] = []
        for i in range(self.n_blocks):
            dims.append(
                Dimension(
                    f"ks_{i}",
                    choices=self.ks_choices,
                    group=f"stage {i // self.max_depth}",
                    description=f"kernel size of block {i}",
                )
            )
        for i in range(self.n_blocks):
            dims.append(
                Dimension(
                    f"e_{i}",
                    choices=self.expand_choices,
                    group=f"stage {i // self.max_depth}",
                    description=f"expand ratio of block {i}",
                )
            )
        for s in range(N_STAGES):
            dims.append(
                Dimension(
                    f"d_{s}",
                    choices=self.depth_choices,
                    group=f"stage {s}",
                    description=f"number of blocks kept in stage {s}",
                )
            )
        dims.append(Dimension("r", choices=self.resolution_choices, group="input", description="resolution (px)"))
        dims.append(Dimension("w", choices=self.width_choices, group="width", description="width multiplier"))
        super().__init__(dims)

    # ------------------------------------------------------------------ channel arithmetic
    def widths(self, w: float) -> tuple[int, ...]:
        """Channel widths at multiplier ``w``: first conv, first block, stages 1-5, final expand, last."""
        return tuple(make_divisible(b * w) for b in self.base_widths)

    @property
    def max_widths(self) -> tuple[int, ...]:
        """Widths of the SuperNet (largest multiplier)."""
        return self.widths(self.width_choices[-1])

    mid_channels = staticmethod(mid_channels)
    se_channels = staticmethod(se_channels)

    def block_index(self, stage: int, j: int) -> int:
        """Index (0..19) of block ``j`` of ``stage``."""
        return stage * self.max_depth + j

    @property
    def first_residual(self) -> bool:
        """Whether the first block (expand 1) has an identity shortcut (equal base widths, as in OFA)."""
        return self.base_widths[0] == self.base_widths[1]

    def block_residual(self, stage: int, j: int) -> bool:
        """Whether block ``j`` of ``stage`` has an identity shortcut (stride 1 and equal widths)."""
        if j > 0:
            return True
        return STAGE_STRIDES[stage] == 1 and self.base_widths[1 + stage] == self.base_widths[2 + stage]

    # ------------------------------------------------------------------ configs
    input_dimension = "r"
    preprocessing = HWPARETO_IMAGES

    def encode(self, config: SubNetConfig) -> np.ndarray:
        """``ks``/``e`` per block (0 for blocks beyond the stage depth), then ``d``, ``r``, ``w``."""
        active = self._blocks_of(config).active
        out = [float(config[name]) if i in active else 0.0 for i, name in enumerate(self._block_names["ks"])]
        out += [float(config[name]) if i in active else 0.0 for i, name in enumerate(self._block_names["e"])]
        out += [float(config[name]) for name in self._depth_names]
        out += [float(config["r"]), float(config["w"])]
        return np.asarray(out, dtype=np.float64)

    def active_blocks(self, config: SubNetConfig) -> set[int]:
        """Indices of the blocks the config runs."""
        return set(self._blocks_of(config).active)

    @functools.cached_property
    def _depth_names(self) -> tuple[str, ...]:
        return tuple(f"d_{s}" for s in range(N_STAGES))

    @functools.cached_property
    def _block_names(self) -> dict[str, tuple[str, ...]]:
        """The ``ks`` and ``e`` dimensions' names, by block."""
        return {prefix: tuple(f"{prefix}_{i}" for i in range(self.n_blocks)) for prefix in ("ks", "e")}

    def _blocks_of(self, config: SubNetConfig) -> _Blocks:
        """The active and inactive blocks of ``config``'s stage depths (remembered per depths)."""
        depths = tuple(int(config[name]) for name in self._depth_names)
        found = self._by_depths.get(depths)
        if found is None:
            active = frozenset(self.block_index(s, j) for s, d in enumerate(depths) for j in range(d))
            found = self._by_depths[depths] = _Blocks(
                active,
                tuple(
                    (f"{k}_{i}", first)
                    for i in range(self.n_blocks)
                    if i not in active
                    for k, first in (("ks", self.ks_choices[0]), ("e", self.expand_choices[0]))
                ),
            )
        return found

    def canonical(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """Blocks beyond each stage's depth (inactive) take the smallest kernel and expand ratio."""
        config = self.validate(config)
        changes = {name: first for name, first in self._blocks_of(config).inactive if config[name] != first}
        return self.validate(config.values | changes) if changes else config

    def feature_names(self) -> list[str]:
        """The default columns, then ``depth`` (active blocks), ``mean_ks`` and ``mean_e`` (over active blocks)."""
        return [*super().feature_names(), "depth", "mean_ks", "mean_e"]

    def features(self, configs: Sequence[SubNetConfig], canonical: bool = True) -> np.ndarray:
        """The default columns and the depth and mean kernel size and expand ratio of the active blocks. The
        encoding and layers already ignore inactive blocks, so ``canonical`` changes nothing."""
        configs = [self.validate(c) for c in configs]
        extra = np.empty((len(configs), 3), dtype=np.float64)
        for row, config in zip(extra, configs, strict=True):
            active = self._blocks_of(config).active
            # integer kernels and ratios: the sums are exact, so these means are np.mean's to the bit
            row[0] = len(active)
            row[1] = sum(float(config[name]) for i, name in enumerate(self._block_names["ks"]) if i in active) / len(
                active
            )
            row[2] = sum(float(config[name]) for i, name in enumerate(self._block_names["e"]) if i in active) / len(
                active
            )
        return np.hstack([super().features(configs, canonical=False), extra])

    def from_record(self, record: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> SubNetConfig:
        """Parse OFA's encoding (``ks``, ``e``: 20 values, ``d``: 5 values, '-'-joined or lists; ``r``; optional
        ``w``, default ``default_width``) or one column per dimension."""
        if not {"ks", "e", "d", "r"} <= set(record):
            return super().from_record(record, {"w": self.default_width, **(defaults or {})})
        values: dict[str, Any] = {"w": self.default_width, **(defaults or {})}
        for prefix, count in (("ks", self.n_blocks), ("e", self.n_blocks), ("d", N_STAGES)):
            items = _int_list(record[prefix], prefix, count)
            values.update({f"{prefix}_{i}": v for i, v in enumerate(items)})
        r = record["r"]
        if isinstance(r, (list, tuple)) and len(r) == 1:  # OFA net configs store r as [224]
            r = r[0]
        values["r"] = _number(r, "r")
        if "w" in record and record["w"] not in (None, ""):
            values["w"] = _number(record["w"], "w")
        return self.validate(values)

    def to_record(self, config: SubNetConfig) -> dict[str, Any]:
        """OFA encoding: ``ks``, ``e``, ``d`` as '-'-joined strings, ``r`` and ``w``."""
        return {
            "ks": "-".join(str(config[f"ks_{i}"]) for i in range(self.n_blocks)),
            "e": "-".join(str(config[f"e_{i}"]) for i in range(self.n_blocks)),
            "d": "-".join(str(config[f"d_{s}"]) for s in range(N_STAGES)),
            "r": config["r"],
            "w": config["w"],
        }

    def summary(self, config: SubNetConfig) -> str:
        return " ".join(f"{k}={v}" for k, v in self.to_record(config).items())

    def record_columns(self) -> list[list[str]]:
        return [["ks", "e", "d", "r"], [d.name for d in self.dimensions]]

    # ------------------------------------------------------------------ cost model
    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        c = self.widths(float(config["w"]))
        specs, h = self._stem(c, int(config["r"]))
        cin = c[1]
        for s in range(N_STAGES):
            for j in range(int(config[f"d_{s}"])):
                i = self.block_index(s, j)
                block, h = self._block(s, j, cin, c[2 + s], int(config[f"e_{i}"]), int(config[f"ks_{i}"]), h)
                specs += block
                cin = c[2 + s]
        return specs + self._head(c, h)

    def layer_terms(self) -> list[LayerTerm]:
        """The stem and head (they read ``r`` and ``w``), then one term per block: its stage's depth (whether it
        runs), its kernel and expand ratio, ``r`` and ``w`` (every block's input shape follows from those)."""
        terms: list[LayerTerm] = [(("r", "w"), self._ends_term)]
        for s in range(N_STAGES):
            for j in range(self.max_depth):
                i = self.block_index(s, j)
                terms.append(((f"d_{s}", f"ks_{i}", f"e_{i}", "r", "w"), functools.partial(self._block_term, s, j)))
        return terms

    def _ends_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        c, r = self.widths(float(values[1])), int(values[0])
        return self._stem(c, r)[0] + self._head(c, self._stage_shapes(c, r)[-1][2])

    def _block_term(self, s: int, j: int, values: tuple[Any, ...]) -> list[LayerSpec]:
        depth, k, e, r, w = values
        if j >= int(depth):
            return []
        c = self.widths(float(w))
        cin, h_in, h_out = self._stage_shapes(c, int(r))[s]
        return self._block(s, j, cin if j == 0 else c[2 + s], c[2 + s], int(e), int(k), h_in if j == 0 else h_out)[0]

    def _stage_shapes(self, c: Sequence[int], r: int) -> list[tuple[int, int, int]]:
        """Per stage: the first block's input channels, its input size and the stage's output size."""
        memo = (*c, r)
        if memo not in self._shapes:
            _, h = self._stem(c, r)
            shapes, cin = [], c[1]
            for s in range(N_STAGES):
                _, h_out = self._block(s, 0, cin, c[2 + s], self.expand_choices[0], self.ks_choices[0], h)
                shapes.append((cin, h, h_out))
                cin, h = c[2 + s], h_out
            self._shapes[memo] = shapes
        return self._shapes[memo]

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec of any config (``restrict`` may limit ``r`` and ``w``): the LUT to profile."""
        allowed = self._restrict(restrict, {"r", "w"})
        specs: dict[LayerSpec, None] = {}
        for w in allowed["w"]:
            c = self.widths(float(w))
            for r in allowed["r"]:
                stem, h = self._stem(c, int(r))
                specs.update(dict.fromkeys(stem))
                for s in range(N_STAGES):
                    for j in (0, 1):  # the first block of a stage, and any later one (same shapes)
                        cin = c[1 + s] if j == 0 else c[2 + s]
                        for e in self.expand_choices:
                            for k in self.ks_choices:
                                block, h_out = self._block(s, j, cin, c[2 + s], e, k, h)
                                specs.update(dict.fromkeys(block))
                        h = h_out  # after the first block: the stage's size
                specs.update(dict.fromkeys(self._head(c, h)))
        return list(specs)

    def _stem(self, c: Sequence[int], r: int) -> tuple[list[LayerSpec], int]:
        memo = ("stem", *c, r)
        if memo not in self._blocks:
            self._blocks[memo] = self._build_stem(c, r)
        specs, h = self._blocks[memo]
        return list(specs), h

    def _build_stem(self, c: Sequence[int], r: int) -> tuple[tuple[LayerSpec, ...], int]:
        first = LayerSpec("conv2d", cin=3, cout=c[0], kernel=3, stride=2, h=r, w=r, act="hswish", bn=True)
        h = first.out_hw[0]
        specs = [
            first,
            LayerSpec("conv2d", cin=c[0], cout=c[0], kernel=3, groups=c[0], h=h, w=h, act="relu", bn=True),
            LayerSpec("conv2d", cin=c[0], cout=c[1], h=h, w=h, bn=True),
        ]
        if self.first_residual:
            specs.append(LayerSpec("add", cin=c[1], h=h, w=h))
        return tuple(specs), h

    def _block(self, s: int, j: int, cin: int, cout: int, e: int, k: int, h: int) -> tuple[list[LayerSpec], int]:
        """Block ``j`` of stage ``s`` on an ``h``×``h`` input; returns its specs and output size (memoised: a
        search evaluates thousands of configs built from a few hundred distinct blocks)."""
        memo = (s, j, cin, cout, e, k, h)
        if memo not in self._blocks:
            self._blocks[memo] = self._build_block(s, j, cin, cout, e, k, h)
        specs, h_out = self._blocks[memo]
        return list(specs), h_out

    def _build_block(
        self, s: int, j: int, cin: int, cout: int, e: int, k: int, h: int
    ) -> tuple[tuple[LayerSpec, ...], int]:
        act, mid = STAGE_ACTS[s], self.mid_channels(cin, e)
        dw = LayerSpec(
            "conv2d",
            cin=mid,
            cout=mid,
            kernel=k,
            stride=STAGE_STRIDES[s] if j == 0 else 1,
            groups=mid,
            h=h,
            w=h,
            act=act,
            bn=True,
        )
        h_out = dw.out_hw[0]
        specs = [LayerSpec("conv2d", cin=cin, cout=mid, h=h, w=h, act=act, bn=True), dw]
        if STAGE_SE[s]:
            specs.append(LayerSpec("se", cin=mid, hidden=self.se_channels(mid), h=h_out, w=h_out))
        specs.append(LayerSpec("conv2d", cin=mid, cout=cout, h=h_out, w=h_out, bn=True))
        if self.block_residual(s, j):
            specs.append(LayerSpec("add", cin=cout, h=h_out, w=h_out))
        return tuple(specs), h_out

    def _head(self, c: Sequence[int], h: int) -> list[LayerSpec]:
        memo = ("head", *c, h)
        if memo not in self._blocks:
            self._blocks[memo] = (tuple(self._build_head(c, h)), h)
        return list(self._blocks[memo][0])

    def _build_head(self, c: Sequence[int], h: int) -> list[LayerSpec]:
        return [
            LayerSpec("conv2d", cin=c[6], cout=c[7], h=h, w=h, act="hswish", bn=True),
            LayerSpec("gap", cin=c[7], h=h, w=h),
            LayerSpec("conv2d", cin=c[7], cout=c[8], act="hswish"),
            LayerSpec("linear", cin=c[8], cout=self.n_classes, bias=True),
        ]

    def ofa_block_keys(self, config: SubNetConfig) -> list[str]:
        """The keys OFA's ``LatencyEstimator`` looks up for this SubNet (block-level LUTs such as OFA's Note10 LUT),
        prefixed ``r<resolution>/`` because OFA keeps one LUT per resolution."""
        c = self.widths(float(config["w"]))
        r = int(config["r"])
        h = (r + 1) // 2

        def shape(*dims: int) -> str:
            return "x".join(str(d) for d in dims)

        keys = [
            f"Conv-input:{shape(r, r, 3)}-output:{shape(h, h, c[0])}",
            f"expanded_conv-input:{shape(h, h, c[0])}-output:{shape(h, h, c[1])}-expand:{c[0]}-kernel:3"
            f"-stride:1-idskip:{int(self.first_residual)}-se:0-hs:0",
        ]
        cin = c[1]
        for s in range(N_STAGES):
            for j in range(int(config[f"d_{s}"])):
                i = self.block_index(s, j)
                stride = STAGE_STRIDES[s] if j == 0 else 1
                h_out = (h - 1) // stride + 1
                mid = self.mid_channels(cin, int(config[f"e_{i}"]))
                keys.append(
                    f"expanded_conv-input:{shape(h, h, cin)}-output:{shape(h_out, h_out, c[2 + s])}"
                    f"-expand:{mid}-kernel:{config[f'ks_{i}']}-stride:{stride}"
                    f"-idskip:{int(self.block_residual(s, j))}-se:{int(STAGE_SE[s])}"
                    f"-hs:{int(STAGE_ACTS[s] == 'hswish')}"
                )
                h, cin = h_out, c[2 + s]
        keys += [
            f"Conv_1-input:{shape(h, h, cin)}-output:{shape(h, h, c[7])}",
            f"AvgPool2D-input:{shape(h, h, c[7])}-output:{shape(1, 1, c[7])}",
            f"Conv_2-input:{shape(1, 1, c[7])}-output:{shape(1, 1, c[8])}",
            f"Logits-input:{shape(1, 1, c[8])}-output:{self.n_classes}",
        ]
        return [f"r{r}/{k}" for k in keys]

    # ------------------------------------------------------------------ models
    def supernet(self, seed: int = 0) -> nn.Module:
        from supernet.mbv3._model import MobileNetV3SuperNet

        return MobileNetV3SuperNet(self, seed=seed)

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> nn.Module:
        from supernet.mbv3._model import MobileNetV3SuperNet

        if not isinstance(supernet, MobileNetV3SuperNet) or supernet.space is not self:
            raise InvalidValueError("supernet", f"a SuperNet of space {self.name!r}", type(supernet).__name__)
        return supernet.extract(self.validate(config))

    def subnet(self, config: SubNetConfig) -> nn.Module:
        from supernet.mbv3._model import MobileNetV3SubNet

        return MobileNetV3SubNet(self, self.validate(config))

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        import torch

        r = int(config["r"])
        return torch.randn(batch, 3, r, r, generator=torch.Generator().manual_seed(seed))


class _Blocks(NamedTuple):
    """The blocks a config's stage depths run (``active``) and the dimensions of the others (``inactive``: name,
    canonical value)."""

    active: frozenset[int]
    inactive: tuple[tuple[str, int], ...]


def _int_list(raw: Any, field: str, count: int) -> list[int]:
    if isinstance(raw, str):
        parts: list[Any] = [p for p in raw.replace(",", "-").strip("[]").split("-") if p.strip()]
    elif isinstance(raw, (list, tuple)):
        parts = list(raw)
    else:
        raise InvalidValueError(field, f"{count} integers joined by '-'", raw)
    if len(parts) != count:
        raise InvalidValueError(field, f"{count} integers joined by '-'", raw)
    numbers = [_number(p, field) for p in parts]
    if not all(isinstance(n, int) for n in numbers):
        raise InvalidValueError(field, f"{count} integers joined by '-'", raw)
    return [int(n) for n in numbers]


def _number(raw: Any, field: str) -> int | float:
    if isinstance(raw, bool):
        raise InvalidValueError(field, "a number", raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() and field != "w" else raw
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise InvalidValueError(field, "a number", raw) from None
    return int(number) if number.is_integer() and field != "w" else number
