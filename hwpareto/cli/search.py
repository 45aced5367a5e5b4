"""Searches and fronts: ``search``, ``worker``, ``searches``, ``dashboard``, ``front``, ``export``,
``verify-bundle``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from hwpareto.cli._app import app
from hwpareto.cli._common import (
    BATCH_MAX,
    COUNT_MAX,
    SEED_MAX,
    ConfigFormatOpt,
    ExportCheckpointOpt,
    JsonOpt,
    RandomWeightsOpt,
    StoreOpt,
    command,
    config_printer,
    emit,
    emit_rows,
    open_store,
    parse_pair,
    parse_scalar,
    print_table,
    quiet_optuna,
)
from hwpareto.errors import HwparetoError
from hwpareto.options import BUDGETED, SEARCH, BudgetedOptions
from supernet import show_name


# ---------------------------------------------------------------------------------------------------- search
@app.command()
@command
def search(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    objective: Annotated[
        list[str], typer.Option("--objective", help="METRIC[@DEVICE_OR_DATASET][:max|:min]; repeatable.")
    ],
    budget: Annotated[
        list[str] | None, typer.Option("--budget", help="'OBJECTIVE <= BOUND' constraint; repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name (default derived; reuse resumes).")] = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="Strategy: nsga2 | random | nsga3 | tpe, or a hwpareto.strategies plugin.")
    ] = SEARCH.sampler,
    trials: Annotated[
        int, typer.Option("--trials", min=1, max=COUNT_MAX, help="Trials (budgeted: accuracy evaluations).")
    ] = SEARCH.n_trials,
    population: Annotated[
        int, typer.Option("--population", min=4, max=COUNT_MAX, help="Trials per generation.")
    ] = SEARCH.population,
    fix: Annotated[list[str] | None, typer.Option("--fix", help="DIM=VALUE held fixed; repeatable.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="surrogate | budgeted (first objective evaluated)")] = "surrogate",
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Budgeted: evaluations per step.")
    ] = BUDGETED.batch,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX)] = SEARCH.seed,
    queue: Annotated[bool, typer.Option("--queue", help="Queue for workers instead of running here.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run (or queue) a multi-objective search stored as an Optuna study in the store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pareto import SearchSpec, run_now, submit, validate_spec

    quiet_optuna()
    s = open_store(store)
    sp = s.spaces.get(space)
    fixed = {}
    for item in fix or []:
        dim, value = parse_pair(item, "--fix", "DIM=VALUE")
        fixed[dim] = sp.dimension(dim).coerce(parse_scalar(value), sp.name)
    spec = SearchSpec(
        name=name or f"{space}-{'-'.join(o.split('@')[0] for o in objective)}-{seed}",
        space=space,
        objectives=tuple(objective),
        budgets=tuple(budget or ()),
        sampler=sampler,
        n_trials=trials,
        population=population,
        seed=seed,
        mode=mode,
        fixed=fixed,
        options=BudgetedOptions(batch=batch).to_dict() if mode == "budgeted" else {},
    )
    if queue:
        row = submit(s, spec)
        typer.echo(f"queued search {row.name!r}: start workers with hwpareto worker --store {s.url}")
        return
    resolved = validate_spec(s, spec)  # checked, its evaluator built and its budgets probed once, for the run
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=json_out
    ) as bar:
        task = bar.add_task(spec.name, total=spec.n_trials)
        result = run_now(s, resolved, progress=lambda done, total: bar.update(task, completed=done))
    info = {
        "study": result.study,
        "trials": result.total,
        "added": result.added,
        "seconds": round(result.seconds, 2),
        "trials_per_s": round(result.trials_per_s, 1),
    } | ({"note": result.note} if result.note else {})
    summary = (
        f"study {result.study!r}: {result.total} trials ({result.added} new, "
        f"{result.trials_per_s:.0f} trials/s); see hwpareto front {result.study}"
    )
    emit(info, json_out, f"{result.note}\n{summary}" if result.note else summary)


@app.command()
@command
def worker(
    study: Annotated[str | None, typer.Option("--study", help="Only this search.")] = None,
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", help="Exit after T s without work.")] = None,
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=0.5, help="Heartbeat period (s).")] = 2.0,
    store: StoreOpt = None,
) -> None:
    """Run queued searches from the store (any number of workers, on any machine sharing a PostgreSQL store)."""
    from pareto import run_worker

    quiet_optuna()
    # A connection the server ended (pg_terminate_backend, a restart) fails its rollback when it goes back to the
    # pool; SQLAlchemy logs that with a traceback although the pool discards it and the worker reconnects (saying so)
    pool_log = logging.getLogger("sqlalchemy.pool")
    pool_log.addHandler(logging.NullHandler())
    pool_log.propagate = False
    done = run_worker(
        open_store(store),
        study=study,
        idle_exit_s=idle_exit,
        heartbeat_s=heartbeat,
        stale_after_s=max(10.0, 5 * heartbeat),
        log=lambda m: typer.echo(show_name(m), err=True),
    )
    typer.echo(f"worker finished {done} search(es)")


@app.command()
@command
def searches(
    cancel: Annotated[
        str | None,
        typer.Option("--cancel", help="Cancel this queued or running search (its worker stops at its next beat)."),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List queued, running and finished searches, and the store's studies without a searches row ("study only":
    e.g. the demo's); --cancel NAME cancels one first (its trials so far stay in its study)."""
    from dataclasses import asdict

    from pareto import list_all_searches

    if cancel is not None:
        row = open_store(store).searches.cancel(cancel)
        typer.echo(f"cancelled search {show_name(row.name)} ({row.trials_done} of {row.n_trials} trials)", err=True)

    emit_rows(
        [asdict(r) for r in list_all_searches(open_store(store))],
        ["name", "space", "status", "trials_done", "n_trials", "worker", "error"],
        json_out=json_out,
        title="searches",
        empty="no searches yet: hwpareto search --space S --objective ... [--queue]",
    )


