"""Deployment runtimes: what a SubNet is lowered to and timed in on a device (PyTorch eager, ONNX Runtime), and the
``hwpareto.runtimes`` registry (entry points plus runtimes registered in code)."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.plugins import PluginError, Registry
from profilers._timing import TimingPolicy, TimingResult, time_calls

__all__ = [
    "DEFAULT_RUNTIME",
    "LoweringError",
    "OnnxRuntime",
    "OpenVinoRuntime",
    "Runtime",
    "TorchRuntime",
    "register_runtime",
    "runtime_class",
    "runtime_names",
]

DEFAULT_RUNTIME = "torch"
Timer = Callable[[Callable[[], object]], float]


class LoweringError(HwparetoError):
    """A runtime cannot lower a module (export or compilation failed); the message carries the runtime's reason."""


class Runtime(ABC):
    """How a device runs a model: lowering a PyTorch module to the runtime's artefact, and timing the artefact.

    Contract for a runtime (built-in or a plugin of the ``hwpareto.runtimes`` entry-point group, whose object is the
    class; or registered in code with :func:`profilers.register_runtime`):

    - required: ``name`` (the ``runtime`` value in device YAML, equal to the entry-point name), :meth:`lower`
      (``module`` + example input → the artefact; a failure is a :class:`LoweringError` with the runtime's reason)
      and :meth:`time` (the artefact timed per call on an input under a :class:`TimingPolicy`);
      ``__init__(threads, precision)`` must be cheap and must not import the runtime's package;
    - optional: ``precisions`` (those it takes; default ``fp32`` only), ``package`` and ``extra`` (the import name
      of the package it needs and the hwpareto extra installing it: :meth:`check` reports a missing one in one
      line), :meth:`describe` (versions, settings).

    The backend sets the thread count it measures with (a device's ``params.threads``); the runtime applies it.
    """

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    package: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None

    def __init__(self, threads: int = 1, precision: str = "fp32") -> None:
        if precision not in self.precisions:
            raise InvalidValueError(
                "params.precision", f"one of {', '.join(self.precisions)} for runtime {self.name}", precision
            )
        self.threads = threads
        self.precision = precision

    def check(self) -> None:
        """Raise a one-line :class:`HwparetoError` naming what to install when the runtime's package is missing."""
        if self.package is not None and importlib.util.find_spec(self.package) is None:
            install = f"pip install 'hwpareto[{self.extra}]'" if self.extra else f"pip install {self.package}"
            raise HwparetoError(f"runtime {self.name} needs the Python package {self.package}: {install}")

    @abstractmethod
    def lower(self, module: torch.nn.Module, example_input: Any) -> Any:
        """The artefact the runtime executes for ``module`` (in eval mode) on inputs shaped like ``example_input``."""

    @abstractmethod
    def time(self, artefact: Any, example_input: Any, policy: TimingPolicy, timer: Timer | None = None) -> TimingResult:
        """Per-call latency (ms) of ``artefact`` on ``example_input`` under ``policy``; ``timer`` as in
        :func:`profilers._timing.time_calls` (None: wall clock)."""

    def describe(self) -> dict[str, Any]:
        """Provenance of the runtime: name, version, settings."""
        return {"name": self.name, "threads": self.threads, "precision": self.precision}


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchRuntime(Runtime):
    """PyTorch eager: the module itself, called under ``torch.inference_mode`` on ``threads`` intra-op threads."""

    name = "torch"

    def lower(self, module: torch.nn.Module, example_input: Any) -> Any:
        return module.eval()

    def time(self, artefact: Any, example_input: Any, policy: TimingPolicy, timer: Timer | None = None) -> TimingResult:
        with _torch_threads(self.threads), torch.inference_mode():
            return time_calls(lambda: artefact(example_input), policy, timer=timer)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "torch": torch.__version__}


@contextlib.contextmanager
def _lowering(runtime: Runtime) -> Iterator[None]:
    """A failure inside as a :class:`LoweringError` carrying the first line of the exporter's or runtime's reason."""
    try:
        yield
    except LoweringError:
        raise
    except Exception as exc:  # the exporter's and the runtimes' errors have no common base
        reason = next(iter(str(exc).splitlines()), "")
        raise LoweringError(f"runtime {runtime.name} cannot lower it: {type(exc).__name__}: {reason}") from exc


