"""Runnable PyTorch modules and inputs for a :class:`~supernet.LayerSpec` (what the measuring backends time)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet import LayerSpec

__all__ = ["layer_module"]

_ACT: dict[str, type[nn.Module]] = {"none": nn.Identity, "relu": nn.ReLU, "hswish": nn.Hardswish, "gelu": nn.GELU}


class _Add(nn.Module):
    other: Tensor

    def __init__(self, other: Tensor) -> None:
        super().__init__()
        self.register_buffer("other", other)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.other


class _GlobalPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))


class _CausalAttention(nn.Module):
    """Q·Kᵀ, causal mask, softmax, A·V on ``(B, heads, T, hidden)`` q, k, v (as the gpt SubNet computes it)."""

    k: Tensor
    v: Tensor

    def __init__(self, k: Tensor, v: Tensor) -> None:
        super().__init__()
        self.register_buffer("k", k)
        self.register_buffer("v", v)

    def forward(self, q: Tensor) -> Tensor:
        t = q.size(-2)
        scores = q @ self.k.transpose(-2, -1) * q.size(-1) ** -0.5
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        return scores.masked_fill(future, float("-inf")).softmax(dim=-1) @ self.v


def layer_module(spec: LayerSpec, batch: int = 1, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """An eval-mode module computing ``spec`` and a deterministic input of its shape at ``batch``."""
    g = torch.Generator().manual_seed(seed)
    image = (batch, spec.cin, spec.h, spec.w)
    tokens = (batch, spec.seq, spec.cin)
    module: nn.Module
    if spec.op == "conv2d":
        conv = nn.Conv2d(
            spec.cin, spec.cout, spec.kernel, spec.stride, spec.kernel // 2, groups=spec.groups, bias=spec.bias
        )
        parts = [conv, nn.BatchNorm2d(spec.cout) if spec.bn else nn.Identity()]
        act = _ACT[spec.act]()
        module = nn.Sequential(act, *parts) if spec.preact else nn.Sequential(*parts, act)
        x = torch.randn(image, generator=g)
    elif spec.op == "batchnorm":
        module, x = nn.Sequential(nn.BatchNorm2d(spec.cin), _ACT[spec.act]()), torch.randn(image, generator=g)
    elif spec.op == "se":
        module, x = _SqueezeExcite(spec.cin, spec.hidden), torch.randn(image, generator=g)
    elif spec.op == "add":
        shape = image if spec.seq == 1 else tokens
        module, x = _Add(torch.randn(shape, generator=g)), torch.randn(shape, generator=g)
    elif spec.op == "pool":
        pad = spec.kernel // 2 if spec.stride == 1 else 0
        module = nn.AvgPool2d(spec.kernel, spec.stride, pad, count_include_pad=False)
        x = torch.randn(image, generator=g)
    elif spec.op == "gap":
        module, x = _GlobalPool(), torch.randn(image, generator=g)
    elif spec.op == "linear":
        module = nn.Sequential(nn.Linear(spec.cin, spec.cout, bias=spec.bias), _ACT[spec.act]())
        x = torch.randn(tokens, generator=g)
    elif spec.op == "layernorm":
        module, x = nn.LayerNorm(spec.cin), torch.randn(tokens, generator=g)
    elif spec.op == "embedding":
        module = nn.Embedding(spec.cin, spec.cout)
        x = torch.randint(0, spec.cin, (batch, spec.seq), generator=g)
    else:  # attention
        shape = (batch, spec.heads, spec.seq, spec.hidden)
        module = _CausalAttention(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
        x = torch.randn(shape, generator=g)
    return module.eval(), x
