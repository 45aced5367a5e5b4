"""Benchmark: the whole ``hwpareto export STUDY TRIAL --out DIR`` command on demo SubNets (mbv3-digits, gpt-stdlib).

Usage: python benchmarks/bench_export.py --store DEMO.db [--repeat N] [--src CHECKOUT]
DEMO.db: a store made by ``hwpareto demo --no-dashboard --store DEMO.db --out DIR`` (copied first, so it is not
changed). Exports the knee trial of each space's cpu-local study ``N`` times in fresh processes (weights and ONNX:
the shipped checkpoint, batch norm recalibrated; and ``--no-weights``: config and metrics only) and prints the
median wall time as a Markdown table for docs/BENCHMARKS.md. ``--src``: run another checkout's code (e.g. a
``git worktree`` of an older commit) with this venv, for before/after figures on the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pareto import Store
from pareto._analysis import study_results

STUDIES = ("demo-mbv3-digits-cpu-local", "demo-gpt-stdlib-cpu-local")
HWPARETO = str(Path(sys.executable).with_name("hwpareto"))


def time_export(store: str, study: str, trial: int, out: Path, extra: list[str], src: str | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "TERM": "dumb"} | ({"PYTHONPATH": src} if src else {})
    start = time.perf_counter()
    subprocess.run(
        [HWPARETO, "export", study, str(trial), "--out", str(out), "--store", store, *extra],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store made by hwpareto demo (SQLite file)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--src", help="checkout whose code to time (default: the installed one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.db"
        shutil.copy(args.store, db)
        url = f"sqlite:///{db}"
        with Store.open(url) as store:
            knees = {s: study_results(store, s).front().knee_number for s in STUDIES}
        print("| study | trial | bundle | median s | min s | max s | runs |\n|---|---|---|---|---|---|---|")
        for study, trial in knees.items():
            assert trial is not None, study
            for label, extra in (("config, weights, ONNX", []), ("config only (--no-weights)", ["--no-weights"])):
                bundle = Path(tmp) / "bundle"
                runs = [time_export(url, study, trial, bundle, extra, args.src) for _ in range(args.repeat)]
                print(
                    f"| {study} | {trial} | {label} | {statistics.median(runs):.2f} | {min(runs):.2f} | "
                    f"{max(runs):.2f} | {len(runs)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
