"""Rank agreement of deployment runtimes on this CPU (issue 30): the same random SubNets timed end to end in torch
eager, ONNX Runtime and OpenVINO; results go to docs/BENCHMARKS.md.

  .venv/bin/python benchmarks/bench_runtimes.py                        # 100 SubNets of mbv3-digits and of mbv3
  .venv/bin/python benchmarks/bench_runtimes.py --space mbv3-digits --n 10   # a quick run

Per space: ``--n`` distinct random SubNets (``--seed``), each extracted from the space's SuperNet (seed 0, as
``hwpareto measure`` does), exported once to ONNX (opset 17, TorchScript exporter, as bundles are) and timed at batch
1 on one thread in torch eager, ONNX Runtime (CPU EP, ``ORT_ENABLE_ALL``) and OpenVINO (CPU, the ONNX file read
directly; ``--openvino-precision``, default f32: OpenVINO's own CPU default is bf16 where the CPU has AMX or AVX-512
BF16; left out when ``openvino`` is not importable). The runtimes are interleaved per SubNet (``--rounds`` rounds,
each timing every runtime once over about ``--window-ms``), so machine load hits them alike; a SubNet's latency in a
runtime is the median of its rounds. Each runtime's output is compared with torch's (largest difference printed).
Per pair of runtimes: Spearman of the latencies, the speed ratio (median, min-max) and the front overlap, the front
being the SubNets non-dominated on (latency in that runtime, MACs as the quality proxy, maximised). Prints Markdown
and writes results/runtimes.md (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from scipy.stats import spearmanr

from pareto import non_dominated_mask
from supernet import SearchSpace, SubNetConfig, get_space

RESULTS = Path(__file__).resolve().parent / "results" / "runtimes.md"
SPACES = ("mbv3-digits", "mbv3")


def sample_distinct(space: SearchSpace, n: int, seed: int) -> list[SubNetConfig]:
    """``n`` random SubNets of ``space``, no architecture twice."""
    rng = np.random.default_rng(seed)
    configs: dict[str, SubNetConfig] = {}
    while len(configs) < n:
        config = space.sample(rng)
        configs.setdefault(space.arch_key(config), config)
    return list(configs.values())


def export_onnx(module: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """``module`` as ONNX opset 17 through torch's TorchScript-based exporter (the bundles' path), quietly."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["output"]
        )


def ort_runner(path: Path, x: np.ndarray) -> Callable[[], object]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": x}
    return lambda: session.run(None, feed)[0]


def openvino_runner(core: Any, path: Path, x: np.ndarray, precision: str) -> Callable[[], object]:
    settings = {
        "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    }
    compiled = core.compile_model(str(path), "CPU", settings)
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})[0]


