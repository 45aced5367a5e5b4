"""Benchmark: the whole ``hwpareto export STUDY TRIAL --out DIR`` command on demo SubNets (mbv3-digits, llama-stdlib)
and on Llama SubNets.

Usage: python benchmarks/bench_export.py --store DEMO.db [--repeat N] [--src CHECKOUT]
       python benchmarks/bench_export.py --llama [--repeat N] [--src CHECKOUT]
DEMO.db: a store made by ``hwpareto demo --no-dashboard --store DEMO.db --out DIR`` (copied first, so it is not
changed). Exports the knee trial of each space's cpu-local study ``N`` times in fresh processes (weights and ONNX:
the shipped checkpoint, batch norm recalibrated; and ``--no-weights``: config and metrics only) and prints the
median wall time as a Markdown table for docs/BENCHMARKS.md. ``--llama``: the same for the knee trial of a
cost-objective search (40 trials) of a small random Llama imported with ``space from-hf`` from a config.json
(:data:`LLAMA`: 8 layers, hidden 512, 8/4 heads, FFN 1408, vocabulary 32,000), once with per-layer choices
(safetensors for hwpareto's loader) and once ``--uniform`` (a ``save_pretrained`` folder); ONNX is the prefill
graph. ``--src``: run another checkout's code (e.g. a ``git worktree`` of an older commit) with this venv, for
before/after figures on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwpareto.store import Store
from pareto.analysis._analysis import study_results

STUDIES = ("demo-mbv3-digits-cpu-local", "demo-llama-stdlib-cpu-local")
HWPARETO = str(Path(sys.executable).with_name("hwpareto"))
LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32_000,
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
LLAMA_OBJECTIVES = ("kv_cache_mb", "macs", "params:max")
BUNDLES = (("config, weights, ONNX", []), ("config only (--no-weights)", ["--no-weights"]))


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


def llama_studies(tmp: Path) -> tuple[str, list[str]]:
    """A store with two searched spaces of :data:`LLAMA` (per-layer and uniform); its URL and the study names."""
    config = tmp / "config.json"
    config.write_text(json.dumps(LLAMA))
    url = f"sqlite:///{tmp / 'llama.db'}"
    studies = []
    for name, extra in (("bench-llama", []), ("bench-llama-uniform", ["--uniform"])):
        hw = [HWPARETO]
        subprocess.run([*hw, "space", "from-hf", str(config), "--name", name, *extra, "--store", url], check=True)
        objectives = [a for o in LLAMA_OBJECTIVES for a in ("--objective", o)]
        search = ["search", "--space", name, "--name", f"{name}-cost", "--trials", "40", "--population", "10"]
        subprocess.run([*hw, *search, *objectives, "--store", url], check=True, stdout=subprocess.DEVNULL)
        studies.append(f"{name}-cost")
    return url, studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--store", help="a store made by hwpareto demo (SQLite file)")
    group.add_argument("--llama", action="store_true", help="Llama SubNets of a cost search instead")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--src", help="checkout whose code to time (default: the installed one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.llama:
            url, studies = llama_studies(Path(tmp))
        else:
            db = Path(tmp) / "demo.db"
            shutil.copy(args.store, db)
            url, studies = f"sqlite:///{db}", list(STUDIES)
        with Store.open(url) as store:
            knees = {s: study_results(store, s).front().knee_number for s in studies}
        print("| study | trial | bundle | MB | median s | min s | max s | runs |\n|---|---|---|---|---|---|---|---|")
        for study, trial in knees.items():
            assert trial is not None, study
            for label, extra in BUNDLES:
                bundle = Path(tmp) / "bundle"
                if args.llama and not extra:  # a lone config.json's space: its untrained SuperNet, asked for
                    extra = ["--random-weights"]
                runs = [time_export(url, study, trial, bundle, extra, args.src) for _ in range(args.repeat)]
                mb = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20
                print(
                    f"| {study} | {trial} | {label} | {mb:.1f} | {statistics.median(runs):.2f} | {min(runs):.2f} | "
                    f"{max(runs):.2f} | {len(runs)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
