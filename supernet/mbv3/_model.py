"""Weight-shared OFA MobileNetV3 SuperNet and its standalone SubNets.

Elastic kernel: the largest depthwise kernel is centre-cropped and passed through OFA's learned kernel-transform
matrices (``7to5``, ``5to3``; identity at init), as in OFA's ``DynamicSeparableConv2d``. Elastic width and
expand ratio: the first channels of every weight are kept; :meth:`MobileNetV3SuperNet.sort_channels` puts
channels in importance order first. Elastic depth: the first ``d`` blocks of a stage run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet._types import SubNetConfig
from supernet.mbv3._arch import N_STAGES, STAGE_ACTS, STAGE_SE, STAGE_STRIDES, Geometry, mid_channels, se_channels

__all__ = ["MobileNetV3SubNet", "MobileNetV3SuperNet"]

_ACT: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "hswish": F.hardswish, "none": lambda x: x}
_ACT_MODULE: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish, "none": nn.Identity}


def _bn(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Batch norm over the first ``x.size(1)`` channels of a max-width BN (running stats update in place)."""
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
    """Conv (+BN) (+activation) holding the largest weight; runs on the first ``cout`` × ``x.size(1)`` slice."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, act: str = "none", bn: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = act

    def forward(self, x: Tensor, cout: int) -> Tensor:
        w = self.conv.weight[:cout, : x.size(1)]
        y = F.conv2d(x, w, None, self.conv.stride, self.conv.padding)
        if self.bn is not None:
            y = _bn(self.bn, y)
        return _ACT[self.act](y)


class _DynamicSE(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_channels(channels)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        c = x.size(1)
        m = se_channels(c)
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, self.reduce.weight[:m, :c], _bias(self.reduce)[:m]))
        s = F.hardsigmoid(F.conv2d(s, self.expand.weight[:c, :m], _bias(self.expand)[:c]))
        return x * s


class _DynamicMBConv(nn.Module):
    """Inverted-residual block with elastic kernel, expand ratio and widths."""

    def __init__(
        self,
        cin: int,
        cout: int,
        mid: int,
        ks_choices: tuple[int, ...],
        stride: int,
        act: str,
        se: bool,
        residual: bool,
        expand: bool = True,
    ) -> None:
        super().__init__()
        self.ks_choices = ks_choices
        self.stride, self.act, self.residual = stride, act, residual
        self.expand = _DynamicConvBN(cin, mid, act=act) if expand else None
        kmax = ks_choices[-1]
        self.dw = nn.Conv2d(mid, mid, kmax, stride, kmax // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid)
        self.ks_transform = nn.ParameterDict(
            {f"{big}to{small}": nn.Parameter(torch.eye(small * small)) for small, big in itertools.pairwise(ks_choices)}
        )
        self.se = _DynamicSE(mid) if se else None
        self.project = _DynamicConvBN(mid, cout)

    def dw_filter(self, channels: int, kernel: int) -> Tensor:
        """Active depthwise kernel: centre crops of the largest kernel through the transform matrices."""
        f = self.dw.weight[:channels]
        for big, small in zip(reversed(self.ks_choices[1:]), reversed(self.ks_choices[:-1]), strict=True):
            if big <= kernel:
                break
            start = (big - small) // 2
            crop = f[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            f = F.linear(crop, self.ks_transform[f"{big}to{small}"]).view(channels, 1, small, small)
        return f

    def forward(self, x: Tensor, kernel: int, expand: int, cout: int) -> Tensor:
        cin = x.size(1)
        y = self.expand(x, mid_channels(cin, expand)) if self.expand is not None else x
        mid = y.size(1)
        y = F.conv2d(y, self.dw_filter(mid, kernel), None, self.stride, kernel // 2, 1, mid)
        y = _ACT[self.act](_bn(self.dw_bn, y))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, cout)
        return y + x if self.residual else y


class MobileNetV3SuperNet(nn.Module):
    """OFA MobileNetV3 SuperNet at the largest width. ``set_active(config)`` selects the SubNet ``forward``
    runs (the largest one until then); ``extract(config)`` returns it as a standalone module."""

    def __init__(self, space: Geometry, seed: int = 0) -> None:
        super().__init__()
        self.space = space
        c = space.max_widths
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.first_conv = _DynamicConvBN(3, c[0], 3, 2, "hswish")
            self.first_block = _DynamicMBConv(
                c[0], c[1], c[0], (3,), 1, STAGE_ACTS[0], False, space.first_residual, expand=False
            )
            blocks: list[_DynamicMBConv] = []
            cin = c[1]
            for s in range(N_STAGES):
                for j in range(space.max_depth):
                    mid = mid_channels(cin, space.expand_choices[-1])
                    blocks.append(
                        _DynamicMBConv(
                            cin,
                            c[2 + s],
                            mid,
                            space.ks_choices,
                            STAGE_STRIDES[s] if j == 0 else 1,
                            STAGE_ACTS[s],
                            STAGE_SE[s],
                            space.block_residual(s, j),
                        )
                    )
                    cin = c[2 + s]
            self.blocks = nn.ModuleList(blocks)
            self.final_expand = _DynamicConvBN(cin, c[7], act="hswish")
            self.feature_mix = _DynamicConvBN(c[7], c[8], act="hswish", bn=False)
            self.dropout = nn.Dropout(0.1)
            self.classifier = nn.Linear(c[8], space.n_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and not (m.kernel_size == (1, 1) and m.bias is not None):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        self._active: SubNetConfig = space.largest()

    @property
    def active(self) -> SubNetConfig:
        """The config ``forward`` runs."""
        return self._active

    def set_active(self, config: SubNetConfig) -> None:
        """Select the SubNet ``forward`` runs."""
        self._active = self.space.validate(config)

    def forward(self, x: Tensor) -> Tensor:
        cfg, space = self._active, self.space
        c = space.widths(float(cfg["w"]))
        x = self.first_conv(x, c[0])
        x = self.first_block(x, 3, 1, c[1])
        for s in range(N_STAGES):
            for j in range(int(cfg[f"d_{s}"])):
                i = space.block_index(s, j)
                x = self.blocks[i](x, int(cfg[f"ks_{i}"]), int(cfg[f"e_{i}"]), c[2 + s])
        x = self.final_expand(x, c[7])
        x = self.feature_mix(x.mean((2, 3), keepdim=True), c[8]).flatten(1)
        return F.linear(self.dropout(x), self.classifier.weight[:, : c[8]], self.classifier.bias)

    @torch.no_grad()
    def extract(self, config: SubNetConfig) -> MobileNetV3SubNet:
        """Standalone SubNet whose weights are copies of this SuperNet's slices for ``config``."""
        space = self.space
        cfg = space.validate(config)
        sub = MobileNetV3SubNet(space, cfg)
        c = space.widths(float(cfg["w"]))
        _copy_conv_bn(sub.first_conv, self.first_conv, c[0], 3)
        _copy_block(sub.first_block, self.first_block, 3)
        for s in range(N_STAGES):
            for j in range(int(cfg[f"d_{s}"])):
                i = space.block_index(s, j)
                dst = cast(_MBConv, sub.blocks[sub.block_ids.index(i)])
                _copy_block(dst, cast(_DynamicMBConv, self.blocks[i]), int(cfg[f"ks_{i}"]))
        _copy_conv_bn(sub.final_expand, self.final_expand, c[7], sub.final_expand.conv.in_channels)
        _copy_conv_bn(sub.feature_mix, self.feature_mix, c[8], c[7])
        sub.classifier.weight.copy_(self.classifier.weight[:, : c[8]])
        sub.classifier.bias.copy_(self.classifier.bias)
        return sub.train(self.training)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every elastic channel dimension by importance (L1 norm of the weights that consume it), so
        that slicing keeps the most important channels. The largest SubNet's function is unchanged."""
        for block in [self.first_block, *self.blocks]:
            if block.expand is not None:
                _sort_group(
                    producers=[(block.expand.conv.weight, 0), *_bn_params(block.expand.bn)],
                    passthrough=[(block.dw.weight, 0), *_bn_params(block.dw_bn)]
                    + (
                        [(block.se.reduce.weight, 1), (block.se.expand.weight, 0), (block.se.expand.bias, 0)]
                        if block.se is not None
                        else []
                    ),
                    consumers=[(block.project.conv.weight, 1)],
                )
            if block.se is not None:
                _sort_group(
                    producers=[(block.se.reduce.weight, 0), (block.se.reduce.bias, 0)],
                    passthrough=[],
                    consumers=[(block.se.expand.weight, 1)],
                )
        # Channel spaces between blocks: the first conv's output, then one per run of blocks joined by
        # identity shortcuts (a stage; merged with the previous one when its first block is residual).
        fb = self.first_block
        groups: list[tuple[list[tuple[Tensor, int]], list[tuple[Tensor, int]], list[tuple[Tensor, int]]]] = []
        first: tuple[list[tuple[Tensor, int]], list[tuple[Tensor, int]], list[tuple[Tensor, int]]] = (
            [(self.first_conv.conv.weight, 0), *_bn_params(self.first_conv.bn)],
            [(fb.dw.weight, 0), *_bn_params(fb.dw_bn)],
            [],
        )
        if fb.residual:  # first conv, first block and its output share one channel space
            first[0].extend([(fb.project.conv.weight, 0), *_bn_params(fb.project.bn)])
            first[1].append((fb.project.conv.weight, 1))
            groups.append(first)
        else:
            first[2].append((fb.project.conv.weight, 1))
            groups.append(first)
            groups.append(([(fb.project.conv.weight, 0), *_bn_params(fb.project.bn)], [], []))
        for s in range(N_STAGES):
            for j in range(self.space.max_depth):
                block = cast(_DynamicMBConv, self.blocks[self.space.block_index(s, j)])
                assert block.expand is not None
                if j == 0 and not block.residual:
                    groups[-1][2].append((block.expand.conv.weight, 1))
                    groups.append(([], [], []))
                else:
                    groups[-1][2].append((block.expand.conv.weight, 1))
                groups[-1][0].extend([(block.project.conv.weight, 0), *_bn_params(block.project.bn)])
        groups[-1][2].append((self.final_expand.conv.weight, 1))
        groups.append(
            (
                [(self.final_expand.conv.weight, 0), *_bn_params(self.final_expand.bn)],
                [],
                [(self.feature_mix.conv.weight, 1)],
            )
        )
        groups.append(([(self.feature_mix.conv.weight, 0)], [], [(self.classifier.weight, 1)]))
        for producers, passthrough, consumers in groups:
            _sort_group(producers, passthrough, consumers)


