"""Reading a Hugging Face model folder safely: ``config.json`` checked field by field, safetensors weights only.

Nothing here imports ``transformers`` or ``torch``: the space (dimensions, params, MACs) is built from the checked
config alone; :mod:`supernet.llama._model` builds the PyTorch modules.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.safeload import load_json

__all__ = [
    "ARCHITECTURES",
    "COPIED_FILES",
    "HFArch",
    "check_hf_config",
    "check_weights",
    "contained",
    "copied_files",
    "expected_tensors",
    "file_sha256",
    "read_model_folder",
    "safetensors_header",
    "weight_files",
    "weights_sha256",
]

COPIED_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
"""Files of a model folder that an LLM bundle's ``model/`` receives when present (the tokenizer and its chat
template); registration records their SHA-256 (``tokenizer_files_sha256`` of the space document)."""

ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
"""Supported ``architectures`` entries and their ``model_type``: decoder-only models with RMSNorm, RoPE, SwiGLU
and grouped-query attention in Llama's module layout."""

# (field, low, high): integers a hostile config could make huge (each bounded; the product is bounded below)
_INT_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("vocab_size", 1, 1_048_576),
    ("hidden_size", 1, 65_536),
    ("intermediate_size", 1, 524_288),
    ("num_hidden_layers", 1, 512),
    ("num_attention_heads", 1, 1_024),
    ("max_position_embeddings", 1, 4_194_304),
)
MAX_PARAMS = 1_000_000_000_000  # a trillion parameters: beyond, a config is refused as hostile
# keys passed on to the transformers config class (everything else in config.json is ignored)
_PASSED = {
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sliding_window",
    "use_sliding_window",
    "max_window_layers",
    "layer_types",
}
_REMOTE = ("auto_map", "trust_remote_code", "custom_pipelines")
_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")


