"""PyTorch modules of the ``gpt`` space: the weight-shared :class:`GPTSuperNet` and standalone :class:`GPTSubNet`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwpareto.errors import InvalidValueError
from supernet._types import SubNetConfig

__all__ = ["Arch", "GPTSubNet", "GPTSuperNet"]


@dataclass(frozen=True, slots=True)
class Arch:
    """The widths a config selects: residual width and, per SuperNet layer, ``(heads, ffn)`` or ``None`` if skipped."""

    embed_dim: int
    layers: tuple[tuple[int, int] | None, ...]

    @classmethod
    def from_config(cls, config: SubNetConfig, n_layers: int) -> Arch:
        """Read ``embed_dim`` and ``layer_i``/``heads_i``/``ffn_i`` for ``i < n_layers`` from a gpt config."""
        names = {"embed_dim", "seq_len"} | {f"{k}_{i}" for i in range(n_layers) for k in ("layer", "heads", "ffn")}
        if set(config) != names:
            raise InvalidValueError("config", f"a gpt config with {n_layers} layers", sorted(config))
        layers = tuple(
            (int(config[f"heads_{i}"]), int(config[f"ffn_{i}"])) if int(config[f"layer_{i}"]) else None
            for i in range(n_layers)
        )
        return cls(int(config["embed_dim"]), layers)

    @property
    def kept(self) -> list[tuple[int, int, int]]:
        """``(supernet layer index, heads, ffn)`` of every kept layer, in order."""
        return [(i, *layer) for i, layer in enumerate(self.layers) if layer is not None]


def _init_gpt(module: nn.Module) -> None:
    """GPT-2 initialisation: N(0, 0.02) for linear and embedding weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, fused: bool = True) -> torch.Tensor:
    """Causal multi-head attention of ``(B, T, heads * head_dim)`` projections; returns the same shape.

    ``fused`` uses ``F.scaled_dot_product_attention``; otherwise the core is spelled out (Q·Kᵀ, causal mask,
    softmax, A·V) so that ``FlopCounterMode`` counts it on every device (it has no formula for the CPU SDPA
    kernel) and ONNX sees plain MatMul/Softmax.
    """
    b, t, width = q.shape
    q, k, v = (z.reshape(b, t, heads, width // heads).transpose(1, 2) for z in (q, k, v))
    if fused:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scores = q @ k.transpose(-2, -1) * (width // heads) ** -0.5
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        out = scores.masked_fill(future, float("-inf")).softmax(dim=-1) @ v
    return out.transpose(1, 2).reshape(b, t, width)


def _layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    """``ln`` over the first ``x.shape[-1]`` features."""
    d = x.shape[-1]
    return F.layer_norm(x, (d,), ln.weight[:d], ln.bias[:d], ln.eps)


class _SuperBlock(nn.Module):
    """Max-size pre-LN transformer block; :meth:`forward` runs the slice of ``heads`` heads and ``ffn`` neurons."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int, ffn: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.ln1 = nn.LayerNorm(embed_dim)
        self.q = nn.Linear(embed_dim, heads * head_dim)
        self.k = nn.Linear(embed_dim, heads * head_dim)
        self.v = nn.Linear(embed_dim, heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn)
        self.fc2 = nn.Linear(ffn, embed_dim)

    def forward(self, x: torch.Tensor, heads: int, ffn: int) -> torch.Tensor:
        d, w = x.shape[-1], heads * self.head_dim
        y = _layer_norm(x, self.ln1)
        q, k, v = (F.linear(y, lin.weight[:w, :d], lin.bias[:w]) for lin in (self.q, self.k, self.v))
        x = x + F.linear(_attend(q, k, v, heads), self.proj.weight[:d, :w], self.proj.bias[:d])
        hidden = F.gelu(F.linear(_layer_norm(x, self.ln2), self.fc1.weight[:ffn, :d], self.fc1.bias[:ffn]))
        return x + F.linear(hidden, self.fc2.weight[:d, :ffn], self.fc2.bias[:d])


class GPTSuperNet(nn.Module):
    """Weight-shared decoder-only transformer holding the largest weights of every elastic dimension.

    :meth:`set_active` selects a SubNet: the first ``embed_dim`` residual channels, the first ``heads_i`` heads
    and ``ffn_i`` neurons of each kept layer; skipped layers are the identity. Until then the largest runs.
    Input: token ids ``(B, T)`` with ``T <= max_seq``; output: logits ``(B, T, vocab_size)``.
    """

    def __init__(
        self, vocab_size: int, max_seq: int, embed_dim: int, n_layers: int, heads: int, head_dim: int, ffn: int
    ) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_heads = heads
        self.max_ffn = ffn
        self.tok_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(max_seq, embed_dim)
        self.blocks = nn.ModuleList(_SuperBlock(embed_dim, heads, head_dim, ffn) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size, bias=False)
        self.active = Arch(embed_dim, ((heads, ffn),) * n_layers)
        _init_gpt(self)

    def arch(self, config: SubNetConfig) -> Arch:
        """The :class:`Arch` of ``config``, checked to fit inside this SuperNet."""
        arch = Arch.from_config(config, len(self.blocks))
        if not 1 <= arch.embed_dim <= self.tok_emb.embedding_dim:
            raise InvalidValueError("config.embed_dim", f"at most {self.tok_emb.embedding_dim}", arch.embed_dim)
        for i, heads, ffn in arch.kept:
            if not 1 <= heads <= self.max_heads:
                raise InvalidValueError(f"config.heads_{i}", f"at most {self.max_heads}", heads)
            if not 1 <= ffn <= self.max_ffn:
                raise InvalidValueError(f"config.ffn_{i}", f"at most {self.max_ffn}", ffn)
        if not arch.kept:
            raise InvalidValueError("config.layer_*", "at least 1 kept layer", 0)
        return arch

    def set_active(self, config: SubNetConfig) -> None:
        """Make :meth:`forward` run the SubNet ``config`` selects."""
        self.active = self.arch(config)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        d, t = self.active.embed_dim, idx.shape[1]
        if t > self.pos_emb.num_embeddings:
            raise InvalidValueError("input length", f"at most {self.pos_emb.num_embeddings} tokens", t)
        x = F.embedding(idx, self.tok_emb.weight[:, :d]) + self.pos_emb.weight[:t, :d]
        for block, layer in zip(self.blocks, self.active.layers, strict=True):
            if layer is not None:
                x = block(x, *layer)
        return F.linear(_layer_norm(x, self.ln_f), self.head.weight[:, :d])

    def extract(self, config: SubNetConfig) -> GPTSubNet:
        """A standalone :class:`GPTSubNet` whose weights are copies of the slices ``config`` selects."""
        arch = self.arch(config)
        d, hd = arch.embed_dim, self.head_dim
        state = {
            "tok_emb.weight": self.tok_emb.weight[:, :d],
            "pos_emb.weight": self.pos_emb.weight[:, :d],
            "ln_f.weight": self.ln_f.weight[:d],
            "ln_f.bias": self.ln_f.bias[:d],
            "head.weight": self.head.weight[:, :d],
        }
        for j, (i, heads, ffn) in enumerate(arch.kept):
            src: _SuperBlock = self.blocks[i]  # type: ignore[assignment]
            w, p = heads * hd, f"blocks.{j}."
            state |= {
                p + "ln1.weight": src.ln1.weight[:d],
                p + "ln1.bias": src.ln1.bias[:d],
                p + "qkv.weight": torch.cat([lin.weight[:w, :d] for lin in (src.q, src.k, src.v)]),
                p + "qkv.bias": torch.cat([lin.bias[:w] for lin in (src.q, src.k, src.v)]),
                p + "proj.weight": src.proj.weight[:d, :w],
                p + "proj.bias": src.proj.bias[:d],
                p + "ln2.weight": src.ln2.weight[:d],
                p + "ln2.bias": src.ln2.bias[:d],
                p + "fc1.weight": src.fc1.weight[:ffn, :d],
                p + "fc1.bias": src.fc1.bias[:ffn],
                p + "fc2.weight": src.fc2.weight[:d, :ffn],
                p + "fc2.bias": src.fc2.bias[:d],
            }
        # built on the CPU, not under torch.device("meta"): that context imports torch._dynamo (about 2 s)
        sub = GPTSubNet(
            self.tok_emb.num_embeddings, self.pos_emb.num_embeddings, d, [(h, f) for _, h, f in arch.kept], hd
        )
        sub.load_state_dict(
            {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in state.items()}, assign=True
        )
        return sub

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder heads, FFN neurons and residual channels by descending importance (Flextron / Minitron style).

        Heads rank by the L2 norm of their out-projection column block, FFN neurons by the L2 norm of their fc2
        column, residual channels by the L2 norm of their token- and position-embedding columns. Every weight
        is permuted consistently, so the largest SubNet computes the same function; smaller slices then keep the
        most important channels.
        """
        hd = self.head_dim
        table = torch.cat([self.tok_emb.weight, self.pos_emb.weight])
        channels = torch.argsort(torch.linalg.vector_norm(table, dim=0), descending=True, stable=True)
        for param in (self.tok_emb.weight, self.pos_emb.weight, self.head.weight):
            _permute(param, channels, 1)
        for param in (self.ln_f.weight, self.ln_f.bias):
            _permute(param, channels, 0)
        for block in self.blocks:
            assert isinstance(block, _SuperBlock)
            for param in (block.ln1.weight, block.ln1.bias, block.ln2.weight, block.ln2.bias):
                _permute(param, channels, 0)
            for param in (block.proj.weight, block.proj.bias, block.fc2.weight, block.fc2.bias):
                _permute(param, channels, 0)
            for lin in (block.q, block.k, block.v, block.fc1):
                _permute(lin.weight, channels, 1)
            proj = block.proj.weight
            head_norm = torch.linalg.vector_norm(proj.reshape(proj.shape[0], -1, hd), dim=(0, 2))
            heads = torch.argsort(head_norm, descending=True, stable=True)
            rows = (heads[:, None] * hd + torch.arange(hd, device=heads.device)).flatten()
            for lin in (block.q, block.k, block.v):
                _permute(lin.weight, rows, 0)
                _permute(lin.bias, rows, 0)
            _permute(proj, rows, 1)
            neurons = torch.argsort(torch.linalg.vector_norm(block.fc2.weight, dim=0), descending=True, stable=True)
            _permute(block.fc1.weight, neurons, 0)
            _permute(block.fc1.bias, neurons, 0)
            _permute(block.fc2.weight, neurons, 1)


def _permute(param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """In place: ``param`` becomes ``param.index_select(dim, index)``."""
    param.copy_(param.index_select(dim, index))


class _Block(nn.Module):
    """Pre-LN transformer block with fused q/k/v projection (rows ``[q heads | k heads | v heads]``) and the
    attention core spelled out (see :func:`_attend`)."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(embed_dim)
        self.qkv = nn.Linear(embed_dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(ffn, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.proj(_attend(q, k, v, self.heads, fused=False))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class GPTSubNet(nn.Module):
    """Standalone decoder-only transformer sized to one config: token ids ``(B, T)`` to logits ``(B, T, vocab)``.

    ``layers`` lists ``(heads, ffn)`` of each block in order; the position table keeps all ``max_seq`` rows.
    """

    def __init__(
        self, vocab_size: int, max_seq: int, embed_dim: int, layers: Sequence[tuple[int, int]], head_dim: int
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(max_seq, embed_dim)
        self.blocks = nn.ModuleList(_Block(embed_dim, heads, head_dim, ffn) for heads, ffn in layers)
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size, bias=False)
        _init_gpt(self)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))
