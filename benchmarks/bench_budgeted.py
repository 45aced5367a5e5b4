"""Evaluation-budgeted search on NAS-Bench-201: recall of the exact accuracy × latency front after 100 / 300 / 1,000
accuracy evaluations.

  .venv/bin/python benchmarks/bench_budgeted.py            # 3 seeds, 1080ti_1 and pixel3; writes results/budgeted.md

Objectives: CIFAR-10 test accuracy (maximised; the expensive oracle, read from the table one batch at a time) ×
one device's measured latency (minimised; cheap, known for every cell). The exact front comes from all 15,625 cells
(2-D sweep). Recall = share of the exact front's points evaluated (a point = a distinct (accuracy, latency) pair, so
cells with identical objectives count once); IGD+ = mean over exact-front points of the distance to the nearest
evaluated cell that is no better, with both objectives scaled to the exact front's range. Methods:

- random: uniformly random distinct cells;
- predicted front (naive): the same space-filling start and AccuracyPredictor refits, each batch the unevaluated
  cells on the first non-dominated layers of (predicted accuracy, latency), spread along latency within a layer;
- budgeted_search (pareto.search._budgeted): hopeful candidates only (optimistic accuracy above the best measured one at
  most as costly), predicted front peeled on mean + ucb × std.

One thread; mean ± std over seeds. Reads ../shared/data/nb201_accuracy_latency.csv (third-party, never copied
here) and exits cleanly when it is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from pareto import non_dominated_mask
from pareto.search._budgeted import _ranks, _space_filling, budgeted_search
from predictors._accuracy import AccuracyPredictor
from predictors._features import SpaceFeatures
from supernet.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201_accuracy_latency.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "budgeted.md"
TARGET = "cifar10_test_acc"

Method = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, int], list[int]]
"""(features, accuracy, latency, budget, batch, seed) → evaluated indices in order."""


def exact_front(acc: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Mask of cells whose (accuracy, latency) no other cell dominates: a sort by latency and a running maximum."""
    order = np.lexsort((-acc, lat))
    a, c = acc[order], lat[order]
    new = np.r_[True, c[1:] != c[:-1]]
    gid = np.cumsum(new) - 1
    best = a[new]  # accuracy sorted descending within each latency
    before = np.r_[-np.inf, np.maximum.accumulate(best)[:-1]]
    out = np.empty(len(acc), dtype=bool)
    out[order] = (a == best[gid]) & (a > before[gid])
    return out


def metrics(
    order: list[int], acc: np.ndarray, lat: np.ndarray, front: np.ndarray, checkpoints: list[int]
) -> dict[int, tuple[float, float]]:
    """Recall of the exact front's distinct points and normalised IGD+ after each checkpoint."""
    ref = np.unique(np.column_stack([-acc[front], lat[front]]), axis=0)  # minimised, distinct
    lo, span = ref.min(axis=0), np.maximum(np.ptp(ref, axis=0), 1e-12)
    out = {}
    for k in checkpoints:
        seen = np.asarray(order[:k])
        pts = np.column_stack([-acc[seen], lat[seen]])
        found = (pts[:, None, :] == ref[None]).all(axis=2).any(axis=0)
        gap = np.maximum((pts[None] - ref[:, None]) / span, 0.0)
        igd = float(np.sqrt((gap**2).sum(axis=2)).min(axis=1).mean())
        out[k] = (float(found.mean()), igd)
    del lo
    return out


def random_search(X: np.ndarray, acc: np.ndarray, lat: np.ndarray, budget: int, batch: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(len(acc))[:budget]]


def predicted_front(
    X: np.ndarray,
    acc: np.ndarray,
    lat: np.ndarray,
    budget: int,
    batch: int,
    seed: int,
    initial: int = 20,
    refit_growth: float = 0.1,
) -> list[int]:
    """Naive predictor-guided loop: the predicted front (no uncertainty), peeled layer by layer."""
    rng = np.random.default_rng(seed)
    rank = _ranks(lat[:, None])
    order = _space_filling(rank, np.ones(len(acc), dtype=bool), initial, rng)
    evaluated = np.zeros(len(acc), dtype=bool)
    evaluated[order] = True
    n_at_fit, mean = 0, np.zeros(len(acc))
    while len(order) < budget:
        if n_at_fit == 0 or len(order) - n_at_fit >= max(batch, refit_growth * n_at_fit):
            model = AccuracyPredictor(random_state=seed).fit(X[order], acc[order])
            mean = model.predict(X)
            n_at_fit = len(order)
        k = min(batch, budget - len(order))
        left = np.flatnonzero(~evaluated)
        chosen: list[int] = []
        while len(chosen) < k and len(left):
            layer = left[non_dominated_mask(np.column_stack([-mean[left], lat[left]]))]
            if len(layer) > k - len(chosen):  # spread the picks along latency within the layer
                layer = layer[np.argsort(lat[layer])]
                layer = layer[np.unique(np.linspace(0, len(layer) - 1, k - len(chosen)).round().astype(int))]
            chosen += [int(i) for i in layer]
            left = np.setdiff1d(left, layer)
        evaluated[chosen] = True
        order += chosen
    return order


