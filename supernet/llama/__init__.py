"""Spaces of local Hugging Face decoder-only models (Llama family): ``hwpareto space from-hf``; :func:`load_subnet`
reads an exported SubNet's ``model/`` folder back."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supernet.llama._config import (
    ARCHITECTURES,
    COPIED_FILES,
    HFArch,
    check_hf_config,
    contained,
    copied_files,
    file_sha256,
    weight_files,
    weights_sha256,
)
from supernet.llama._space import KIND, HFCausalLMSpace, space_from_document, space_from_hf

if TYPE_CHECKING:
    from supernet.llama._model import SUBNET_FILE, PrefillLogits, build_model, save_subnet

_LAZY = {name: "supernet.llama._model" for name in ("SUBNET_FILE", "PrefillLogits", "build_model", "save_subnet")}
"""The PyTorch side, imported on first use (``import supernet.llama`` stays torch-free)."""

__all__ = [
    "ARCHITECTURES",
    "COPIED_FILES",
    "KIND",
    "SUBNET_FILE",
    "HFArch",
    "HFCausalLMSpace",
    "PrefillLogits",
    "build_model",
    "check_hf_config",
    "contained",
    "copied_files",
    "file_sha256",
    "load_subnet",
    "save_subnet",
    "space_from_document",
    "space_from_hf",
    "weight_files",
    "weights_sha256",
]


def load_subnet(folder: str | Path) -> Any:
    """The ``*ForCausalLM`` (eval mode, CPU) of a SubNet folder that an export wrote (a bundle's ``model/``): a
    ``save_pretrained`` folder when all kept layers share their sizes, else ``model.safetensors`` + ``config.json``
    + ``hwpareto_subnet.json`` with per-layer KV heads and FFN widths, which ``transformers`` alone cannot load.
    Local files only, no remote code; config and safetensors headers are checked and the model's memory bounded by
    this machine's before any tensor is read."""
    from supernet.llama._model import load_subnet as load

    return load(folder)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'supernet.llama' has no attribute {name!r}")