@dataclass(frozen=True, slots=True)
class HFArch:
    """The shape of a checked config: what the space's dimensions and cost model read."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int
    tie_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool

    @property
    def group(self) -> int:
        """Query heads per KV head (GQA group size)."""
        return self.num_heads // self.num_kv_heads

    @property
    def params(self) -> int:
        """Parameters of the full model (the SuperNet), biases and a separate LM head included."""
        d, hd, h, kv, f = self.hidden_size, self.head_dim, self.num_heads, self.num_kv_heads, self.intermediate_size
        per_layer = 2 * d + d * hd * (2 * h + 2 * kv) + 3 * d * f
        per_layer += (h + 2 * kv) * hd * self.qkv_bias + d * self.o_bias + (2 * f + d) * self.mlp_bias
        return self.num_layers * per_layer + self.vocab_size * d * (1 if self.tie_embeddings else 2) + d


def _int(doc: Mapping[str, Any], field: str, low: int, high: int, where: str) -> int:
    value = doc.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidValueError(f"{where}.{field}", f"an integer in [{low:,}, {high:,}]", value)
    return value


def _bool(doc: Mapping[str, Any], field: str, default: bool, where: str) -> bool:
    value = doc.get(field, default)
    if not isinstance(value, bool):
        raise InvalidValueError(f"{where}.{field}", "true or false", value)
    return value


def check_hf_config(
    doc: Any, where: str = "config.json", *, transformers_rule: bool = True
) -> tuple[dict[str, Any], HFArch]:
    """Check a parsed ``config.json``: the kept keys (passed to transformers) and the architecture.

    Refuses remote code (``auto_map``), unsupported architectures, missing or out-of-range fields and
    inconsistent head counts with one-line :class:`InvalidValueError` s naming the field, what is allowed and the
    value received. ``transformers_rule`` (default) also requires ``hidden_size`` to be a multiple of
    ``num_attention_heads``, as transformers' own config classes do (a non-uniform SubNet's config breaks it).
    """
    if not isinstance(doc, Mapping):
        raise InvalidValueError(where, "a JSON object", type(doc).__name__)
    for key in _REMOTE:
        if key in doc:
            raise InvalidValueError(f"{where}.{key}", "absent (hwpareto never runs a model's own code)", doc[key])
    archs = doc.get("architectures")
    if not isinstance(archs, list) or len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise InvalidValueError(f"{where}.architectures", "one of " + ", ".join(f"[{a}]" for a in ARCHITECTURES), archs)
    model_type = ARCHITECTURES[archs[0]]
    if doc.get("model_type") != model_type:
        raise InvalidValueError(f"{where}.model_type", repr(model_type) + f" (for {archs[0]})", doc.get("model_type"))
    ints = {field: _int(doc, field, low, high, where) for field, low, high in _INT_FIELDS}
    heads = ints["num_attention_heads"]
    kv = doc.get("num_key_value_heads", heads)
    if kv is None:
        kv = heads
    if not isinstance(kv, int) or isinstance(kv, bool) or kv < 1 or heads % kv:
        raise InvalidValueError(
            f"{where}.num_key_value_heads", f"a positive divisor of num_attention_heads = {heads}", kv
        )
    head_dim = doc.get("head_dim")
    if head_dim is None:
        if ints["hidden_size"] % heads:
            raise InvalidValueError(
                f"{where}.hidden_size",
                f"a multiple of num_attention_heads = {heads} (no head_dim given)",
                ints["hidden_size"],
            )
        head_dim = ints["hidden_size"] // heads
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or not 2 <= head_dim <= 1_024 or head_dim % 2:
        raise InvalidValueError(f"{where}.head_dim", "an even integer in [2, 1,024]", head_dim)
    if transformers_rule and ints["hidden_size"] % heads:  # transformers' own config check (validate_architecture)
        raise InvalidValueError(
            f"{where}.hidden_size", f"a multiple of num_attention_heads = {heads}", ints["hidden_size"]
        )
    act = doc.get("hidden_act", "silu")
    if act != "silu":
        raise InvalidValueError(f"{where}.hidden_act", "'silu' (SwiGLU)", act)
    eps = doc.get("rms_norm_eps", 1e-6)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise InvalidValueError(f"{where}.rms_norm_eps", "a number in (0, 1)", eps)
    tp = doc.get("pretraining_tp", 1)
    if tp not in (None, 1):
        raise InvalidValueError(f"{where}.pretraining_tp", "1 or absent", tp)
    for field in ("rope_scaling", "rope_parameters"):
        rope = doc.get(field)
        if rope is None:
            continue
        if not isinstance(rope, Mapping):
            raise InvalidValueError(f"{where}.{field}", "an object or null", rope)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in _ROPE_TYPES:
            raise InvalidValueError(f"{where}.{field}.rope_type", "one of " + ", ".join(_ROPE_TYPES), rope_type)
    layer_types = doc.get("layer_types")
    if layer_types is not None and (
        not isinstance(layer_types, list)
        or len(layer_types) != ints["num_hidden_layers"]
        or not all(t in ("full_attention", "sliding_attention") for t in layer_types)
    ):
        raise InvalidValueError(
            f"{where}.layer_types",
            f"null or {ints['num_hidden_layers']} of full_attention, sliding_attention",
            "a list of " + str(len(layer_types)) if isinstance(layer_types, list) else layer_types,
        )
    llama = model_type == "llama"
    arch = HFArch(
        model_type=model_type,
        vocab_size=ints["vocab_size"],
        hidden_size=ints["hidden_size"],
        intermediate_size=ints["intermediate_size"],
        num_layers=ints["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        max_positions=ints["max_position_embeddings"],
        tie_embeddings=_bool(doc, "tie_word_embeddings", False, where),
        # transformers' layouts: Llama's biases follow attention_bias / mlp_bias, Qwen2 has q/k/v biases only,
        # Mistral none (both ignore those keys)
        qkv_bias=model_type == "qwen2" or (llama and _bool(doc, "attention_bias", False, where)),
        o_bias=llama and _bool(doc, "attention_bias", False, where),
        mlp_bias=llama and _bool(doc, "mlp_bias", False, where),
    )
    d, hd = arch.hidden_size, arch.head_dim
    per_layer = d * hd * (2 * heads + 2 * kv) + 3 * d * arch.intermediate_size
    total = arch.num_layers * per_layer + arch.vocab_size * d * (1 if arch.tie_embeddings else 2)
    if total > MAX_PARAMS:
        raise InvalidValueError(f"{where}", f"a model of at most {MAX_PARAMS:,} parameters", f"{total:,}")
    kept = {k: v for k, v in doc.items() if k in _PASSED}
    kept["num_key_value_heads"], kept["head_dim"] = kv, head_dim
    return kept, arch


def _hub_blobs(root: Path) -> Path | None:
    """The ``blobs/`` folder of a Hugging Face cache repository when ``root`` is one of its ``snapshots/REV``
    folders (whose files are symlinks to ``../../blobs/HASH``), else None."""
    repo = root.parent.parent
    if root.parent.name == "snapshots" and repo.name.startswith("models--"):
        return repo / "blobs"
    return None


def contained(folder: Path, file: Path) -> Path:
    """``file`` of model folder ``folder``, resolved: a regular file inside the folder (or, in a Hugging Face cache
    snapshot, in its repository's ``blobs/``). A symlink leading anywhere else, a dangling one, or a FIFO, device or
    folder of that name is an InvalidValueError naming the file: hwpareto reads these files and copies some into
    bundles, so a link to ``/etc/passwd`` must not be followed."""
    root = folder.resolve()
    target = file.resolve()
    roots = [r for r in (root, _hub_blobs(root)) if r is not None]
    if not any(target.is_relative_to(r) for r in roots):
        raise InvalidValueError(
            str(file),
            f"a file inside the model folder {root} (a symlink may not lead out of it)",
            f"a link to {target}",
        )
    try:
        mode = target.stat().st_mode
    except OSError:
        mode = 0
    if not stat.S_ISREG(mode):
        raise InvalidValueError(str(file), "a regular file", "a dangling link" if not mode else "not a regular file")
    return target


def copied_files(folder: Path) -> list[Path]:
    """The :data:`COPIED_FILES` present in ``folder``, each checked by :func:`contained`."""
    present = [folder / name for name in COPIED_FILES if (folder / name).is_symlink() or (folder / name).exists()]
    for f in present:
        contained(folder, f)
    return present


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's contents, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read_model_folder(path: str | Path) -> tuple[Path, dict[str, Any], Path | None]:
    """``(config.json path, parsed document, model folder or None)`` for a model folder or a lone config.json.

    The folder (when given) must hold safetensors weights; pickled ``.bin`` checkpoints are never read. Every file
    of the folder that hwpareto reads (``config.json``, weights and their index, :data:`COPIED_FILES`) must be a
    regular file inside it (:func:`contained`).
    """
    p = Path(path)
    if p.is_dir():
        config = p / "config.json"
        if not (config.is_file() or config.is_symlink()):
            raise InvalidValueError("PATH", "a model folder with config.json, or a config.json file", str(p))
        contained(p, config)
        weight_files(p)  # fails early without safetensors weights
        copied_files(p)
        folder: Path | None = p
    elif p.is_file():
        config, folder = p, None
    else:
        raise InvalidValueError("PATH", "an existing model folder or config.json file", str(p))
    return config, load_json(config, "config.json"), folder


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (a single ``model.safetensors`` or the shards its index names)."""
    single = folder / "model.safetensors"
    if single.is_file() or single.is_symlink():
        contained(folder, single)
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file() or index.is_symlink():
        contained(folder, index)
        doc = load_json(index, "model.safetensors.index.json", max_bytes=64 * 1024 * 1024)
        weight_map = doc.get("weight_map") if isinstance(doc, Mapping) else None
        if not isinstance(weight_map, Mapping) or not weight_map:
            raise InvalidValueError(f"{index}: weight_map", "a non-empty object of tensor name to file", weight_map)
        names = sorted(set(weight_map.values()))
        files = []
        for name in names:
            if not isinstance(name, str) or "/" in name or "\\" in name or not name.endswith(".safetensors"):
                raise InvalidValueError(f"{index}: weight_map file", "a .safetensors file name in the folder", name)
            f = folder / name
            if not (f.is_file() or f.is_symlink()):
                raise InvalidValueError(f"{index}: weight_map file", "an existing file", name)
            contained(folder, f)
            files.append(f)
        return files
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise HwparetoError(
            f"{folder}: expected safetensors weights (model.safetensors or its index), got only pickle checkpoints "
            "(never loaded: convert them to safetensors)"
        )
    raise InvalidValueError(
        f"{folder}",
        "model.safetensors or model.safetensors.index.json (for random weights pass the config.json file itself)",
        "a folder without weights",
    )


def weights_sha256(files: list[Path]) -> str:
    """SHA-256 over the weight files' names and contents (detects a changed folder)."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda q: q.name):
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- safetensors
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
"""Element sizes of safetensors' dtypes."""
WEIGHT_DTYPES = ("F16", "BF16", "F32", "F64")
"""The dtypes a model folder's weights may have (floating point)."""
MAX_HEADER_BYTES = 16 * 1024 * 1024
"""Largest safetensors JSON header read (a 405B model's is about 150 KB per file)."""
IGNORED_TENSORS = (".rotary_emb.inv_freq",)
"""Tensors older checkpoints carry that the model recomputes (skipped when loading)."""


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (dtype, shape)}`` of a safetensors file, from its header alone (no tensor is read), after
    checking that the file is what the header says: an 8-byte header length within the file and
    :data:`MAX_HEADER_BYTES`, a JSON object header, known dtypes, shapes whose byte sizes equal their
    ``data_offsets`` spans, and spans that tile the data exactly (from 0, contiguous, no overlap, ending at the end
    of the file). Anything else is an InvalidValueError naming the file and what is wrong."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InvalidValueError(
                f"{path}", "a safetensors file (8-byte header length, header, data)", f"{size} bytes"
            )
        n = int.from_bytes(head, "little")
        limit = min(MAX_HEADER_BYTES, size - 8)
        if n > limit:
            raise InvalidValueError(f"{path}: header length", f"at most {limit:,} bytes (the file has {size:,})", n)
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidValueError(f"{path}: header", "a JSON object (UTF-8)", f"{n:,} bytes that are not") from None
    if not isinstance(header, dict):
        raise InvalidValueError(f"{path}: header", "a JSON object", type(header).__name__)
    data_bytes = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise InvalidValueError(f"{path}: header __metadata__", "an object of strings", entry)
            continue
        where = f"{path}: tensor {name[:200]!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise InvalidValueError(where, "an object with dtype, shape, data_offsets", entry)
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise InvalidValueError(f"{where} dtype", "one of " + ", ".join(DTYPE_BYTES), dtype)
        if not isinstance(shape, list) or len(shape) > 8 or not all(_count(v) for v in shape):
            raise InvalidValueError(f"{where} shape", "a list of at most 8 non-negative integers", shape)
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(v) for v in offsets):
            raise InvalidValueError(f"{where} data_offsets", "[begin, end], non-negative integers", offsets)
        begin, end = offsets
        if end > data_bytes:
            raise InvalidValueError(
                f"{where} data_offsets", f"within the file's {data_bytes:,} bytes of data (truncated?)", offsets
            )
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        if end - begin != nbytes:
            raise InvalidValueError(f"{where} data_offsets", f"a span of {nbytes:,} bytes ({dtype} × {shape})", offsets)
        spans.append((begin, end, name))
        out[name] = (dtype, tuple(shape))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else f"leaves {begin - position:,} bytes unused"
            raise InvalidValueError(
                f"{path}: tensor {name[:200]!r} data_offsets",
                f"to start at byte {position:,}",
                f"[{begin}, {end}] ({what})",
            )
        position = end
    if position != data_bytes:
        raise InvalidValueError(
            f"{path}: data", f"{position:,} bytes (the tensors' spans)", f"{data_bytes:,} bytes (trailing data)"
        )
    return out


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def expected_tensors(arch: HFArch) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every parameter of the full ``*ForCausalLM`` of ``arch`` (``lm_head.weight`` included,
    optional in a folder when the embeddings are tied)."""
    d, hd, f = arch.hidden_size, arch.head_dim, arch.intermediate_size
    q, k = arch.num_heads * hd, arch.num_kv_heads * hd
    out: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (arch.vocab_size, d),
        "model.norm.weight": (d,),
        "lm_head.weight": (arch.vocab_size, d),
    }
    for i in range(arch.num_layers):
        layer = {
            "input_layernorm.weight": (d,),
            "post_attention_layernorm.weight": (d,),
            "self_attn.q_proj.weight": (q, d),
            "self_attn.k_proj.weight": (k, d),
            "self_attn.v_proj.weight": (k, d),
            "self_attn.o_proj.weight": (d, q),
            "mlp.gate_proj.weight": (f, d),
            "mlp.up_proj.weight": (f, d),
            "mlp.down_proj.weight": (d, f),
        }
        if arch.qkv_bias:
            layer |= {"self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (k,), "self_attn.v_proj.bias": (k,)}
        if arch.o_bias:
            layer["self_attn.o_proj.bias"] = (d,)
        if arch.mlp_bias:
            layer |= {"mlp.gate_proj.bias": (f,), "mlp.up_proj.bias": (f,), "mlp.down_proj.bias": (d,)}
        out |= {f"model.layers.{i}.{name}": shape for name, shape in layer.items()}
    return out


def check_weights(folder: Path, files: list[Path], arch: HFArch) -> None:
    """Check the weight files of a model folder against its config without reading a tensor: each file's header
    (:func:`safetensors_header`), floating-point dtypes, every parameter of ``arch`` present once with its shape
    (a tied ``lm_head.weight`` may be absent), no other tensor, and a shard index naming the file of each tensor."""
    expected = expected_tensors(arch)
    seen: dict[str, Path] = {}
    for f in files:
        for name, (dtype, shape) in safetensors_header(f).items():
            if name.endswith(IGNORED_TENSORS):
                continue
            where = f"{f}: tensor {name[:200]!r}"
            if name not in expected:
                raise InvalidValueError(where, f"a parameter of {arch.model_type} (config.json)", "an unknown name")
            if name in seen:
                raise InvalidValueError(where, "in one weight file only", f"also in {seen[name].name}")
            if dtype not in WEIGHT_DTYPES:
                raise InvalidValueError(f"{where} dtype", "one of " + ", ".join(WEIGHT_DTYPES), dtype)
            if shape != expected[name]:
                raise InvalidValueError(f"{where} shape", f"{list(expected[name])} (config.json)", list(shape))
            seen[name] = f
    missing = sorted(set(expected) - set(seen) - ({"lm_head.weight"} if arch.tie_embeddings else set()))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InvalidValueError(
            f"{folder}: weights", f"every parameter of config.json ({len(expected):,})", f"missing {shown}"
        )
    index = folder / "model.safetensors.index.json"
    if not (folder / "model.safetensors").is_file():  # shards: the index names each tensor's file
        weight_map = load_json(index, "model.safetensors.index.json", max_bytes=64 * 1024 * 1024).get("weight_map", {})
        wrong = sorted(n for n, f in seen.items() if weight_map.get(n) != f.name)
        if wrong:
            raise InvalidValueError(
                f"{index}: weight_map[{wrong[0][:200]!r}]", repr(seen[wrong[0]].name), weight_map.get(wrong[0])
            )
