"""Known-device latency predictors on public data and on this CPU (results go to docs/BENCHMARKS.md).

  python benchmarks/bench_latency.py public            # NB201 (13 devices), OFA-MBv3 (9), HAT (3); ../shared/data
  python benchmarks/bench_latency.py own --store S     # cpu-local: raw LUT-sum vs corrected predictor (held out)

Public: train on at most 1,000 random SubNets per device, test on all others (NB201: the 341 cells whose
input does not reach the output are left out). Model: LatencyPredictor on SpaceFeatures (no LUT: these devices
have none). Prints Markdown.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from predictors import LatencyPredictor, SpaceFeatures, metrics
from supernet import SearchSpace, SubNetConfig, get_space, load_space_file

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PHONES = {"pixel3", "samsung_a50", "samsung_s7", "essential_ph_1"}


def _row(table: str, device: str, m: dict[str, float], seconds: float) -> str:
    return (
        f"| {table} | {device} | {m['n']} | {m['within_10pct']:.1f} | {m['mape_pct']:.2f} | "
        f"{m['kendall_tau']:.3f} | {m.get('coverage_1sigma_pct', float('nan')):.0f} | {seconds:.1f} |"
    )


def _evaluate(space: SearchSpace, configs: list, y: np.ndarray, n_train: int, seed: int) -> tuple[dict, float]:
    X = SpaceFeatures(space=space, canonical=False).fit_transform(configs)  # dead edges still cost time
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[:n_train], order[n_train:]
    start = time.monotonic()
    model = LatencyPredictor(lut_column=None, random_state=seed).fit(X[train], y[train])
    mean, std = model.predict(X[test], return_std=True)
    return metrics(y[test], mean, std), time.monotonic() - start


def public(n_train: int, seed: int) -> None:
    print(f"Train on {n_train} random SubNets per device (seed {seed}), test on the rest.\n")
    print("| table | device | test SubNets | within ±10 % (%) | MAPE (%) | Kendall τ-b | ±1σ coverage (%) | fit (s) |")
    print("|---|---|---|---|---|---|---|---|")
    nb = pd.read_csv(DATA / "nb201_accuracy_latency.csv")
    space = get_space("nb201")
    configs = [space.from_record({"arch_str": s}) for s in nb["arch_str"]]
    connected = np.array([not _disconnected(c) for c in configs])
    devices = list(nb.columns[11:])  # after arch_index, arch_str, 3 accuracies, 6 edges
    for group, chosen in (
        ("NB201 (CPU/GPU)", [d for d in devices if d not in PHONES]),
        ("NB201 (phones, whole ms)", [d for d in devices if d in PHONES]),
    ):
        for device in chosen:
            y = nb[device].to_numpy(float)
            keep = connected & (y > 0)
            m, s = _evaluate(space, [c for c, k in zip(configs, keep, strict=True) if k], y[keep], n_train, seed)
            print(_row(group, device, m, s))
    ofa = pd.read_csv(DATA / "ofa_mbv3_latency.csv")
    mbv3 = get_space("mbv3")
    configs = [mbv3.from_record(r) for r in ofa[["ks", "e", "d", "r"]].astype(str).to_dict("records")]
    for device in ofa.columns[5:]:
        m, s = _evaluate(mbv3, configs, ofa[device].to_numpy(float), n_train, seed)
        print(_row("OFA-MBv3", device, m, s))
    hat = pd.read_csv(DATA / "hat_latency_wmt14ende.csv")
    hat_space = load_space_file(ROOT / "data" / "spaces" / "hat_wmt14ende.yaml")
    for device, rows in hat.groupby("device"):
        configs = [hat_space.from_record(r) for r in rows.to_dict("records")]
        m, s = _evaluate(hat_space, configs, rows["latency_total_ms"].to_numpy(float), n_train, seed)
        print(_row("HAT", str(device), m, s))


def _disconnected(config: SubNetConfig) -> bool:
    from supernet.nb201._cell import EDGE_NAMES, live_edges

    return not live_edges(np.array([[config[e] for e in EDGE_NAMES]], dtype=object)).any()


def own(store_url: str, seed: int) -> None:
    from hwpareto.store import Store
    from predictors import train_latency

    with Store.open(store_url) as store:
        report = train_latency(store, "cpu-local", get_space("mbv3"), seed=seed)
    v = report.validation
    print(f"cpu-local, mbv3, {report.n_train} measured SubNets; held out: {v['split']}\n")
    print("| predictor | MAPE (%) | within ±10 % (%) | Kendall τ-b |")
    print("|---|---|---|---|")
    print(f"| raw LUT-sum | {v['lut_sum_mape_pct']:.1f} | - | {v['lut_sum_kendall_tau']:.3f} |")
    print(f"| LUT-sum + learned correction | {v['mape_pct']:.1f} | {v['within_10pct']:.0f} | {v['kendall_tau']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["public", "own"])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=str(ROOT / "benchmarks" / ".bench.db"))
    args = parser.parse_args()
    if args.step == "public":
        public(args.n_train, args.seed)
    else:
        own(args.store, args.seed)


if __name__ == "__main__":
    main()
