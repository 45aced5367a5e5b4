"""The ``torch-cpu`` backend: real timing of layers and extracted SubNets on this machine's CPU; the phase hook
(:func:`phase_calls`, :func:`measure_phases`) that times an LLM SubNet's prefill and decode step, shared with the CUDA
backend."""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import math
import os
import platform
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from hwpareto.errors import CapabilityError, InvalidValueError
from profilers._base import Backend, Cost, DeviceSpec, param
from profilers._modules import layer_module
from profilers._runtimes import LoweringError, Runtime, runtime_class
from profilers._timing import TimingPolicy, TimingResult, time_calls
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["CpuBackend", "PhaseCalls", "cpu_model", "measure_phases", "phase_calls"]


def cpu_model() -> str:
    """The processor's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True, slots=True)
class PhaseCalls:
    """The two calls that time an LLM SubNet as its LUT keys model it (see ``HFCausalLMSpace.layers``).

    ``prefill()`` runs ``sequences`` × ``prompt_len`` tokens with ``use_cache=True`` (a fresh KV cache; logits of
    every prompt token): time to first token. ``decode()`` (None when ``gen_len`` is 0) first crops the KV cache
    prepared once by :func:`phase_calls` back to ``context`` = ``prompt_len + gen_len // 2`` tokens, then runs one
    step of ``sequences`` × 1 token against it, so every call does the same work: time per output token. Both
    return the model output (``logits``) and run under ``torch.inference_mode``."""

    prefill: Callable[[], Any]
    decode: Callable[[], Any] | None
    context: int
    sequences: int


def phase_calls(
    space: SearchSpace, model: Any, config: SubNetConfig, batch: int = 1, device: Any = None
) -> PhaseCalls | None:
    """The phase hook: :class:`PhaseCalls` of the extracted ``model`` (a transformers ``*ForCausalLM``, already on
    ``device``) when ``space.layers`` carries phases (the Llama family), else None (time one forward). Token ids
    are drawn with seed 0; ``sequences`` is ``config["batch"]`` × ``batch``."""
    try:
        phased = any(spec.phase for spec in space.layers(config))
    except CapabilityError:
        phased = False
    if not phased:
        return None
    b = int(config["batch"]) * batch
    p, g = int(config["prompt_len"]), int(config["gen_len"])
    context = p + g // 2
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    prompt = torch.randint(0, vocab, (b, p), generator=gen).to(device)
    history = torch.randint(0, vocab, (b, context), generator=gen).to(device)
    token = torch.randint(0, vocab, (b, 1), generator=gen).to(device)

    def prefill() -> Any:
        with torch.inference_mode():
            return model(input_ids=prompt, use_cache=True).logits

    if g == 0:
        return PhaseCalls(prefill, None, p, b)
    # transformers renamed past_key_values to cache (5.x): use the name this version's forward takes
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():  # the cache of the context, built once
        cache = model(input_ids=history, use_cache=True)[name]

    def decode() -> Any:
        with torch.inference_mode():
            extra = cache.get_seq_length() - context
            if extra:
                cache.crop(-extra)
            return model(input_ids=token, use_cache=True, **{name: cache}).logits

    return PhaseCalls(prefill, decode, context, b)


def measure_phases(calls: PhaseCalls, measure: Callable[[Callable[[], Any]], Cost]) -> Cost:
    """The SubNet's cost as the LUT-sum of an LLM space means it: prefill + one decode step (latency, energy when
    ``measure`` reports it), each phase's own :class:`Cost` (``measure(fn)`` times one call) in
    ``details["phases"]`` under ``prefill`` / ``decode``, and ``details["sequences"]`` (divide decode energy by it
    for energy per generated token)."""
    phases = {"prefill": measure(calls.prefill)}
    if calls.decode is not None:
        phases["decode"] = measure(calls.decode)
    total = phases["prefill"] + phases["decode"] if "decode" in phases else phases["prefill"]
    return Cost(
        total.latency_ms,
        total.latency_ms_std,
        total.energy_mj,
        None,
        total.n,
        {"phases": phases, "sequences": calls.sequences, "context": calls.context},
    )


CLOCKS = ("wall", "thread")
MAX_COPIES = 64


def _thread_ms(fn: Callable[[], object]) -> float:
    """CPU time of the calling thread spent in one call of ``fn`` (ms)."""
    t0 = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - t0) / 1e6


class CpuBackend(Backend):
    """Times the device's runtime (PyTorch eager by default; ``runtime: onnxruntime`` and any other
    ``hwpareto.runtimes`` plugin: the layer or SubNet lowered once, then its artefact timed; ``params.precision``
    one of those the runtime takes, default fp32) on the CPU with a fixed thread count: warm-up, then per-call
    samples until a window
    of ``min_window_ms`` (default 100 ms) and ``min_samples``; the median of the samples left after outlier
    rejection (``outlier_mads`` MADs) is the latency, their standard deviation the spread. ``clock`` ``wall``
    (default) times elapsed time; ``thread`` (with ``threads`` 1, where PyTorch runs every op on the calling
    thread, as ONNX Runtime's one intra-op thread is the caller) the CPU time of that thread, which leaves out the
    time the OS gives other processes: steadier figures
    on a machine shared with other jobs. ``cold_weights_mb`` (default 0: off) times a layer cycling through copies
    of it whose parameters total at least that many MiB (at most :data:`MAX_COPIES`): set above the last-level
    cache, a layer's weights then come from memory as in a whole network pass, where the other layers evict them
    (memory-bound LLM decode steps are otherwise timed too fast; PyTorch eager only). LLM SubNets are timed by
    phase in PyTorch eager only. No energy counter is read (``energy_mj`` is None)."""

    name = "torch-cpu"
    kinds = ("cpu",)
    measures = True
    takes_runtime = True

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        p = device.params
        owner = f"device {device.name!r} params"
        self.threads: int = param(p, "threads", int, 1, low=1, high=1024, owner=owner)
        self.policy = TimingPolicy(
            warmup_calls=param(p, "warmup_calls", int, 3, low=0, owner=owner),
            min_window_ms=param(p, "min_window_ms", float, 100.0, low=1.0, owner=owner),
            min_samples=param(p, "min_samples", int, 5, low=1, owner=owner),
            outlier_mads=param(p, "outlier_mads", float, 5.0, low=1.0, owner=owner),
        )
        self.clock: str = param(p, "clock", str, "wall", owner=owner)
        self.cold_weights_mb: float = param(p, "cold_weights_mb", float, 0.0, low=0.0, high=65_536.0, owner=owner)
        if self.clock not in CLOCKS or (self.clock == "thread" and self.threads != 1):
            allowed = "wall or thread" if self.clock not in CLOCKS else "wall (thread needs threads: 1)"
            raise InvalidValueError(f"{owner}.clock", allowed, self.clock)
        precision: str = param(p, "precision", str, "fp32", owner=owner)
        runtime = runtime_class(device.runtime)
        try:
            self.runtime: Runtime = runtime(self.threads, precision)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{owner}.precision", exc.allowed, precision) from None
        if self.cold_weights_mb > 0 and device.runtime != "torch":
            raise InvalidValueError(f"{owner}.cold_weights_mb", "0 (PyTorch eager only)", self.cold_weights_mb)
        self._supernets: dict[str, torch.nn.Module] = {}

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _cost(self, fn: Callable[[], Any]) -> Cost:
        with torch.inference_mode():
            t: TimingResult = time_calls(fn, self.policy, timer=self._timer())
        return Cost(t.median_ms, t.std_ms, None, None, t.n, {"outliers": t.outliers, "window_ms": t.window_ms})

    def _timer(self) -> Callable[[Callable[[], object]], float] | None:
        return _thread_ms if self.clock == "thread" else None

    def check(self) -> None:
        """The device's runtime is installed here."""
        self.runtime.check()

    def _lowered(self, module: torch.nn.Module, x: Any, what: str) -> Cost:
        """``module`` lowered to the device's runtime once, then timed there."""
        try:
            artefact = self.runtime.lower(module, x)
        except LoweringError as exc:
            raise LoweringError(f"device {self.device.name!r}: {what}: {exc}") from exc
        t = self.runtime.time(artefact, x, self.policy, self._timer())
        return Cost(t.median_ms, t.std_ms, None, None, t.n, {"outliers": t.outliers, "window_ms": t.window_ms})

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        """One layer alone; in a runtime other than PyTorch eager, lowered alone (no fusion with its neighbours)."""
        module, x = layer_module(spec, batch)
        if self.device.runtime != "torch":
            return self._lowered(module, x, f"layer {spec.key}")
        copies = itertools.cycle(self._copies(module))
        with self._threads():
            return self._cost(lambda: next(copies)(x))

    def _copies(self, module: torch.nn.Module) -> list[torch.nn.Module]:
        """``module`` and enough copies that their parameters total ``cold_weights_mb`` (just it when 0)."""
        size_mb = sum(t.numel() * t.element_size() for t in module.parameters()) / 2**20
        if self.cold_weights_mb <= 0 or size_mb <= 0:
            return [module]
        n = min(MAX_COPIES, math.ceil(self.cold_weights_mb / size_mb))
        return [module, *(copy.deepcopy(module) for _ in range(n - 1))]

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        """One forward of the extracted SubNet, lowered once to the device's runtime (PyTorch eager: the module
        itself); for LLM spaces (PyTorch eager only) its prefill and one decode step (:func:`measure_phases`)."""
        if space.name not in self._supernets:
            self._supernets[space.name] = space.supernet(seed=0)
        module = space.extract(self._supernets[space.name], config).eval()
        with self._threads():
            calls = phase_calls(space, module, config, batch)
            if calls is not None:
                if self.device.runtime != "torch":
                    raise CapabilityError(
                        f"device {self.device.name!r}: runtime {self.device.runtime} does not time LLM SubNets by "
                        "phase yet: measure them on a device of runtime torch"
                    )
                return measure_phases(calls, self._cost)
            return self._lowered(module, space.dummy_input(config, batch), f"SubNet {config.key}")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "host": socket.gethostname(),
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "threads": self.threads,
            "clock": self.clock,
            "cold_weights_mb": self.cold_weights_mb,
            "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **({} if self.device.runtime == "torch" else {"runtime": self.runtime.describe()}),
            "timing": {
                "warmup_calls": self.policy.warmup_calls,
                "min_window_ms": self.policy.min_window_ms,
                "min_samples": self.policy.min_samples,
                "outlier_mads": self.policy.outlier_mads,
            },
            "energy": "not measured (no CPU energy counter read)",
        }
