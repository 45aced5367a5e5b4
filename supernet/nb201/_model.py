"""PyTorch modules of the NAS-Bench-201 space: the one-shot SuperNet and standalone SubNets (TinyNetwork topology)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from hwpareto.errors import InvalidValueError
from supernet._types import SubNetConfig
from supernet.nb201._cell import EDGES, OPS

__all__ = ["NB201SubNet", "NB201SuperNet"]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (same padding, no bias) -> BatchNorm2d."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout, affine=True, track_running_stats=True),
        )


class Zero(nn.Module):
    """The ``none`` op of the SuperNet: ``x * 0``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: str, channels: int) -> nn.Module:
    """A fresh module for candidate op ``op`` on ``channels`` channels."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise InvalidValueError("nb201 op", "one of " + ", ".join(OPS), op)


class ResNetBasicblock(nn.Module):
    """The reduction block between stages: ``downsample(x) + conv_b(conv_a(x))`` at stride 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, stride=2)
        self.conv_b = ReLUConvBN(cout, cout, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class MixedEdge(nn.Module):
    """One SuperNet edge: every candidate op with its own weights; ``active`` picks the one forward runs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({op: make_op(op, channels) for op in OPS})
        self.active = "nor_conv_3x3"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops[self.active](x)


class SuperCell(nn.Module):
    """A SuperNet cell: ``node_j = sum_{i<j} edge_{j<-i}(node_i)``, output node 3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({name: MixedEdge(channels) for name, _, _ in EDGES})

    def set_active(self, ops: Mapping[str, str]) -> None:
        """Select ``ops[name]`` on every edge ``name``."""
        for name, edge in self.edges.items():
            if isinstance(edge, MixedEdge):
                edge.active = ops[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for to in (1, 2, 3):
            inputs = [self.edges[name](nodes[frm]) for name, t, frm in EDGES if t == to]
            nodes.append(sum(inputs[1:], inputs[0]))
        return nodes[3]


class Cell(nn.Module):
    """A SubNet cell with fixed ops: ``none`` edges are dropped; a node without inputs is zeros."""

    def __init__(self, channels: int, ops: Sequence[str]) -> None:
        super().__init__()
        kept = [(edge, op) for edge, op in zip(EDGES, ops, strict=True) if op != "none"]
        self.wiring = [edge for edge, _ in kept]
        self.edges = nn.ModuleDict({name: make_op(op, channels) for (name, _, _), op in kept})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for to in (1, 2, 3):
            inputs = [self.edges[name](nodes[frm]) for name, t, frm in self.wiring if t == to]
            nodes.append(sum(inputs[1:], inputs[0]) if inputs else torch.zeros_like(x))
        return nodes[3]


class _TinyNetwork(nn.Module):
    """NAS-Bench-201's TinyNetwork: stem, 3 stages of cells with ResNet reductions, BN-ReLU, GAP, linear."""

    def __init__(self, channels: int, cells_per_stage: int, n_classes: int, cell: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.shape = (channels, cells_per_stage, n_classes)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResNetBasicblock(c, 2 * c))
                c *= 2
            layers += [cell(c) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(x.flatten(1))


class NB201SuperNet(_TinyNetwork):
    """The one-shot SuperNet: a :class:`MixedEdge` per cell edge; all cells share the active cell architecture."""

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, n_classes: int = 10, seed: int = 0) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            super().__init__(channels, cells_per_stage, n_classes, SuperCell)

    def set_active(self, config: SubNetConfig | Mapping[str, str]) -> None:
        """Run the ops ``config["edge0"]..config["edge5"]`` in every cell from now on."""
        ops = {name: str(config[name]) for name, _, _ in EDGES}
        for name, op in ops.items():
            if op not in OPS:
                raise InvalidValueError(f"nb201 config.{name}", "one of " + ", ".join(OPS), op)
        for cell in self.cells:
            if isinstance(cell, SuperCell):
                cell.set_active(ops)

    def extract(self, ops: Sequence[str]) -> NB201SubNet:
        """A standalone SubNet of the cell ``ops`` whose weights are copies of this SuperNet's (same train mode)."""
        sub = NB201SubNet(*self.shape, ops)
        state = self.state_dict()
        sub.load_state_dict({key: state[_supernet_key(key, ops)].clone() for key in sub.state_dict()})
        return sub.train(self.training)


class NB201SubNet(_TinyNetwork):
    """A standalone SubNet: every cell runs ``ops`` (one op per edge, ``none`` edges dropped)."""

    def __init__(self, channels: int, cells_per_stage: int, n_classes: int, ops: Sequence[str], seed: int = 0) -> None:
        arch = tuple(ops)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            super().__init__(channels, cells_per_stage, n_classes, lambda c: Cell(c, arch))
        self.ops = arch


def _supernet_key(key: str, ops: Sequence[str]) -> str:
    """The SuperNet state_dict key of a SubNet key (``cells.i.edges.edgeK.x`` -> ``cells.i.edges.edgeK.ops.<op>.x``)."""
    parts = key.split(".")
    if len(parts) > 4 and parts[0] == "cells" and parts[2] == "edges":
        op = ops[int(parts[3].removeprefix("edge"))]
        return ".".join([*parts[:4], "ops", op, *parts[4:]])
    return key