@contextlib.contextmanager
def _onnx_file(runtime: Runtime, module: torch.nn.Module, example_input: Any, opset: int) -> Iterator[Path]:
    """``module`` exported to a temporary ONNX file (TorchScript-based exporter, as bundles are; input ``input``,
    output ``output``), removed on exit; the exporter's chatter silenced."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix=f"hwpareto-{runtime.name}-") as tmp:
            path = Path(tmp) / "model.onnx"
            with _lowering(runtime), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module.eval(),
                    (example_input,),
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["output"],
                )
            yield path
    finally:
        onnx_logger.setLevel(level)


class OnnxRuntime(Runtime):
    """ONNX Runtime on its CPU execution provider, as a deployment runs it: the module exported to ONNX (opset
    :attr:`opset`, TorchScript-based exporter, as bundles are), a session with graph optimisation level
    ``ORT_ENABLE_ALL`` (constant folding, conv + batch norm + activation and GEMM fusions, layout transforms),
    ``threads`` intra-op threads, one inter-op thread, sequential execution. Input and output are ``input`` and
    ``output``; the input is fed as a NumPy array."""

    name = "onnxruntime"
    package = "onnxruntime"
    opset: ClassVar[int] = 17

    def lower(self, module: torch.nn.Module, example_input: Any) -> Any:
        import onnxruntime as ort

        with _onnx_file(self, module, example_input, self.opset) as path, _lowering(self):
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def time(self, artefact: Any, example_input: Any, policy: TimingPolicy, timer: Timer | None = None) -> TimingResult:
        feed = {"input": example_input.detach().cpu().numpy()}
        return time_calls(lambda: artefact.run(None, feed), policy, timer=timer)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            **super().describe(),
            "onnxruntime": ort.__version__,
            "provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL",
            "opset": self.opset,
        }


def _check_runtime(name: str, obj: object) -> type[Runtime]:
    """``obj`` as a concrete :class:`Runtime` subclass whose ``name`` is ``name``."""
    if not (isinstance(obj, type) and issubclass(obj, Runtime)) or inspect.isabstract(obj):
        got = f"class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginError(f"hwpareto.runtimes plugin {name!r}: expected a concrete Runtime subclass, got {got}")
    precisions = getattr(obj, "precisions", None)
    if not (isinstance(precisions, tuple) and precisions and all(isinstance(p, str) for p in precisions)):
        raise PluginError(f"hwpareto.runtimes plugin {name!r}: expected precisions, a tuple of names such as ('fp32',)")
    if getattr(obj, "name", None) != name:
        raise PluginError(
            f"hwpareto.runtimes plugin {name!r}: expected a Runtime named {name!r}, got {getattr(obj, 'name', None)!r}"
        )
    return obj


_RUNTIMES: Registry[type[Runtime]] = Registry("hwpareto.runtimes", "device.runtime", _check_runtime)


def runtime_names() -> list[str]:
    """Names of the installed (``hwpareto.runtimes`` entry points) and code-registered runtimes."""
    return _RUNTIMES.names()


def runtime_class(name: str) -> type[Runtime]:
    """The :class:`Runtime` subclass registered as ``name``."""
    return _RUNTIMES.get(name)


def register_runtime(name: str, cls: type[Runtime], *, replace: bool = False) -> type[Runtime]:
    """Register ``cls`` (a concrete :class:`Runtime` subclass with ``cls.name == name``) in this process; an installed
    or registered name needs ``replace``. Worker processes started with ``spawn`` do not see it."""
    return _RUNTIMES.register(name, cls, replace=replace)


class OpenVinoRuntime(Runtime):
    """OpenVINO on its CPU plugin: the module exported to ONNX as for :class:`OnnxRuntime` and read by OpenVINO
    directly, compiled for latency (one stream, ``threads`` inference threads) at the precision asked for. fp32 is
    forced (``INFERENCE_PRECISION_HINT`` ``f32``): OpenVINO's own default on CPUs with AMX or AVX-512 BF16 is bf16,
    whose outputs differ from PyTorch's by about 4e-2 (benchmarks/results/runtimes.md)."""

    name = "openvino"
    package = "openvino"
    extra = "openvino"

    def lower(self, module: torch.nn.Module, example_input: Any) -> Any:
        import openvino as ov

        with _onnx_file(self, module, example_input, opset=17) as path, _lowering(self):
            core = ov.Core()
            config = {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": self.threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
            }
            return core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()

    def time(self, artefact: Any, example_input: Any, policy: TimingPolicy, timer: Timer | None = None) -> TimingResult:
        feed = {0: example_input.detach().cpu().numpy()}
        return time_calls(lambda: artefact.infer(feed), policy, timer=timer)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        return {**super().describe(), "openvino": ov.get_version(), "device": "CPU", "inference_precision": "f32"}
