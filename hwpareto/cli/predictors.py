"""Predictors: ``train latency/accuracy``, ``predictors``, ``reference-set``, ``predict``, ``check``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from hwpareto.cli._app import app, train_app
from hwpareto.cli._common import (
    COUNT_MAX,
    SEED_MAX,
    JsonOpt,
    StoreOpt,
    command,
    emit,
    emit_rows,
    exactly_one,
    open_store,
    read_configs,
    read_json,
)
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.predictor_key import PredictorKey
from supernet import check_name


# ---------------------------------------------------------------------------------------------------- predictors
def _print_train(report: Any, json_out: bool) -> None:
    known = report.known
    out: dict[str, Any] = {"name": report.name, "n_train": report.n_train, "validation": report.validation}
    v = report.validation
    lines = [f"stored predictor {report.name!r} ({report.n_train} training SubNets)"]
    if known is not None:
        out["known"] = {
            "used": list(known.used),
            "predicted": list(known.predicted),
            "skipped": [{"device": d, "reason": r} for d, r in known.skipped],
        }
        filled = (
            f" (own predictors fill in unmeasured SubNets of: {', '.join(known.predicted)})" if known.predicted else ""
        )
        lines.append(f"  known devices used: {', '.join(known.used)}{filled}")
        lines.extend(f"  skipped {device}: {reason}" for device, reason in known.skipped)
    if report.model is not None:
        out["model"] = report.model
        costs = {0.0: "not used", 0.5: "blended with the mix", 1.0: "used alone"}[report.model["op_cost_weight"]]
        correction = ", op-level correction" if report.model["op_correction"] else ""
        lines.append(f"  transfer: device mix ({report.model['mix']}){correction}; op-cost model {costs}")
        lines.extend(
            f"  set aside reference {r['config_key']} {json.dumps(r['config'], separators=(',', ':'))}: measured "
            f"{r['measured']:.4g}, the other references predict "
            f"{r['predicted']:.4g} ({r['metric']}); an outlier, remeasure it"
            for r in report.model.get("set_aside", [])
        )
    if "kendall_tau" in v:
        lut = f", LUT-sum alone {v['lut_sum_mape_pct']:.1f} %" if "lut_sum_mape_pct" in v else ""
        lines.append(
            f"  held out ({v['split']}): Kendall τ {v['kendall_tau']:.3f}, MAPE {v['mape_pct']:.2f} %{lut}, "
            f"within ±10 % {v['within_10pct']:.1f} %, ±1σ coverage {v.get('coverage_1sigma_pct', 0):.0f} %"
        )
    emit(out, json_out, "\n".join(lines))


@train_app.command("latency")
@command
def train_latency_cmd(
    device: Annotated[str, typer.Option("--device", help="Device whose measurements to learn.")],
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="latency_ms or energy_mj; LLM spaces also prefill_ms, decode_ms_per_token, energy_mj_per_token.",
        ),
    ] = "latency_ms",
    few_shot: Annotated[
        int | None,
        typer.Option("--few-shot", min=3, max=COUNT_MAX, help="Use only K measurements of DEVICE (transfer)."),
    ] = None,
    known: Annotated[
        str | None,
        typer.Option(
            "--known", help="Few-shot: exactly these known devices, comma-separated (default: chosen by rule)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Split and model seed.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a latency/energy predictor (LUT-sum + learned correction, or few-shot transfer from known devices)."""
    if name is not None:
        check_name("--name", name)  # before any training
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from predictors import train_latency

    s = open_store(store)
    devices = None if known is None else [d.strip() for d in known.split(",") if d.strip()]
    with contextlib.ExitStack() as stack:
        bar: Progress | None = None

        def advance(done: int, total: int, what: str) -> None:
            nonlocal bar
            if bar is None:  # only when known devices' predictors must be trained first
                typer.echo(
                    f"training the predictors of {total} known device(s) that have not measured every "
                    f"SubNet (they fill in what those devices lack)",
                    err=True,
                )
                bar = stack.enter_context(
                    Progress(
                        TextColumn("{task.description}"),
                        BarColumn(),
                        MofNCompleteColumn(),
                        TimeElapsedColumn(),
                        transient=True,
                    )
                )
                bar.add_task("", total=total)
            bar.update(bar.task_ids[0], completed=done, description=f"training {what}" if what else "done")

        report = train_latency(
            s,
            device,
            s.spaces.get(space),
            metric=metric,
            name=name,
            few_shot=few_shot,
            known=devices,
            seed=seed,
            progress=advance,
        )
    _print_train(report, json_out)


