"""Search spaces and weight-shared PyTorch SuperNets (the types every hwpareto package keys on)."""

from supernet._declarative import DeclarativeSpace, load_space_file, space_from_dict
from supernet._errors import CapabilityError, HwparetoError, InvalidValueError
from supernet._registry import BUILTIN_SPACES, get_space, list_spaces, register_space
from supernet._space import LayerCounts, LayerTerm, SearchSpace
from supernet._types import ACTIVATIONS, OPS, Dimension, LayerSpec, SubNetConfig, unique_layers

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_SPACES",
    "OPS",
    "CapabilityError",
    "DeclarativeSpace",
    "Dimension",
    "HwparetoError",
    "InvalidValueError",
    "LayerCounts",
    "LayerSpec",
    "LayerTerm",
    "SearchSpace",
    "SubNetConfig",
    "get_space",
    "list_spaces",
    "load_space_file",
    "register_space",
    "space_from_dict",
    "unique_layers",
]
