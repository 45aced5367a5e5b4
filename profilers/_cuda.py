"""The ``torch-cuda`` backend: CUDA-event timing and NVML energy of layers and extracted SubNets on an NVIDIA GPU.

Latency: CUDA events around each call, synchronised, under the same repeat-until-window policy as the CPU.
Energy: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since driver load,
supported from Volta on) read before and after a window of back-to-back calls lasting at least
``energy_window_ms`` (default 1 s, well above the counter's update period of roughly 20-100 ms), minus the
idle power (sampled over ``idle_ms`` before profiling) times the window, divided by the calls. The counter's
resolution (1 mJ) and the idle power are recorded in the provenance.

LLM SubNets (spaces whose layers carry phases) are timed through the CPU backend's phase hook
(:func:`profilers._cpu.phase_calls`): prefill and one decode step, each with its own energy window.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from hwpareto.errors import HwparetoError
from profilers._base import Backend, Cost, DeviceSpec, param
from profilers._cpu import measure_phases, phase_calls
from profilers._modules import layer_module
from profilers._timing import TimingPolicy, time_calls
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["CudaBackend"]

COUNTER_RESOLUTION_MJ = 1.0


class CudaBackend(Backend):
    """Real GPU timing (CUDA events) and energy (NVML counter minus idle power)."""

    name = "torch-cuda"
    kinds = ("cuda",)
    measures = True

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        p, owner = device.params, f"device {device.name!r} params"
        self.index: int = param(p, "device_index", int, 0, low=0, owner=owner)
        self.energy: bool = param(p, "energy", bool, True, owner=owner)
        self.energy_window_ms: float = param(p, "energy_window_ms", float, 1000.0, low=100.0, owner=owner)
        self.idle_ms: float = param(p, "idle_ms", float, 2000.0, low=100.0, owner=owner)
        self.policy = TimingPolicy(
            warmup_calls=param(p, "warmup_calls", int, 10, low=0, owner=owner),
            min_window_ms=param(p, "min_window_ms", float, 100.0, low=1.0, owner=owner),
            min_samples=param(p, "min_samples", int, 10, low=1, owner=owner),
            outlier_mads=param(p, "outlier_mads", float, 5.0, low=1.0, owner=owner),
        )
        self._idle_w: float | None = None
        self._supernets: dict[str, torch.nn.Module] = {}

    def check(self) -> None:
        if not torch.cuda.is_available() or torch.cuda.device_count() <= self.index:
            raise HwparetoError(
                f"device {self.device.name!r}: no CUDA GPU {self.index} on this machine "
                f"(torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})"
            )

    @property
    def _cuda(self) -> torch.device:
        self.check()
        return torch.device("cuda", self.index)

    def _nvml(self) -> Any:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(self.index)

    def _energy_counter_mj(self) -> float:
        nvml, handle = self._nvml()
        return float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def _idle_power_w(self) -> float:
        if self._idle_w is None:
            torch.cuda.synchronize(self._cuda)
            e0, t0 = self._energy_counter_mj(), time.perf_counter()
            time.sleep(self.idle_ms / 1e3)
            self._idle_w = (self._energy_counter_mj() - e0) / ((time.perf_counter() - t0) * 1e3)
        return self._idle_w

    def _event_ms(self, fn: Any) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    def _cost(self, fn: Any) -> Cost:
        """Time ``fn`` (one call, inputs already on the GPU) and, with ``energy``, its energy per call."""
        dev = self._cuda
        with torch.inference_mode():
            t = time_calls(fn, self.policy, timer=self._event_ms)
            energy = energy_std = None
            if self.energy:
                idle_w = self._idle_power_w()
                calls = max(1, int(self.energy_window_ms / max(t.median_ms, 1e-3)))
                torch.cuda.synchronize(dev)
                e0, t0 = self._energy_counter_mj(), time.perf_counter()
                for _ in range(calls):
                    fn()
                torch.cuda.synchronize(dev)
                elapsed_ms = (time.perf_counter() - t0) * 1e3
                active_mj = self._energy_counter_mj() - e0 - idle_w * elapsed_ms
                energy = max(active_mj, 0.0) / calls
                energy_std = COUNTER_RESOLUTION_MJ / calls  # counter quantisation over the window
        return Cost(t.median_ms, t.std_ms, energy, energy_std, t.n, {"outliers": t.outliers})

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        module, x = layer_module(spec, batch)
        module, x = module.to(self._cuda), x.to(self._cuda)
        return self._cost(lambda: module(x))

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        """One forward of the extracted SubNet; for LLM spaces its prefill and one decode step, energy per
        phase (:func:`~profilers._cpu.measure_phases`)."""
        if space.name not in self._supernets:
            self._supernets[space.name] = space.supernet(seed=0)
        module = space.extract(self._supernets[space.name], config).eval().to(self._cuda)
        calls = phase_calls(space, module, config, batch, self._cuda)
        if calls is not None:
            return measure_phases(calls, self._cost)
        x = space.dummy_input(config, batch).to(self._cuda)
        return self._cost(lambda: module(x))

    def describe(self) -> dict[str, Any]:
        self.check()
        props = torch.cuda.get_device_properties(self.index)
        info: dict[str, Any] = {
            "backend": self.name,
            "gpu": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "timing": f"CUDA events, synchronised; median of per-call samples over >= {self.policy.min_window_ms} ms",
        }
        if self.energy:
            nvml, _ = self._nvml()
            info["driver"] = nvml.nvmlSystemGetDriverVersion()
            info["energy"] = {
                "counter": "nvmlDeviceGetTotalEnergyConsumption",
                "resolution_mj": COUNTER_RESOLUTION_MJ,
                "window_ms": self.energy_window_ms,
                "idle_power_w": self._idle_power_w(),
            }
        return info
