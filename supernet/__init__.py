"""Search spaces and weight-shared PyTorch SuperNets (the types every hwpareto package keys on)."""

from hwpareto.checks import NAME_CHARS, check_metric_value, check_name, metric_range, show_name
from supernet._declarative import (
    DeclarativeSpace,
    load_space_file,
    space_document,
    space_from_dict,
    space_from_document,
)
from supernet._family import ONNX_DATA_FILE, ONNX_FILE, CopiedFile, ModelFamily, OnnxGraph, SuperNet
from supernet._files import check_output_file
from supernet._memory import check_memory
from supernet._registry import (
    BUILTIN_SPACES,
    SpaceFactory,
    get_space,
    installed_spaces,
    list_spaces,
    register_space,
    register_space_kind,
    space_kind,
    space_kinds,
)
from supernet._resume import CHECKPOINT_EVERY_S, CHECKPOINT_EVERY_STEPS, latest_step
from supernet._space import LayerCounts, LayerTerm, SearchSpace, distinct_configs
from supernet._types import ACTIVATIONS, OPS, PHASE_METRICS, Dimension, LayerSpec, SubNetConfig, unique_layers

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_SPACES",
    "CHECKPOINT_EVERY_S",
    "CHECKPOINT_EVERY_STEPS",
    "NAME_CHARS",
    "ONNX_DATA_FILE",
    "ONNX_FILE",
    "OPS",
    "PHASE_METRICS",
    "CopiedFile",
    "DeclarativeSpace",
    "Dimension",
    "LayerCounts",
    "LayerSpec",
    "LayerTerm",
    "ModelFamily",
    "OnnxGraph",
    "SearchSpace",
    "SpaceFactory",
    "SubNetConfig",
    "SuperNet",
    "check_memory",
    "check_metric_value",
    "check_name",
    "check_output_file",
    "distinct_configs",
    "get_space",
    "installed_spaces",
    "latest_step",
    "list_spaces",
    "load_space_file",
    "metric_range",
    "register_space",
    "register_space_kind",
    "show_name",
    "space_document",
    "space_from_dict",
    "space_from_document",
    "space_kind",
    "space_kinds",
    "unique_layers",
]
