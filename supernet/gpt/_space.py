"""The built-in ``gpt`` space: a decoder-only elastic transformer (Flextron / AmoebaLLM / whittle style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwpareto.errors import InvalidValueError
from supernet._space import LayerTerm, SearchSpace
from supernet._types import Dimension, LayerSpec, Scalar, SubNetConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from supernet.gpt._model import GPTSubNet, GPTSuperNet

__all__ = ["GPTSpace"]


class GPTSpace(SearchSpace):
    """Elastic byte-level GPT: residual width, which layers are kept, and per layer the heads and FFN width.

    Dimensions: ``embed_dim``, ``seq_len`` (input length for profiling; it does not change weights), then per
    layer ``i`` ``layer_i`` (1 keeps block ``i``, 0 skips it), ``heads_i`` (of ``head_dim`` dims each) and
    ``ffn_i``. At least ``min_layers`` layers are kept. Choices are stored sorted.
    """

    name = "gpt"
    description = "Decoder-only elastic GPT (byte-level): width, kept layers, per-layer heads and FFN, sequence length"

    def __init__(
        self,
        *,
        vocab_size: int = 256,
        n_layers: int = 6,
        embed_choices: Sequence[int] = (128, 192, 256),
        head_choices: Sequence[int] = (2, 4, 8),
        head_dim: int = 32,
        ffn_choices: Sequence[int] = (256, 512, 1024),
        seq_choices: Sequence[int] = (64, 128, 256),
        max_seq: int | None = None,
        min_layers: int = 1,
        name: str = "gpt",
    ) -> None:
        self.name = name
        self.vocab_size = _positive("vocab_size", vocab_size)
        self.n_layers = _positive("n_layers", n_layers)
        self.embed_choices = _choices("embed_choices", embed_choices)
        self.head_choices = _choices("head_choices", head_choices)
        self.head_dim = _positive("head_dim", head_dim)
        self.ffn_choices = _choices("ffn_choices", ffn_choices)
        self.seq_choices = _choices("seq_choices", seq_choices)
        self.max_seq = self.seq_choices[-1] if max_seq is None else _positive("max_seq", max_seq)
        if self.max_seq < self.seq_choices[-1]:
            raise InvalidValueError("gpt max_seq", f"at least max(seq_choices) = {self.seq_choices[-1]}", max_seq)
        if not isinstance(min_layers, int) or not 1 <= min_layers <= n_layers:
            raise InvalidValueError("gpt min_layers", f"an integer in [1, n_layers = {n_layers}]", min_layers)
        self.min_layers = min_layers
        dims = [
            Dimension("embed_dim", "categorical", self.embed_choices, group="global", description="residual width"),
            Dimension("seq_len", "categorical", self.seq_choices, group="input", description="tokens per sequence"),
        ]
        for i in range(n_layers):
            group = f"layer {i}"
            dims += [
                Dimension(f"layer_{i}", "categorical", (0, 1), group=group, description=f"1 keeps block {i}"),
                Dimension(f"heads_{i}", "categorical", self.head_choices, group=group, description="attention heads"),
                Dimension(f"ffn_{i}", "categorical", self.ffn_choices, group=group, description="FFN hidden width"),
            ]
        super().__init__(dims)

    # ------------------------------------------------------------------ configs
    def _check(self, values: dict[str, Scalar]) -> None:
        flags = tuple(values[f"layer_{i}"] for i in range(self.n_layers))
        if sum(int(f) for f in flags) < self.min_layers:
            raise InvalidValueError("gpt config.layer_*", f"at least {self.min_layers} kept layer(s)", flags)

    def sample(self, rng: np.random.Generator) -> SubNetConfig:
        """Uniform per dimension; when too few layers are kept, a random subset of the dropped ones is kept too."""
        values = {d.name: d.sample(rng) for d in self.dimensions}
        dropped = [f"layer_{i}" for i in range(self.n_layers) if values[f"layer_{i}"] == 0]
        missing = self.min_layers - (self.n_layers - len(dropped))
        if missing > 0:
            for j in rng.choice(len(dropped), size=missing, replace=False):
                values[dropped[int(j)]] = 1
        return self.validate(values)

    def smallest(self) -> SubNetConfig:
        """Smallest widths with only the first ``min_layers`` layers kept."""
        values = {d.name: d.bounds()[0] for d in self.dimensions}
        values |= {f"layer_{i}": 1 for i in range(self.min_layers)}
        return self.validate(values)

    def canonical(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """Dropped layers (``layer_i == 0``) take the smallest heads and FFN width."""
        config = self.validate(config)
        changes = {
            f"{k}_{i}": first
            for i in range(self.n_layers)
            if not config[f"layer_{i}"]
            for k, first in (("heads", self.head_choices[0]), ("ffn", self.ffn_choices[0]))
            if config[f"{k}_{i}"] != first
        }
        return self.validate(config.values | changes) if changes else config

    def summary(self, config: SubNetConfig) -> str:
        """``d=… T=…`` then ``layer:heads×ffn`` for the kept layers."""
        kept = [
            f"{i}:{config[f'heads_{i}']}h/{config[f'ffn_{i}']}" for i in range(self.n_layers) if config[f"layer_{i}"]
        ]
        return f"d={config['embed_dim']} T={config['seq_len']} layers " + " ".join(kept)

    def encoding_names(self) -> list[str]:
        """``embed_dim``, ``seq_len``, then ``layer_i``, ``heads_i``, ``ffn_i`` per layer."""
        return ["embed_dim", "seq_len"] + [f"{k}_{i}" for i in range(self.n_layers) for k in ("layer", "heads", "ffn")]

    def encode(self, config: SubNetConfig) -> np.ndarray:
        """``[embed_dim, seq_len]`` then per layer ``[kept, heads, ffn]``, heads and ffn 0 for skipped layers."""
        out = [float(config["embed_dim"]), float(config["seq_len"])]
        for i in range(self.n_layers):
            kept = float(config[f"layer_{i}"])
            out += [kept, kept * float(config[f"heads_{i}"]), kept * float(config[f"ffn_{i}"])]
        return np.asarray(out, dtype=np.float64)

    def feature_names(self) -> list[str]:
        """The default columns, then ``kept_layers``, ``total_heads`` and ``total_ffn`` (over kept layers)."""
        return [*super().feature_names(), "kept_layers", "total_heads", "total_ffn"]

    def features(self, configs: Sequence[SubNetConfig], canonical: bool = True) -> np.ndarray:
        """The default columns and the kept layers with their total heads and FFN width. The encoding and layers
        already ignore skipped layers, so ``canonical`` changes nothing."""
        configs = [self.validate(c) for c in configs]
        stats = []
        for config in configs:
            kept = [i for i in range(self.n_layers) if config[f"layer_{i}"]]
            stats.append(
                [
                    float(len(kept)),
                    float(sum(int(config[f"heads_{i}"]) for i in kept)),
                    float(sum(int(config[f"ffn_{i}"]) for i in kept)),
                ]
            )
        extra = np.array(stats, dtype=np.float64).reshape(len(configs), 3)
        return np.hstack([super().features(configs, canonical=False), extra])

    # ------------------------------------------------------------------ cost model
    input_dimension = "seq_len"

    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        """Embeddings, each kept block (LN, fused qkv, attention, out proj, add, LN, fc1+GELU, fc2, add), LN, head."""
        config = self.validate(config)
        d, t = int(config["embed_dim"]), int(config["seq_len"])
        specs = self._embeddings(d, t)
        for i in range(self.n_layers):
            if config[f"layer_{i}"]:
                specs += self._attention_block(d, t, int(config[f"heads_{i}"]))
                specs += self._ffn_block(d, t, int(config[f"ffn_{i}"]))
        return specs + self._head(d, t)

    def layer_terms(self) -> list[LayerTerm]:
        """The embeddings and head (they read ``embed_dim`` and ``seq_len``), then per layer its attention block
        (kept, heads) and its FFN block (kept, width), each at ``embed_dim`` and ``seq_len``."""
        terms: list[LayerTerm] = [(("embed_dim", "seq_len"), self._ends_term)]
        for i in range(self.n_layers):
            terms.append(((f"layer_{i}", f"heads_{i}", "embed_dim", "seq_len"), self._attention_term))
            terms.append(((f"layer_{i}", f"ffn_{i}", "embed_dim", "seq_len"), self._ffn_term))
        return terms

    def _ends_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        d, t = int(values[0]), int(values[1])
        return self._embeddings(d, t) + self._head(d, t)

    def _attention_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        kept, heads, d, t = values
        return self._attention_block(int(d), int(t), int(heads)) if kept else []

    def _ffn_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        kept, ffn, d, t = values
        return self._ffn_block(int(d), int(t), int(ffn)) if kept else []

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec of any config (``restrict`` may limit ``seq_len`` and ``embed_dim``)."""
        allowed = self._restrict(restrict, {"seq_len", "embed_dim"})
        specs: dict[LayerSpec, None] = {}
        for t in allowed["seq_len"]:
            for d in allowed["embed_dim"]:
                for part in (
                    self._embeddings(d, t),
                    self._head(d, t),
                    *(self._attention_block(d, t, h) for h in self.head_choices),
                    *(self._ffn_block(d, t, f) for f in self.ffn_choices),
                ):
                    specs.update(dict.fromkeys(part))
        return list(specs)

    def _embeddings(self, d: int, t: int) -> list[LayerSpec]:
        return [
            LayerSpec("embedding", cin=self.vocab_size, cout=d, seq=t),
            LayerSpec("embedding", cin=self.max_seq, cout=d, seq=t),
        ]

    def _attention_block(self, d: int, t: int, heads: int) -> list[LayerSpec]:
        width = heads * self.head_dim
        return [
            LayerSpec("layernorm", cin=d, seq=t),
            LayerSpec("linear", cin=d, cout=3 * width, seq=t, bias=True),
            LayerSpec("attention", cin=width, heads=heads, hidden=self.head_dim, seq=t),
            LayerSpec("linear", cin=width, cout=d, seq=t, bias=True),
            LayerSpec("add", cin=d, seq=t),
        ]

    def _ffn_block(self, d: int, t: int, ffn: int) -> list[LayerSpec]:
        return [
            LayerSpec("layernorm", cin=d, seq=t),
            LayerSpec("linear", cin=d, cout=ffn, seq=t, bias=True, act="gelu"),
            LayerSpec("linear", cin=ffn, cout=d, seq=t, bias=True),
            LayerSpec("add", cin=d, seq=t),
        ]

    def _head(self, d: int, t: int) -> list[LayerSpec]:
        return [LayerSpec("layernorm", cin=d, seq=t), LayerSpec("linear", cin=d, cout=self.vocab_size, seq=t)]

    # ------------------------------------------------------------------ models
    def supernet(self, seed: int = 0) -> GPTSuperNet:
        """A GPT-2-initialised :class:`GPTSuperNet` of the largest sizes; the global RNG state is left untouched."""
        import torch

        from supernet.gpt._model import GPTSuperNet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return GPTSuperNet(
                self.vocab_size,
                self.max_seq,
                self.embed_choices[-1],
                self.n_layers,
                self.head_choices[-1],
                self.head_dim,
                self.ffn_choices[-1],
            )

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> GPTSubNet:
        """A standalone :class:`GPTSubNet` holding copies of the SuperNet slices ``config`` selects."""
        from supernet.gpt._model import GPTSuperNet

        if not isinstance(supernet, GPTSuperNet):
            raise InvalidValueError("gpt supernet", "a GPTSuperNet", type(supernet).__name__)
        return supernet.extract(self.validate(config))

    def subnet(self, config: SubNetConfig) -> GPTSubNet:
        """A freshly initialised :class:`GPTSubNet` with the state-dict layout of :meth:`extract` (seed 0; the global
        RNG state is left untouched)."""
        import torch

        from supernet.gpt._model import GPTSubNet

        config = self.validate(config)
        kept = [
            (int(config[f"heads_{i}"]), int(config[f"ffn_{i}"])) for i in range(self.n_layers) if config[f"layer_{i}"]
        ]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return GPTSubNet(self.vocab_size, self.max_seq, int(config["embed_dim"]), kept, self.head_dim)

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Token ids ``(batch, seq_len)`` (int64) drawn from a generator seeded with ``seed``."""
        import torch

        config = self.validate(config)
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(0, self.vocab_size, (batch, int(config["seq_len"])), generator=gen, dtype=torch.int64)


def _positive(field: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValueError(f"gpt {field}", "a positive integer", value)
    return value


def _choices(field: str, values: Sequence[int]) -> tuple[int, ...]:
    if not values:
        raise InvalidValueError(f"gpt {field}", "a non-empty list of positive integers", values)
    return tuple(sorted(_positive(field, v) for v in values))
