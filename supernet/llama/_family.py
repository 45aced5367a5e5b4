"""The Hugging Face causal-LM family: how its SubNets ship in bundles and how its SuperNets train and save.

A bundle holds, instead of ``weights.safetensors``, a folder ``model/`` (``save_pretrained`` when every kept layer
has the same sizes, reloading with ``AutoModelForCausalLM.from_pretrained``; else safetensors + config for
:func:`supernet.llama._model.load_subnet`) with the source folder's tokenizer files copied as registered (inside
the folder, their registration hashes checked), the prefill graph ``input_ids → logits`` as ONNX (traced on
:data:`TRACE_TOKENS` tokens, batch and length dynamic), the space's definition without its folder and a README.
A trained SuperNet is a model folder ``hwpareto space from-hf`` reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet._family import ONNX_DATA_FILE, ONNX_FILE, CopiedFile, FamilySpace, ModelFamily, OnnxGraph
from supernet._types import SubNetConfig
from supernet.llama._config import (
    COPIED_FILES,
    HFArch,
    contained,
    copied_files,
    file_sha256,
    weight_files,
    weights_sha256,
)

if TYPE_CHECKING:
    from torch import nn

    from supernet._space import SearchSpace
    from supernet.llama._model import Arch

__all__ = ["HF_FAMILY", "MAX_COPIED_BYTES", "TRACE_TOKENS", "TRAINING_FILE", "HFFamily"]

TRACE_TOKENS = 8
"""Prompt tokens an LLM's ONNX prefill graph is traced on (at least 2: one token takes another attention path)."""
MAX_COPIED_BYTES = 256 * 1024 * 1024
"""Largest tokenizer file an export copies (the largest real ``tokenizer.json`` files are a few tens of MB)."""
TRAINING_FILE = "hwpareto_training.json"
"""The training run's metadata in a model folder ``train-supernet`` writes."""
FOLDER_FIELDS = ("path", "weights_sha256", "tokenizer_files_sha256")
"""Fields of the space's document that describe its model folder (kept in a bundle's ``supernet`` section)."""
_SUBNET_FILES = re.compile(
    r"^(config\.json|generation_config\.json|hwpareto_subnet\.json|model\.safetensors(\.index\.json)?"
    r"|model-\d{5}-of-\d{5}\.safetensors)$"
)
"""Files the SubNet's own writing leaves in ``model/`` (``save_pretrained``, sharded or not, or
:func:`supernet.llama._model.save_subnet`); the rest of ``model/`` is the SuperNet folder's tokenizer files."""


class HFSpace(FamilySpace, Protocol):
    """What the hooks read of the family's spaces (``HFCausalLMSpace``, which gives itself this family)."""

    path: str | None
    weights_sha256: str | None
    tokenizer_files_sha256: dict[str, str] | None
    options: dict[str, Any]
    config: dict[str, Any]
    arch: HFArch

    def arch_of(self, config: SubNetConfig) -> Arch: ...

    def summary(self, config: SubNetConfig) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def tokenizer(self) -> Any: ...


S = TypeVar("S", bound=FamilySpace)


def _llm(space: FamilySpace) -> HFSpace:
    """``space`` as the family's own (only ``HFCausalLMSpace`` names this family)."""
    return cast("HFSpace", space)


