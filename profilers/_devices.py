"""Device specs (YAML), shipped presets under ``data/devices/`` and the backend registry (the ``hwpareto.backends``
entry-point group plus backends registered in code); the runtimes a device names are in :mod:`profilers._runtimes`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwpareto.errors import InvalidValueError
from hwpareto.plugins import PluginError, Registry
from hwpareto.resources import data_path
from hwpareto.safeload import load_yaml
from profilers._base import Backend, DeviceSpec
from profilers._runtimes import DEFAULT_RUNTIME, runtime_names
from supernet import check_name

__all__ = [
    "LOCAL_CPU",
    "LOCAL_CPUS",
    "PRESETS_DIR",
    "backend_class",
    "backend_for",
    "backend_names",
    "device_from_dict",
    "load_device_file",
    "local_cpu_spec",
    "presets",
    "register_backend",
]

PRESETS_DIR = data_path("devices")
LOCAL_CPU = "cpu-local"
LOCAL_CPUS = {DEFAULT_RUNTIME: LOCAL_CPU, "onnxruntime": "cpu-local-ort"}  # this CPU, one device per runtime

_KEYS = {"name", "kind", "backend", "description", "params", "references", "runtime"}
FILE_PARAMS = ("hardware", "mapping")  # parameters naming a file the backend reads (zigzag)


def _check_backend(name: str, obj: object) -> type[Backend]:
    """``obj`` as a concrete :class:`Backend` subclass whose ``name`` is ``name``."""
    if not (isinstance(obj, type) and issubclass(obj, Backend)) or inspect.isabstract(obj):
        got = f"class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginError(f"hwpareto.backends plugin {name!r}: expected a concrete Backend subclass, got {got}")
    if not isinstance(getattr(obj, "measures", None), bool) or not _kinds(getattr(obj, "kinds", None)):
        raise PluginError(
            f"hwpareto.backends plugin {name!r}: expected class attributes kinds (a tuple of device kind names) and "
            "measures (True: times real hardware, False: simulates)"
        )
    if getattr(obj, "name", None) != name:
        raise PluginError(
            f"hwpareto.backends plugin {name!r}: expected a Backend named {name!r}, got {getattr(obj, 'name', None)!r}"
        )
    return obj


def _kinds(kinds: object) -> bool:
    """Whether ``kinds`` is a non-empty tuple of valid names."""
    try:
        return isinstance(kinds, tuple) and bool(kinds) and all(check_name("kind", k) for k in kinds)
    except InvalidValueError:
        return False


_BACKENDS: Registry[type[Backend]] = Registry("hwpareto.backends", "device.backend", _check_backend)


def backend_names() -> list[str]:
    """Names of the installed (``hwpareto.backends`` entry points) and code-registered backends."""
    return _BACKENDS.names()


def backend_class(name: str) -> type[Backend]:
    """The :class:`Backend` subclass registered as ``name`` (imported on first use, so optional simulators cost
    nothing until needed)."""
    return _BACKENDS.get(name)


def register_backend(name: str, cls: type[Backend], *, replace: bool = False) -> type[Backend]:
    """Register ``cls`` (a concrete :class:`Backend` subclass with ``cls.name == name``) in this process; an
    installed or registered name needs ``replace``. Worker processes started with ``spawn`` do not see it: ship
    backends used with ``workers > 1`` as entry points."""
    return _BACKENDS.register(name, cls, replace=replace)


def backend_for(spec: DeviceSpec) -> Backend:
    """Instantiate (and validate) the backend of ``spec``."""
    return backend_class(spec.backend)(spec)


def device_from_dict(doc: Any, source: str = "device spec") -> DeviceSpec:
    """Parse and validate a device document; errors name the field, the allowed values and the value."""
    if not isinstance(doc, Mapping):
        raise InvalidValueError(source, "a mapping with name, kind, backend, params", type(doc).__name__)
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InvalidValueError(source, "only the keys " + ", ".join(sorted(_KEYS)), unknown)
    for required in ("name", "kind", "backend"):
        if required not in doc:
            raise InvalidValueError(f"{source}: {required}", "a value (required field)", "nothing")
    name = doc["name"]
    check_name(f"{source}: name", name)
    kind = check_name(f"{source}: kind", doc["kind"])  # its backend says which kinds it serves
    backend = doc["backend"]
    if backend not in _BACKENDS:
        raise InvalidValueError(f"{source}: backend", "one of " + ", ".join(backend_names()), backend)
    runtime = doc.get("runtime", DEFAULT_RUNTIME)
    if runtime not in runtime_names():
        raise InvalidValueError(f"{source}: runtime", "one of " + ", ".join(runtime_names()), runtime)
    params = doc.get("params") or {}
    if not isinstance(params, Mapping):
        raise InvalidValueError(f"{source}: params", "a mapping", params)
    references = doc.get("references") or []
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise InvalidValueError(f"{source}: references", "a list of strings", references)
    spec = DeviceSpec(name, kind, backend, dict(params), str(doc.get("description", "")), tuple(references), runtime)
    backend_for(spec)  # validates params for this backend
    return spec


def load_device_file(path: str | Path) -> DeviceSpec:
    """Read a device spec from YAML/JSON."""
    p = Path(path)
    doc = load_yaml(p, "device file")
    if isinstance(doc, Mapping) and isinstance(doc.get("params"), Mapping):
        doc = {**doc, "params": _confined_files(doc["params"], p, str(p))}
    return device_from_dict(doc, source=str(p))


def _confined_files(params: Mapping[str, Any], path: Path, source: str) -> dict[str, Any]:
    """``params`` with each file parameter (``hardware``, ``mapping``) that is a path resolved against the device
    file's folder and made absolute; a path outside the shipped ``data/devices/`` folder and the device file's own
    folder is refused, so a device file (or an upload) cannot make the server read any ``*.yaml`` it can reach."""
    out = dict(params)
    own = path.resolve().parent
    for key in FILE_PARAMS:
        value = out.get(key)
        if not isinstance(value, str) or not any(c in value for c in "/\\.~"):
            continue  # a preset name (or not a string: the backend names the problem)
        target = (own / Path(value)).resolve()
        if not any(target.is_relative_to(root) for root in (PRESETS_DIR.resolve(), own)):
            raise InvalidValueError(
                f"{source}: params.{key}",
                f"a preset name, or a .yaml file in the device file's own folder or under {PRESETS_DIR}",
                value,
            )
        out[key] = str(target)
    return out


def presets() -> dict[str, DeviceSpec]:
    """The shipped device presets (``data/devices/*.yaml``), by name."""
    specs = [load_device_file(p) for p in sorted(PRESETS_DIR.glob("*.yaml"))]
    return {s.name: s for s in specs}


def local_cpu_spec(threads: int = 1, runtime: str = DEFAULT_RUNTIME) -> DeviceSpec:
    """This machine's CPU in ``runtime`` on a fixed number of threads (1 by default, the most repeatable setting):
    the device ``cpu-local`` (PyTorch eager) or ``cpu-local-ort`` (ONNX Runtime), :data:`LOCAL_CPUS`; another
    runtime is named ``cpu-local-<runtime>``."""
    if runtime not in runtime_names():
        raise InvalidValueError("runtime", "one of " + ", ".join(runtime_names()), runtime)
    shown = "PyTorch eager execution" if runtime == DEFAULT_RUNTIME else f"runtime {runtime}"
    return DeviceSpec(
        LOCAL_CPUS.get(runtime, f"{LOCAL_CPU}-{runtime}"),
        "cpu",
        "torch-cpu",
        {"threads": threads},
        f"This machine's CPU, timed with {shown} on {threads} thread(s)",
        runtime=runtime,
    )
