"""Benchmark: importing NAS-Bench-201's table (15,625 SubNets × 16 columns = 250,000 values) into the store.

Usage: python benchmarks/bench_import.py [--pg URL] [--repeat N]
Needs ../shared/data/nb201_accuracy_latency.csv. Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from hwpareto.store import Store
from pareto._importer import import_table, parse_columns
from supernet import get_space

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_accuracy_latency.csv"
DEVICES = [
    "1080ti_1",
    "1080ti_256",
    "1080ti_32",
    "essential_ph_1",
    "gold_6240",
    "pixel3",
    "samsung_a50",
    "samsung_s7",
    "silver_4114",
    "silver_4210r",
    "titanx_1",
    "titanx_256",
    "titanx_32",
]
ACCURACY = ["cifar10_test_acc=cifar10", "cifar100_test_acc=cifar100", "imagenet16_120_test_acc=imagenet16-120"]


def run_once(url: str) -> dict[str, float]:
    """Seconds for: first import (all inserted), re-import (all unchanged), reading all rows back."""
    space = get_space("nb201")
    timings: dict[str, float] = {}
    with Store.open(url) as store:
        start = time.perf_counter()
        import_table(
            store,
            DATA,
            space=space,
            columns=parse_columns(DEVICES, "{column}"),
            subject_kind="device",
            metric="latency_ms",
        )
        import_table(
            store,
            DATA,
            space=space,
            columns=parse_columns(ACCURACY, "{column}"),
            subject_kind="dataset",
            metric="test_acc_pct",
        )
        timings["first import"] = time.perf_counter() - start
        start = time.perf_counter()
        import_table(
            store,
            DATA,
            space=space,
            columns=parse_columns(DEVICES, "{column}"),
            subject_kind="device",
            metric="latency_ms",
        )
        import_table(
            store,
            DATA,
            space=space,
            columns=parse_columns(ACCURACY, "{column}"),
            subject_kind="dataset",
            metric="test_acc_pct",
        )
        timings["re-import (no change)"] = time.perf_counter() - start
        start = time.perf_counter()
        rows = len(store.measurements.table(space="nb201"))
        timings["read back"] = time.perf_counter() - start
    assert rows == 15625 * 16, rows
    return timings


def fresh_pg(url: str) -> tuple[str, psycopg.Connection]:
    base = make_url(url)
    admin = psycopg.connect(
        host=base.host, port=base.port or 5432, user=base.username, dbname=base.database, autocommit=True
    )
    name = f"hwp_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False), admin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"SQLite (file, WAL)": [], "PostgreSQL 15 (local)": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            results["SQLite (file, WAL)"].append(run_once(str(Path(tmp) / "bench.db")))
        url, admin = fresh_pg(args.pg)
        try:
            results["PostgreSQL 15 (local)"].append(run_once(url))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            admin.close()
    print("| backend | first import (s) | re-import, no change (s) | read 250k rows back (s) |")
    print("|---|---|---|---|")
    for backend, runs in results.items():
        cells = [f"{statistics.median(r[k] for r in runs):.2f}" for k in runs[0]]
        print(f"| {backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