def ours(X: np.ndarray, acc: np.ndarray, lat: np.ndarray, budget: int, batch: int, seed: int, **kw: float) -> list[int]:
    result = budgeted_search(range(len(acc)), X, lat, lambda idx: acc[idx], budget, batch_size=batch, seed=seed, **kw)  # type: ignore[arg-type]
    return [int(i) for i in result.indices]


METHODS: dict[str, Method] = {
    "budgeted_search": ours,
    "predicted front (naive)": predicted_front,
    "random": random_search,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--devices", nargs="+", default=["1080ti_1", "pixel3"])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--ucb", type=float, default=None, help="override budgeted_search's ucb (ablation)")
    parser.add_argument("--kappa", type=float, default=None, help="override budgeted_search's kappa (ablation)")
    parser.add_argument("--refit-growth", type=float, default=None, help="override refit_growth (ablation)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} is absent (third-party data only present beside a developer checkout)")
        return 0
    df = pd.read_csv(DATA).sort_values("arch_index")
    space = NB201Space()
    configs = [space.from_index(int(i)) for i in df["arch_index"]]
    X = SpaceFeatures(space).fit().transform(configs)
    acc = df[TARGET].to_numpy(dtype=np.float64)
    budget = max(args.checkpoints)
    kw = {
        k: v
        for k, v in (("ucb", args.ucb), ("kappa", args.kappa), ("refit_growth", args.refit_growth))
        if v is not None
    }
    lines = [
        "# Budgeted search on NAS-Bench-201 (15,625 cells): recall of the exact front",
        "",
        f"`.venv/bin/python benchmarks/bench_budgeted.py --seeds {args.seeds} --devices {' '.join(args.devices)}`: "
        f"CIFAR-10 test accuracy (expensive, maximised) × measured latency (cheap, minimised); batches of "
        f"{args.batch}; mean ± std over {args.seeds} seeds; one thread. Recall: share of the exact front's points "
        "evaluated; IGD+ ×100 with objectives scaled to the exact front's range (lower is better).",
        "",
    ]
    header = (
        "| device (front size) | method | "
        + " | ".join(f"recall @{k} | IGD+ @{k}" for k in args.checkpoints)
        + " | seconds / run |"
    )
    lines += [header, "|" + "---|" * (3 + 2 * len(args.checkpoints))]
    print("\n".join(lines), flush=True)
    with threadpool_limits(1):
        for device in args.devices:
            lat = df[device].to_numpy(dtype=np.float64)
            front = exact_front(acc, lat)
            n_points = len(np.unique(np.column_stack([acc[front], lat[front]]), axis=0))
            for name in args.methods:
                method = METHODS[name]
                runs, seconds = [], []
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    order = method(X, acc, lat, budget, args.batch, seed, **(kw if method is ours else {}))
                    seconds.append(time.perf_counter() - start)
                    assert len(order) == len(set(order)) <= budget
                    runs.append(metrics(order, acc, lat, front, args.checkpoints))
                cells = []
                for k in args.checkpoints:
                    rec = [100 * r[k][0] for r in runs]
                    igd = [100 * r[k][1] for r in runs]
                    cells += [f"{np.mean(rec):.1f} ± {np.std(rec):.1f} %", f"{np.mean(igd):.2f} ± {np.std(igd):.2f}"]
                row = f"| {device} ({n_points}) | {name} | " + " | ".join(cells) + f" | {np.mean(seconds):.0f} |"
                lines.append(row)
                print(row, flush=True)
                if not args.no_write:  # after every row: a long run keeps what it has measured
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    RESULTS.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
