"""The weight-shared ``resnet-tiny`` SuperNet and its standalone SubNets.

Elastic width and mid channels keep the first channels of every weight (Once-for-All's ``elastic_nn``); elastic
depth runs the first ``d_<s>`` blocks of a stage. Batch norm keeps one set of statistics at the largest width and
normalises with its first channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from supernet import SubNetConfig
from torch import Tensor, nn

from hwpareto_resnet_example._space import (
    BASE_WIDTHS,
    MAX_DEPTH,
    N_CLASSES,
    N_STAGES,
    ResNetTinySpace,
    block_index,
    block_stride,
    has_projection,
    mid_channels,
    stage_channels,
)

__all__ = ["ResNetTinySubNet", "ResNetTinySuperNet"]


def _widths(config: SubNetConfig) -> list[int]:
    return [stage_channels(s, float(config[f"w_{s}"])) for s in range(N_STAGES)]


def _mid(config: SubNetConfig, stage: int, j: int, cout: int) -> int:
    return mid_channels(cout, float(config[f"e_{block_index(stage, j)}"]))


def _bn(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Batch norm of ``x`` with the first ``x.size(1)`` channels of a largest-width BN (running statistics are
    updated in place in training mode)."""
    c = x.size(1)
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(
        x,
        bn.running_mean[:c],
        bn.running_var[:c],
        bn.weight[:c],
        bn.bias[:c],
        bn.training,
        bn.momentum if bn.momentum is not None else 0.1,
        bn.eps,
    )


class _DynamicConvBN(nn.Module):
    """(ReLU →) Conv2d → BatchNorm2d at the largest widths; runs the first ``cout`` × ``x.size(1)`` slice."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, preact: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.preact = preact

    def forward(self, x: Tensor, cout: int) -> Tensor:
        if self.preact:
            x = F.relu(x)
        y = F.conv2d(x, self.conv.weight[:cout, : x.size(1)], None, self.conv.stride, self.conv.padding)
        return _bn(self.bn, y)


class _DynamicBlock(nn.Module):
    """Pre-activation basic block with elastic mid and output channels."""

    def __init__(self, cin: int, cout: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.conv_a = _DynamicConvBN(cin, cout, 3, stride, preact=True)  # mid channels are at most cout
        self.conv_b = _DynamicConvBN(cout, cout, 3, 1, preact=True)
        self.shortcut = _DynamicConvBN(cin, cout, 1, stride, preact=False) if projection else None

    def forward(self, x: Tensor, mid: int, cout: int) -> Tensor:
        y = self.conv_b(self.conv_a(x, mid), cout)
        return y + (self.shortcut(x, cout) if self.shortcut is not None else x)


class ResNetTinySuperNet(nn.Module):
    """The SuperNet: every block at the largest widths. ``set_active(config)`` selects the SubNet ``forward``
    runs (initially the largest); :meth:`extract` copies it out."""

    def __init__(self, space: ResNetTinySpace, seed: int = 0) -> None:
        super().__init__()
        self.space = space
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = _DynamicConvBN(3, BASE_WIDTHS[0], 3, 1, preact=False)
            self.blocks = nn.ModuleList(
                _DynamicBlock(
                    BASE_WIDTHS[s - 1] if has_projection(s, j) else BASE_WIDTHS[s],
                    BASE_WIDTHS[s],
                    block_stride(s, j),
                    has_projection(s, j),
                )
                for s in range(N_STAGES)
                for j in range(MAX_DEPTH)
            )
            self.head_bn = nn.BatchNorm2d(BASE_WIDTHS[-1])
            self.classifier = nn.Linear(BASE_WIDTHS[-1], N_CLASSES)
        self._active = space.largest()

    @property
    def active(self) -> SubNetConfig:
        """The config ``forward`` runs."""
        return self._active

    def set_active(self, config: SubNetConfig) -> None:
        """Run the SubNet ``config`` from now on."""
        self._active = self.space.validate(config)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self._active
        widths = _widths(cfg)
        x = self.stem(x, widths[0])
        for s in range(N_STAGES):
            for j in range(int(cfg[f"d_{s}"])):
                x = self.blocks[block_index(s, j)](x, _mid(cfg, s, j, widths[s]), widths[s])
        x = F.relu(_bn(self.head_bn, x)).mean((2, 3))
        return F.linear(x, self.classifier.weight[:, : widths[-1]], self.classifier.bias)

    @torch.no_grad()
    def extract(self, config: SubNetConfig) -> ResNetTinySubNet:
        """A standalone SubNet whose weights are copies of this SuperNet's slices for ``config`` (same train mode)."""
        cfg = self.space.validate(config)
        sub = ResNetTinySubNet(cfg)
        _copy_conv_bn(sub.stem, self.stem)
        for target, (s, j) in zip(sub.blocks, sub.block_ids, strict=True):
            source = self.blocks[block_index(s, j)]
            assert isinstance(target, _Block) and isinstance(source, _DynamicBlock)
            _copy_conv_bn(target.conv_a, source.conv_a)
            _copy_conv_bn(target.conv_b, source.conv_b)
            if target.shortcut is not None and source.shortcut is not None:
                _copy_conv_bn(target.shortcut, source.shortcut)
        _copy_bn(sub.head_bn, self.head_bn)
        sub.classifier.weight.copy_(self.classifier.weight[:, : sub.classifier.in_features])
        sub.classifier.bias.copy_(self.classifier.bias)
        return sub.train(self.training)


class _ConvBN(nn.Module):
    """(ReLU →) Conv2d (same padding, no bias) → BatchNorm2d."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, preact: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.preact = preact

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(F.relu(x) if self.preact else x))


class _Block(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.conv_a = _ConvBN(cin, mid, 3, stride, preact=True)
        self.conv_b = _ConvBN(mid, cout, 3, 1, preact=True)
        self.shortcut = _ConvBN(cin, cout, 1, stride, preact=False) if projection else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_b(self.conv_a(x))
        return y + (self.shortcut(x) if self.shortcut is not None else x)


class ResNetTinySubNet(nn.Module):
    """A standalone SubNet of one config: plain convs and batch norms of its widths, only its blocks."""

    def __init__(self, config: SubNetConfig) -> None:
        super().__init__()
        widths = _widths(config)
        self.stem = _ConvBN(3, widths[0], 3, 1, preact=False)
        self.block_ids = [(s, j) for s in range(N_STAGES) for j in range(int(config[f"d_{s}"]))]
        self.blocks = nn.ModuleList(
            _Block(
                widths[s - 1] if has_projection(s, j) else widths[s],
                _mid(config, s, j, widths[s]),
                widths[s],
                block_stride(s, j),
                has_projection(s, j),
            )
            for s, j in self.block_ids
        )
        self.head_bn = nn.BatchNorm2d(widths[-1])
        self.classifier = nn.Linear(widths[-1], N_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(F.relu(self.head_bn(x)).mean((2, 3)))


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    c = dst.num_features
    assert dst.running_mean is not None and dst.running_var is not None and dst.num_batches_tracked is not None
    assert src.running_mean is not None and src.running_var is not None and src.num_batches_tracked is not None
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv_bn(dst: _ConvBN, src: _DynamicConvBN) -> None:
    cout, cin = dst.conv.out_channels, dst.conv.in_channels
    dst.conv.weight.copy_(src.conv.weight[:cout, :cin])
    _copy_bn(dst.bn, src.bn)