def timed_rounds(runners: dict[str, Callable[[], object]], rounds: int, window_ms: float) -> dict[str, float]:
    """Per runtime, ms per call: the median of ``rounds`` rounds, each timing every runtime in turn over about
    ``window_ms`` (the call count per round fixed from a warm-up)."""
    calls: dict[str, int] = {}
    for name, fn in runners.items():
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, math.ceil(window_ms / max((time.perf_counter() - t0) * 1e3, 1e-3)))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            t0 = time.perf_counter_ns()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter_ns() - t0) / 1e6 / calls[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def measure_space(
    space: SearchSpace, n: int, seed: int, rounds: int, window_ms: float, ov_precision: str
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Latency (ms) of ``n`` random SubNets of ``space`` per runtime, and their MACs under ``"macs"``; per runtime
    other than torch, the largest absolute difference of its output from torch's over the SubNets."""
    core = None
    with contextlib.suppress(ImportError):
        import openvino

        core = openvino.Core()
    supernet = space.supernet(seed=0)
    configs = sample_distinct(space, n, seed)
    latency: dict[str, list[float]] = {}
    error: dict[str, float] = {}
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i, config in enumerate(configs):
            module = space.extract(supernet, config).eval()
            x = space.dummy_input(config, 1)
            path = Path(tmp) / f"{i}.onnx"
            export_onnx(module, x, path)
            runners: dict[str, Callable[[], object]] = {
                "torch eager": functools.partial(module, x),
                "ONNX Runtime": ort_runner(path, x.numpy()),
            }
            if core is not None:
                runners["OpenVINO"] = openvino_runner(core, path, x.numpy(), ov_precision)
            with torch.inference_mode():
                expected = module(x).numpy()
                for name, fn in list(runners.items())[1:]:
                    error[name] = max(error.get(name, 0.0), float(np.abs(np.asarray(fn()) - expected).max()))
                timings = timed_rounds(runners, rounds, window_ms)
            for name, ms in timings.items():
                latency.setdefault(name, []).append(ms)
            path.unlink()
            print(f"  {space.name}: {i + 1}/{n} SubNets, {time.monotonic() - start:.0f} s", end="\r", flush=True)
    print()
    macs = {"macs": np.array([space.macs(c) for c in configs], float)}
    return macs | {k: np.array(v) for k, v in latency.items()}, error


def pair_rows(lat: dict[str, np.ndarray]) -> list[str]:
    """One Markdown row per pair of runtimes: Spearman, speed ratio, front overlap both ways."""
    macs = lat["macs"]
    names = [k for k in lat if k != "macs"]
    fronts = {k: non_dominated_mask(np.c_[lat[k], macs], ["minimize", "maximize"]) for k in names}
    rows = []
    for a, b in itertools.combinations(names, 2):
        rho = spearmanr(lat[a], lat[b]).statistic
        ratio = lat[a] / lat[b]
        both = int((fronts[a] & fronts[b]).sum())
        rows.append(
            f"| {a} vs {b} | {rho:.2f} | {np.median(ratio):.2f}× ({ratio.min():.2f}–{ratio.max():.2f}×) | "
            f"{both} of {int(fronts[a].sum())} | {both} of {int(fronts[b].sum())} |"
        )
    return rows


def versions() -> str:
    parts = [f"torch {torch.__version__}", f"onnxruntime {ort.__version__}"]
    with contextlib.suppress(ImportError):
        import openvino

        parts.append(f"openvino {openvino.__version__.split('-')[0]}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=SPACES, action="append", help="repeatable; default: both")
    parser.add_argument("--n", type=int, default=100, help="SubNets per space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per SubNet")
    parser.add_argument("--window-ms", type=float, default=20.0, help="timed work per runtime per round")
    parser.add_argument("--openvino-precision", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line for the results' head, e.g. the machine's load")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; {versions()} (OpenVINO at "
        f"{args.openvino_precision}); batch 1, one thread; {args.rounds} interleaved rounds of ~{args.window_ms:g} ms "
        "per runtime per SubNet (median); "
        f"seed {args.seed}. Speed ratio: latency of the first / of the second. Front: non-dominated on (latency, "
        "MACs maximised); overlap: how many of one runtime's front SubNets are on the other's front.",
        *([f"\n{args.note}"] if args.note else []),
    ]
    for name in args.space or SPACES:
        start = time.monotonic()
        lat, error = measure_space(
            get_space(name), args.n, args.seed, args.rounds, args.window_ms, args.openvino_precision
        )
        block = [
            "",
            f"**{name}**, {args.n} random SubNets ({time.monotonic() - start:.0f} s); median latency (ms): "
            + ", ".join(f"{k} {np.median(v):.3g}" for k, v in lat.items() if k != "macs")
            + "; largest |output − torch's|: "
            + ", ".join(f"{k} {v:.1e}" for k, v in error.items()),
            "",
            "| pair (a vs b) | Spearman | speed ratio a/b (median, min–max) | a's front on b's | b's front on a's |",
            "|---|---|---|---|---|",
            *pair_rows(lat),
        ]
        lines += block
        print("\n".join(block), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")  # after each space: a long run keeps its part
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