@train_app.command("accuracy")
@command
def train_accuracy_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    metric: Annotated[str, typer.Option("--metric", help="Accuracy metric, e.g. test_acc_pct.")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset the metric was evaluated on.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Split and model seed.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train an accuracy predictor with calibrated uncertainty."""
    if name is not None:
        check_name("--name", name)  # before any training
    from predictors import train_accuracy

    s = open_store(store)
    _print_train(train_accuracy(s, s.spaces.get(space), metric=metric, dataset=dataset, name=name, seed=seed), json_out)


@app.command("predictors")
@command
def predictors_cmd(
    space: Annotated[str | None, typer.Option("--space")] = None, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """List stored predictors with their held-out metrics."""
    rows = [
        asdict(r) | {"meta": {k: v for k, v in r.meta.items() if k != "train_keys"}}
        for r in open_store(store).predictors.list(space)
    ]
    emit_rows(
        rows,
        ["name", "kind", "n", "τ", "MAPE %", "±10 %", "drift"],
        json_out=json_out,
        title="predictors (held-out metrics)",
        empty="no predictors yet: hwpareto train latency --device D --space S, or train accuracy",
        cells=_predictor_cells,
    )


def _predictor_cells(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored predictor's row of ``hwpareto predictors``: its held-out metrics and last drift check."""
    meta = row["meta"]
    v = meta.get("validation", {})
    checks = meta.get("checks", [])
    return {
        "name": row["name"],
        "kind": row["kind"],
        "n": meta.get("n_train"),
        "τ": f"{v['kendall_tau']:.3f}" if "kendall_tau" in v else "-",
        "MAPE %": f"{v['mape_pct']:.2f}" if "mape_pct" in v else "-",
        "±10 %": f"{v['within_10pct']:.1f}" if "within_10pct" in v else "-",
        "drift": "yes" if checks and checks[-1].get("drift") else ("no" if checks else "-"),
    }


@app.command("reference-set")
@command
def reference_set_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    k: Annotated[int, typer.Option("-k", min=3, max=10_000, help="How many SubNets to measure.")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="latency_ms or energy_mj.")] = "latency_ms",
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Sampling seed (no known devices).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write them as CSV with an empty METRIC column.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The K SubNets to measure on a new device for a few-shot transfer, spread over what makes the known devices
    differ. Fill in the CSV's METRIC column and import it (or run `measure --in`), then `train latency --few-shot K`."""
    from predictors import suggest_references

    s = open_store(store)
    sp = s.spaces.get(space)
    configs, known = suggest_references(s, sp, k, metric=metric, seed=seed)
    basis = f"the measured {metric} of {', '.join(known)}" if known else "cost proxies (no known devices yet)"
    if out is not None:
        import pandas as pd

        from hwpareto.store import csv_safe

        frame = pd.DataFrame([{**sp.to_record(c), "config_key": c.key, metric: None} for c in configs])
        try:
            csv_safe(frame).to_csv(out, index=False)
        except OSError as exc:
            raise HwparetoError(f"output {out}: cannot write ({exc.strerror})") from None
        typer.echo(
            f"wrote {len(configs)} reference SubNets of {sp.name} (chosen from {basis}) to {out}: fill in "
            f"{metric} and run hwpareto import {out} --space {sp.name} --device NEW --metric {metric} "
            f"--column {metric}"
        )
    else:
        emit(
            {"space": sp.name, "metric": metric, "known": list(known), "configs": [c.to_dict() for c in configs]},
            json_out,
            "\n".join(
                [f"{len(configs)} reference SubNets of {sp.name}, chosen from {basis}:"]
                + [f"  {c.key}  {sp.summary(c)}" for c in configs]
            ),
        )


