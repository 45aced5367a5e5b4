"""Measured data: ``import``, ``devices``, ``measurements``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from hwpareto.cli._app import app
from hwpareto.cli._common import (
    BATCH_MAX,
    JsonOpt,
    StoreOpt,
    command,
    emit,
    emit_rows,
    exactly_one,
    open_store,
    parse_pair,
    parse_scalar,
)
from hwpareto.errors import InvalidValueError


# ---------------------------------------------------------------------------------------------------- data
@app.command("import")
@command
def import_csv(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Table with one SubNet per row.")],
    space: Annotated[str, typer.Option("--space", help="Search space the rows belong to.")],
    metric: Annotated[str, typer.Option("--metric", help="Metric name with its unit, e.g. latency_ms.")],
    column: Annotated[list[str], typer.Option("--column", help="Value column, or COLUMN=SUBJECT; repeatable.")],
    device: Annotated[
        str | None, typer.Option("--device", help="Device the values were measured on ({column} = column name).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset the values were evaluated on ({column} allowed).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="DIM=VALUE for a dimension the table lacks; repeatable.")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="COLUMN=VALUE: import only matching rows; repeatable.")
    ] = None,
    source: Annotated[str, typer.Option("--source", help="measured | simulated | imported | evaluated")] = "imported",
    batch: Annotated[int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Batch size the values refer to.")] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a third-party measurement table (idempotent; bad rows reported by row number, nothing half-written)."""
    from pareto import import_table, parse_columns

    exactly_one("--device/--dataset", device, dataset)
    s = open_store(store)
    sp = s.spaces.get(space)
    kind: Literal["device", "dataset"] = "device" if device is not None else "dataset"
    columns = parse_columns(column, device if device is not None else str(dataset))
    defaults: dict[str, Any] = {}
    for item in set_ or []:
        name, value = parse_pair(item, "--set", "DIM=VALUE")
        dim = sp.dimension(name)
        defaults[name] = dim.coerce(parse_scalar(value), sp.name)
    filters = dict(parse_pair(item, "--where", "COLUMN=VALUE") for item in where or [])
    report = import_table(
        s,
        csv_path,
        space=sp,
        columns=columns,
        subject_kind=kind,
        metric=metric,
        defaults=defaults,
        source=source,
        batch=batch,
        where=filters,
    )
    w = report.written
    info = {
        "csv": report.path,
        "rows": report.rows,
        "subnets": report.subnets,
        "inserted": w.inserted,
        "updated": w.updated,
        "unchanged": w.unchanged,
        "skipped_empty": report.skipped_empty,
        "new_devices": list(w.new_devices),
    }
    lines = [
        f"imported {report.rows} rows ({report.subnets} SubNets) into {s.url}: {w.inserted} new, "
        f"{w.updated} updated, {w.unchanged} unchanged, {report.skipped_empty} empty cells skipped"
    ]
    if w.new_devices:
        lines.append("registered imported devices: " + ", ".join(w.new_devices))
    emit(info, json_out, "\n".join(lines))


@app.command()
@command
def devices(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List registered devices: kind, runtime (none for a device imported from a table), LUT entries per space,
    measurements."""
    from profilers import lut_entries_per_space

    s = open_store(store)
    spaces = s.spaces.load_all()[0]  # a broken space plugin spoils no device's row
    rows = [
        {
            **asdict(d),
            "runtime": None if d.kind == "imported" else d.spec.get("runtime", "torch"),
            "lut_entries_per_space": lut_entries_per_space(s, d.name, spaces) if d.lut_entries else {},
        }
        for d in s.devices.list()
    ]
    emit_rows(
        rows,
        ["name", "kind", "runtime", "luts", "measurements"],
        json_out=json_out,
        title="devices",
        empty="no devices yet: hwpareto profile --device cpu-local --space mbv3, or import a table",
        cells=lambda r: {**r, "luts": ", ".join(f"{k}: {v}" for k, v in r["lut_entries_per_space"].items()) or "-"},
    )


@app.command()
@command
def measurements(
    space: Annotated[str | None, typer.Option("--space", help="Only this space.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Only this metric.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write a wide CSV (config columns + one column per subject).")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Summarise stored measurements, or write them as a wide CSV with --out (requires --space)."""
    s = open_store(store)
    if device and dataset:
        raise InvalidValueError("--device/--dataset", "at most one of them", "both")
    subject = device or dataset
    kind = "device" if device else "dataset" if dataset else None
    if out is not None:
        if space is None:
            raise InvalidValueError("--space", "a space name when --out is given", "none")
        from hwpareto.store import write_wide_csv

        n = write_wide_csv(s, s.spaces.get(space), out, subject=subject, subject_kind=kind, metric=metric)
        typer.echo(f"wrote {n} SubNets to {out}")
        return
    rows = [
        asdict(r)
        for r in s.measurements.summary()
        if (space is None or r.space == space)
        and (subject is None or r.subject == subject)
        and (kind is None or r.subject_kind == kind)
        and (metric is None or r.metric == metric)
    ]
    emit_rows(
        rows,
        ["space", "subject_kind", "subject", "metric", "source", "count"],
        json_out=json_out,
        title="measurements",
        empty="no measurements match: import a table with hwpareto import",
    )
