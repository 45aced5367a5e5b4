"""Benchmarks of the profilers (results go to docs/BENCHMARKS.md).

  python benchmarks/bench_profilers.py cpu-lut      # wall time of the full mbv3 LUT on this CPU (cpu-local)
  python benchmarks/bench_profilers.py lut-vs-e2e   # raw LUT-sum vs end-to-end latency of N mbv3 SubNets (stored)
  python benchmarks/bench_profilers.py sim-luts     # wall time and entries of mbv3/gpt LUTs on every preset

All write into one SQLite store (--store, default benchmarks/.bench.db, reused across steps so lut-vs-e2e uses
the LUT cpu-lut built) and print Markdown.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwpareto.store import Store
from profilers import LOCAL_CPU, Lut, build_lut, device_spec, measure_subnets, presets
from supernet import get_space

DEFAULT_STORE = Path(__file__).resolve().parent / ".bench.db"


def cpu_lut(store: Store) -> None:
    spec = device_spec(store, LOCAL_CPU)
    space = get_space("mbv3")
    report = build_lut(store, spec, space)
    print("| device | space | distinct layers | measured now | wall time (s) | s per layer |")
    print("|---|---|---|---|---|---|")
    per = report.seconds / max(report.measured, 1)
    print(f"| {spec.name} | mbv3 (all r, w) | {report.total} | {report.measured} | {report.seconds:.0f} | {per:.3f} |")


def lut_vs_e2e(store: Store, n: int, seed: int) -> None:
    spec = device_spec(store, LOCAL_CPU)
    space = get_space("mbv3")
    lut = Lut.load(store, spec.name)
    rng = np.random.default_rng(seed)
    configs = [space.sample(rng) for _ in range(n)]
    missing = [c for c in configs if lut.missing(space, c)]
    if missing:
        raise SystemExit(f"LUT incomplete for {len(missing)} configs: run `cpu-lut` first")
    start = time.monotonic()
    measure_subnets(store, spec, space, configs)  # stored: the predictor benchmark trains on them
    seconds = time.monotonic() - start
    table = store.measurements.table(space="mbv3", subject=spec.name, metric="latency_ms").set_index("config_key")
    measured = np.array([float(table.loc[[c.key], "value"].median()) for c in configs])
    predicted = np.array([lut.latency_sum_ms(space, c) for c in configs])
    ape = np.abs(predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic
    rho = spearmanr(predicted, measured).statistic
    ratio = measured / predicted
    print(f"{n} sampled mbv3 SubNets (seed {seed}), end-to-end measured in {seconds:.0f} s\n")
    print("| LUT-sum vs measured | value |")
    print("|---|---|")
    print(f"| MAPE | {ape.mean() * 100:.1f} % |")
    print(f"| within ±10 % | {(ape <= 0.10).mean() * 100:.0f} % |")
    print(f"| Kendall τ-b | {tau:.3f} |")
    print(f"| Spearman ρ | {rho:.3f} |")
    print(f"| measured / LUT-sum (median, min, max) | {np.median(ratio):.2f}, {ratio.min():.2f}, {ratio.max():.2f} |")
    print(f"| measured latency range | {measured.min():.1f}-{measured.max():.1f} ms |")


def sim_luts(store: Store, workers: int) -> None:
    print("| device | space | distinct layers | measured | failed | wall time (s) | s per layer |")
    print("|---|---|---|---|---|---|---|")
    for name in presets():
        spec = device_spec(store, name)
        for space_name in ("mbv3", "gpt"):
            report = build_lut(store, spec, get_space(space_name), workers=workers)
            per = report.seconds / max(report.measured, 1)
            print(
                f"| {name} | {space_name} | {report.total} | {report.measured} | {len(report.failed)} | "
                f"{report.seconds:.0f} | {per:.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["cpu-lut", "lut-vs-e2e", "sim-luts"])
    parser.add_argument("--store", default=str(DEFAULT_STORE))
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with Store.open(args.store) as store:
        if args.step == "cpu-lut":
            cpu_lut(store)
        elif args.step == "lut-vs-e2e":
            lut_vs_e2e(store, args.n, args.seed)
        else:
            sim_luts(store, args.workers)


if __name__ == "__main__":
    main()