class _ConvBNAct(nn.Module):
    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: str = "none", bn: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = _ACT_MODULE[act]()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.act(self.bn(x) if self.bn is not None else x)


class _SE(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_channels(channels)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))


class _MBConv(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        mid: int,
        kernel: int,
        stride: int,
        act: str,
        se: bool,
        residual: bool,
        expand: bool = True,
    ) -> None:
        super().__init__()
        self.expand = _ConvBNAct(cin, mid, act=act) if expand else None
        self.dw = _ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = _SE(mid) if se else None
        self.project = _ConvBNAct(mid, cout)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y + x if self.residual else y


class MobileNetV3SubNet(nn.Module):
    """A standalone MobileNetV3 SubNet (plain ``nn`` layers) for one config."""

    def __init__(self, space: Geometry, config: SubNetConfig) -> None:
        super().__init__()
        c = space.widths(float(config["w"]))
        self.first_conv = _ConvBNAct(3, c[0], 3, 2, act="hswish")
        self.first_block = _MBConv(c[0], c[1], c[0], 3, 1, STAGE_ACTS[0], False, space.first_residual, expand=False)
        blocks: list[_MBConv] = []
        self.block_ids: list[int] = []
        cin = c[1]
        for s in range(N_STAGES):
            for j in range(int(config[f"d_{s}"])):
                i = space.block_index(s, j)
                mid = mid_channels(cin, int(config[f"e_{i}"]))
                blocks.append(
                    _MBConv(
                        cin,
                        c[2 + s],
                        mid,
                        int(config[f"ks_{i}"]),
                        STAGE_STRIDES[s] if j == 0 else 1,
                        STAGE_ACTS[s],
                        STAGE_SE[s],
                        space.block_residual(s, j),
                    )
                )
                self.block_ids.append(i)
                cin = c[2 + s]
        self.blocks = nn.Sequential(*blocks)
        self.final_expand = _ConvBNAct(cin, c[7], act="hswish")
        self.feature_mix = _ConvBNAct(c[7], c[8], act="hswish", bn=False)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(c[8], space.n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.first_block(self.first_conv(x)))
        x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(self.dropout(x))


