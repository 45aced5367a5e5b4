"""The ``hwpareto`` command: wires supernet/, pareto/ (store, import, export) together. No logic of its own."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from supernet import HwparetoError, InvalidValueError, SearchSpace, get_space, list_spaces

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="hwpareto",
    help="Hardware-aware search and Pareto analysis for weight-shared neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
space_app = typer.Typer(help="Inspect and register search spaces.", no_args_is_help=True)
db_app = typer.Typer(help="Store schema maintenance.", no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(db_app, name="db")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HWPARETO_STORE",
        help="SQLite file path or SQLAlchemy URL (postgresql://...). Default: ~/.local/share/hwpareto/hwpareto.db.",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def _command(fn: F) -> F:
    """Turn user errors into a one-line message on stderr and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HwparetoError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(soft_wrap=True).print(table)


def _open_store(url: str | None) -> Any:
    from pareto._store import Store

    return Store.open(url)


def _space(name: str, store_url: str | None) -> SearchSpace:
    """A built-in space, else one registered in the store."""
    if name in list_spaces():
        return get_space(name)
    return _open_store(store_url).space(name)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HwparetoError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise HwparetoError(f"{what} {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _config_summary(space: SearchSpace, config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "space": space.name,
        "key": config.key,
        "values": config.values,
        "record": space.to_record(config),
    }
    if space.has_model:
        out["params"] = space.params(config)
        out["macs"] = space.macs(config)
    return out


