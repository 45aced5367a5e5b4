"""A 1B-class Llama space on this CPU: LUT build, LUT-sum vs measured prefill / decode, learned correction, and a
search under a decode budget (results go to benchmarks/results/llm.md and docs/BENCHMARKS.md).

  python benchmarks/bench_llm.py --store /tmp/llm.db --out benchmarks/results/llm.md [-n 100]

The space is imported with ``hwpareto space from-hf`` from a ``config.json`` alone (random float32 weights): hidden
2048, 16 layers, 32 query / 8 KV heads, FFN 8192, vocabulary 32,000 (1.10 B parameters). Its
``max_position_embeddings`` is 128, so that the default runtime grid is prompts of 32 and 64 tokens and 32 generated
tokens (decode KV cache 48 or 80 tokens): small enough to measure 100 SubNets on 2 shared cores. Batch 1.
The device ``cpu-bench`` is this CPU, 1 thread, timed by the CPU time of that thread (``clock: thread``: the machine
is shared with other jobs, whose share of the cores would otherwise count), LUT layers timed with cold weights
(``cold_weights_mb: 96``, above the L3 of the machines it ran on), with short timing windows (1 warm-up
call, at least 3 samples, 100 ms), used for both the LUT and the end-to-end measurements. Steps are resumable:
rerun with the same store to continue.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HWPARETO = [str(Path(sys.executable).parent / "hwpareto")]
SPACE, DEVICE = "llama1b", "cpu-bench"
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
COLD_MB = 96  # cycled weight copies per LUT layer, above the L3 of the machines it ran on
DEVICE_YAML = f"""name: {DEVICE}
kind: cpu
backend: torch-cpu
description: this CPU, 1 thread, short timing windows (bench_llm)
params: {{threads: 1, clock: thread, cold_weights_mb: {COLD_MB}, warmup_calls: 1, min_samples: 3, min_window_ms: 100}}
"""
PHASES = ("prefill_ms", "decode_ms_per_token")
TRAIN_SHARE = 0.7
CHECKED = 5  # front members measured after the search


def _run(args: list[str], log: list[str]) -> tuple[str, float]:
    shown = "hwpareto " + " ".join(shlex.quote(a) for a in args)
    start = time.monotonic()
    out = subprocess.run([*HWPARETO, *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - start
    if out.returncode:
        raise SystemExit(f"{shown} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    log.append(f"`{shown}` ({seconds:.1f} s)")
    print(f"[{seconds:7.1f} s] {shown}", file=sys.stderr)
    return out.stdout, seconds


def _setup(store_url: str, work: Path, log: list[str]) -> None:
    from hwpareto.store import Store

    with Store.open(store_url) as store:
        have_space = SPACE in store.spaces.names()
        have_device = DEVICE in [d.name for d in store.devices.list()]
    if not have_space:
        (work / "config.json").write_text(json.dumps(CONFIG, indent=1))
        _run(
            ["space", "from-hf", str(work / "config.json"), "--name", SPACE, "--batch", "1", "--store", store_url], log
        )
    if not have_device:
        (work / "device.yaml").write_text(DEVICE_YAML)
        _run(["device", "add", str(work / "device.yaml"), "--store", store_url], log)


def _measure(store_url: str, n: int, seed: int) -> tuple[list[Any], float, int]:
    """Measure the ``n`` sampled SubNets not yet measured; returns them all, the seconds spent, and how many now."""
    import torch

    from hwpareto.store import Store
    from profilers import device_spec, measure_subnets

    torch.set_num_threads(2)  # SuperNet initialisation; timing itself runs on the device's 1 thread
    with Store.open(store_url) as store:
        sp = store.spaces.get(SPACE)
        rng = np.random.default_rng(seed)
        configs = list(dict.fromkeys(sp.sample(rng) for _ in range(n)))
        done = set(store.measurements.table(space=SPACE, subject=DEVICE, metric="prefill_ms")["config_key"])
        todo = [c for c in configs if c.key not in done]
        start = time.monotonic()
        if todo:
            spec = device_spec(store, DEVICE)

            def progress(i: int, total: int, key: str) -> None:
                print(f"measured {i}/{total} ({time.monotonic() - start:.0f} s)", file=sys.stderr)

            measure_subnets(store, spec, sp, todo, progress=progress)
        return configs, time.monotonic() - start, len(todo)


def _evaluate(store_url: str, configs: list[Any], seed: int) -> list[dict[str, Any]]:
    """Per phase: LUT-sum alone and LUT-sum + learned correction vs measured, on the held-out SubNets."""
    from hwpareto.store import Store
    from predictors import LatencyPredictor, metrics
    from predictors._service import Model

    rows = []
    with Store.open(store_url) as store:
        sp = store.spaces.get(SPACE)
        for metric in PHASES:
            df = store.measurements.table(space=SPACE, subject=DEVICE, metric=metric)
            measured = df.groupby("config_key")["value"].median()
            chosen = [c for c in configs if c.key in measured.index]
            y = measured.loc[[c.key for c in chosen]].to_numpy(float)
            order = np.random.default_rng(seed).permutation(len(y))
            n_train = round(TRAIN_SHARE * len(y))
            train, test = order[:n_train], order[n_train:]
            model = Model("latency", sp, metric, DEVICE, None, True, LatencyPredictor(random_state=seed))
            X = model.bind(store).features(chosen)
            fitted = LatencyPredictor(random_state=seed).fit(X[train], y[train])
            mean, std = fitted.predict(X[test], return_std=True)
            rows.append(
                {
                    "metric": metric,
                    "n_train": len(train),
                    "n_test": len(test),
                    "measured_range": (float(y.min()), float(y.max())),
                    "lut": metrics(y[test], X[test, 0]),
                    "corrected": metrics(y[test], mean, std),
                    "lut_ratio_median": float(np.median(y / X[:, 0])),
                    "mode": fitted.mode_,
                }
            )
    return rows


def _search(store_url: str, configs: list[Any], log: list[str]) -> dict[str, Any]:
    """Train the stored decode predictor, then search under a decode budget (the median measured decode step)."""
    from hwpareto.store import Store
    from pareto._objectives import Evaluator, parse_objective
    from pareto.analysis._analysis import study_results
    from profilers import device_spec, measure_subnets

    for metric in PHASES:
        _run(["train", "latency", "--device", DEVICE, "--space", SPACE, "--metric", metric, "--store", store_url], log)
    with Store.open(store_url) as store:
        df = store.measurements.table(space=SPACE, subject=DEVICE, metric="decode_ms_per_token")
        bound = round(float(df["value"].median()), 1)
    budget = f"decode_ms_per_token@{DEVICE} <= {bound}"
    objectives = ["params:max", f"prefill_ms@{DEVICE}", f"decode_ms_per_token@{DEVICE}"]
    args = ["search", "--space", SPACE, "--name", "llm-decode", "--trials", "2000", "--population", "100"]
    args += [a for o in objectives for a in ("--objective", o)] + ["--budget", budget, "--store", store_url]
    with Store.open(store_url) as store:
        exists = "llm-decode" in [s.name for s in store.searches.list()]
    seconds = 0.0
    if not exists:
        _, seconds = _run(args, log)
    with Store.open(store_url) as store:
        sp = store.spaces.get(SPACE)
        results = study_results(store, "llm-decode")
        front = results.front(DEVICE).rows
        front_configs = [sp.validate(results.configs[int(n)]) for n in front["number"]]
        evaluator = Evaluator(store, sp, [parse_objective(f"decode_ms_per_token@{DEVICE}")])
        source = evaluator.sources[evaluator.metrics[0]]
        column = f"decode_ms_per_token@{DEVICE}"
        # check a few front members for real: measured decode step vs the budget
        picks = sorted({int(i) for i in np.linspace(0, len(front_configs) - 1, min(CHECKED, len(front_configs)))})
        checked = [front_configs[i] for i in picks]
        measure_subnets(store, device_spec(store, DEVICE), sp, checked)
        table = store.measurements.table(space=SPACE, subject=DEVICE, metric="decode_ms_per_token")
        measured = table.groupby("config_key")["value"].median()
        real = [float(measured[c.key]) for c in checked]
    return {
        "budget": budget,
        "bound": bound,
        "seconds": seconds,
        "front": len(front),
        "within": bool((front[column] <= bound).all()),
        "max_decode": float(front[column].max()) if len(front) else float("nan"),
        "source": source,
        "front_params_b": [float(sp.params(c)) / 1e9 for c in front_configs],
        "checked": [(float(front[column].iloc[i]), r) for i, r in zip(picks, real, strict=True)],
    }


def _l3_mib() -> float | None:
    """This CPU's level-3 cache in MiB, from Linux sysfs (None where it is not reported)."""
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "level").read_text().strip() == "3":
                size = (index / "size").read_text().strip()
                return int(size.rstrip("K")) / 1024 if size.endswith("K") else None
        except (OSError, ValueError):
            return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="SQLite file (kept between runs; steps resume)")
    parser.add_argument("--out", type=Path, help="write the Markdown here too")
    parser.add_argument("-n", type=int, default=100, help="SubNets to measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store_url = args.store if "://" in args.store else f"sqlite:///{Path(args.store).resolve()}"
    work = Path(args.store).resolve().parent / "bench_llm_files"  # the config.json and device YAML it imports
    work.mkdir(exist_ok=True)
    log: list[str] = []
    t0 = time.monotonic()
    _setup(store_url, work, log)
    out, _ = _run(["profile", "--device", DEVICE, "--space", SPACE, "--json", "--store", store_url], log)
    lut = json.loads(out)
    configs, measure_s, measured_now = _measure(store_url, args.n, args.seed)
    rows = _evaluate(store_url, configs, args.seed)
    search = _search(store_url, configs, log)
    total_s = time.monotonic() - t0
    from hwpareto.store import Store

    with Store.open(store_url) as store:
        sp = store.spaces.get(SPACE)
        full_params_b = float(sp.params(sp.largest())) / 1e9
    l3_mib = _l3_mib()
    l3 = f"{COLD_MB / l3_mib:.0f} × the {l3_mib:.0f} MiB L3" if l3_mib else "L3 size not reported"
    lines = [
        "# 1B-class Llama space on this CPU: LUT-sum vs measured prefill and decode",
        "",
        f"`python benchmarks/bench_llm.py --store /tmp/llm.db --out benchmarks/results/llm.md` — "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores shared with other jobs "
        f"(load average {os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}; this run "
        f"{total_s / 60:.1f} min.",
        "",
        "Space: `config.json` only (random float32 weights), hidden 2048, 16 layers, 32 query / 8 KV heads, FFN 8192, "
        f"vocabulary 32,000 ({full_params_b:.2f} B parameters); "
        "elastic hidden {1024, 1536, 2048}, layers kept, heads {8, 16, 24, 32} "
        "and FFN {2048, 4096, 6144, 8192} per layer; batch 1, prompt 32 or 64 tokens, 32 generated "
        "(`max_position_embeddings` 128 keeps the default runtime grid this small). Device `cpu-bench`: this CPU, "
        "PyTorch eager, 1 thread timed by its CPU time (`clock: thread`, so that the other jobs' share of the cores "
        f"does not count), each layer of the LUT timed cycling through copies of its weights totalling {COLD_MB} MiB "
        f"(`cold_weights_mb: {COLD_MB}`, {l3}: weights come from memory, as in the whole model), 1 warm-up "
        "call, median of at least 3 samples over at least 100 ms.",
        "",
        f"**LUT build** (`hwpareto profile`): {lut['layers']} distinct layers, {lut['measured']} measured in this run "
        f"({lut['already']} already there), {len(lut['failed'])} failed, {lut['seconds']:.0f} s.",
        "",
        f"**End-to-end measurements**: {len(configs)} random SubNets (seed {args.seed}); prefill = forward of the "
        "prompt with a KV cache (time to first token), decode = one step of 1 token against a KV cache of "
        "prompt + 16 tokens (time per output token); "
        f"{measured_now} measured in this run ({measure_s / 60:.1f} min).",
        "",
        f"Held-out comparison: the correction is fitted on {rows[0]['n_train']} SubNets and scored on the other "
        f"{rows[0]['n_test']}: `learned` (LUT-sum × a ridge + XGBoost factor) when its out-of-fold error beats the "
        "scaled LUT-sum's, else `lut-scale` (LUT-sum × the median measured / LUT-sum ratio).",
        "",
        "| phase | measured range (ms) | median measured / LUT-sum | LUT-sum MAPE (%) | LUT-sum within ±10 % (%) "
        "| correction chosen | corrected MAPE (%) | corrected within ±10 % (%) | corrected Kendall τ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["measured_range"]
        lines.append(
            f"| `{r['metric']}` | {lo:.1f}–{hi:.1f} | {r['lut_ratio_median']:.3f} | {r['lut']['mape_pct']:.1f} | "
            f"{r['lut']['within_10pct']:.0f} | {r['mode']} | {r['corrected']['mape_pct']:.1f} | "
            f"{r['corrected']['within_10pct']:.0f} | {r['corrected']['kendall_tau']:.3f} |"
        )
    params = search["front_params_b"]
    lines += [
        "",
        f"**Search under a decode budget** (surrogate NSGA-II, 2,000 trials; objectives params (max), prefill, decode; "
        f"budget `{search['budget']}`, the median measured decode step; decode objective from "
        f"{search['source']}): front of {search['front']} SubNets, "
        + ("all within the budget" if search["within"] else "NOT all within the budget")
        + f" (largest predicted decode step {search['max_decode']:.1f} ms"
        + (f"; {min(params):.2f}–{max(params):.2f} B parameters" if params else "")
        + f"), {search['seconds']:.0f} s.",
        "",
        f"{len(search['checked'])} front members (spread over the front) measured afterwards: predicted / measured "
        "decode step (ms) "
        + ", ".join(f"{p:.1f} / {m:.1f}" for p, m in search["checked"])
        + f"; {sum(m <= search['bound'] for _, m in search['checked'])} of {len(search['checked'])} within the "
        "budget when measured.",
        "",
        "Commands run (this run):",
        "",
        *(f"- {entry}" for entry in log),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