@app.command()
@command
def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8501,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser (headless).")] = False,
    store: StoreOpt = None,
) -> None:
    """Serve the web dashboard (Devices, Search, Fronts, Export) on the store until interrupted. It has no
    authentication: a --host other than a loopback address is served with a warning."""
    import ipaddress

    from dashboard import serve
    from hwpareto.store import shown_url

    url = store or open_store(store).url  # the default store is created (and checked) before serving
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may reach other machines
        loopback = False
    if not loopback:
        typer.echo(
            f"warning: --host {host} serves the dashboard beyond this machine and it has no authentication: anyone "
            f"who reaches port {port} can read the store and start jobs (use 127.0.0.1 and an SSH tunnel, or a proxy "
            "that authenticates)",
            err=True,
        )
    typer.echo(f"hwpareto dashboard on http://{host}:{port} (store {shown_url(url)}); Ctrl+C stops it", err=True)
    raise typer.Exit(serve(url, host=host, port=port, open_browser=not no_browser))


@app.command()
@command
def front(
    study: str,
    device: Annotated[str | None, typer.Option("--device", help="The front on this device's costs.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the front as CSV.")] = None,
    operating_points: Annotated[
        int | None,
        typer.Option("--operating-points", min=2, max=COUNT_MAX, help="K SubNets spanning the latency range."),
    ] = None,
    fmt: ConfigFormatOpt = "hwpareto",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The Pareto front of a study (feasible trials), per device, with its knee; or an operating-point table.
    Each SubNet's config (--json: ``config``; --csv: one column per dimension, or OFA's keys with --format ofa)."""
    import json

    from hwpareto.store import csv_safe
    from pareto import study_results

    quiet_optuna()
    s = open_store(store)
    results = study_results(s, study)
    space = s.spaces.get(results.spec.space)
    printed = config_printer(space, fmt)

    def config_of(number: int) -> dict[str, Any] | None:
        values = results.configs.get(number)  # None: a trial stored without its config
        return None if values is None else printed(space.validate(values))

    if operating_points is not None:
        table = [r | {"config": config_of(r["trial"])} for r in results.operating_points(device, operating_points)]
        emit(
            table,
            json_out,
            lambda: print_table(table, [c for c in table[0] if c != "config"], title=f"operating points of {study}"),
        )
        return
    fr = results.front(device)
    results.configs.prefetch(fr.rows["number"])
    configs = [config_of(int(n)) for n in fr.rows["number"]]
    if csv_out is not None:
        columns = fr.rows.copy()
        for name in dict.fromkeys(k for c in configs if c for k in c):
            cells = [c.get(name) if c else None for c in configs]
            column = name if name not in columns else f"config.{name}"  # never hides a result column
            columns[column] = [json.dumps(v) if isinstance(v, list) else v for v in cells]
        csv_safe(columns).to_csv(csv_out, index=False)
        typer.echo(f"wrote {len(fr.rows)} front SubNets to {csv_out}")
        return

    def human() -> None:
        cols = ["number", *fr.objectives, "ties", "config_key"]
        print_table(
            [
                {c: (f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]) for c in cols}
                | ({"knee": "←" if r["number"] == fr.knee_number else ""})
                | ({"config": json.dumps(config, separators=(",", ":"))} if fmt != "hwpareto" else {})
                for r, config in zip(fr.rows.to_dict(orient="records"), configs, strict=True)
            ],
            [*cols, "knee", *(["config"] if fmt != "hwpareto" else [])],
            title=f"front of {study}" + (f" on {device}" if device else ""),
        )
        typer.echo(_ties_note(fr))

    emit(
        {
            "study": study,
            "device": device,
            "objectives": list(fr.objectives),
            "knee": fr.knee_number,
            "front": [
                r | {"config": config} for r, config in zip(fr.rows.to_dict(orient="records"), configs, strict=True)
            ],
            "ties": _ties_note(fr),
        },
        json_out,
        human,
    )


def _ties_note(fr: Any) -> str:
    """How a front shows ties, and why Optuna's ``best_trials`` lists more."""
    trials = int(fr.rows["ties"].sum()) if len(fr.rows) else 0
    return (
        f"{len(fr.rows)} distinct objective vectors shared by {trials} non-dominated trials: one row (the first "
        "trial) per vector, 'ties' counts the trials with the same values (repeats, equivalent configs); "
        f"Optuna's best_trials lists all {trials}"
    )


