"""Whole-command timings of the prediction path on NAS-Bench-201 (what a user waits for).

  python benchmarks/bench_predict.py [--data ../shared/data] [--repeat 3] [--out benchmarks/results/predict.md]

Needs ../shared/data/nb201_accuracy_latency.csv. Builds a SQLite store with 11 of the 13 device columns as known
devices (full tables) and two new devices described by HELP's 10 reference cells only (titanx_32 and pixel3 held
out), then times, as subprocesses of the installed ``hwpareto`` command (start-up included):

- ``train latency --few-shot 10`` of each new device (the other new device in the store, never a known one);
- ``predict --device NEW --in all-15625-cells.csv --out predictions.csv``;
- ``predict --in all-15625-cells.csv`` with every predictor of the space (both new devices).

Medians over ``--repeat`` runs; prints Markdown and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/bench_predict.py"
KNOWN = [
    "1080ti_1",
    "1080ti_32",
    "1080ti_256",
    "titanx_1",
    "titanx_256",
    "gold_6240",
    "silver_4114",
    "silver_4210r",
    "samsung_a50",
    "samsung_s7",
    "essential_ph_1",
]
NEW = {"new-titanx32": "titanx_32", "new-pixel3": "pixel3"}
REFS = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]


def hwpareto(*args: str, store: Path) -> float:
    """Seconds one ``hwpareto`` command takes, start-up included (fails loudly)."""
    exe = Path(sys.executable).with_name("hwpareto")
    start = time.perf_counter()
    done = subprocess.run(
        [str(exe), *args, "--store", str(store)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"hwpareto {' '.join(args)} failed: {done.stderr.strip()}")
    return seconds


def build(data: Path, work: Path) -> tuple[Path, Path]:
    """The store (known tables, two new devices with 10 rows each) and the all-cells CSV."""
    table = data / "nb201_accuracy_latency.csv"
    store = work / "base.db"
    columns = [a for d in KNOWN for a in ("--column", d)]
    hwpareto(
        "import",
        str(table),
        "--space",
        "nb201",
        "--device",
        "{column}",
        "--metric",
        "latency_ms",
        *columns,
        store=store,
    )
    frame = pd.read_csv(table).set_index("arch_index")
    refs = frame.loc[REFS, ["arch_str", *NEW.values()]].rename(columns={v: k for k, v in NEW.items()})
    refs.to_csv(work / "new.csv", index=False)
    hwpareto(
        "import",
        str(work / "new.csv"),
        "--space",
        "nb201",
        "--device",
        "{column}",
        "--metric",
        "latency_ms",
        *[a for d in NEW for a in ("--column", d)],
        store=store,
    )
    cells = work / "cells.csv"
    frame[["arch_str"]].to_csv(cells, index=False)
    return store, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict.md")
    args = parser.parse_args()
    if not (args.data / "nb201_accuracy_latency.csv").is_file():
        raise SystemExit(f"third-party data not found in {args.data}")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, cells = build(args.data, work)
        for _ in range(args.repeat):
            store = work / "run.db"
            shutil.copy(base, store)
            for name in NEW:
                times.setdefault(f"`train latency --device {name} --space nb201 --few-shot 10`", []).append(
                    hwpareto("train", "latency", "--device", name, "--space", "nb201", "--few-shot", "10", store=store)
                )
            times.setdefault("`predict --space nb201 --device new-pixel3 --in` 15,625 cells `--out`", []).append(
                hwpareto(
                    "predict",
                    "--space",
                    "nb201",
                    "--device",
                    "new-pixel3",
                    "--in",
                    str(cells),
                    "--out",
                    str(work / "p.csv"),
                    store=store,
                )
            )
            times.setdefault(
                "`predict --space nb201 --in` 15,625 cells `--out` (both new devices' predictors)", []
            ).append(
                hwpareto("predict", "--space", "nb201", "--in", str(cells), "--out", str(work / "p.csv"), store=store)
            )
            times.setdefault("`hwpareto --help` (start-up alone)", []).append(_startup())
    lines = [
        "# Prediction path: whole commands",
        "",
        f"`{COMMAND}` — {date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; SQLite store; median of {args.repeat} runs (min–max).",
        "",
        "| command | seconds |",
        "|---|---|",
        *(f"| {what} | {statistics.median(t):.2f} ({min(t):.2f}–{max(t):.2f}) |" for what, t in times.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


def _startup() -> float:
    exe = Path(sys.executable).with_name("hwpareto")
    start = time.perf_counter()
    subprocess.run([str(exe), "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
