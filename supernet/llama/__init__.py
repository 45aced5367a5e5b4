"""Spaces of local Hugging Face decoder-only models (Llama family): ``hwpareto space from-hf``; :func:`load_subnet`
reads an exported SubNet's ``model/`` folder back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supernet.llama._config import ARCHITECTURES, HFArch, check_hf_config
from supernet.llama._space import KIND, HFCausalLMSpace, space_from_document, space_from_hf

__all__ = [
    "ARCHITECTURES",
    "KIND",
    "HFArch",
    "HFCausalLMSpace",
    "check_hf_config",
    "load_subnet",
    "space_from_document",
    "space_from_hf",
]


def load_subnet(folder: str | Path) -> Any:
    """The ``*ForCausalLM`` (eval mode, CPU) of a SubNet folder that an export wrote (a bundle's ``model/``): a
    ``save_pretrained`` folder when all kept layers share their sizes, else ``model.safetensors`` + ``config.json``
    + ``hwpareto_subnet.json`` with per-layer KV heads and FFN widths, which ``transformers`` alone cannot load.
    Local files only, no remote code; config and safetensors headers are checked and the model's memory bounded by
    this machine's before any tensor is read."""
    from supernet.llama._model import load_subnet as load

    return load(folder)
