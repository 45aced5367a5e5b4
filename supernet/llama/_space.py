"""Spaces of Hugging Face decoder-only models (Llama, Mistral, Qwen2): ``hwpareto space from-hf``.

Elastic dimensions (AmoebaLLM depth, Flextron / Minitron width): ``hidden`` (residual width), ``layer_i`` (1 keeps
layer ``i``), attention heads per layer in whole KV groups and FFN width per layer (``heads_i`` / ``ffn_i``, or one
shared ``heads`` / ``ffn`` with ``uniform``, so that every SubNet is a plain transformers model); runtime dimensions
for cost: ``batch``, ``prompt_len``, ``gen_len``. Stored in the store as a document of kind ``hf-causal-lm``
(:meth:`HFCausalLMSpace.to_dict`, :func:`space_from_document`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hwpareto.checks import check_name
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.metrics import MIB
from supernet._family import ModelFamily
from supernet._memory import check_memory
from supernet._space import LayerTerm, SearchSpace
from supernet._types import Dimension, LayerSpec, Scalar, SubNetConfig
from supernet.llama._config import (
    COPIED_FILES,
    check_hf_config,
    check_weights,
    copied_files,
    file_sha256,
    read_model_folder,
    weight_files,
    weights_sha256,
)
from supernet.llama._family import HF_FAMILY

if TYPE_CHECKING:
    import torch
    from torch import nn

    from supernet.llama._model import Arch, HFSuperNet

__all__ = ["KIND", "HFCausalLMSpace", "space_from_document", "space_from_hf"]

KIND = "hf-causal-lm"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_CALIBRATION_CHARS = 262_144
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
"""A model folder with any of these has a tokenizer."""
DEFAULT_OPTIONS: dict[str, Any] = {
    "uniform": False,
    "hidden_fracs": [0.5, 0.75, 1.0],
    "head_fracs": [0.25, 0.5, 0.75, 1.0],
    "ffn_fracs": [0.25, 0.5, 0.75, 1.0],
    "batch": [1, 4, 16],
    "prompt_len": None,  # None: the lengths of RUNTIME_GRID that fit the model's context (see _runtime_grid)
    "gen_len": None,
    "min_layers": 1,
    "importance": True,
    "calibration_seed": 0,
    "calibration_sequences": 8,
    "calibration_tokens": 128,
    "calibration_text": None,
}


def _memo(build: Callable[..., list[LayerSpec]]) -> Callable[..., list[LayerSpec]]:
    """A block builder cached per space (LayerSpecs are immutable and a search asks for the same few blocks of
    thousands of configs); each call returns a fresh list."""

    @functools.wraps(build)
    def cached(self: HFCausalLMSpace, *args: int) -> list[LayerSpec]:
        key = (build.__name__, *args)
        specs = self._blocks.get(key)
        if specs is None:
            specs = self._blocks[key] = tuple(build(self, *args))
        return list(specs)

    return cached


def _round(value: float, granule: int, top: int) -> int:
    return min(top, max(granule, granule * round(value / granule)))


def _granule(n: int, preferred: Sequence[int]) -> int:
    return next((g for g in preferred if n % g == 0 and n >= 4 * g), 1)


class HFCausalLMSpace(SearchSpace):
    """A weight-shared space over one Hugging Face decoder-only model (see the module docstring).

    Built from a checked ``config.json`` (``config``) and options (:data:`DEFAULT_OPTIONS`); ``path`` is the model
    folder with safetensors weights (None: random weights, cost objectives only) and ``weights_sha256`` their hash at
    registration (a changed folder is refused when the SuperNet loads); ``tokenizer_files_sha256`` maps each file of
    :data:`~supernet.llama._config.COPIED_FILES` the folder holds (what exports copy) to its SHA-256 at registration
    (None in documents stored before it was recorded).
    """

    input_dimension = "prompt_len"
    family: ClassVar[ModelFamily] = HF_FAMILY

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        path: str | None = None,
        weights_sha256: str | None = None,
        tokenizer_files_sha256: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self.name = name
        self._blocks: dict[tuple[Any, ...], tuple[LayerSpec, ...]] = {}
        self.config, self.arch = check_hf_config(config, f"space {name}: config")
        self.path = path
        self.weights_sha256 = weights_sha256
        self.tokenizer_files_sha256 = dict(tokenizer_files_sha256) if tokenizer_files_sha256 is not None else None
        self.options = _check_options(options or {}, f"space {name}: options")
        a, o = self.arch, self.options
        self.uniform = bool(o["uniform"])
        self.min_layers = int(o["min_layers"])
        if self.min_layers > a.num_layers:
            raise InvalidValueError(f"space {name}: options.min_layers", f"at most {a.num_layers}", self.min_layers)
        hd = a.head_dim
        self.hidden_choices = tuple(
            sorted(
                {_round(f * a.hidden_size, _granule(a.hidden_size, (hd, 8)), a.hidden_size) for f in o["hidden_fracs"]}
            )
        )
        self.head_choices = tuple(
            sorted({max(1, min(a.num_kv_heads, round(f * a.num_kv_heads))) * a.group for f in o["head_fracs"]})
        )
        self.ffn_choices = tuple(
            sorted(
                {
                    _round(f * a.intermediate_size, _granule(a.intermediate_size, (64, 8)), a.intermediate_size)
                    for f in o["ffn_fracs"]
                }
            )
        )
        prompt_grid, gen_grid = _runtime_grid(a.max_positions, o["prompt_len"], o["gen_len"])
        prompts = tuple(sorted(p for p in prompt_grid if p < a.max_positions))
        if not prompts:
            raise InvalidValueError(
                f"space {name}: options.prompt_len",
                f"lengths below max_position_embeddings = {a.max_positions}",
                list(prompt_grid),
            )
        self.description = description or (
            f"{a.model_type} {a.num_layers} layers, hidden {a.hidden_size}, {a.num_heads}/{a.num_kv_heads} heads, "
            f"FFN {a.intermediate_size}{' (uniform)' if self.uniform else ''}"
            f"{'' if path else ' (config only: random weights)'}"
        )
        dims = [Dimension("hidden", "categorical", self.hidden_choices, group="global", description="residual width")]
        if self.uniform:
            dims += [
                Dimension("heads", "categorical", self.head_choices, group="global", description="query heads"),
                Dimension("ffn", "categorical", self.ffn_choices, group="global", description="FFN width"),
            ]
        for i in range(a.num_layers):
            group = f"layer {i}"
            dims.append(Dimension(f"layer_{i}", "categorical", (0, 1), group=group, description=f"1 keeps layer {i}"))
            if not self.uniform:
                dims += [
                    Dimension(f"heads_{i}", "categorical", self.head_choices, group=group, description="query heads"),
                    Dimension(f"ffn_{i}", "categorical", self.ffn_choices, group=group, description="FFN width"),
                ]
        dims += [
            Dimension("batch", "categorical", tuple(sorted(o["batch"])), group="runtime", description="sequences"),
            Dimension("prompt_len", "categorical", prompts, group="runtime", description="prompt tokens"),
            Dimension("gen_len", "categorical", tuple(sorted(gen_grid)), group="runtime", description="new tokens"),
        ]
        super().__init__(dims)

    # ------------------------------------------------------------------ configs
    def _check(self, values: dict[str, Scalar]) -> None:
        kept = sum(int(values[f"layer_{i}"]) for i in range(self.arch.num_layers))
        if kept < self.min_layers:
            raise InvalidValueError(f"{self.name} config.layer_*", f"at least {self.min_layers} kept layer(s)", kept)
        if self.uniform and int(values["hidden"]) % int(values["heads"]):
            raise InvalidValueError(
                f"{self.name} config.hidden",
                f"a multiple of heads = {values['heads']} (transformers' rule)",
                values["hidden"],
            )
        total = int(values["prompt_len"]) + int(values["gen_len"])
        if total > self.arch.max_positions:
            raise InvalidValueError(
                f"{self.name} config.prompt_len + gen_len",
                f"at most max_position_embeddings = {self.arch.max_positions}",
                total,
            )

    def sample(self, rng: np.random.Generator) -> SubNetConfig:
        """Uniform per dimension; too few kept layers are topped up at random, other broken rules redrawn."""
        for _ in range(1000):
            values = {d.name: d.sample(rng) for d in self.dimensions}
            dropped = [f"layer_{i}" for i in range(self.arch.num_layers) if values[f"layer_{i}"] == 0]
            missing = self.min_layers - (self.arch.num_layers - len(dropped))
            if missing > 0:
                for j in rng.choice(len(dropped), size=missing, replace=False):
                    values[dropped[int(j)]] = 1
            try:
                return self.validate(values)
            except InvalidValueError:
                continue
        raise RuntimeError(f"space {self.name!r}: no valid config after 1000 draws")

    def smallest(self) -> SubNetConfig:
        """Smallest widths (the smallest valid hidden for the heads) with the first ``min_layers`` layers kept."""
        values: dict[str, Any] = {d.name: d.bounds()[0] for d in self.dimensions}
        values |= {f"layer_{i}": int(i < self.min_layers) for i in range(self.arch.num_layers)}
        if self.uniform:
            values["hidden"] = next((h for h in self.hidden_choices if h % int(values["heads"]) == 0), values["hidden"])
        return self.validate(values)

    def canonical(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """Dropped layers take the smallest heads and FFN width (non-uniform spaces)."""
        config = self.validate(config)
        if self.uniform:
            return config
        changes = {
            f"{k}_{i}": first
            for i in range(self.arch.num_layers)
            if not config[f"layer_{i}"]
            for k, first in (("heads", self.head_choices[0]), ("ffn", self.ffn_choices[0]))
            if config[f"{k}_{i}"] != first
        }
        return self.validate(config.values | changes) if changes else config

    def kept_layers(self, config: SubNetConfig) -> list[tuple[int, int, int]]:
        """``(layer index, query heads, ffn)`` of the kept layers."""
        return [
            (
                i,
                int(config["heads" if self.uniform else f"heads_{i}"]),
                int(config["ffn" if self.uniform else f"ffn_{i}"]),
            )
            for i in range(self.arch.num_layers)
            if config[f"layer_{i}"]
        ]

    def summary(self, config: SubNetConfig) -> str:
        kept = self.kept_layers(config)
        layers = " ".join(f"{i}:{h}h/{f}" for i, h, f in kept)
        return (
            f"d={config['hidden']} {len(kept)}/{self.arch.num_layers} layers {layers} "
            f"B={config['batch']} P={config['prompt_len']} G={config['gen_len']}"
        )

    # ------------------------------------------------------------------ cost model (analytic)
    def params(self, config: SubNetConfig) -> int:
        """Parameters of the extracted SubNet (embeddings, kept layers, final norm, unless tied the LM head)."""
        config = self.validate(config)
        a, d, hd = self.arch, int(config["hidden"]), self.arch.head_dim
        total = a.vocab_size * d * (1 if a.tie_embeddings else 2) + d
        for _, h, f in self.kept_layers(config):
            kv = h // a.group
            total += 2 * d + d * hd * (2 * h + 2 * kv) + 3 * d * f
            total += (h + 2 * kv) * hd * a.qkv_bias + d * a.o_bias + (2 * f + d) * a.mlp_bias
        return total

    def macs(self, config: SubNetConfig) -> int:
        """Multiply-accumulates of one sequence (batch 1): the prefill of ``prompt_len`` tokens, then ``gen_len``
        decode steps with a KV cache; projections and LM head per token, the attention core (Q·Kᵀ and A·V) over
        the full context of each query, as the ``attention`` LayerSpec counts it."""
        config = self.validate(config)
        a, d, hd = self.arch, int(config["hidden"]), self.arch.head_dim
        p, g = int(config["prompt_len"]), int(config["gen_len"])
        tokens = p + g
        # context lengths: prefill P queries × P keys; decode step j (1..G) one query × (P + j) keys
        context = p * p + g * p + g * (g + 1) // 2
        total = tokens * a.vocab_size * d
        for _, h, f in self.kept_layers(config):
            kv = h // a.group
            total += tokens * (d * hd * (2 * h + 2 * kv) + 3 * d * f) + 2 * h * hd * context
        return total

    def kv_cache_mb(self, config: SubNetConfig) -> float:
        """fp32 keys and values of every kept layer for ``batch`` × (``prompt_len`` + ``gen_len``) tokens, in MiB:
        the cache at the end of generation."""
        config = self.validate(config)
        tokens = int(config["batch"]) * (int(config["prompt_len"]) + int(config["gen_len"]))
        kv_heads = sum(h // self.arch.group for _, h, _ in self.kept_layers(config))
        return 4.0 * 2 * kv_heads * self.arch.head_dim * tokens / MIB

    # ------------------------------------------------------------------ cost model (LUT keys)
    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        """The LUT keys of ``config``: the prefill of ``batch`` × ``prompt_len`` tokens (embedding; per kept layer
        RMSNorm, q/k/v projections, RoPE, causal GQA attention, o projection, residual add, RMSNorm, gate/up
        projections, SwiGLU, down projection, residual add; final RMSNorm and the LM head on every prompt token),
        then, when ``gen_len`` > 0, one decode step of ``batch`` tokens against a KV cache of
        ``prompt_len + gen_len // 2`` tokens, the middle of generation: a representative step (decode cost grows
        linearly with the cache, so ``gen_len`` such steps approximate the whole decode). Every spec carries its
        ``phase``.

        Batch is folded into the specs (token rows ``seq`` = batch × tokens; attention ``heads`` / ``kv_heads`` =
        batch × heads of one sequence), so LUTs of this space are built at ``--batch 1``. The LUT sum is thus
        prefill latency + one decode step (time to first token + time per output token), not end-to-end time.

        Relation to :meth:`macs` (one sequence, exact decode): with ``B``, ``P``, ``G`` the runtime values,
        ``(prefill MACs + G × decode-step MACs) / B`` equals :meth:`macs` except for the attention of the decode
        steps, where the representative cache ``P + G // 2`` stands for the mean ``P + (G + 1) / 2``. Specs of
        the decode phase repeat the weights of the prefill, so ``sum(spec.params)`` double-counts them:
        :meth:`params` and :meth:`macs` stay analytic.
        """
        config = self.validate(config)
        d, b = int(config["hidden"]), int(config["batch"])
        p, g = int(config["prompt_len"]), int(config["gen_len"])
        specs = self._ends(d, b, p, g)
        for _, h, f in self.kept_layers(config):
            specs += self._attention_block(d, h, b, p, g) + self._ffn_block(d, f, b, p, g)
        return specs

    def layer_terms(self) -> list[LayerTerm]:
        """The embedding / final norm / LM head (hidden and runtime), then per layer its attention block (kept,
        heads) and its FFN block (kept, width), each at ``hidden`` and the runtime values."""
        runtime = ("hidden", "batch", "prompt_len", "gen_len")
        terms: list[LayerTerm] = [(runtime, self._ends_term)]
        for i in range(self.arch.num_layers):
            heads, ffn = ("heads", "ffn") if self.uniform else (f"heads_{i}", f"ffn_{i}")
            terms.append(((f"layer_{i}", heads, *runtime), self._attention_term))
            terms.append(((f"layer_{i}", ffn, *runtime), self._ffn_term))
        return terms

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec of any valid config (``restrict`` may limit ``hidden``, ``batch``,
        ``prompt_len`` and ``gen_len``)."""
        allowed = self._restrict(restrict, {"hidden", "batch", "prompt_len", "gen_len"})
        specs: dict[LayerSpec, None] = {}
        for p in allowed["prompt_len"]:
            for g in allowed["gen_len"]:
                if int(p) + int(g) > self.arch.max_positions:
                    continue
                for b in allowed["batch"]:
                    for d in allowed["hidden"]:
                        args = (int(b), int(p), int(g))
                        heads = [h for h in self.head_choices if not self.uniform or int(d) % h == 0]
                        if not heads:  # uniform: no heads divide this width, no config has it
                            continue
                        for part in (
                            self._ends(int(d), *args),
                            *(self._attention_block(int(d), h, *args) for h in heads),
                            *(self._ffn_block(int(d), f, *args) for f in self.ffn_choices),
                        ):
                            specs.update(dict.fromkeys(part))
        return list(specs)

    def _ends_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        d, b, p, g = (int(v) for v in values)
        return self._ends(d, b, p, g)

    def _attention_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        kept, h, d, b, p, g = (int(v) for v in values)
        return self._attention_block(d, h, b, p, g) if kept else []

    def _ffn_term(self, values: tuple[Any, ...]) -> list[LayerSpec]:
        kept, f, d, b, p, g = (int(v) for v in values)
        return self._ffn_block(d, f, b, p, g) if kept else []

    @staticmethod
    def _phases(b: int, p: int, g: int) -> list[tuple[str, int, int, int]]:
        """``(phase, token rows, queries per sequence, keys per sequence)`` of the prefill and the decode step."""
        out = [("prefill", b * p, p, p)]
        if g > 0:
            out.append(("decode", b, 1, p + g // 2))
        return out

    @_memo
    def _ends(self, d: int, b: int, p: int, g: int) -> list[LayerSpec]:
        a = self.arch
        out: list[LayerSpec] = []
        for phase, n, _, _ in self._phases(b, p, g):
            out += [
                LayerSpec("embedding", cin=a.vocab_size, cout=d, seq=n, phase=phase),
                LayerSpec("rmsnorm", cin=d, seq=n, phase=phase),
                LayerSpec("linear", cin=d, cout=a.vocab_size, seq=n, phase=phase),
            ]
        return out

    @_memo
    def _attention_block(self, d: int, h: int, b: int, p: int, g: int) -> list[LayerSpec]:
        a, hd = self.arch, self.arch.head_dim
        kv = h // a.group
        qkv, o = bool(a.qkv_bias), bool(a.o_bias)
        out: list[LayerSpec] = []
        for phase, n, q, ctx in self._phases(b, p, g):
            out += [
                LayerSpec("rmsnorm", cin=d, seq=n, phase=phase),
                LayerSpec("linear", cin=d, cout=h * hd, seq=n, bias=qkv, phase=phase),
                LayerSpec("linear", cin=d, cout=kv * hd, seq=n, bias=qkv, phase=phase),
                LayerSpec("linear", cin=d, cout=kv * hd, seq=n, bias=qkv, phase=phase),
                LayerSpec("rope", cin=h * hd, heads=h, kv_heads=kv, hidden=hd, seq=n, phase=phase),
                LayerSpec(
                    "attention",
                    cin=h * hd,
                    heads=b * h,
                    kv_heads=b * kv,
                    hidden=hd,
                    seq=q,
                    context=0 if ctx == q else ctx,
                    phase=phase,
                ),
                LayerSpec("linear", cin=h * hd, cout=d, seq=n, bias=o, phase=phase),
                LayerSpec("add", cin=d, seq=n, phase=phase),
            ]
        return out

    @_memo
    def _ffn_block(self, d: int, f: int, b: int, p: int, g: int) -> list[LayerSpec]:
        bias = bool(self.arch.mlp_bias)
        out: list[LayerSpec] = []
        for phase, n, _, _ in self._phases(b, p, g):
            out += [
                LayerSpec("rmsnorm", cin=d, seq=n, phase=phase),
                LayerSpec("linear", cin=d, cout=f, seq=n, bias=bias, phase=phase),
                LayerSpec("linear", cin=d, cout=f, seq=n, bias=bias, phase=phase),
                LayerSpec("swiglu", cin=f, seq=n, phase=phase),
                LayerSpec("linear", cin=f, cout=d, seq=n, bias=bias, phase=phase),
                LayerSpec("add", cin=d, seq=n, phase=phase),
            ]
        return out

    # ------------------------------------------------------------------ models
    def arch_of(self, config: SubNetConfig) -> Arch:
        """The :class:`~supernet.llama._model.Arch` (hidden, per layer KV heads and FFN or None) of ``config``."""
        from supernet.llama._model import Arch

        config = self.validate(config)
        kept = {i: (h // self.arch.group, f) for i, h, f in self.kept_layers(config)}
        return Arch(int(config["hidden"]), tuple(kept.get(i) for i in range(self.arch.num_layers)))

    def supernet(self, seed: int = 0) -> HFSuperNet:
        """The full model as a SuperNet: the folder's weights (checked against the registered hash) or random ones
        (seeded; the global RNG state is left untouched), then, with weights and ``importance``, channels ordered
        by activation importance on the calibration tokens."""
        check_memory(f"space {self.name}: SuperNet", self.arch.params)  # before a byte is allocated
        import torch

        from supernet.llama._model import HFSuperNet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = HFSuperNet(self.config, empty=self.path is not None)  # a folder's weights fill every parameter
        net.arch_of = self.arch_of
        if self.path is not None:
            files = weight_files(Path(self.path))
            digest = weights_sha256(files)
            if digest != self.weights_sha256:
                raise InvalidValueError(
                    f"space {self.name}: weights in {self.path}",
                    f"SHA-256 {self.weights_sha256} (as registered)",
                    f"{digest} (the folder changed: register it again under a new name)",
                )
            net.load_weights(files)
            if self.options["importance"]:
                net.sort_channels(self.calibration_ids())
        net.eval()
        return net

    def calibration_ids(self) -> torch.Tensor:
        """Calibration token ids ``(sequences, tokens)``: the ``calibration_text`` through the folder's tokenizer
        (local files only) or, in a folder without tokenizer files, as UTF-8 bytes (as ``eval-subnets`` reads text;
        the vocabulary must then hold 256 ids), else ids drawn with ``calibration_seed``."""
        import torch

        o = self.options
        n, t = int(o["calibration_sequences"]), int(o["calibration_tokens"])
        text = o["calibration_text"]
        if text is not None and self.path is not None:
            field = f"space {self.name}: --calibration text"
            tok = self.tokenizer()
            if tok is not None:
                ids = torch.tensor(tok(text)["input_ids"], dtype=torch.int64)
                ids = ids[ids < self.arch.vocab_size]
            elif self.arch.vocab_size < 256:
                raise InvalidValueError(
                    field,
                    "tokenizer files in the model folder, or a vocab_size of at least 256 to read the text as bytes",
                    f"no tokenizer files and vocab_size {self.arch.vocab_size}",
                )
            else:
                ids = torch.tensor(list(text.encode("utf-8")), dtype=torch.int64)
            usable = (len(ids) // t) * t
            if usable == 0:
                raise InvalidValueError(field, f"at least {t} tokens", len(ids))
            return ids[:usable].reshape(-1, t)[:n]
        gen = torch.Generator().manual_seed(int(o["calibration_seed"]))
        return torch.randint(0, self.arch.vocab_size, (n, t), generator=gen, dtype=torch.int64)

    def tokenizer(self) -> Any:
        """The folder's tokenizer (transformers ``AutoTokenizer``, local files only, never remote code), or None when
        the space has no folder or the folder no tokenizer files (:data:`TOKENIZER_FILES`: text is then read as
        bytes); tokenizer files that do not load are a one-line :class:`HwparetoError`."""
        folder = Path(self.path) if self.path is not None else None
        if folder is None or not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return None
        copied_files(folder)  # no file transformers reads may be a link out of the folder
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.path, local_files_only=True, trust_remote_code=False)
        except Exception as exc:
            reason = " ".join(str(exc).split())
            reason = reason if len(reason) <= 300 else reason[:297] + "..."
            raise HwparetoError(
                f"space {self.name}: cannot load the tokenizer in {self.path} ({type(exc).__name__}: {reason})"
            ) from None

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> nn.Module:
        """A ``*ForCausalLM`` with copies of the SuperNet slices ``config`` selects (plain if uniform)."""
        from supernet.llama._model import HFSuperNet

        if not isinstance(supernet, HFSuperNet):
            raise InvalidValueError(f"{self.name} supernet", "an HFSuperNet", type(supernet).__name__)
        return supernet.extract(self.arch_of(config))

    def subnet(self, config: SubNetConfig) -> nn.Module:
        """A freshly initialised model (seed 0) with the layout :meth:`extract` returns."""
        check_memory(f"space {self.name}: SubNet", self.params(config))
        import torch

        from supernet.llama._model import build_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_model(self.config, self.arch_of(config))

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Token ids ``(batch, prompt_len)`` (int64) drawn from a generator seeded with ``seed``."""
        import torch

        config = self.validate(config)
        gen = torch.Generator().manual_seed(seed)
        shape = (batch, int(config["prompt_len"]))
        return torch.randint(0, self.arch.vocab_size, shape, generator=gen, dtype=torch.int64)

    # ------------------------------------------------------------------ store document
    def to_dict(self) -> dict[str, Any]:
        """The document the store keeps; :func:`space_from_document` rebuilds the space from it."""
        return {
            "kind": KIND,
            "name": self.name,
            "description": self.description,
            "path": self.path,
            "weights_sha256": self.weights_sha256,
            **({} if self.tokenizer_files_sha256 is None else {"tokenizer_files_sha256": self.tokenizer_files_sha256}),
            "config": self.config,
            "options": self.options,
        }


def _numbers(value: Any, field: str, kind: type, low: float, high: float) -> list[Any]:
    ok = (
        isinstance(value, list)
        and 1 <= len(value) <= 64
        and all(isinstance(v, (int, float) if kind is float else int) and not isinstance(v, bool) for v in value)
        and all(low <= v <= high for v in value)
    )
    if not ok:
        what = "numbers" if kind is float else "integers"
        raise InvalidValueError(field, f"a list of 1 to 64 {what} in [{low:g}, {high:g}]", value)
    return [float(v) if kind is float else int(v) for v in dict.fromkeys(value)]


RUNTIME_GRID = ((128, 512, 2048), (32, 128, 512))
"""Default prompt and generated lengths, kept where they fit the model's context."""


def _runtime_grid(max_positions: int, prompts: list[int] | None, gens: list[int] | None) -> tuple[list[int], list[int]]:
    """The prompt and generated lengths of the space: the options' when given, else the defaults that fit the
    context (prompts up to half of it, prompt + generation within it), else halves and quarters of it."""
    if prompts is None:
        prompts = [p for p in RUNTIME_GRID[0] if p <= max_positions // 2] or sorted(
            {max(1, max_positions // 4), max(1, max_positions // 2)}
        )
    if gens is None:
        room = max_positions - max(prompts)
        gens = [g for g in RUNTIME_GRID[1] if g <= room] or [max(0, room // 2)]
    return prompts, gens


def _check_options(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise InvalidValueError(where, "an object", type(options).__name__)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise InvalidValueError(where, "only the keys " + ", ".join(DEFAULT_OPTIONS), unknown)
    o = DEFAULT_OPTIONS | dict(options)
    out: dict[str, Any] = {}
    for key in ("uniform", "importance"):
        if not isinstance(o[key], bool):
            raise InvalidValueError(f"{where}.{key}", "true or false", o[key])
        out[key] = o[key]
    for key in ("hidden_fracs", "head_fracs", "ffn_fracs"):
        fracs = _numbers(o[key], f"{where}.{key}", float, 0.0, 1.0)
        if min(fracs) <= 0:
            raise InvalidValueError(f"{where}.{key}", "fractions in (0, 1]", o[key])
        out[key] = fracs
    out["batch"] = _numbers(o["batch"], f"{where}.batch", int, 1, 65_536)
    for key, low in (("prompt_len", 1), ("gen_len", 0)):
        out[key] = None if o[key] is None else _numbers(o[key], f"{where}.{key}", int, low, 4_194_304)
    for key, low, high in (
        ("min_layers", 1, 512),
        ("calibration_seed", 0, 2**32 - 1),
        ("calibration_sequences", 1, 1_024),
        ("calibration_tokens", 1, 8_192),
    ):
        value = o[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidValueError(f"{where}.{key}", f"an integer in [{low:,}, {high:,}]", value)
        out[key] = value
    text = o["calibration_text"]
    if text is not None and (not isinstance(text, str) or not text or len(text) > MAX_CALIBRATION_CHARS):
        shown = f"{len(text):,} characters" if isinstance(text, str) else text
        raise InvalidValueError(
            f"{where}.calibration_text", f"null or a text of 1 to {MAX_CALIBRATION_CHARS:,} characters", shown
        )
    out["calibration_text"] = text
    return out


def _check_space_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidValueError(where, "lower-case letters, digits, '_', '.', '-' (max 64)", name)
    return check_name(where, name)


def space_from_document(doc: Any, source: str = "space definition") -> HFCausalLMSpace:
    """Rebuild a stored ``hf-causal-lm`` space (the document of :meth:`HFCausalLMSpace.to_dict`)."""
    fields = {"kind", "name", "description", "path", "weights_sha256", "tokenizer_files_sha256", "config", "options"}
    if not isinstance(doc, Mapping) or doc.get("kind") != KIND:
        raise InvalidValueError(f"{source}: kind", repr(KIND), doc.get("kind") if isinstance(doc, Mapping) else doc)
    unknown = sorted(set(doc) - fields)
    if unknown:
        raise InvalidValueError(source, "only the keys " + ", ".join(sorted(fields)), unknown)
    path, digest, description = doc.get("path"), doc.get("weights_sha256"), doc.get("description", "")
    if path is not None and not isinstance(path, str):
        raise InvalidValueError(f"{source}: path", "a folder path or null", path)
    if (path is None) != (digest is None) or (
        digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest))
    ):
        raise InvalidValueError(f"{source}: weights_sha256", "64 hex digits with a path, null without", digest)
    files = doc.get("tokenizer_files_sha256")
    if files is not None and (
        path is None
        or not isinstance(files, Mapping)
        or not all(
            k in COPIED_FILES and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for k, v in files.items()
        )
    ):
        raise InvalidValueError(
            f"{source}: tokenizer_files_sha256",
            "absent, or with a path an object of file names (" + ", ".join(COPIED_FILES) + ") to 64 hex digits",
            files,
        )
    if not isinstance(description, str) or len(description) > 4_096:
        raise InvalidValueError(f"{source}: description", "a string of at most 4,096 characters", description)
    return HFCausalLMSpace(
        _check_space_name(doc.get("name"), f"{source}: name"),
        config if isinstance(config := doc.get("config"), Mapping) else {},
        path=path,
        weights_sha256=digest,
        tokenizer_files_sha256=files,
        options=doc.get("options") or {},
        description=description,
    )


def space_from_hf(path: str | Path, name: str, *, cost_only: bool = False, **options: Any) -> HFCausalLMSpace:
    """The space of a local model folder (``config.json`` + safetensors weights) or of a lone ``config.json``
    (random weights). Reads local files only; ``auto_map`` (remote code), pickle checkpoints and files of the folder
    that are links out of it are refused; the weights' safetensors headers must match ``config.json`` (names,
    shapes, dtypes, offsets: :func:`~supernet.llama._config.check_weights`, no tensor is read) and, unless
    ``cost_only``, the SuperNet (fp32) must fit the memory this machine has available. The SHA-256 of the weights
    and of each file exports copy are recorded."""
    name = _check_space_name(name, "--name")
    config_path, doc, folder = read_model_folder(path)
    _, arch = check_hf_config(doc, str(config_path))
    if folder is not None:
        check_weights(folder, weight_files(folder), arch)
    if not cost_only:
        try:
            check_memory(f"space {name}: SuperNet", arch.params)
        except InvalidValueError as exc:
            raise InvalidValueError(
                exc.field, f"{exc.allowed} (--cost-only registers it for cost objectives only)", exc.got
            ) from None
    digest = weights_sha256(weight_files(folder)) if folder is not None else None
    copied = {f.name: file_sha256(f) for f in copied_files(folder)} if folder is not None else None
    if options.get("calibration_text") is not None and folder is None:
        raise InvalidValueError("--calibration", "a model folder (not a lone config.json)", str(path))
    space = HFCausalLMSpace(
        name,
        doc,
        path=str(folder.resolve()) if folder is not None else None,
        weights_sha256=digest,
        tokenizer_files_sha256=copied,
        options=options,
    )
    if options.get("calibration_text") is not None:
        space.calibration_ids()  # the text is usable: tokenizer files that load (or bytes), enough tokens
    return space
