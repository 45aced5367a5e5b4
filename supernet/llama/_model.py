"""PyTorch side of the Hugging Face causal-LM spaces: the weight-shared :class:`HFSuperNet` and SubNets that are real
``transformers`` models with sliced weights.

A SubNet keeps, of the SuperNet (after :meth:`HFSuperNet.sort_channels`), the first ``hidden`` residual channels,
the kept layers in order, and per kept layer the first ``kv`` KV heads with their ``kv × group`` query heads and the
first ``ffn`` FFN neurons. When every kept layer has the same heads and FFN width (``uniform``) the SubNet is a plain
``*ForCausalLM`` whose ``save_pretrained`` folder reloads with ``AutoModelForCausalLM.from_pretrained``; otherwise it
is the same class with per-layer projection modules resized (transformers' configs have no per-layer sizes):
:func:`save_subnet` writes it as ``model.safetensors`` + ``config.json`` + ``hwpareto_subnet.json`` and only
:func:`load_subnet` reads it back. Models are only ever built from checked configs and safetensors files: no hub
access, no remote code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet._memory import check_memory
from supernet._types import SubNetConfig
from supernet.llama._config import IGNORED_TENSORS, check_hf_config, safetensors_header, weight_files

__all__ = ["Arch", "HFSuperNet", "PrefillLogits", "build_model", "load_subnet", "save_subnet"]

SUBNET_FILE = "hwpareto_subnet.json"


@dataclass(frozen=True, slots=True)
class Arch:
    """What a SubNet keeps: residual width and, per SuperNet layer, ``(kv_heads, ffn)`` or ``None`` if dropped."""

    hidden: int
    layers: tuple[tuple[int, int] | None, ...]

    @property
    def kept(self) -> list[tuple[int, int, int]]:
        """``(supernet layer index, kv heads, ffn)`` of every kept layer, in order."""
        return [(i, *layer) for i, layer in enumerate(self.layers) if layer is not None]

    @property
    def uniform(self) -> bool:
        """Every kept layer has the same KV heads and FFN width."""
        return len({layer for layer in self.layers if layer is not None}) == 1


def _classes(model_type: str) -> tuple[Any, Any]:
    import transformers

    names = {
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
        "mistral": ("MistralConfig", "MistralForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    }
    config_name, model_name = names[model_type]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def _sub_config_dict(base: Mapping[str, Any], arch: Arch, group: int) -> dict[str, Any]:
    """The config keys of the SubNet ``arch`` (sizes of its largest kept layer when not uniform)."""
    kept = arch.kept
    kv = max(k for _, k, _ in kept)
    doc = dict(base)
    doc |= {
        "hidden_size": arch.hidden,
        "num_hidden_layers": len(kept),
        "num_attention_heads": kv * group,
        "num_key_value_heads": kv,
        "intermediate_size": max(f for _, _, f in kept),
    }
    if doc.get("layer_types") is not None:
        doc["layer_types"] = [base["layer_types"][i] for i, _, _ in kept]
    if doc.get("max_window_layers") is not None and isinstance(doc["max_window_layers"], int):
        doc["max_window_layers"] = sum(1 for i, _, _ in kept if i < base["max_window_layers"])
    return doc


def build_model(base: Mapping[str, Any], arch: Arch, *, meta: bool = False, empty: bool = False) -> Any:
    """A ``*ForCausalLM`` of the SubNet ``arch`` of the (checked) config ``base``, freshly initialised (or with meta
    parameters and real RoPE buffers when ``meta``; with uninitialised CPU parameters, for weights about to be
    loaded, when ``empty``: a 1B-class model's random initialisation takes 20 s). Layers of another size than the
    config's get resized modules."""
    _, info = check_hf_config(base, "model config", transformers_rule=False)
    config_cls, model_cls = _classes(info.model_type)
    doc = _sub_config_dict(base, arch, info.group)
    fits = arch.uniform and arch.hidden % doc["num_attention_heads"] == 0
    if fits:
        config = config_cls(**doc)
    else:  # transformers checks hidden % heads == 0 even with an explicit head_dim: build valid, then set the sizes
        heads, kv = doc.pop("num_attention_heads"), doc.pop("num_key_value_heads")
        config = config_cls(**doc, num_attention_heads=1, num_key_value_heads=1)
        config.num_attention_heads, config.num_key_value_heads = heads, kv
    if meta or empty:
        with torch.device("meta"):
            model = model_cls(config)
        if empty:
            model.to_empty(device="cpu")
            if info.tie_embeddings:  # to_empty gives every module its own new parameters
                model.lm_head.weight = model.model.embed_tokens.weight
        rotary = model.model.rotary_emb
        model.model.rotary_emb = type(rotary)(config=config)
    else:
        model = model_cls(config)
    hd, group = info.head_dim, info.group
    dev = torch.device("meta") if meta else None
    for layer, (_, kv, ffn) in zip(model.model.layers, arch.kept, strict=True):
        attn, mlp, d = layer.self_attn, layer.mlp, arch.hidden
        if attn.k_proj.out_features != kv * hd:
            attn.q_proj = nn.Linear(d, kv * group * hd, bias=info.qkv_bias, device=dev)
            attn.k_proj = nn.Linear(d, kv * hd, bias=info.qkv_bias, device=dev)
            attn.v_proj = nn.Linear(d, kv * hd, bias=info.qkv_bias, device=dev)
            attn.o_proj = nn.Linear(kv * group * hd, d, bias=info.o_bias, device=dev)
        if mlp.gate_proj.out_features != ffn:
            mlp.gate_proj = nn.Linear(d, ffn, bias=info.mlp_bias, device=dev)
            mlp.up_proj = nn.Linear(d, ffn, bias=info.mlp_bias, device=dev)
            mlp.down_proj = nn.Linear(ffn, d, bias=info.mlp_bias, device=dev)
            mlp.intermediate_size = ffn
    model.eval()
    return model


_LAYER_SLICES: dict[str, tuple[str, ...]] = {
    "input_layernorm.weight": ("d",),
    "post_attention_layernorm.weight": ("d",),
    "self_attn.q_proj.weight": ("q", "d"),
    "self_attn.q_proj.bias": ("q",),
    "self_attn.k_proj.weight": ("k", "d"),
    "self_attn.k_proj.bias": ("k",),
    "self_attn.v_proj.weight": ("k", "d"),
    "self_attn.v_proj.bias": ("k",),
    "self_attn.o_proj.weight": ("d", "q"),
    "self_attn.o_proj.bias": ("d",),
    "mlp.gate_proj.weight": ("f", "d"),
    "mlp.gate_proj.bias": ("f",),
    "mlp.up_proj.weight": ("f", "d"),
    "mlp.up_proj.bias": ("f",),
    "mlp.down_proj.weight": ("d", "f"),
    "mlp.down_proj.bias": ("d",),
}
"""Per layer parameter: the size each axis is sliced to (d hidden, q query rows, k KV rows, f FFN neurons)."""


def _slice_rule(name: str) -> tuple[int | None, str] | None:
    """``(layer index or None, parameter kind)`` of a ``*ForCausalLM`` parameter name, or None if unknown."""
    parts = name.split(".")
    if name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        return None, name
    if len(parts) >= 5 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        return int(parts[2]), ".".join(parts[3:])
    return None


def slices(model: Any, arch: Arch, group: int, head_dim: int) -> dict[str, torch.Tensor]:
    """The SubNet ``arch``'s parameters as slices (views, gradients flow back) of the full ``model``, named as in
    the SubNet (kept layers renumbered)."""
    d = arch.hidden
    kept = {i: (j, kv, ffn) for j, (i, kv, ffn) in enumerate(arch.kept)}
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        rule = _slice_rule(name)
        if rule is None:
            raise HwparetoError(f"supernet parameter {name!r}: no slicing rule (unsupported module layout)")
        layer, kind = rule
        if layer is None:
            out[name] = p[:, :d] if kind != "model.norm.weight" else p[:d]
            continue
        if layer not in kept:
            continue
        j, kv, ffn = kept[layer]
        spec = _LAYER_SLICES.get(kind)
        if spec is None:
            raise HwparetoError(f"supernet parameter {name!r}: no slicing rule (unsupported module layout)")
        sizes = {"d": d, "q": kv * group * head_dim, "k": kv * head_dim, "f": ffn}
        out[f"model.layers.{j}.{kind}"] = p[tuple(slice(sizes[axis]) for axis in spec)]
    return out


class HFSuperNet(nn.Module):
    """Weight-shared SuperNet around a full ``*ForCausalLM`` (``self.model``).

    :meth:`set_active` selects a SubNet (an :class:`Arch`); :meth:`forward` then runs it on token ids ``(B, T)``
    with the full model's parameters sliced (differentiable: training updates the shared weights) and returns
    logits ``(B, T, vocab)``. :meth:`extract` copies the slices into a standalone model.
    """

    def __init__(self, base: Mapping[str, Any], model: nn.Module | None = None, *, empty: bool = False) -> None:
        super().__init__()
        kept, info = check_hf_config(base, "model config")
        self.base = kept
        self.info = info
        self.full = Arch(info.hidden_size, ((info.num_kv_heads, info.intermediate_size),) * info.num_layers)
        self.model: Any = model if model is not None else build_model(kept, self.full, empty=empty)
        self.active = self.full
        self._skeleton: tuple[Arch, nn.Module] | None = None
        self.arch_of: Callable[[SubNetConfig], Arch] | None = None
        """The space's ``arch_of`` (set by ``HFCausalLMSpace.supernet``): configs to :class:`Arch`."""

    def set_active(self, config: SubNetConfig | Arch) -> None:
        """Make :meth:`forward` run the SubNet ``config`` (of the space that built this SuperNet, the
        :class:`~supernet.SuperNet` protocol) or ``arch``."""
        if isinstance(config, SubNetConfig):
            if self.arch_of is None:
                raise InvalidValueError("config", "an Arch (this SuperNet was built without its space)", config.space)
            config = self.arch_of(config)
        self.active = self._check(config)

    def _check(self, arch: Arch) -> Arch:
        info = self.info
        if len(arch.layers) != info.num_layers or not arch.kept:
            raise InvalidValueError("arch.layers", f"{info.num_layers} entries, at least one kept", len(arch.layers))
        if not 1 <= arch.hidden <= info.hidden_size:
            raise InvalidValueError("arch.hidden", f"an integer in [1, {info.hidden_size}]", arch.hidden)
        for i, kv, ffn in arch.kept:
            if not 1 <= kv <= info.num_kv_heads:
                raise InvalidValueError(f"arch.layers[{i}] kv heads", f"in [1, {info.num_kv_heads}]", kv)
            if not 1 <= ffn <= info.intermediate_size:
                raise InvalidValueError(f"arch.layers[{i}] ffn", f"in [1, {info.intermediate_size}]", ffn)
        return arch

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.active == self.full:
            return self.model(input_ids=input_ids, use_cache=False).logits
        if self._skeleton is None or self._skeleton[0] != self.active:
            self._skeleton = (self.active, build_model(self.base, self.active, meta=True))
        skeleton = self._skeleton[1]
        params = slices(self.model, self.active, self.info.group, self.info.head_dim)
        buffers = {n: b for n, b in skeleton.named_buffers()}
        out = torch.func.functional_call(
            skeleton, {**params, **buffers}, (), {"input_ids": input_ids, "use_cache": False}
        )
        return out.logits

    def extract(self, arch: Arch) -> Any:
        """A standalone ``*ForCausalLM`` holding copies of the slices ``arch`` selects."""
        arch = self._check(arch)
        model = build_model(self.base, arch, meta=True)
        state = {
            k: v.detach().clone(memory_format=torch.contiguous_format)
            for k, v in slices(self.model, arch, self.info.group, self.info.head_dim).items()
        }
        if self.info.tie_embeddings:
            state.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if self.info.tie_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
            missing = [m for m in missing if m != "lm_head.weight"]
        if missing or unexpected:
            raise HwparetoError(f"extracted SubNet: missing {missing}, unexpected {unexpected} parameters")
        model.eval()
        return model

    def load_weights(self, files: Sequence[Path]) -> None:
        """Load safetensors checkpoint files (names as in ``*ForCausalLM``) into the full model, strictly."""
        expected = dict(self.model.state_dict())
        seen: set[str] = set()
        for f in files:
            tensors = load_file(str(f))
            for name, tensor in tensors.items():
                if name.endswith(IGNORED_TENSORS):
                    continue
                if name not in expected:
                    raise HwparetoError(f"{f.name}: unexpected tensor {name!r} for {self.info.model_type}")
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise InvalidValueError(
                        f"{f.name}: {name} shape", str(tuple(expected[name].shape)), tuple(tensor.shape)
                    )
                with torch.no_grad():
                    expected[name].copy_(tensor.to(expected[name].dtype))
                seen.add(name)
        missing = sorted(set(expected) - seen - ({"lm_head.weight"} if self.info.tie_embeddings else set()))
        if missing:
            raise HwparetoError(
                f"weights: missing tensors {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )

    @torch.no_grad()
    def sort_channels(self, input_ids: torch.Tensor) -> None:
        """Reorder KV groups (and query heads inside each), FFN neurons and residual channels by descending
        activation importance on the calibration tokens ``input_ids`` (Minitron): a head by the L2 norm of its
        attention output, a KV group by the sum over its query heads, an FFN neuron by the mean ``|act(gate)·up|``,
        a residual channel by the mean ``|x|`` of every RMSNorm output. Weights are permuted consistently, so the
        full model computes the same function; smaller slices keep the most important parts."""
        info, model = self.info, self.model
        hd, group = info.head_dim, info.group
        d_imp = torch.zeros(info.hidden_size, dtype=torch.float64)
        head_imp = [torch.zeros(info.num_heads, dtype=torch.float64) for _ in range(info.num_layers)]
        ffn_imp = [torch.zeros(info.intermediate_size, dtype=torch.float64) for _ in range(info.num_layers)]
        hooks = []

        def on_norm(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            d_imp.add_(out.detach().abs().double().reshape(-1, out.shape[-1]).mean(0))

        def on_o(i: int) -> Any:
            def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                x = args[0].detach().double().reshape(-1, info.num_heads, hd)
                head_imp[i].add_(torch.linalg.vector_norm(x, dim=2).mean(0))

            return hook

        def on_down(i: int) -> Any:
            def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                ffn_imp[i].add_(args[0].detach().abs().double().reshape(-1, args[0].shape[-1]).mean(0))

            return hook

        hooks.append(model.model.norm.register_forward_hook(on_norm))
        for i, layer in enumerate(model.model.layers):
            hooks.append(layer.input_layernorm.register_forward_hook(on_norm))
            hooks.append(layer.post_attention_layernorm.register_forward_hook(on_norm))
            hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(on_o(i)))
            hooks.append(layer.mlp.down_proj.register_forward_pre_hook(on_down(i)))
        try:
            was_training = model.training
            model.eval()
            model(input_ids=input_ids, use_cache=False)
            model.train(was_training)
        finally:
            for h in hooks:
                h.remove()
        channels = torch.argsort(d_imp, descending=True, stable=True)
        done: set[int] = set()

        def permute(p: torch.Tensor | None, index: torch.Tensor, dim: int) -> None:
            if p is None:
                return
            p.copy_(p.index_select(dim, index))

        emb = model.model.embed_tokens.weight
        for p in (emb, model.lm_head.weight):
            if id(p) not in done:
                permute(p, channels, 1)
                done.add(id(p))
        permute(model.model.norm.weight, channels, 0)
        for i, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                permute(norm.weight, channels, 0)
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
                permute(lin.weight, channels, 1)
            for lin in (attn.o_proj, mlp.down_proj):
                permute(lin.weight, channels, 0)
                permute(lin.bias, channels, 0)
            per_head = head_imp[i].reshape(info.num_kv_heads, group)
            kv_order = torch.argsort(per_head.sum(1), descending=True, stable=True)
            q_heads = torch.cat(
                [g * group + torch.argsort(per_head[g], descending=True, stable=True) for g in kv_order.tolist()]
            )
            q_rows = (q_heads[:, None] * hd + torch.arange(hd)).flatten()
            kv_rows = (kv_order[:, None] * hd + torch.arange(hd)).flatten()
            permute(attn.q_proj.weight, q_rows, 0)
            permute(attn.q_proj.bias, q_rows, 0)
            for lin in (attn.k_proj, attn.v_proj):
                permute(lin.weight, kv_rows, 0)
                permute(lin.bias, kv_rows, 0)
            permute(attn.o_proj.weight, q_rows, 1)
            neurons = torch.argsort(ffn_imp[i], descending=True, stable=True)
            for lin in (mlp.gate_proj, mlp.up_proj):
                permute(lin.weight, neurons, 0)
                permute(lin.bias, neurons, 0)
            permute(mlp.down_proj.weight, neurons, 1)


class PrefillLogits(nn.Module):
    """``input_ids → logits`` of a ``*ForCausalLM`` without a cache: the prefill graph an export traces. The
    all-ones attention mask keeps transformers off its packed-sequence check (``torch.diff``: no ONNX operator)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.ones_like(input_ids)
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        return logits


def save_subnet(model: Any, folder: str | Path) -> Path:
    """Write a SubNet: a uniform one with ``save_pretrained`` (reloads with ``AutoModelForCausalLM``), any other as
    ``model.safetensors`` + ``config.json`` + :data:`SUBNET_FILE` (per-layer sizes; :func:`load_subnet` reads it)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    layers = [(layer.self_attn.k_proj.out_features, layer.mlp.gate_proj.out_features) for layer in model.model.layers]
    head_dim = model.config.head_dim
    arch_layers = [(k // head_dim, f) for k, f in layers]
    if (
        len(set(arch_layers)) == 1
        and model.config.num_key_value_heads == arch_layers[0][0]
        and (
            model.config.intermediate_size == arch_layers[0][1]
            and model.config.hidden_size % model.config.num_attention_heads == 0
        )
    ):
        model.save_pretrained(out, safe_serialization=True)
        return out
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    doc = {"format": "hwpareto-hf-subnet", "version": 1, "hidden": model.config.hidden_size, "layers": arch_layers}
    (out / SUBNET_FILE).write_text(json.dumps(doc, indent=2))
    return out


def load_subnet(folder: str | Path) -> Any:
    """Read a SubNet :func:`save_subnet` wrote (either form), from local files only."""
    from hwpareto.safeload import load_json

    p = Path(folder)
    config = load_json(p / "config.json", "config.json")
    sizes = p / SUBNET_FILE
    base, info = check_hf_config(config, f"{p}/config.json", transformers_rule=not sizes.is_file())
    if sizes.is_file():
        doc = load_json(sizes, SUBNET_FILE)
        layers = doc.get("layers") if isinstance(doc, Mapping) else None
        if (
            not isinstance(layers, list)
            or len(layers) != info.num_layers
            or not all(
                isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) and v >= 1 for v in x) for x in layers
            )
        ):
            raise InvalidValueError(f"{sizes}: layers", f"{info.num_layers} [kv_heads, ffn] pairs", layers)
        arch = Arch(info.hidden_size, tuple((int(k), int(f)) for k, f in layers))
    else:
        arch = Arch(info.hidden_size, ((info.num_kv_heads, info.intermediate_size),) * info.num_layers)
    # the skeleton's config is the largest layer's; the file's config is that already
    model = build_model(base | {"num_hidden_layers": info.num_layers}, arch, meta=True)
    check_memory(f"{p}: SubNet", sum(t.numel() for t in model.parameters()))
    state: dict[str, torch.Tensor] = {}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    files = weight_files(p)
    for f in files:
        for name, (_, shape) in safetensors_header(f).items():  # before a tensor is read
            if name in shapes and shape != shapes[name]:
                raise InvalidValueError(f"{f}: {name} shape", str(shapes[name]), shape)
    for f in files:
        for name, tensor in load_file(str(f)).items():
            if name in shapes and tuple(tensor.shape) != shapes[name]:
                raise InvalidValueError(f"{f}: {name} shape", str(shapes[name]), tuple(tensor.shape))
            state[name] = tensor
    if info.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if info.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise HwparetoError(f"{p}: SubNet weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model
