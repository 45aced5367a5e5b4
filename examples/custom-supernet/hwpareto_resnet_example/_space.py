"""The ``resnet-tiny`` search space: its dimensions, layer model (what profiling and LUT-sums read) and the hooks
that build its PyTorch modules (imported on first use, so listing or searching the space never imports torch)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hwpareto.errors import InvalidValueError
from supernet import Dimension, LayerSpec, LayerTerm, SearchSpace, SubNetConfig
from supernet.preprocessing import HWPARETO_IMAGES

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "BASE_WIDTHS",
    "DEPTH_CHOICES",
    "MAX_DEPTH",
    "MID_CHOICES",
    "N_CLASSES",
    "N_STAGES",
    "RESOLUTION_CHOICES",
    "STAGE_STRIDES",
    "WIDTH_CHOICES",
    "ResNetTinySpace",
    "block_index",
    "block_stride",
    "has_projection",
    "mid_channels",
    "stage_channels",
]

BASE_WIDTHS = (16, 32, 64)
"""Channels of each stage at width 1.0 (the stem has the first stage's width)."""
STAGE_STRIDES = (1, 2, 2)
"""Stride of each stage's first block."""
DEPTH_CHOICES = (1, 2, 3)
WIDTH_CHOICES = (0.5, 0.75, 1.0)
MID_CHOICES = (0.5, 1.0)
RESOLUTION_CHOICES = (24, 32)
N_CLASSES = 10
MAX_DEPTH = DEPTH_CHOICES[-1]
N_STAGES = len(BASE_WIDTHS)


def stage_channels(stage: int, width: float) -> int:
    """Output channels of stage ``stage`` at width multiplier ``width``."""
    return round(BASE_WIDTHS[stage] * width)


def mid_channels(channels: int, ratio: float) -> int:
    """Channels between a block's two convs: ``ratio`` of its output channels."""
    return round(channels * ratio)


def block_index(stage: int, j: int) -> int:
    """Index of block ``j`` of ``stage`` among all ``N_STAGES * MAX_DEPTH`` blocks (the ``e_<i>`` dimensions)."""
    return stage * MAX_DEPTH + j


def block_stride(stage: int, j: int) -> int:
    """Stride of block ``j`` of ``stage``: the stage's stride for its first block, else 1."""
    return STAGE_STRIDES[stage] if j == 0 else 1


def has_projection(stage: int, j: int) -> bool:
    """Whether the block's shortcut is a 1×1 conv + BN (its input shape differs from its output), not the identity.
    Stage 0's first block reads the stem, which has stage 0's width."""
    return j == 0 and stage > 0


def _out_px(px: int, stride: int) -> int:
    """Output side of a same-padded conv (3×3 with padding 1, or 1×1 without)."""
    return (px - 1) // stride + 1


def _stage_px(resolution_px: int) -> tuple[int, ...]:
    """Feature-map sides: ``[s]`` is stage ``s``'s input, ``[s + 1]`` its output (the last one the head's input)."""
    sides = [resolution_px]
    for stride in STAGE_STRIDES:
        sides.append(_out_px(sides[-1], stride))
    return tuple(sides)


def _relu_conv3x3_bn(cin: int, cout: int, stride: int, px: int) -> LayerSpec:
    return LayerSpec(
        "conv2d", cin=cin, cout=cout, kernel=3, stride=stride, h=px, w=px, act="relu", preact=True, bn=True
    )


@functools.cache
def _block_layers(cin: int, cout: int, mid: int, stride: int, px: int, projection: bool) -> tuple[LayerSpec, ...]:
    """One basic block on a ``px``×``px`` input: ReLU-conv3×3-BN twice, the shortcut, the add."""
    conv_a = _relu_conv3x3_bn(cin, mid, stride, px)
    out = conv_a.out_hw[0]
    conv_b = _relu_conv3x3_bn(mid, cout, 1, out)
    shortcut = [LayerSpec("conv2d", cin=cin, cout=cout, stride=stride, h=px, w=px, bn=True)] if projection else []
    return (conv_a, conv_b, *shortcut, LayerSpec("add", cin=cout, h=out, w=out))


@functools.cache
def _stem_layers(cout: int, px: int) -> tuple[LayerSpec, ...]:
    return (LayerSpec("conv2d", cin=3, cout=cout, kernel=3, h=px, w=px, bn=True),)


@functools.cache
def _head_layers(cin: int, px: int) -> tuple[LayerSpec, ...]:
    return (
        LayerSpec("batchnorm", cin=cin, h=px, w=px, act="relu"),
        LayerSpec("gap", cin=cin, h=px, w=px),
        LayerSpec("linear", cin=cin, cout=N_CLASSES, bias=True),
    )


class ResNetTinySpace(SearchSpace):
    """An elastic pre-activation ResNet (basic blocks) for 32×32 RGB images and 10 classes.

    A 3×3 stem conv, three stages of 1-3 blocks (stride 1, 2, 2; 16, 32, 64 channels at width 1.0), BN-ReLU,
    global average pooling and a linear classifier. Dimensions: ``d_<s>`` (blocks kept in stage ``s``), ``w_<s>``
    (width multiplier of stage ``s``), ``e_<i>`` (mid channels of block ``i`` as a fraction of its output) and
    ``r`` (input resolution, px). The SuperNet holds the largest weights; a SubNet runs their first channels and
    the first ``d_<s>`` blocks of every stage (Once-for-All's elastic width and depth).
    """

    name = "resnet-tiny"
    description = (
        "Example plugin: elastic pre-activation ResNet for 32x32 images; depth {1,2,3} and width {0.5,0.75,1.0} "
        "per stage, mid ratio {0.5,1.0} per block, resolution 24/32"
    )
    input_dimension = "r"
    preprocessing = HWPARETO_IMAGES

    def __init__(self) -> None:
        dims = [
            Dimension(f"d_{s}", choices=DEPTH_CHOICES, group=f"stage {s}", description=f"blocks kept in stage {s}")
            for s in range(N_STAGES)
        ]
        dims += [
            Dimension(f"w_{s}", choices=WIDTH_CHOICES, group=f"stage {s}", description=f"width multiplier of stage {s}")
            for s in range(N_STAGES)
        ]
        dims += [
            Dimension(
                f"e_{block_index(s, j)}",
                choices=MID_CHOICES,
                group=f"stage {s}",
                description=f"mid channels of block {j} of stage {s} (fraction of its output channels)",
            )
            for s in range(N_STAGES)
            for j in range(MAX_DEPTH)
        ]
        dims.append(Dimension("r", choices=RESOLUTION_CHOICES, group="input", description="input resolution (px)"))
        super().__init__(dims)

    def canonical(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """Blocks beyond their stage's depth never run: their ``e_<i>`` becomes the smallest ratio."""
        config = self.validate(config)
        changes = {
            f"e_{block_index(s, j)}": MID_CHOICES[0]
            for s in range(N_STAGES)
            for j in range(int(config[f"d_{s}"]), MAX_DEPTH)
            if config[f"e_{block_index(s, j)}"] != MID_CHOICES[0]
        }
        return self.validate(config.values | changes) if changes else config

    # ------------------------------------------------------------------ cost model
    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        """The LayerSpecs of the extracted SubNet at batch 1: stem, the kept blocks, head."""
        config = self.validate(config)
        px = _stage_px(int(config["r"]))
        widths = [stage_channels(s, float(config[f"w_{s}"])) for s in range(N_STAGES)]
        specs = list(_stem_layers(widths[0], px[0]))
        cin = widths[0]
        for s in range(N_STAGES):
            for j in range(int(config[f"d_{s}"])):
                mid = mid_channels(widths[s], float(config[f"e_{block_index(s, j)}"]))
                side = px[s] if j == 0 else px[s + 1]
                specs += _block_layers(cin, widths[s], mid, block_stride(s, j), side, has_projection(s, j))
                cin = widths[s]
        return [*specs, *_head_layers(widths[-1], px[-1])]

    def layer_terms(self) -> list[LayerTerm]:
        """The stem (reads ``r``, ``w_0``), the head (``r``, ``w_2``), then one term per block: its stage's depth
        (whether it runs; not for first blocks, which always do), its mid ratio, ``r``, the previous stage's width
        (first blocks of later stages) and its stage's width."""
        last = N_STAGES - 1
        terms: list[LayerTerm] = [
            (("r", "w_0"), lambda v: _stem_layers(stage_channels(0, float(v[1])), int(v[0]))),
            (("r", f"w_{last}"), lambda v: _head_layers(stage_channels(last, float(v[1])), _stage_px(int(v[0]))[-1])),
        ]
        for s in range(N_STAGES):
            for j in range(MAX_DEPTH):
                depth = (f"d_{s}",) if j >= DEPTH_CHOICES[0] else ()
                previous = (f"w_{s - 1}",) if has_projection(s, j) else ()
                dims = (*depth, f"e_{block_index(s, j)}", "r", *previous, f"w_{s}")
                terms.append((dims, functools.partial(self._block_term, s, j)))
        return terms

    @staticmethod
    def _block_term(s: int, j: int, values: tuple[Any, ...]) -> tuple[LayerSpec, ...]:
        """Block ``j`` of stage ``s`` for the values of its term's dimensions (nothing when beyond the depth)."""
        if j >= DEPTH_CHOICES[0]:
            depth, *values_list = values
            if j >= int(depth):
                return ()
            values = tuple(values_list)
        ratio, r, *widths = values
        cout = stage_channels(s, float(widths[-1]))
        cin = stage_channels(s - 1, float(widths[0])) if has_projection(s, j) else cout
        px = _stage_px(int(r))
        side = px[s] if j == 0 else px[s + 1]
        mid = mid_channels(cout, float(ratio))
        return _block_layers(cin, cout, mid, block_stride(s, j), side, has_projection(s, j))

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec of any config (``restrict`` may limit ``r``): the union over the layer terms of
        every combination of their dimensions' values, so it is exact, not a superset."""
        choices = {d.name: list(d.choices) for d in self.dimensions} | self._restrict(restrict, {"r"})
        specs: dict[LayerSpec, None] = {}
        for dims, build in self.layer_terms():
            for values in itertools.product(*(choices[d] for d in dims)):
                specs.update(dict.fromkeys(build(values)))
        return list(specs)

    # ------------------------------------------------------------------ models
    def supernet(self, seed: int = 0) -> nn.Module:
        """The weight-shared SuperNet at the largest widths and depths (deterministic for ``seed``; the global RNG
        is left untouched)."""
        from hwpareto_resnet_example._model import ResNetTinySuperNet

        return ResNetTinySuperNet(self, seed=seed)

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> nn.Module:
        """A standalone :class:`ResNetTinySubNet` holding copies of the SuperNet slices ``config`` selects."""
        from hwpareto_resnet_example._model import ResNetTinySuperNet

        if not isinstance(supernet, ResNetTinySuperNet):
            raise InvalidValueError("supernet", f"a SuperNet of space {self.name!r}", type(supernet).__name__)
        return supernet.extract(self.validate(config))

    def subnet(self, config: SubNetConfig) -> nn.Module:
        """An untrained SubNet of ``config`` (the state_dict keys and shapes :meth:`extract` returns)."""
        from hwpareto_resnet_example._model import ResNetTinySubNet

        return ResNetTinySubNet(self.validate(config))

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Standard-normal images ``(batch, 3, r, r)`` from a generator seeded with ``seed``."""
        import torch

        r = int(self.validate(config)["r"])
        return torch.randn(batch, 3, r, r, generator=torch.Generator().manual_seed(seed))