class HFFamily(ModelFamily):
    """Hugging Face causal-LM SubNets (see the module docstring)."""

    name: ClassVar[str] = "hf-causal-lm"
    model_folder: ClassVar[str | None] = "model"
    bundle_key: ClassVar[str | None] = "transformers"
    checkpoints: ClassVar[bool] = False

    # ------------------------------------------------------------------ the SuperNet's weights
    def weights_folder(self, space: FamilySpace) -> Path | None:
        path = _llm(space).path
        return Path(path) if path is not None else None

    def folder_sha256(self, space: FamilySpace) -> str | None:
        return _llm(space).weights_sha256

    def hash_folder(self, folder: Path) -> str | None:
        try:
            return weights_sha256(weight_files(folder)) if folder.is_dir() else None
        except (OSError, HwparetoError):
            return None

    def hash_copied(self, folder: Path) -> dict[str, Any] | None:
        try:
            return {f.name: file_sha256(f) for f in copied_files(folder)} if folder.is_dir() else None
        except (OSError, HwparetoError):
            return None

    def on_folder(self, space: S, folder: Path, recorded: Mapping[str, Any], where: str) -> S:
        from supernet._declarative import space_from_document

        doc: dict[str, Any] = {"path": str(folder), "weights_sha256": recorded["weights_sha256"]}
        if recorded.get("tokenizer_files_sha256") is not None:
            doc["tokenizer_files_sha256"] = recorded["tokenizer_files_sha256"]
        return cast("S", space_from_document(_llm(space).to_dict() | doc, f"{where}: the space on {folder}"))

    # ------------------------------------------------------------------ bundles
    def copied_files(self, space: FamilySpace) -> dict[str, CopiedFile]:
        """The model folder's :data:`~supernet.llama._config.COPIED_FILES`: each a regular file inside the folder
        (a symlink leading out of it, a FIFO or device is refused), at most :data:`MAX_COPIED_BYTES`, read once and
        checked against the SHA-256 recorded at registration when the space records them (a file changed, added or
        removed since is refused: register the folder again). A file others may not read stays private in the
        bundle (0600, not 0644): a hard link to a private file would otherwise publish it."""
        llm = _llm(space)
        if llm.path is None:
            return {}
        source = Path(llm.path)
        recorded = llm.tokenizer_files_sha256
        out: dict[str, CopiedFile] = {}
        for name in COPIED_FILES:
            path = source / name
            if not (path.is_symlink() or path.exists()):
                if recorded is not None and name in recorded:
                    raise HwparetoError(
                        f"space {llm.name!r}: {path} is missing (it had SHA-256 {recorded[name]} at registration)"
                    )
                continue
            real = contained(source, path)
            with real.open("rb") as fh:
                private = not os.fstat(fh.fileno()).st_mode & stat.S_IROTH
                data = fh.read(MAX_COPIED_BYTES + 1)
            if len(data) > MAX_COPIED_BYTES:
                raise InvalidValueError(str(path), f"a file of at most {MAX_COPIED_BYTES:,} bytes", "a larger one")
            digest = hashlib.sha256(data).hexdigest()
            if recorded is not None and recorded.get(name) != digest:
                was = f"SHA-256 {recorded[name]}" if name in recorded else "absent"
                raise HwparetoError(
                    f"space {llm.name!r}: {path}: expected {was} (as registered), got SHA-256 {digest} (the folder "
                    "changed since registration: register it again)"
                )
            out[name] = CopiedFile(data, private)
        return out

    def provenance(self, space: FamilySpace) -> dict[str, Any]:
        """The model folder the weights are (by name and hash, never a path), whether its channels were ordered
        by importance, and the hashes of the tokenizer files the export copies."""
        llm = _llm(space)
        if llm.path is None:
            return {}
        out = {
            "folder": Path(llm.path).name,
            "weights_sha256": llm.weights_sha256,
            "importance_ordered": bool(llm.options["importance"]),
        }
        files_sha256 = llm.to_dict().get("tokenizer_files_sha256")
        return out if files_sha256 is None else out | {"tokenizer_files_sha256": files_sha256}

    def portable_document(self, space: FamilySpace, doc: dict[str, Any]) -> dict[str, Any]:
        """Without the model folder (``path`` and ``weights_sha256`` null, no file hashes): the bundle's
        ``supernet`` section names it by hash."""
        return {k: v for k, v in doc.items() if k not in FOLDER_FIELDS} | {"path": None, "weights_sha256": None}

    def save_subnet(self, module: nn.Module, folder: Path, copied: Mapping[str, CopiedFile]) -> dict[str, Any]:
        from supernet.llama._model import SUBNET_FILE, save_subnet

        with no_progress_bars():
            save_subnet(module, folder)
        for name, file in copied.items():
            (folder / name).write_bytes(file.data)
        plain = not (folder / SUBNET_FILE).is_file()
        return {"folder": self.model_folder, "class": type(module).__name__, "plain": plain, "tokenizer": list(copied)}

    def load_subnet(self, space: FamilySpace, folder: Path, config: SubNetConfig, where: str) -> nn.Module:
        """Through hwpareto's strict loader, every tensor's shape checked against the SubNet ``config``."""
        from supernet.llama._model import build_model, load_subnet

        llm = _llm(space)
        model = load_subnet(folder)
        skeleton = build_model(llm.config, llm.arch_of(config), meta=True)
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        for name in [*expected, *(k for k in got if k not in expected)]:  # in the model's order
            if expected.get(name) != got.get(name):
                raise InvalidValueError(
                    f"{where}: {self.model_folder}/ tensor {name} shape", str(expected.get(name)), got.get(name)
                )
        return model

    def subnet_file(self, name: str) -> bool:
        return _SUBNET_FILES.fullmatch(name) is not None

    def reload_plain(self, folder: Path) -> nn.Module | None:
        """``AutoModelForCausalLM`` on a ``save_pretrained`` folder (no remote code)."""
        from supernet.llama._model import SUBNET_FILE

        if (folder / SUBNET_FILE).is_file():
            return None
        from transformers import AutoModelForCausalLM

        with no_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        return model.eval()

    def onnx_graph(self, module: nn.Module, example: Any) -> OnnxGraph:
        """The prefill graph ``input_ids → logits``, traced on :data:`TRACE_TOKENS` tokens (lengths are dynamic: a
        trace at the prompt length costs seconds of LM-head work; ``verify-bundle`` runs the full length)."""
        from supernet.llama._model import PrefillLogits

        axes = {0: "batch", 1: "tokens"}
        return OnnxGraph(PrefillLogits(module), example[:, :TRACE_TOKENS], "input_ids", "logits", axes)

    def verify_inputs(self, space: FamilySpace, config: SubNetConfig) -> list[Any]:
        """The default inputs, the second one half as many tokens (the length axis is dynamic too)."""
        first, second = super().verify_inputs(space, config)
        return [first, second[:, : max(2, second.shape[1] // 2)]]

    def readme(
        self, space: FamilySpace, config: SubNetConfig, doc: Mapping[str, Any], files: Mapping[str, str]
    ) -> str | None:
        """What the bundle holds and how to load it."""
        hf = doc.get(self.bundle_key or "")
        lines = [
            f"# SubNet {config.key} of space {space.name}",
            "",
            f"{_llm(space).summary(config)}; {doc['params']:,} parameters.",
            "",
            "Files (SHA-256 in config.json): " + ", ".join(sorted(files)) + ".",
            "",
        ]
        if hf is not None and hf["plain"]:
            lines += [
                "Load with transformers (no remote code):",
                "",
                f"    AutoModelForCausalLM.from_pretrained('{self.model_folder}', local_files_only=True)",
                "",
            ]
        elif hf is not None:
            lines += [
                "Layers of different sizes: load with hwpareto (checks the hashes):",
                "",
                "    from pareto.bundles._export import load_subnet; space, config, model = load_subnet('.')",
                "",
            ]
        if ONNX_FILE in files:
            data = f" (weights in {ONNX_DATA_FILE})" if ONNX_DATA_FILE in files else ""
            lines += [f"{ONNX_FILE}: the prefill graph{data}, int64 input_ids (batch, tokens) -> float32 logits.", ""]
        metrics = doc.get("metrics", {}).get("objectives", {})
        if metrics:
            lines += ["Objectives: " + ", ".join(f"{k} = {v:.6g}" for k, v in metrics.items()), ""]
        return "\n".join(lines)

    # ------------------------------------------------------------------ training
    def training_task(self, space: FamilySpace, data: Any, device: Any, seq_len: int | None) -> Any:
        """Token windows through the folder's tokenizer (else bytes), the same for every SubNet."""
        from supernet.llama._training import LMTask

        llm = _llm(space)
        arch = llm.arch
        tokenizer = llm.tokenizer()
        space_ = cast("SearchSpace", space)  # every space is one; the hooks type it structurally
        return LMTask(
            space_, data, device, seq_len, vocab=arch.vocab_size, max_positions=arch.max_positions, tokenizer=tokenizer
        )

    def save_trained(self, space: FamilySpace, supernet: nn.Module, out: Path, meta: Mapping[str, Any]) -> None:
        """A model folder ``hwpareto space from-hf`` reads: ``save_pretrained`` (``config.json`` +
        ``model.safetensors``), the space's tokenizer if it has one and :data:`TRAINING_FILE`."""
        model = getattr(supernet, "model", None)
        if model is None or not hasattr(model, "save_pretrained"):
            raise InvalidValueError("supernet", "an HFSuperNet", type(supernet).__name__)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer = _llm(space).tokenizer()
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        (out / TRAINING_FILE).write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' tqdm bars (saving, loading weights) off: they would break the CLI's status line."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


HF_FAMILY = HFFamily()
