"""MobileNetV3 architecture constants and channel arithmetic, shared by the space and its PyTorch modules, and the
part of the space the modules read (:class:`Geometry`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from supernet._types import SubNetConfig

__all__ = [
    "N_STAGES",
    "OFA_BASE_WIDTHS",
    "STAGE_ACTS",
    "STAGE_SE",
    "STAGE_STRIDES",
    "Geometry",
    "make_divisible",
    "mid_channels",
    "se_channels",
]

N_STAGES = 5
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
OFA_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)


def make_divisible(v: float, divisor: int = 8) -> int:
    """OFA's channel rounding: nearest multiple of ``divisor``, never more than 10 % below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def mid_channels(cin: int, expand: int) -> int:
    """Expanded channels of an MBConv block (OFA: ``make_divisible(round(cin * e), 8)``)."""
    return make_divisible(round(cin * expand))


def se_channels(mid: int) -> int:
    """Squeeze-excite hidden channels (reduction 4, rounded to 8)."""
    return make_divisible(mid // 4)


class Geometry(Protocol):
    """What the SuperNet and SubNet modules read from their :class:`~supernet.mbv3.MobileNetV3Space`."""

    n_classes: int
    max_depth: int
    ks_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]

    @property
    def max_widths(self) -> tuple[int, ...]: ...

    @property
    def first_residual(self) -> bool: ...

    def widths(self, w: float) -> tuple[int, ...]: ...

    def block_index(self, stage: int, j: int) -> int: ...

    def block_residual(self, stage: int, j: int) -> bool: ...

    def validate(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig: ...

    def largest(self) -> SubNetConfig: ...
