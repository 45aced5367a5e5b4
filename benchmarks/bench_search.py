"""Search persistence and convergence benchmarks (results go to docs/BENCHMARKS.md).

  python benchmarks/bench_search.py throughput [--trials 20000]   # persisted trials/s, side by side
  python benchmarks/bench_search.py convergence [--reference 1000000]
  python benchmarks/bench_search.py cli [--trials 20000] [--repeat 1]     # the whole CLI vs Optuna's RDB path

throughput uses the LUTs of benchmarks/.bench.db (built by bench_profilers.py: cpu-local and cim-reram over all of
mbv3). Objectives (3): params (maximised: a stand-in for accuracy, which mbv3 has no data for here),
latency_ms@cpu-local and energy_mj@cim-reram (LUT-sums). Each store is a fresh SQLite file (WAL) or PostgreSQL
database holding a copy of those two devices' LUTs. convergence needs no prepared store: it simulates the
cim-reram LUT of all of mbv3 (seconds) and uses params, latency_ms@cim-reram and energy_mj@cim-reram.
cli builds a store as the demo does (the shipped npu-tpu LUT, the mbv3-digits accuracy table and its predictor,
seconds), then runs ``hwpareto search`` on mbv3-digits with the objectives of :data:`CLI_OBJECTIVES` (accuracy
predicted by XGBoost + GP, latency and energy LUT-sums) in a subprocess on a copy of it, and Optuna's
NSGAIISampler on its default RDB path on the same objectives and another copy, in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import psycopg
from sqlalchemy import make_url

from hwpareto.store import Store
from pareto._objectives import Evaluator, parse_objective
from pareto.analysis._pareto import hypervolume, hypervolume_history, non_dominated_mask
from pareto.search._search import SearchSpec, load_trials, run_surrogate
from profilers import build_lut, device_spec
from supernet import get_space

BENCH_STORE = Path(__file__).resolve().parent / ".bench.db"
OBJECTIVES = ("params:max", "latency_ms@cpu-local", "energy_mj@cim-reram")
CONVERGENCE_OBJECTIVES = ("params:max", "latency_ms@cim-reram", "energy_mj@cim-reram")
CLI_OBJECTIVES = ("val_acc_pct@digits-affine", "latency_ms@npu-tpu", "energy_mj@npu-tpu")
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _copy_luts(target: Store) -> None:
    with Store.open(str(BENCH_STORE)) as source:
        for name in ("cpu-local", "cim-reram"):
            device = source.devices.get(name)
            target.devices.add(name, device.kind, device.spec, device.provenance)
            rows = source.luts.get(name).to_dict("records")
            target.luts.add(name, rows)


def _pg_database() -> tuple[str, psycopg.Connection]:
    base = make_url(PG)
    admin = psycopg.connect(host=base.host, port=base.port, user=base.username, dbname=base.database, autocommit=True)
    name = f"hwp_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False), admin


def _optuna_objective(evaluator: Evaluator, space: object) -> object:
    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        values = {d.name: trial.suggest_categorical(d.name, list(d.choices)) for d in space.dimensions}
        mean, _ = evaluator.evaluate([space.validate(values)])
        return tuple(mean[0])

    return objective


def throughput(n_trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space("mbv3")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(str(Path(tmp) / "s.db"))
        _copy_luts(store)
        spec = SearchSpec("bench", "mbv3", OBJECTIVES, n_trials=n_trials, population=200)
        result = run_surrogate(store, spec)
        rows.append(("hwpareto nsga2, bulk writes, SQLite (WAL)", n_trials, result.trials_per_s))
        evaluator = Evaluator(store, space, [parse_objective(o) for o in OBJECTIVES])
        directions = [parse_objective(o).direction for o in OBJECTIVES]
        n_rdb = 200
        study = optuna.create_study(
            study_name="optuna-rdb",
            storage=store.optuna_storage(),
            directions=directions,
            sampler=optuna.samplers.NSGAIISampler(population_size=50, seed=0),
        )
        start = time.perf_counter()
        study.optimize(_optuna_objective(evaluator, space), n_trials=n_rdb)
        rate = n_rdb / (time.perf_counter() - start)
        rows.append(("Optuna NSGAIISampler, default RDB path, same SQLite", n_rdb, rate))
        n_mem = 3000
        study = optuna.create_study(
            directions=directions, sampler=optuna.samplers.NSGAIISampler(population_size=200, seed=0)
        )
        start = time.perf_counter()
        study.optimize(_optuna_objective(evaluator, space), n_trials=n_mem)
        rate = n_mem / (time.perf_counter() - start)
        rows.append(("Optuna NSGAIISampler, in-memory (nothing persisted)", n_mem, rate))
        store.close()
    url, admin = _pg_database()
    try:
        with Store.open(url) as store:
            _copy_luts(store)
            result = run_surrogate(store, SearchSpec("bench", "mbv3", OBJECTIVES, n_trials=n_trials, population=200))
            rows.append(("hwpareto nsga2, bulk writes, PostgreSQL 15 (local)", n_trials, result.trials_per_s))
            start = time.perf_counter()
            stored, _, _ = load_trials(store, "bench")
            read_s = time.perf_counter() - start
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        admin.close()
    print(f"mbv3 (47 dimensions), 3 objectives {', '.join(OBJECTIVES)}, one process (1 core busy)\n")
    print("| path | trials | persisted trials/s |")
    print("|---|---|---|")
    for name, n, rate in rows:
        print(f"| {name} | {n} | {rate:,.0f} |")
    print(f"\nReading the {len(stored)} PostgreSQL trials back in bulk (load_trials): {read_s:.2f} s.")


def convergence(n_reference: int, n_trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space("mbv3")
    objectives = [parse_objective(o) for o in CONVERGENCE_OBJECTIVES]
    directions = [o.direction for o in objectives]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(str(Path(tmp) / "s.db"))
        build_lut(store, device_spec(store, "cim-reram"), space)
        evaluator = Evaluator(store, space, objectives)
        rng = np.random.default_rng(123)
        start = time.perf_counter()
        front = np.empty((0, 3))
        chunk = 20_000
        for begin in range(0, n_reference, chunk):  # exact front of the sample, kept incrementally
            configs = [space.sample(rng) for _ in range(min(chunk, n_reference - begin))]
            mean, _ = evaluator.evaluate(configs)
            evaluator._cache.clear()
            pool = np.vstack([front, mean])
            front = pool[non_dominated_mask(pool, directions)]
        sample_s = time.perf_counter() - start
        worst = np.array([front[:, 0].min() * 0.9, front[:, 1].max() * 1.1, front[:, 2].max() * 1.1])
        reference_hv = hypervolume(front, worst, directions)
        print(
            f"Reference: exact front of {n_reference:,} random mbv3 SubNets ({len(front)} points, {sample_s:.0f} s);"
            f" hypervolume w.r.t. {worst.round(3).tolist()}\n"
        )
        print("| sampler | trials to reach 99 % of the reference HV | HV after all trials (% of reference) | s |")
        print("|---|---|---|---|")
        for sampler in ("nsga2", "random"):
            spec = SearchSpec(
                f"conv-{sampler}",
                "mbv3",
                CONVERGENCE_OBJECTIVES,
                sampler=sampler,
                n_trials=n_trials,
                population=200,
                seed=0,
            )
            start = time.perf_counter()
            run_surrogate(store, spec)
            seconds = time.perf_counter() - start
            _, values, _ = load_trials(store, spec.name)
            history = hypervolume_history(values, worst, directions)
            reached = np.flatnonzero(history >= 0.99 * reference_hv)
            first = f"{reached[0] + 1:,}" if len(reached) else f"not within {n_trials:,}"
            print(f"| {sampler} | {first} | {100 * history[-1] / reference_hv:.1f} | {seconds:.0f} |")
        store.close()


def _digits_store(path: Path) -> None:
    """A store as the demo builds it for mbv3-digits on npu-tpu: the shipped LUT, accuracy table and predictor."""
    from hwpareto.resources import data_path
    from pareto._importer import import_table, parse_columns
    from predictors._service import train_accuracy
    from profilers import import_lut_csv

    with Store.open(str(path)) as store:
        store.optuna_storage()
        space = store.spaces.get("mbv3-digits")
        device_spec(store, "npu-tpu")
        import_lut_csv(store, data_path() / "luts" / "npu-tpu.csv", "npu-tpu")
        columns = parse_columns(["val_acc_pct"], "digits-affine")
        table = data_path() / "demo" / "mbv3-digits_accuracy.csv"
        import_table(
            store, table, space=space, columns=columns, subject_kind="dataset", metric="val_acc_pct", source="measured"
        )
        train_accuracy(store, space, metric="val_acc_pct", dataset="digits-affine", seed=0)


def cli(n_trials: int, repeat: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        _digits_store(base)
        for _ in range(repeat):
            target = Path(tmp) / "cli.db"
            shutil.copy(base, target)
            command = [sys.executable, "-m", "hwpareto.cli", "search", "--space", "mbv3-digits"]
            command += [a for o in CLI_OBJECTIVES for a in ("--objective", o)]
            command += ["--trials", str(n_trials), "--store", str(target), "--json"]
            start = time.perf_counter()
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            wall_s = time.perf_counter() - start
            search_rate = json.loads(out)["trials_per_s"]
            target.unlink()
            shutil.copy(base, target)
            with Store.open(str(target)) as store:
                space = store.spaces.get("mbv3-digits")
                objectives = [parse_objective(o) for o in CLI_OBJECTIVES]
                evaluator = Evaluator(store, space, objectives)
                study = optuna.create_study(
                    storage=store.optuna_storage(),
                    directions=[o.direction for o in objectives],
                    sampler=optuna.samplers.NSGAIISampler(seed=0),
                )
                n_rdb = 200
                start = time.perf_counter()
                study.optimize(_optuna_objective(evaluator, space), n_trials=n_rdb)
                rdb_rate = n_rdb / (time.perf_counter() - start)
            target.unlink()
            rows.append((search_rate, n_trials / wall_s, rdb_rate))
    print(f"mbv3-digits, 3 objectives {', '.join(CLI_OBJECTIVES)}, {n_trials} trials\n")
    print("| hwpareto search trials/s (as it reports) | same, whole command wall clock | Optuna RDB trials/s | ratio |")
    print("|---|---|---|---|")
    for search_rate, wall_rate, rdb_rate in rows:
        print(f"| {search_rate:,.0f} | {wall_rate:,.0f} | {rdb_rate:,.1f} | {search_rate / rdb_rate:,.0f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["throughput", "convergence", "cli"])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--reference", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.step == "throughput":
        throughput(args.trials)
    elif args.step == "cli":
        cli(args.trials, args.repeat)
    else:
        convergence(args.reference, args.trials)


if __name__ == "__main__":
    main()