@app.command("export")
@command
def export_cmd(
    study: str,
    trial: int,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder.")],
    no_weights: Annotated[bool, typer.Option("--no-weights", help="Skip weights and ONNX.")] = False,
    checkpoint: ExportCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out folder.")] = False,
    fmt: ConfigFormatOpt = "hwpareto",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a trial's SubNet: config, predicted and measured metrics, provenance, weights and ONNX (an LLM: a
    transformers model folder and the ONNX prefill graph). Refused when no trained SuperNet weights are known,
    unless --random-weights; says where the weights came from and whether batch norm was recalibrated. Prints the
    SubNet's config (--format ofa: OFA's dict)."""
    import json

    from rich.console import Console

    from pareto import export_trial, study_results

    quiet_optuna()
    s = open_store(store)
    results = study_results(s, study)
    printed = config_printer(s.spaces.get(results.spec.space), fmt)  # refused before anything is written
    with Console(stderr=True).status(f"exporting trial {trial} of {study}") as status:
        info = export_trial(
            s,
            study,
            trial,
            out,
            weights=not no_weights,
            onnx=not no_weights,
            checkpoint=checkpoint,
            random_weights=random_weights,
            progress=lambda step: status.update(f"{step}..."),
            force=force,
        )
    config = printed(s.spaces.get(results.spec.space).validate(results.configs[trial]))
    emit(
        info | {"config": config},
        json_out,
        "\n".join(
            [
                f"exported trial {trial} of {study} ({info['key']}) to {info['directory']}: "
                + ", ".join(info["files"]),
                *info["notes"],
                f"config ({fmt}): {json.dumps(config, separators=(',', ':'))}",
            ]
        ),
    )


@app.command("verify-bundle")
@command
def verify_bundle_cmd(
    directory: Annotated[Path, typer.Argument(help="A folder written by `hwpareto export`.")],
    atol: Annotated[
        float, typer.Option("--atol", min=0.0, max=1e6, help="Largest absolute output difference accepted.")
    ] = 1e-4,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="The bundle's SuperNet (safetensors; a model folder for an LLM) when neither shipped nor recorded "
            "in the store; its SHA-256 must be the one the bundle names.",
        ),
    ] = None,
    hashes_only: Annotated[
        bool,
        typer.Option("--hashes-only", help="Check the files' hashes alone (a bundle that names no SuperNet)."),
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check an exported bundle: every file in the folder against config.json (no file missing, unlisted or
    changed; no symlink), then the SubNet re-extracted from the SuperNet it names (by SHA-256: --checkpoint, the
    shipped ones, then the store's recorded checkpoints and model folders) against the bundle's weights, ONNX graph
    (onnxruntime) and, for an LLM, its plain transformers folder, on two inputs; exit 1 on a difference above
    --atol, and for a bundle with weights or ONNX that names no SuperNet unless --hashes-only. Runs from any
    folder: a bundle holds no path of the machine that exported it."""
    from pareto import verify_bundle

    check = verify_bundle(directory, checkpoint=checkpoint, store=lambda: open_store(store), hashes_only=hashes_only)
    diffs = dataclasses.asdict(check)
    compared = {k: v for k, v in diffs.items() if v is not None}
    if not check.ok(atol):
        worst = max(compared, key=lambda k: compared[k])
        raise HwparetoError(f"bundle {directory}: {worst}: expected at most --atol {atol:g}, got {compared[worst]:.3g}")
    text = ", ".join(f"{k} {v:.2g}" for k, v in compared.items())
    if not compared:
        text = "hashes only (--hashes-only)" if hashes_only else "config only, no weights to compare: hashes only"
    emit({"directory": str(directory), "ok": True, **diffs}, json_out, f"bundle {directory} verified: {text}")
