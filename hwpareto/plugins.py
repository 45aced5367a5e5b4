"""Extension points: named plugins registered in code or discovered through Python entry points.

Seven groups exist: ``hwpareto.spaces`` (search spaces with their SuperNet and predictor features),
``hwpareto.space_kinds`` (families of spaces the store rebuilds from a document, such as Hugging Face folders),
``hwpareto.backends`` (device backends, each declaring the device kinds it serves), ``hwpareto.runtimes``
(deployment runtimes a device's SubNets are lowered to and timed in), ``hwpareto.strategies``
(search strategies), ``hwpareto.objectives`` (analytic objectives: a catalogue metric and its computation) and
``hwpareto.metrics`` (catalogue metrics that need no computation: device costs a backend produces, qualities).
hwpareto's built-ins are declared in its own ``pyproject.toml`` under those groups (its built-in metrics are the
catalogue's own), exactly as a third-party package declares its own::

    [project.entry-points."hwpareto.spaces"]
    resnet-tiny = "my_package.space:ResNetTinySpace"

Contract: an entry point's name is the plugin's name (what users type); its object is whatever the owning
registry documents (a class or a zero-argument factory). Entry points are loaded on first use of that name, so an
unused broken plugin costs nothing; a broken one that is asked for is a one-line :class:`HwparetoError` naming the
plugin, its group and the failure. A name registered in code shadows an entry point of the same name only with
``replace=True``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from hwpareto.errors import HwparetoError, InvalidValueError

__all__ = ["GROUPS", "PluginError", "Registry"]

GROUPS = (
    "hwpareto.spaces",
    "hwpareto.space_kinds",
    "hwpareto.backends",
    "hwpareto.runtimes",
    "hwpareto.strategies",
    "hwpareto.objectives",
    "hwpareto.metrics",
)
T = TypeVar("T")


class PluginError(HwparetoError):
    """A plugin was found but could not be loaded or is not what its group expects."""


class Registry(Generic[T]):
    """Plugins of one entry-point ``group``: ``get(name)`` loads and validates on first use and caches.

    ``check(name, obj)`` turns a loaded object into a ``T`` or raises; ``field`` names the setting in errors
    (``device.backend``, ``space``, ``sampler``)."""

    def __init__(self, group: str, field: str, check: Callable[[str, object], T]) -> None:
        if group not in GROUPS:
            raise ValueError(f"group: expected one of {', '.join(GROUPS)}, got {group!r}")
        self.group = group
        self.field = field
        self._check = check
        self._lock = threading.RLock()
        self._loaded: dict[str, T] = {}
        self._code: dict[str, T] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every available name: entry points sorted by name (whatever the install order), then names registered
        in code in registration order."""
        return list(dict.fromkeys([*sorted(self._entry_points()), *self._code]))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def register(self, name: str, obj: object, *, replace: bool = False) -> T:
        """Register ``obj`` as ``name`` in code (checked like an entry point's object)."""
        value = self._check(name, obj)
        with self._lock:
            taken = name in self._code or name in self._entry_points()
            if taken and not replace:
                raise InvalidValueError(f"{self.field} name", "a name not yet registered", name)
            self._code[name] = value
            self._loaded.pop(name, None)
        return value

    def get(self, name: str) -> T:
        """The plugin called ``name``; unknown names are an error listing the available ones."""
        with self._lock:
            if name in self._code:
                return self._code[name]
            if name in self._loaded:
                return self._loaded[name]
            found = self._entry_points().get(name)
            if found is None:
                raise InvalidValueError(self.field, "one of " + ", ".join(self.names()), name)
            try:
                obj = found.load()
            except Exception as exc:
                reason = next(iter(str(exc).splitlines()), "")  # one line, however the plugin's error reads
                raise PluginError(
                    f"{self.group} plugin {name!r} ({found.value}): cannot load: {type(exc).__name__}: {reason}"
                ) from exc
            value = self._check(name, obj)
            self._loaded[name] = value
            return value