@app.command()
@command
def predict(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    config: Annotated[Path | None, typer.Argument(help="One config JSON file.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device's cost predictors.")] = None,
    in_file: Annotated[Path | None, typer.Option("--in", help="Many configs: .jsonl or .csv.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write predictions as CSV.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict a config (or a file of configs) with every stored predictor of the space: mean ± uncertainty."""
    from predictors import predict_table

    exactly_one("CONFIG/--in", config, in_file)
    s = open_store(store)
    sp = s.spaces.get(space)
    if config is not None:
        configs = [sp.validate(read_json(config, "config"))]
    else:
        assert in_file is not None  # exactly one of the two, checked above
        configs = read_configs(sp, in_file)
    table = predict_table(s, sp, configs, device)
    if out is not None:
        import pandas as pd

        from hwpareto.store import csv_safe

        records = pd.DataFrame([sp.to_record(c) for c in configs])
        try:
            csv_safe(pd.concat([records, table], axis=1)).to_csv(out, index=False)
        except OSError as exc:
            raise HwparetoError(f"output {out}: cannot write ({exc.strerror})") from None
        typer.echo(f"wrote predictions for {len(configs)} SubNets to {out}")
        return

    def human() -> None:
        names = [c for c in table.columns if c != "config_key" and not c.endswith("_std")]
        for i, cfg in enumerate(configs[:20]):
            typer.echo(
                f"{cfg.key}: " + ", ".join(f"{n} = {table[n][i]:.4g} ± {table[n + '_std'][i]:.2g}" for n in names)
            )

    emit(table.to_dict(orient="records"), json_out, human)


@app.command()
@command
def check(
    device: Annotated[str, typer.Option("--device", help="Device whose predictor to check.")],
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    n: Annotated[int, typer.Option("-n", "--n", min=2, max=COUNT_MAX, help="Fresh SubNets to measure.")] = 20,
    metric: Annotated[str, typer.Option("--metric")] = "latency_ms",
    predictor: Annotated[str | None, typer.Option("--predictor", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX)] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure N fresh SubNets (or take N imported ones not used in training), compare with the predictor,
    store the result and flag drift."""
    import numpy as np

    from predictors import check_drift
    from profilers import device_spec, measure_subnets

    s = open_store(store)
    sp = s.spaces.get(space)
    name = predictor or PredictorKey(metric, sp.name, device).name
    trained = set(s.predictors.load(name).meta.get("train_keys", []))
    if s.devices.get(device).kind == "imported":
        df = s.measurements.table(space=sp.name, subject=device, metric=metric)
        df = df[~df["config_key"].isin(trained)].drop_duplicates("config_key").head(n)
        configs = [sp.validate(json.loads(t)) for t in df["config_json"]]
        values = df["value"].to_numpy(float)
    else:
        rng = np.random.default_rng(seed)
        configs = [c for c in (sp.sample(rng) for _ in range(3 * n)) if c.key not in trained][:n]
        measure_subnets(s, device_spec(s, device), sp, configs)
        df = s.measurements.table(space=sp.name, subject=device, metric=metric).set_index("config_key")
        values = np.array([float(df.loc[[c.key], "value"].median()) for c in configs])
    if len(configs) < 2:
        raise InvalidValueError(f"fresh SubNets for {device}", "at least 2 not used in training", len(configs))
    result = check_drift(s, name, configs, values)
    flag = "DRIFT: retrain (hwpareto train latency ...)" if result["drift"] else "no drift"
    emit(
        result,
        json_out,
        f"{name} on {len(configs)} fresh SubNets: MAPE {result['mape_pct']:.2f} % (recorded "
        f"{result['recorded_mape_pct']}), Kendall τ {result['kendall_tau']:.3f} -> {flag}",
    )
