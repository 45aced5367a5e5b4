"""Registry of search spaces: the plugins of the ``hwpareto.spaces`` entry-point group (hwpareto's own built-ins
among them) plus spaces registered at run time; and of stored space kinds (``hwpareto.space_kinds``).

An entry point's object is a :class:`SearchSpace` subclass (built with no arguments) or a zero-argument factory
returning a :class:`SearchSpace`; the space's ``name`` must be the entry point's name. Each space is built once, on
first use.

A stored space kind is a family of spaces built from a document rather than installed one by one (a Hugging Face
model folder: ``hf-causal-lm``): its entry point's name is the ``kind`` of the documents its spaces' ``to_dict()``
return, its object the factory ``(doc, source) -> SearchSpace`` that rebuilds one (``supernet.space_from_document``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from typing import Any

from hwpareto.errors import InvalidValueError
from hwpareto.plugins import PluginError, Registry
from supernet._space import SearchSpace

__all__ = [
    "BUILTIN_SPACES",
    "SpaceFactory",
    "get_space",
    "installed_spaces",
    "list_spaces",
    "register_space",
    "register_space_kind",
    "space_kind",
    "space_kinds",
]

GROUP = "hwpareto.spaces"
KIND_GROUP = "hwpareto.space_kinds"
SpaceFactory = Callable[[Any, str], SearchSpace]
"""Rebuilds a space of a stored kind from its document; ``source`` names the document in errors."""


def _builtin_names() -> tuple[str, ...]:
    """The space names hwpareto's own distribution declares (none when hwpareto is not installed)."""
    try:
        return tuple(ep.name for ep in distribution("hwpareto").entry_points if ep.group == GROUP)
    except PackageNotFoundError:
        return ()


def _check_space(name: str, obj: object) -> SearchSpace:
    """``obj`` (a space, a space class or a factory) as a :class:`SearchSpace` named ``name``."""
    space = obj
    if not isinstance(space, SearchSpace):
        if not callable(space):
            raise PluginError(
                f"{GROUP} plugin {name!r}: expected a SearchSpace subclass or factory, got a {type(obj).__name__}"
            )
        try:
            space = space()
        except Exception as exc:
            reason = next(iter(str(exc).splitlines()), "")
            raise PluginError(
                f"{GROUP} plugin {name!r}: cannot build the space: {type(exc).__name__}: {reason}"
            ) from exc
    if not isinstance(space, SearchSpace):
        raise PluginError(
            f"{GROUP} plugin {name!r}: expected a SearchSpace from the factory, got a {type(space).__name__}"
        )
    if getattr(space, "name", None) != name:
        raise PluginError(
            f"{GROUP} plugin {name!r}: expected a space named {name!r}, got {getattr(space, 'name', None)!r}"
        )
    return space


BUILTIN_SPACES = _builtin_names()
_SPACES: Registry[SearchSpace] = Registry(GROUP, "space", _check_space)
_lock = threading.Lock()


def get_space(name: str) -> SearchSpace:
    """The space called ``name`` (a plugin is built on first use); unknown names list the available ones."""
    return _SPACES.get(name)


def list_spaces() -> list[str]:
    """Names of the installed (entry-point) and run-time registered spaces."""
    return _SPACES.names()


def installed_spaces() -> list[str]:
    """Names every installed package declares in the ``hwpareto.spaces`` group (hwpareto's built-ins included),
    sorted: names nothing else may take."""
    return sorted(dict.fromkeys(ep.name for ep in entry_points(group=GROUP)))


def register_space(space: SearchSpace, *, replace: bool = False) -> SearchSpace:
    """Make ``space`` available to :func:`get_space` in this process. A name an installed package declares (every
    built-in) can never be replaced; registering a name again needs the same dimensions or ``replace``."""
    if not isinstance(space, SearchSpace):
        raise InvalidValueError("space", "a SearchSpace", type(space).__name__)
    installed = installed_spaces()
    if space.name in installed:
        raise InvalidValueError(
            "space.name", "a name other than the installed spaces " + ", ".join(installed), space.name
        )
    with _lock:
        if space.name in _SPACES and not replace:
            existing = _SPACES.get(space.name)
            if existing is not space and existing.describe() != space.describe():
                raise InvalidValueError("space.name", "a name not yet registered with different dimensions", space.name)
        _SPACES.register(space.name, space, replace=True)
    return space


def _check_kind(name: str, obj: object) -> SpaceFactory:
    """``obj`` as the factory of stored space kind ``name``."""
    if not callable(obj):
        raise PluginError(
            f"{KIND_GROUP} plugin {name!r}: expected a factory (doc, source) -> SearchSpace, got a {type(obj).__name__}"
        )
    return obj


_KINDS: Registry[SpaceFactory] = Registry(KIND_GROUP, "space kind", _check_kind)


def space_kinds() -> list[str]:
    """The stored space kinds installed (``hwpareto.space_kinds`` entry points) or registered in code."""
    return _KINDS.names()


def space_kind(kind: str) -> SpaceFactory:
    """The factory rebuilding spaces of stored ``kind`` (imported on first use)."""
    return _KINDS.get(kind)


def register_space_kind(kind: str, factory: SpaceFactory, *, replace: bool = False) -> SpaceFactory:
    """Register the factory of stored space ``kind`` in this process (an installed kind needs ``replace``)."""
    return _KINDS.register(kind, factory, replace=replace)
