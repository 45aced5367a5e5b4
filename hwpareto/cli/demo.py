"""``demo``: the whole pipeline on the embedded default, then the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from hwpareto.cli._app import app
from hwpareto.cli._common import (
    COUNT_MAX,
    SEED_MAX,
    JsonOpt,
    StoreOpt,
    command,
    emit,
    open_store,
    print_table,
    quiet_optuna,
)


# ---------------------------------------------------------------------------------------------------- demo
@app.command()
@command
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the chosen SubNets' bundles.")] = Path("hwpareto-demo"),
    trials: Annotated[int, typer.Option("--trials", min=100, max=COUNT_MAX, help="Trials per search.")] = 3000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=SEED_MAX, help="Seed of budgets, predictors and searches.")
    ] = 0,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Everything but serving the dashboard.")] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Dashboard port.")] = 8501,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Serve without opening a browser.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The whole loop on the embedded default: devices, LUTs, predictors from the shipped tables, a search per
    device under a default budget (latency; the LLM's decode time per token), the chosen SubNets' bundles, then the
    dashboard on 127.0.0.1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pareto import describe_demo, run_demo

    quiet_optuna()

    s = open_store(store)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=json_out
    ) as bars:

        def step(line: str) -> None:
            if not json_out:
                bars.console.print(line, highlight=False)

        def bar(description: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(description, total=total)
            return lambda done: bars.update(task, completed=done)

        choices = run_demo(s, out, step=step, bar=bar, n_trials=trials, seed=seed)
    rows = describe_demo(choices)

    def human() -> None:
        columns = [c for c in rows[0] if c not in ("study", "bundle")] if rows else []
        print_table(
            rows,
            columns,
            "Chosen SubNets: the best within each device's budget (budget_metric <= budget_ms; quality: mbv3-digits "
            "val_acc_pct on digits-affine, maximised; llama-stdlib val_ppl, next-byte perplexity on stdlib, "
            "minimised, its costs at the runtime shown)",
        )
        typer.echo(f"bundles (config, weights, ONNX, metrics): {out.resolve()}/<study>/")

    emit(rows, json_out, human)
    if no_dashboard:
        if not json_out:
            typer.echo(f"browse them: hwpareto dashboard --store {s.url}")
        return
    from dashboard import serve

    typer.echo(f"dashboard on http://127.0.0.1:{port} (Ctrl-C stops it)")
    raise typer.Exit(serve(s.url, port=port, open_browser=not no_browser))
