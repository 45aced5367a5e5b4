"""The ``torch-cpu`` backend: real timing of layers and extracted SubNets on this machine's CPU."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Iterator
from typing import Any

import torch

from profilers._base import Backend, Cost, DeviceSpec, param
from profilers._modules import layer_module
from profilers._timing import TimingPolicy, TimingResult, time_calls
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["CpuBackend", "cpu_model"]


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


class CpuBackend(Backend):
    """Times eager PyTorch on the CPU with a fixed thread count: warm-up, then per-call samples until a window
    of ``min_window_ms`` (default 100 ms) and ``min_samples``; the median of the samples left after outlier
    rejection (``outlier_mads`` MADs) is the latency, their standard deviation the spread. No energy counter is
    read (``energy_mj`` is None)."""

    name = "torch-cpu"
    kinds = ("cpu",)

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
        self._supernets: dict[str, torch.nn.Module] = {}

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _time(self, module: torch.nn.Module, x: torch.Tensor) -> TimingResult:
        with self._threads(), torch.inference_mode():
            return time_calls(lambda: module(x), self.policy)

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        module, x = layer_module(spec, batch)
        t = self._time(module, x)
        return Cost(t.median_ms, t.std_ms, None, None, t.n, {"outliers": t.outliers, "window_ms": t.window_ms})

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        if space.name not in self._supernets:
            self._supernets[space.name] = space.supernet(seed=0)
        module = space.extract(self._supernets[space.name], config).eval()
        t = self._time(module, space.dummy_input(config, batch))
        return Cost(t.median_ms, t.std_ms, None, None, t.n, {"outliers": t.outliers, "window_ms": t.window_ms})

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "host": socket.gethostname(),
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "threads": self.threads,
            "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "timing": {
                "warmup_calls": self.policy.warmup_calls,
                "min_window_ms": self.policy.min_window_ms,
                "min_samples": self.policy.min_samples,
                "outlier_mads": self.policy.outlier_mads,
            },
            "energy": "not measured (no CPU energy counter read)",
        }
