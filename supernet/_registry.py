"""Registry of search spaces: the built-ins (three families and two demo variants) plus spaces registered at run
time."""

from __future__ import annotations

import importlib
import threading

from hwpareto.errors import InvalidValueError
from supernet._space import SearchSpace

__all__ = ["BUILTIN_SPACES", "get_space", "list_spaces", "register_space"]

_BUILTIN = {
    "mbv3": ("supernet.mbv3", "MobileNetV3Space"),
    "gpt": ("supernet.gpt", "GPTSpace"),
    "nb201": ("supernet.nb201", "NB201Space"),
    "mbv3-digits": ("supernet._demo", "mbv3_digits"),
    "gpt-stdlib": ("supernet._demo", "gpt_stdlib"),
    "ofa-mbv3-w1.0": ("supernet.mbv3", "ofa_mbv3_w10"),
    "ofa-mbv3-w1.2": ("supernet.mbv3", "ofa_mbv3_w12"),
}
BUILTIN_SPACES = tuple(_BUILTIN)
_lock = threading.Lock()
_spaces: dict[str, SearchSpace] = {}


def get_space(name: str) -> SearchSpace:
    """The space called ``name`` (built-ins are constructed on first use)."""
    with _lock:
        if name in _spaces:
            return _spaces[name]
        if name in _BUILTIN:
            module, cls = _BUILTIN[name]
            space: SearchSpace = getattr(importlib.import_module(module), cls)()
            _spaces[name] = space
            return space
    raise InvalidValueError("space", "one of " + ", ".join(list_spaces()), name)


def list_spaces() -> list[str]:
    """Names of the built-in and registered spaces."""
    return list(dict.fromkeys([*_BUILTIN, *_spaces]))


def register_space(space: SearchSpace, *, replace: bool = False) -> SearchSpace:
    """Make ``space`` available to :func:`get_space`; a built-in name can never be replaced."""
    if space.name in _BUILTIN:
        raise InvalidValueError("space.name", "a name other than the built-ins " + ", ".join(_BUILTIN), space.name)
    with _lock:
        if space.name in _spaces and not replace and _spaces[space.name] is not space:
            existing = _spaces[space.name]
            if existing.describe() != space.describe():
                raise InvalidValueError("space.name", "a name not yet registered with different dimensions", space.name)
        _spaces[space.name] = space
    return space
