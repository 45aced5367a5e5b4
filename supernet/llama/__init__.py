"""Spaces of local Hugging Face decoder-only models (Llama family): ``hwpareto space from-hf``."""

from supernet.llama._config import ARCHITECTURES, HFArch, check_hf_config
from supernet.llama._space import KIND, HFCausalLMSpace, space_from_document, space_from_hf

__all__ = [
    "ARCHITECTURES",
    "KIND",
    "HFArch",
    "HFCausalLMSpace",
    "check_hf_config",
    "space_from_document",
    "space_from_hf",
]