def _bn_params(bn: nn.BatchNorm2d | None) -> list[tuple[Tensor, int]]:
    if bn is None:
        return []
    assert bn.running_mean is not None and bn.running_var is not None
    return [(bn.weight, 0), (bn.bias, 0), (bn.running_mean, 0), (bn.running_var, 0)]


def _sort_group(
    producers: list[tuple[Tensor, int]], passthrough: list[tuple[Tensor, int]], consumers: list[tuple[Tensor, int]]
) -> None:
    """Permute one channel space: importance = L1 norm of the consumer weights over their other dims."""
    importance = sum(
        (t.abs().sum(dim=[d for d in range(t.dim()) if d != dim]) for t, dim in consumers),
        start=torch.zeros(consumers[0][0].size(consumers[0][1])),
    )
    order = torch.argsort(importance, descending=True, stable=True)
    for t, dim in [*producers, *passthrough, *consumers]:
        t.data = t.data.index_select(dim, order)


def _copy_conv_bn(dst: _ConvBNAct, src: _DynamicConvBN, cout: int, cin: int) -> None:
    dst.conv.weight.copy_(src.conv.weight[:cout, :cin])
    if dst.bn is not None and src.bn is not None:
        _copy_bn(dst.bn, src.bn, cout)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, c: int) -> None:
    assert dst.running_mean is not None and dst.running_var is not None
    assert src.running_mean is not None and src.running_var is not None
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])


def _bias(conv: nn.Conv2d) -> Tensor:
    """The bias of a conv built with one (SE convs are)."""
    assert conv.bias is not None, "conv built without a bias"
    return conv.bias


def _copy_block(dst: _MBConv, src: _DynamicMBConv, kernel: int) -> None:
    cin = dst.dw.conv.in_channels if dst.expand is None else dst.expand.conv.in_channels
    mid = dst.dw.conv.out_channels
    if dst.expand is not None and src.expand is not None:
        _copy_conv_bn(dst.expand, src.expand, mid, cin)
    dst.dw.conv.weight.copy_(src.dw_filter(mid, kernel))
    assert dst.dw.bn is not None
    _copy_bn(dst.dw.bn, src.dw_bn, mid)
    if dst.se is not None and src.se is not None:
        m = dst.se.reduce.out_channels
        dst.se.reduce.weight.copy_(src.se.reduce.weight[:m, :mid])
        _bias(dst.se.reduce).copy_(_bias(src.se.reduce)[:m])
        dst.se.expand.weight.copy_(src.se.expand.weight[:mid, :m])
        _bias(dst.se.expand).copy_(_bias(src.se.expand)[:mid])
    _copy_conv_bn(dst.project, src.project, dst.project.conv.out_channels, mid)
