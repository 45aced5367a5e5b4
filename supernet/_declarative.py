"""Declarative spaces (YAML/JSON): named dimensions only, for imported third-party tables without a model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwpareto.checks import check_name
from hwpareto.errors import InvalidValueError
from hwpareto.safeload import load_yaml
from supernet._registry import space_kind, space_kinds
from supernet._space import SearchSpace
from supernet._types import MAX_CHOICES, Dimension

__all__ = [
    "DeclarativeSpace",
    "load_space_file",
    "space_document",
    "space_from_dict",
    "space_from_document",
]

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_DIM_FIELDS = {"name", "type", "choices", "low", "high", "step", "group", "description"}
MAX_DIMENSIONS = 1_000
MAX_TEXT = 256  # characters of a dimension name, group or string choice
MAX_DESCRIPTION = 4_096  # characters of a description


class DeclarativeSpace(SearchSpace):
    """A space defined only by its dimensions: sampling, validation, encoding and Optuna distributions work;
    layers, SuperNet and extraction raise :class:`~hwpareto.errors.CapabilityError`."""

    has_model = False

    def __init__(self, name: str, dimensions: list[Dimension], description: str = "") -> None:
        self.name = name
        self.description = description
        super().__init__(dimensions)

    def to_dict(self) -> dict[str, Any]:
        """The definition document :func:`space_from_dict` reads back."""
        return {
            "name": self.name,
            "description": self.description,
            "dimensions": [
                {("type" if k == "kind" else k): v for k, v in d.to_dict().items()} for d in self.dimensions
            ],
        }


def space_from_dict(doc: Any, source: str = "space definition") -> DeclarativeSpace:
    """Build a :class:`DeclarativeSpace` from a parsed YAML/JSON document, with errors naming the field."""
    if not isinstance(doc, Mapping):
        raise InvalidValueError(source, "a mapping with name, dimensions", type(doc).__name__)
    unknown = sorted(set(doc) - {"name", "description", "dimensions"})
    if unknown:
        raise InvalidValueError(f"{source}", "only the keys name, description, dimensions", unknown)
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # space names: a stricter subset of every name's rule
        raise InvalidValueError(f"{source}: name", "lower-case letters, digits, '_', '.', '-' (max 64)", name)
    name = check_name(f"{source}: name", name)
    dims_doc = doc.get("dimensions")
    if not isinstance(dims_doc, list) or not dims_doc:
        raise InvalidValueError(f"{source}: dimensions", "a non-empty list", dims_doc)
    if len(dims_doc) > MAX_DIMENSIONS:
        raise InvalidValueError(
            f"{source}: dimensions", f"at most {MAX_DIMENSIONS:,} dimensions", f"{len(dims_doc):,} dimensions"
        )
    dims = [_dimension(d, f"{source}: dimensions[{i}]") for i, d in enumerate(dims_doc)]
    description = doc.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidValueError(
            f"{source}: description", f"a string of at most {MAX_DESCRIPTION:,} characters", _long(description)
        )
    return DeclarativeSpace(name, dims, description)


def _dimension(doc: Any, where: str) -> Dimension:
    if not isinstance(doc, Mapping):
        raise InvalidValueError(where, "a mapping with name and choices or low/high", doc)
    unknown = sorted(set(doc) - _DIM_FIELDS)
    if unknown:
        raise InvalidValueError(where, "only the keys " + ", ".join(sorted(_DIM_FIELDS)), unknown)
    name = doc.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_TEXT:
        raise InvalidValueError(f"{where}.name", f"a non-empty string of at most {MAX_TEXT} characters", _long(name))
    kind = doc.get("type", "categorical" if "choices" in doc else None)
    if kind not in ("categorical", "int", "float"):
        raise InvalidValueError(f"{where}.type", "categorical, int or float", kind)
    group, description = str(doc.get("group", "")), str(doc.get("description", ""))
    if len(group) > MAX_TEXT:
        raise InvalidValueError(f"{where}.group", f"at most {MAX_TEXT} characters", _long(group))
    if len(description) > MAX_DESCRIPTION:
        raise InvalidValueError(f"{where}.description", f"at most {MAX_DESCRIPTION:,} characters", _long(description))
    if kind == "categorical":
        choices = doc.get("choices")
        if isinstance(choices, list) and len(choices) > MAX_CHOICES:
            raise InvalidValueError(f"{where}.choices", f"at most {MAX_CHOICES:,} choices", f"{len(choices):,} choices")
        if not isinstance(choices, list) or not all(isinstance(c, (int, float, str)) for c in choices):
            raise InvalidValueError(f"{where}.choices", "a list of numbers or strings", choices)
        long = next((c for c in choices if isinstance(c, str) and len(c) > MAX_TEXT), None)
        if long is not None:
            raise InvalidValueError(f"{where}.choices", f"strings of at most {MAX_TEXT} characters", _long(long))
        return Dimension(name, "categorical", tuple(choices), group=group, description=description)
    step = doc.get("step", 1)
    if not isinstance(step, int) or isinstance(step, bool):
        raise InvalidValueError(f"{where}.step", "a positive integer", step)
    return Dimension(
        name, kind, low=doc.get("low"), high=doc.get("high"), step=step, group=group, description=description
    )


def _long(value: Any) -> Any:
    """A too-long string as its length (an error message stays one short line)."""
    return f"{len(value):,} characters" if isinstance(value, str) and len(value) > 40 else value


def space_document(space: SearchSpace) -> dict[str, Any]:
    """The document a store keeps for ``space``: a declarative space's, or the ``to_dict()`` of a space of a stored
    kind (``kind`` one of :func:`~supernet.space_kinds`, declared by its plugin; ``name`` the space's)."""
    to_dict = getattr(space, "to_dict", None)
    if isinstance(space, DeclarativeSpace) and callable(to_dict):
        return space.to_dict()
    kinds = ", ".join(["declarative", *space_kinds()])
    if not isinstance(space, SearchSpace) or not callable(to_dict):
        raise InvalidValueError("space", f"a storable space (kinds {kinds})", type(space).__name__)
    doc = to_dict()
    if not isinstance(doc, dict) or doc.get("kind") not in space_kinds() or doc.get("name") != space.name:
        raise InvalidValueError(
            "space document", f"a mapping with kind (one of {kinds}) and name", type(space).__name__
        )
    return doc


def space_from_document(doc: Any, source: str = "space definition") -> SearchSpace:
    """Rebuild a stored space: a document without ``kind`` is declarative (:func:`space_from_dict`), else the
    factory its kind's plugin declares (:func:`~supernet.space_kind`) builds it."""
    if isinstance(doc, Mapping) and "kind" in doc:
        kind = doc["kind"]
        if not isinstance(kind, str) or kind not in space_kinds():
            raise InvalidValueError(f"{source}: kind", "one of " + ", ".join(space_kinds()), kind)
        space = space_kind(kind)(doc, source)
        if not isinstance(space, SearchSpace):
            raise InvalidValueError(f"{source}: kind {kind}", "a factory returning a SearchSpace", type(space).__name__)
        return space
    return space_from_dict(doc, source)


def load_space_file(path: str | Path) -> DeclarativeSpace:
    """Read a declarative space from a YAML or JSON file."""
    p = Path(path)
    return space_from_dict(load_yaml(p, "space file"), source=str(p))
