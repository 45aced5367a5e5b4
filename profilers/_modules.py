"""Runnable PyTorch modules and inputs for a :class:`~supernet.LayerSpec` (what the measuring backends time)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet import LayerSpec, check_memory

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


class _GQAAttention(nn.Module):
    """Grouped-query attention core: ``(B, heads, seq, hidden)`` queries, the last ``seq`` of ``context``
    positions, against ``(B, kv_heads, context, hidden)`` keys and values (each KV head repeated for its group of
    query heads, as transformers' eager Llama attention does), causal mask, softmax."""

    k: Tensor
    v: Tensor

    def __init__(self, k: Tensor, v: Tensor, group: int) -> None:
        super().__init__()
        self.register_buffer("k", k)
        self.register_buffer("v", v)
        self.group = group

    def forward(self, q: Tensor) -> Tensor:
        t, ctx = q.size(-2), self.k.size(-2)
        k = self.k.repeat_interleave(self.group, dim=1)
        v = self.v.repeat_interleave(self.group, dim=1)
        scores = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5
        if t > 1:
            future = torch.ones(t, ctx, dtype=torch.bool, device=q.device).triu(ctx - t + 1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=-1) @ v


class _RMSNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class _Rope(nn.Module):
    """Rotary embedding of ``(B, seq, heads·hidden)`` queries and the ``kv_heads`` keys (a buffer), as Llama's
    ``apply_rotary_pos_emb`` (rotate-half form)."""

    k: Tensor
    cos: Tensor
    sin: Tensor

    def __init__(self, k: Tensor, heads: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("k", k)
        self.heads, self.hidden = heads, hidden
        t = k.size(1)
        inv = 1.0 / (10000.0 ** (torch.arange(0, hidden, 2, dtype=torch.float32) / hidden))
        angles = torch.outer(torch.arange(t, dtype=torch.float32), inv)
        emb = torch.cat([angles, angles], dim=-1)[None, :, None, :]
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    def forward(self, q: Tensor) -> tuple[Tensor, Tensor]:
        b, t = q.size(0), q.size(1)
        q = q.view(b, t, self.heads, self.hidden)
        k = self.k.view(b, t, -1, self.hidden)
        return (
            q * self.cos + self._rotate_half(q) * self.sin,
            k * self.cos + self._rotate_half(k) * self.sin,
        )


class _SwiGLU(nn.Module):
    up: Tensor

    def __init__(self, up: Tensor) -> None:
        super().__init__()
        self.register_buffer("up", up)

    def forward(self, gate: Tensor) -> Tensor:
        return F.silu(gate) * self.up


def layer_module(spec: LayerSpec, batch: int = 1, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """An eval-mode module computing ``spec`` and a deterministic input of its shape at ``batch``; a layer that
    would not fit this machine's memory (a 405B-class model's embedding) is refused before it is allocated."""
    check_memory(f"layer {spec.key}", _floats(spec, batch), counted="floats (weights, input, KV cache, outputs)")
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
    elif spec.op == "rmsnorm":
        module, x = _RMSNorm(spec.cin), torch.randn(tokens, generator=g)
    elif spec.op == "rope":
        hidden = spec.hidden + spec.hidden % 2
        kv = spec.kv_heads or spec.heads
        k = torch.randn((batch, spec.seq, kv * hidden), generator=g)
        module, x = _Rope(k, spec.heads, hidden), torch.randn((batch, spec.seq, spec.heads * hidden), generator=g)
    elif spec.op == "swiglu":
        module, x = _SwiGLU(torch.randn(tokens, generator=g)), torch.randn(tokens, generator=g)
    elif spec.kv_heads or spec.context:  # grouped-query or KV-cache attention
        kv, ctx = spec.kv_heads or spec.heads, spec.context or spec.seq
        cache = (batch, kv, ctx, spec.hidden)
        module = _GQAAttention(torch.randn(cache, generator=g), torch.randn(cache, generator=g), spec.heads // kv)
        x = torch.randn((batch, spec.heads, spec.seq, spec.hidden), generator=g)
    else:  # attention
        shape = (batch, spec.heads, spec.seq, spec.hidden)
        module = _CausalAttention(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
        x = torch.randn(shape, generator=g)
    return module.eval(), x


def _floats(spec: LayerSpec, batch: int) -> int:
    """About how many floats timing ``spec`` holds: its weights, a KV cache, and its input and output (with a
    temporary) at their widest."""
    image = batch * spec.h * spec.w * max(spec.cin, spec.cout)
    tokens = batch * spec.seq * max(spec.cin, spec.cout, spec.heads * spec.hidden)
    cache = 2 * batch * (spec.kv_heads or spec.heads) * (spec.context or spec.seq) * spec.hidden
    return spec.params + cache + 3 * max(image, tokens)