# ---------------------------------------------------------------------------------------------------- store
@app.command()
@_command
def init(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Create the store (hwpareto's tables and Optuna's, one database) or check an existing one."""
    s = _open_store(store)
    s.optuna_storage()
    info = {"store": s.url, "revision": s.revision(), "devices": len(s.list_devices()), "spaces": s.space_names()}
    if json_out:
        _echo_json(info)
    else:
        typer.echo(f"store ready: {info['store']} (schema {info['revision']}, {info['devices']} device(s))")


@db_app.command("upgrade")
@_command
def db_upgrade(store: StoreOpt = None) -> None:
    """Upgrade the store's schema to this version of hwpareto (data is kept)."""
    from pareto._store import Store

    before, after = Store.upgrade(store)
    typer.echo(f"store schema: {before or 'empty'} -> {after}")


# ---------------------------------------------------------------------------------------------------- spaces
@app.command()
@_command
def spaces(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List the search spaces (built-in and registered in the store)."""
    names = _open_store(store).space_names()
    rows = []
    for name in names:
        sp = _space(name, store)
        rows.append(
            {
                "name": name,
                "dimensions": len(sp.dimensions),
                "size": f"{sp.size():.3g}",
                "model": "yes" if sp.has_model else "no (declarative)",
                "description": sp.description,
            }
        )
    if json_out:
        _echo_json([_space(r["name"], store).describe() for r in rows])
    else:
        _table(rows, ["name", "dimensions", "size", "model", "description"], title="search spaces")


@space_app.command("show")
@_command
def space_show(name: str, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Show a space's dimensions and allowed values."""
    sp = _space(name, store)
    if json_out:
        _echo_json(sp.describe())
        return
    typer.echo(f"{sp.name}: {sp.description}")
    typer.echo(
        f"{len(sp.dimensions)} dimensions, {sp.size():.4g} configs; table columns: "
        + " or ".join("(" + ", ".join(c) + ")" for c in sp.record_columns())
    )
    _table(
        [{"name": d.name, "group": d.group, "allowed": d.allowed} for d in sp.dimensions], ["name", "group", "allowed"]
    )


@space_app.command("register")
@_command
def space_register(file: Path, store: StoreOpt = None) -> None:
    """Register a declarative space (YAML/JSON: named categorical/int/float dimensions) in the store."""
    from supernet import load_space_file

    sp = load_space_file(file)
    _open_store(store).register_space(sp)
    typer.echo(f"registered space {sp.name!r} ({len(sp.dimensions)} dimensions)")


# ---------------------------------------------------------------------------------------------------- configs
@app.command()
@_command
def sample(
    space: str,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of SubNets.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sample random SubNet configs of SPACE."""
    import numpy as np

    sp = _space(space, store)
    rng = np.random.default_rng(seed)
    cfgs = [sp.sample(rng) for _ in range(n)]
    configs = [_config_summary(sp, cfg) for cfg in cfgs]
    if json_out:
        _echo_json(configs)
        return
    rows = [
        {
            "key": c["key"],
            "params (M)": f"{c['params'] / 1e6:.3f}" if "params" in c else "",
            "MMACs": f"{c['macs'] / 1e6:.1f}" if "macs" in c else "",
            "config": sp.summary(cfg),
        }
        for c, cfg in zip(configs, cfgs, strict=True)
    ]
    _table(rows, ["key", "params (M)", "MMACs", "config"], title=f"{n} sampled {sp.name} SubNets (seed {seed})")


@app.command()
@_command
def validate(space: str, config: Path, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Validate a config JSON file against SPACE (plain values or {"space", "values"})."""
    sp = _space(space, store)
    cfg = sp.validate(_read_json(config, "config"))
    summary = _config_summary(sp, cfg)
    if json_out:
        _echo_json(summary)
    else:
        extra = f", {summary['params'] / 1e6:.3f} M params, {summary['macs'] / 1e6:.1f} MMACs" if sp.has_model else ""
        typer.echo(f"valid {sp.name} config {cfg.key}{extra}")


@app.command("export-config")
@_command
def export_config(
    space: str,
    config: Path,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the bundle to.")],
    weights: Annotated[bool, typer.Option("--weights", help="Also write the SubNet's weights (safetensors).")] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write the SubNet as ONNX (dynamic batch).")] = False,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="SuperNet weights (safetensors); default: fresh init.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Init seed when no checkpoint is given.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a SubNet: config JSON, and optionally extracted weights and ONNX, each loadable back."""
    from pareto._export import export_subnet

    sp = _space(space, store)
    cfg = sp.validate(_read_json(config, "config"))
    result = export_subnet(sp, cfg, out, weights=weights, onnx=onnx, checkpoint=checkpoint, seed=seed)
    _open_store(store).add_export(cfg, str(result.directory.resolve()), result.files)
    if json_out:
        _echo_json({"directory": str(result.directory), "key": cfg.key, "files": result.files})
    else:
        typer.echo(f"exported {sp.name} SubNet {cfg.key} to {result.directory}: " + ", ".join(result.files))


# ---------------------------------------------------------------------------------------------------- data
@app.command("import")
@_command
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
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size the values refer to.")] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a third-party measurement table (idempotent; bad rows reported by row number, nothing half-written)."""
    from pareto._importer import import_table, parse_columns

    if (device is None) == (dataset is None):
        raise InvalidValueError("--device/--dataset", "exactly one of them", "both" if device else "neither")
    s = _open_store(store)
    sp = s.space(space)
    kind = "device" if device is not None else "dataset"
    columns = parse_columns(column, device if device is not None else str(dataset))
    defaults: dict[str, Any] = {}
    for item in set_ or []:
        name, value = _pair(item, "--set", "DIM=VALUE")
        dim = sp.dimension(name)
        defaults[name] = dim.coerce(_scalar(value), sp.name)
    filters = dict(_pair(item, "--where", "COLUMN=VALUE") for item in where or [])
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
    if json_out:
        _echo_json(info)
    else:
        typer.echo(
            f"imported {report.rows} rows ({report.subnets} SubNets) into {s.url}: {w.inserted} new, "
            f"{w.updated} updated, {w.unchanged} unchanged, {report.skipped_empty} empty cells skipped"
        )
        if w.new_devices:
            typer.echo("registered imported devices: " + ", ".join(w.new_devices))


def _pair(item: str, option: str, form: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise InvalidValueError(option, form, item)
    return name, value


def _scalar(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


@app.command()
@_command
def devices(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List registered devices with their kind, LUT entries and measurements."""
    rows = _open_store(store).list_devices()
    if json_out:
        _echo_json(rows)
    elif not rows:
        typer.echo("no devices yet: import a table (hwpareto import) or profile one")
    else:
        _table(rows, ["name", "kind", "lut_entries", "measurements"], title="devices")


@app.command()
@_command
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
    s = _open_store(store)
    if device and dataset:
        raise InvalidValueError("--device/--dataset", "at most one of them", "both")
    subject = device or dataset
    kind = "device" if device else "dataset" if dataset else None
    if out is not None:
        if space is None:
            raise InvalidValueError("--space", "a space name when --out is given", "none")
        from pareto._tables import write_wide_csv

        n = write_wide_csv(s, s.space(space), out, subject=subject, subject_kind=kind, metric=metric)
        typer.echo(f"wrote {n} SubNets to {out}")
        return
    rows = [
        r
        for r in s.measurement_summary()
        if (space is None or r["space"] == space)
        and (subject is None or r["subject"] == subject)
        and (kind is None or r["subject_kind"] == kind)
        and (metric is None or r["metric"] == metric)
    ]
    if json_out:
        _echo_json(rows)
    elif not rows:
        typer.echo("no measurements match: import a table with hwpareto import")
    else:
        _table(rows, ["space", "subject_kind", "subject", "metric", "source", "count"], title="measurements")


# ---------------------------------------------------------------------------------------------------- demo
@app.command()
@_command
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for exported bundles.")] = Path("hwpareto-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    store: StoreOpt = None,
) -> None:
    """The embedded-default walk-through: init the store, list spaces, sample and export a SubNet per space."""
    import numpy as np

    from pareto._export import export_subnet, verify_bundle

    s = _open_store(store)
    s.optuna_storage()
    typer.echo(f"[1/3] store ready: {s.url} (schema {s.revision()})")
    typer.echo("[2/3] search spaces:")
    for name in s.space_names():
        sp = _space(name, store)
        typer.echo(f"      {name:<8} {len(sp.dimensions):>3} dimensions, {sp.size():.3g} SubNets - {sp.description}")
    typer.echo("[3/3] sample, export (config + weights + ONNX) and reload one SubNet per built-in space:")
    rng = np.random.default_rng(seed)
    for name in ("mbv3", "gpt", "nb201"):
        sp = get_space(name)
        cfg = sp.sample(rng)
        result = export_subnet(sp, cfg, out / f"{name}-{cfg.key}", weights=True, onnx=True, seed=seed)
        s.add_export(cfg, str(result.directory.resolve()), result.files)
        check = verify_bundle(result.directory)
        typer.echo(
            f"      {name:<8} {cfg.key}: {sp.params(cfg) / 1e6:.2f} M params, {sp.macs(cfg) / 1e6:.1f} MMACs "
            f"-> {result.directory} (reloaded max |diff|: weights {check.weights_max_abs_diff:.1e}, "
            f"ONNX {check.onnx_max_abs_diff:.1e})"
        )
        if not check.ok():
            raise HwparetoError(f"reloaded {name} SubNet {cfg.key} does not reproduce the extracted outputs")
    typer.echo("done. Next: hwpareto import <table.csv> ..., hwpareto devices, hwpareto measurements")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="hwpareto")
