"""The ``hwpareto`` command: wires supernet/, pareto/ (store, import, export) together. No logic of its own."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from supernet import HwparetoError, InvalidValueError, SearchSpace, check_name, get_space, list_spaces, show_name

F = TypeVar("F", bound=Callable[..., Any])


class _OneLineErrors(TyperGroup):
    """The ``hwpareto`` group: a bad option or argument (``--seed -5``, ``--trials 1e23``) is one line on stderr,
    ``error: Invalid value for '--seed': ...``, and exit code 2, like every other user error (no usage box)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        kwargs["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:  # a bare group: its help, as before
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            typer.echo("error: " + " ".join(exc.format_message().split()), err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="hwpareto",
    help="Hardware-aware search and Pareto analysis for weight-shared neural networks.",
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
space_app = typer.Typer(help="Inspect and register search spaces.", no_args_is_help=True)
db_app = typer.Typer(help="Store schema maintenance.", no_args_is_help=True)
device_app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
lut_app = typer.Typer(help="Move lookup tables in and out of the store.", no_args_is_help=True)
train_app = typer.Typer(help="Train predictors from stored measurements.", no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(db_app, name="db")
app.add_typer(device_app, name="device")
app.add_typer(lut_app, name="lut")
app.add_typer(train_app, name="train")

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
# every integer option is bounded (a huge --trials or --batch is a one-line error, not an overflow in the store)
_SEED_MAX = 2**32 - 1
_COUNT_MAX = 1_000_000_000
_BATCH_MAX = 65_536
_THREADS_MAX = 1_024
_WORKERS_MAX = 256


def _command(fn: F) -> F:
    """Turn user errors into a one-line message on stderr and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HwparetoError as exc:
            typer.echo(f"error: {show_name(str(exc))}", err=True)  # stored names predating the check: escaped
            raise typer.Exit(1) from None
        except UnicodeDecodeError as exc:  # a reader without its own check: still one line
            typer.echo(f"error: input file: expected UTF-8 text, got binary data at byte {exc.start}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:
            message = _environment_failure(exc, kwargs.get("store"))
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _environment_failure(exc: BaseException, store: Any) -> str | None:
    """One line for a failure of the machine rather than of hwpareto (a full disk), found anywhere in the chain
    of ``exc`` (Optuna and SQLAlchemy wrap the driver's error); None for anything else. Never SQL parameters."""
    import errno
    import os

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            where = cause.filename or "output"
            return f"{where}: cannot write ({os.strerror(cause.errno)}); free some space and rerun"
        if isinstance(cause, DBAPIError):
            orig = cause.orig
            text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            if type(orig).__name__ == "DiskFull" or "disk is full" in text or "No space left" in text:
                raw = store or os.environ.get("HWPARETO_STORE") or "the default store"
                try:
                    url = make_url(raw).render_as_string(hide_password=True)
                except Exception:  # a file path, not a URL: shown as given
                    url = raw
                return f"store {url}: cannot write ({text}); free some space and rerun"
        cause = cause.__cause__ or cause.__context__
    return None


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else escape(show_name(row.get(c))) for c in columns))
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
    from supernet._safeload import load_json

    return load_json(path, what)


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
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=_COUNT_MAX, help="Number of SubNets.")] = 5,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Random seed.")] = 0,
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
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Init seed when no checkpoint is given.")
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out folder.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a SubNet: config JSON, and optionally extracted weights and ONNX, each loadable back."""
    from pareto._export import export_subnet

    sp = _space(space, store)
    cfg = sp.validate(_read_json(config, "config"))
    result = export_subnet(sp, cfg, out, weights=weights, onnx=onnx, checkpoint=checkpoint, seed=seed, force=force)
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
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Batch size the values refer to.")] = 1,
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
    """List registered devices: kind, LUT entries per space, measurements."""
    from profilers import lut_entries_per_space

    s = _open_store(store)
    spaces = [s.space(name) for name in s.space_names()]
    rows = [
        {**d, "lut_entries_per_space": lut_entries_per_space(s, d["name"], spaces) if d["lut_entries"] else {}}
        for d in s.list_devices()
    ]
    if json_out:
        _echo_json(rows)
    elif not rows:
        typer.echo("no devices yet: hwpareto profile --device cpu-local --space mbv3, or import a table")
    else:
        for r in rows:
            r["luts"] = ", ".join(f"{k}: {v}" for k, v in r["lut_entries_per_space"].items()) or "-"
        _table(rows, ["name", "kind", "luts", "measurements"], title="devices")


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


# ---------------------------------------------------------------------------------------------------- devices
@device_app.command("add")
@_command
def device_add(
    file: Annotated[Path | None, typer.Argument(help="Device spec (YAML): name, kind, backend, params.")] = None,
    local_cpu: Annotated[
        str | None, typer.Option("--local-cpu", help="Register this machine's CPU under this name instead.")
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", min=1, max=_THREADS_MAX, help="Threads for --local-cpu timing.")
    ] = 1,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a device of the same name.")] = False,
    store: StoreOpt = None,
) -> None:
    """Register a device from a YAML spec (or this machine's CPU with --local-cpu NAME)."""
    from dataclasses import replace as with_name

    from profilers import backend_for, load_device_file, local_cpu_spec

    if (file is None) == (local_cpu is None):
        raise InvalidValueError("FILE/--local-cpu", "exactly one of them", "both" if file else "neither")
    if local_cpu is not None:
        check_name("--local-cpu", local_cpu)
    spec = load_device_file(file) if file is not None else with_name(local_cpu_spec(threads), name=str(local_cpu))
    backend = backend_for(spec)
    backend.check()
    s = _open_store(store)
    s.add_device(spec.name, spec.kind, spec.to_dict(), backend.describe(), replace=replace)
    typer.echo(f"registered device {spec.name!r} ({spec.kind}, backend {spec.backend}) in {s.url}")


@device_app.command("show")
@_command
def device_show(name: str, store: StoreOpt = None) -> None:
    """Show a device's spec and provenance (JSON)."""
    _echo_json(_open_store(store).get_device(name))


@device_app.command("presets")
@_command
def device_presets(json_out: JsonOpt = False) -> None:
    """List the shipped device presets (data/devices/*.yaml) and the local CPU."""
    from profilers import local_cpu_spec, presets

    specs = [local_cpu_spec(), *presets().values()]
    if json_out:
        _echo_json([sp.to_dict() for sp in specs])
    else:
        _table(
            [{"name": sp.name, "kind": sp.kind, "backend": sp.backend, "description": sp.description} for sp in specs],
            ["name", "kind", "backend", "description"],
            title="device presets",
        )


@app.command()
@_command
def profile(
    device: Annotated[str, typer.Option("--device", help="Registered device, preset or cpu-local.")],
    space: Annotated[str, typer.Option("--space", help="Search space whose layers to profile.")],
    resolution: Annotated[
        list[int] | None,
        typer.Option("--resolution", help="Only these input sizes (mbv3: r, gpt: seq_len); repeatable."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Batch size.")] = 1,
    budget_s: Annotated[float | None, typer.Option("--budget-s", min=1, help="Stop scheduling after T s.")] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=_WORKERS_MAX, help="Processes for simulated devices.")
    ] = 2,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Build DEVICE's LUT for SPACE: every distinct layer once, stored as it completes (rerun to resume)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from profilers import build_lut, device_spec

    s = _open_store(store)
    sp = s.space(space)
    spec = device_spec(s, device)
    restrict = {sp.input_dimension: resolution} if resolution and sp.input_dimension else None
    if resolution and not sp.input_dimension:
        raise InvalidValueError("--resolution", f"no value: space {sp.name!r} has a fixed input size", resolution)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=json_out, disable=json_out) as bar:
        task = bar.add_task(f"{spec.name} × {sp.name}", total=None)

        def advance(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, total=total)

        report = build_lut(
            s, spec, sp, restrict=restrict, batch=batch, budget_s=budget_s, workers=workers, progress=advance
        )
    info = {
        "device": report.device,
        "space": report.space,
        "layers": report.total,
        "already": report.already,
        "measured": report.measured,
        "failed": [{"layer": k, "reason": r} for k, r in report.failed],
        "remaining": report.remaining,
        "seconds": round(report.seconds, 1),
    }
    if json_out:
        _echo_json(info)
        return
    typer.echo(
        f"{report.device} × {report.space}: {report.total} distinct layers, {report.already} already in the "
        f"LUT, {report.measured} measured now, {len(report.failed)} failed, {report.remaining} left "
        f"({report.seconds:.1f} s)"
    )
    for _key, reason in report.failed[:10]:
        typer.echo(f"  failed: {reason}")
    if report.remaining:
        typer.echo("  budget reached: run the same command again to continue")


@app.command()
@_command
def measure(
    device: Annotated[str, typer.Option("--device", help="Registered device, preset or cpu-local.")],
    space: Annotated[str, typer.Option("--space", help="Search space to sample from.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=_COUNT_MAX, help="Number of SubNets.")] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Sampling seed.")] = 0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Batch size.")] = 1,
    in_file: Annotated[
        Path | None,
        typer.Option(
            "--in", help="Measure these configs (.jsonl or .csv, e.g. from reference-set) instead of N sampled."
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Measure N sampled SubNets (or those of --in) end to end (extracted modules, or simulated) and store them as
    ground truth."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from profilers import device_spec, measure_subnets

    s = _open_store(store)
    sp = s.space(space)
    spec = device_spec(s, device)
    rng = np.random.default_rng(seed)
    configs = _read_configs(sp, in_file) if in_file is not None else [sp.sample(rng) for _ in range(n)]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(f"{spec.name} × {sp.name}", total=len(configs))
        stored = measure_subnets(
            s, spec, sp, configs, batch=batch, progress=lambda done, total, key: bar.update(task, completed=done)
        )
    typer.echo(f"stored end-to-end figures of {stored} {sp.name} SubNets on {spec.name}")


@lut_app.command("import")
@_command
def lut_import(
    file: Annotated[Path, typer.Argument(help="LUT CSV (hwpareto format, or OFA's per-resolution block LUT).")],
    device: Annotated[str, typer.Option("--device", help="Device the LUT belongs to (new: kind imported).")],
    fmt: Annotated[str, typer.Option("--format", help="hwpareto | ofa")] = "hwpareto",
    store: StoreOpt = None,
) -> None:
    """Import a LUT file (all rows checked first; nothing written on error)."""
    from profilers import import_lut_csv

    s = _open_store(store)
    n = import_lut_csv(s, file, device, fmt=fmt)
    typer.echo(f"imported {n} LUT entries for device {device!r} into {s.url}")


@lut_app.command("export")
@_command
def lut_export(
    device: Annotated[str, typer.Option("--device", help="Device whose LUT to write.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Batch size.")] = 1,
    store: StoreOpt = None,
) -> None:
    """Write a device's LUT as a portable CSV (hwpareto format)."""
    from profilers import export_lut_csv

    n = export_lut_csv(_open_store(store), device, out, batch)
    typer.echo(f"wrote {n} LUT entries of {device!r} to {out}")


@lut_app.command("sum")
@_command
def lut_sum(
    space: str,
    config: Path,
    device: Annotated[str, typer.Option("--device", help="Device whose LUT to sum.")],
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Batch size.")] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """LUT-sum latency (and energy) of a config on a device."""
    from profilers import Lut, MissingLutError

    s = _open_store(store)
    sp = s.space(space)
    cfg = sp.validate(_read_json(config, "config"))
    lut = Lut.load(s, device, batch)
    out: dict[str, Any] = {"device": device, "key": cfg.key, "latency_ms": lut.latency_sum_ms(sp, cfg)}
    try:
        out["energy_mj"] = lut.energy_sum_mj(sp, cfg)
    except MissingLutError:
        out["energy_mj"] = None
    if json_out:
        _echo_json(out)
    else:
        energy = f", {out['energy_mj']:.4f} mJ" if out["energy_mj"] is not None else ""
        typer.echo(f"{sp.name} {cfg.key} on {device}: {out['latency_ms']:.3f} ms{energy} (LUT-sum)")


# ---------------------------------------------------------------------------------------------------- predictors
def _print_train(report: Any, json_out: bool) -> None:
    known = report.known
    if json_out:
        out: dict[str, Any] = {"name": report.name, "n_train": report.n_train, "validation": report.validation}
        if known is not None:
            out["known"] = {
                "used": list(known.used),
                "predicted": list(known.predicted),
                "skipped": [{"device": d, "reason": r} for d, r in known.skipped],
            }
        _echo_json(out)
        return
    v = report.validation
    typer.echo(f"stored predictor {report.name!r} ({report.n_train} training SubNets)")
    if known is not None:
        filled = (
            f" (own predictors fill in unmeasured SubNets of: {', '.join(known.predicted)})" if known.predicted else ""
        )
        typer.echo(f"  known devices used: {', '.join(known.used)}{filled}")
        for device, reason in known.skipped:
            typer.echo(f"  skipped {device}: {reason}")
    if "kendall_tau" in v:
        lut = f", LUT-sum alone {v['lut_sum_mape_pct']:.1f} %" if "lut_sum_mape_pct" in v else ""
        typer.echo(
            f"  held out ({v['split']}): Kendall τ {v['kendall_tau']:.3f}, MAPE {v['mape_pct']:.2f} %{lut}, "
            f"within ±10 % {v['within_10pct']:.1f} %, ±1σ coverage {v.get('coverage_1sigma_pct', 0):.0f} %"
        )


@train_app.command("latency")
@_command
def train_latency_cmd(
    device: Annotated[str, typer.Option("--device", help="Device whose measurements to learn.")],
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    metric: Annotated[str, typer.Option("--metric", help="latency_ms or energy_mj.")] = "latency_ms",
    few_shot: Annotated[
        int | None,
        typer.Option("--few-shot", min=3, max=_COUNT_MAX, help="Use only K measurements of DEVICE (transfer)."),
    ] = None,
    known: Annotated[
        str | None,
        typer.Option(
            "--known", help="Few-shot: exactly these known devices, comma-separated (default: chosen by rule)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Split and model seed.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a latency/energy predictor (LUT-sum + learned correction, or few-shot transfer from known devices)."""
    if name is not None:
        check_name("--name", name)  # before any training
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from predictors import train_latency

    s = _open_store(store)
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
            s.space(space),
            metric=metric,
            name=name,
            few_shot=few_shot,
            known=devices,
            seed=seed,
            progress=advance,
        )
    _print_train(report, json_out)


@train_app.command("accuracy")
@_command
def train_accuracy_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    metric: Annotated[str, typer.Option("--metric", help="Accuracy metric, e.g. test_acc_pct.")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset the metric was evaluated on.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Split and model seed.")] = 0,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train an accuracy predictor with calibrated uncertainty."""
    if name is not None:
        check_name("--name", name)  # before any training
    from predictors import train_accuracy

    s = _open_store(store)
    _print_train(train_accuracy(s, s.space(space), metric=metric, dataset=dataset, name=name, seed=seed), json_out)


@app.command("predictors")
@_command
def predictors_cmd(
    space: Annotated[str | None, typer.Option("--space")] = None, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """List stored predictors with their held-out metrics."""
    rows = _open_store(store).list_predictors(space)
    if json_out:
        _echo_json(
            [
                {k: v for k, v in r.items() if k != "meta"}
                | {"meta": {k: v for k, v in r["meta"].items() if k != "train_keys"}}
                for r in rows
            ]
        )
        return
    if not rows:
        typer.echo("no predictors yet: hwpareto train latency --device D --space S, or train accuracy")
        return
    table = []
    for r in rows:
        v = r["meta"].get("validation", {})
        checks = r["meta"].get("checks", [])
        table.append(
            {
                "name": r["name"],
                "kind": r["kind"],
                "n": r["meta"].get("n_train"),
                "τ": f"{v['kendall_tau']:.3f}" if "kendall_tau" in v else "-",
                "MAPE %": f"{v['mape_pct']:.2f}" if "mape_pct" in v else "-",
                "±10 %": f"{v['within_10pct']:.1f}" if "within_10pct" in v else "-",
                "drift": "yes" if checks and checks[-1].get("drift") else ("no" if checks else "-"),
            }
        )
    _table(table, ["name", "kind", "n", "τ", "MAPE %", "±10 %", "drift"], title="predictors (held-out metrics)")


def _read_configs(sp: SearchSpace, path: Path) -> list[Any]:
    """Configs from JSONL (one config or {space, values} per line) or CSV (the space's record columns)."""
    import csv as csv_module

    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv_module.DictReader(fh))
        except OSError as exc:
            raise HwparetoError(f"configs {path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise HwparetoError(f"configs {path}: expected UTF-8 text, got binary data at byte {exc.start}") from None
        except csv_module.Error as exc:
            raise HwparetoError(f"configs {path}: not a readable CSV ({exc})") from None
        return [_at_row(i + 2, lambda r=row: sp.from_record(r)) for i, row in enumerate(rows)]
    from supernet._safeload import parse_json, read_text

    lines = read_text(path, "configs", max_bytes=256 * 1024 * 1024).splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            doc = parse_json(line, f"configs {path}: line {i}")
            out.append(_at_row(i, lambda d=doc: sp.validate(d)))
    return out


def _at_row(row: int, parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InvalidValueError as exc:
        raise HwparetoError(f"row {row}: {exc}") from None


@app.command("reference-set")
@_command
def reference_set_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    k: Annotated[int, typer.Option("-k", min=3, max=10_000, help="How many SubNets to measure.")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="latency_ms or energy_mj.")] = "latency_ms",
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Sampling seed (no known devices).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write them as CSV with an empty METRIC column.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The K SubNets to measure on a new device for a few-shot transfer, spread over what makes the known devices
    differ. Fill in the CSV's METRIC column and import it (or run `measure --in`), then `train latency --few-shot K`."""
    from predictors import suggest_references

    s = _open_store(store)
    sp = s.space(space)
    configs, known = suggest_references(s, sp, k, metric=metric, seed=seed)
    basis = f"the measured {metric} of {', '.join(known)}" if known else "cost proxies (no known devices yet)"
    if out is not None:
        import pandas as pd

        from pareto._tables import csv_safe

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
    elif json_out:
        _echo_json(
            {"space": sp.name, "metric": metric, "known": list(known), "configs": [c.to_dict() for c in configs]}
        )
    else:
        typer.echo(f"{len(configs)} reference SubNets of {sp.name}, chosen from {basis}:")
        for c in configs:
            typer.echo(f"  {c.key}  {sp.summary(c)}")


@app.command()
@_command
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

    if (config is None) == (in_file is None):
        raise InvalidValueError("CONFIG/--in", "exactly one of them", "both" if config else "neither")
    s = _open_store(store)
    sp = s.space(space)
    configs = [sp.validate(_read_json(config, "config"))] if config is not None else _read_configs(sp, in_file)
    table = predict_table(s, sp, configs, device)
    if out is not None:
        import pandas as pd

        from pareto._tables import csv_safe

        records = pd.DataFrame([sp.to_record(c) for c in configs])
        try:
            csv_safe(pd.concat([records, table], axis=1)).to_csv(out, index=False)
        except OSError as exc:
            raise HwparetoError(f"output {out}: cannot write ({exc.strerror})") from None
        typer.echo(f"wrote predictions for {len(configs)} SubNets to {out}")
    elif json_out:
        _echo_json(table.to_dict(orient="records"))
    else:
        names = [c for c in table.columns if c != "config_key" and not c.endswith("_std")]
        for i, cfg in enumerate(configs[:20]):
            typer.echo(
                f"{cfg.key}: " + ", ".join(f"{n} = {table[n][i]:.4g} ± {table[n + '_std'][i]:.2g}" for n in names)
            )


@app.command()
@_command
def check(
    device: Annotated[str, typer.Option("--device", help="Device whose predictor to check.")],
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    n: Annotated[int, typer.Option("-n", "--n", min=2, max=_COUNT_MAX, help="Fresh SubNets to measure.")] = 20,
    metric: Annotated[str, typer.Option("--metric")] = "latency_ms",
    predictor: Annotated[str | None, typer.Option("--predictor", help="Predictor name (default derived).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX)] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure N fresh SubNets (or take N imported ones not used in training), compare with the predictor,
    store the result and flag drift."""
    import numpy as np

    from predictors import check_drift
    from profilers import device_spec, measure_subnets

    s = _open_store(store)
    sp = s.space(space)
    name = predictor or f"{metric}:{sp.name}:{device}"
    trained = set(s.load_predictor(name)["meta"].get("train_keys", []))
    if s.get_device(device)["kind"] == "imported":
        df = s.measurements(space=sp.name, subject=device, metric=metric)
        df = df[~df["config_key"].isin(trained)].drop_duplicates("config_key").head(n)
        configs = [sp.validate(json.loads(t)) for t in df["config_json"]]
        values = df["value"].to_numpy(float)
    else:
        rng = np.random.default_rng(seed)
        configs = [c for c in (sp.sample(rng) for _ in range(3 * n)) if c.key not in trained][:n]
        measure_subnets(s, device_spec(s, device), sp, configs)
        df = s.measurements(space=sp.name, subject=device, metric=metric).set_index("config_key")
        values = np.array([float(df.loc[[c.key], "value"].median()) for c in configs])
    if len(configs) < 2:
        raise InvalidValueError(f"fresh SubNets for {device}", "at least 2 not used in training", len(configs))
    result = check_drift(s, name, configs, values)
    if json_out:
        _echo_json(result)
    else:
        flag = "DRIFT: retrain (hwpareto train latency ...)" if result["drift"] else "no drift"
        typer.echo(
            f"{name} on {len(configs)} fresh SubNets: MAPE {result['mape_pct']:.2f} % (recorded "
            f"{result['recorded_mape_pct']}), Kendall τ {result['kendall_tau']:.3f} -> {flag}"
        )


# ---------------------------------------------------------------------------------------------------- search
def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@app.command()
@_command
def search(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    objective: Annotated[
        list[str], typer.Option("--objective", help="METRIC[@DEVICE_OR_DATASET][:max|:min]; repeatable.")
    ],
    budget: Annotated[
        list[str] | None, typer.Option("--budget", help="'OBJECTIVE <= BOUND' constraint; repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name (default derived; reuse resumes).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="nsga2 | random | nsga3 | tpe")] = "nsga2",
    trials: Annotated[
        int, typer.Option("--trials", min=1, max=_COUNT_MAX, help="Trials (budgeted: accuracy evaluations).")
    ] = 1000,
    population: Annotated[
        int, typer.Option("--population", min=4, max=_COUNT_MAX, help="Trials per generation.")
    ] = 100,
    fix: Annotated[list[str] | None, typer.Option("--fix", help="DIM=VALUE held fixed; repeatable.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="surrogate | budgeted (first objective evaluated)")] = "surrogate",
    batch: Annotated[int, typer.Option("--batch", min=1, max=_BATCH_MAX, help="Budgeted: evaluations per step.")] = 10,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX)] = 0,
    queue: Annotated[bool, typer.Option("--queue", help="Queue for workers instead of running here.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run (or queue) a multi-objective search stored as an Optuna study in the store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pareto._search import SearchSpec
    from pareto._worker import run_now, submit, validate_spec

    _quiet_optuna()
    s = _open_store(store)
    sp = s.space(space)
    fixed = {}
    for item in fix or []:
        dim, value = _pair(item, "--fix", "DIM=VALUE")
        fixed[dim] = sp.dimension(dim).coerce(_scalar(value), sp.name)
    spec = SearchSpec(
        name or f"{space}-{'-'.join(o.split('@')[0] for o in objective)}-{seed}",
        space,
        tuple(objective),
        tuple(budget or ()),
        sampler,
        trials,
        population,
        seed,
        mode,
        fixed,
        {"batch": batch, "initial": max(batch, 20)} if mode == "budgeted" else {},
    )
    if queue:
        row = submit(s, spec)
        typer.echo(f"queued search {row['name']!r}: start workers with hwpareto worker --store {s.url}")
        return
    validate_spec(s, spec)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=json_out
    ) as bar:
        task = bar.add_task(spec.name, total=spec.n_trials)
        result = run_now(s, spec, progress=lambda done, total: bar.update(task, completed=done))
    info = {
        "study": result.study,
        "trials": result.total,
        "added": result.added,
        "seconds": round(result.seconds, 2),
        "trials_per_s": round(result.trials_per_s, 1),
    } | ({"note": result.note} if result.note else {})
    if json_out:
        _echo_json(info)
    else:
        if result.note:
            typer.echo(result.note)
        typer.echo(
            f"study {result.study!r}: {result.total} trials ({result.added} new, "
            f"{result.trials_per_s:.0f} trials/s); see hwpareto front {result.study}"
        )


@app.command()
@_command
def worker(
    study: Annotated[str | None, typer.Option("--study", help="Only this search.")] = None,
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", help="Exit after T s without work.")] = None,
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=0.5, help="Heartbeat period (s).")] = 2.0,
    store: StoreOpt = None,
) -> None:
    """Run queued searches from the store (any number of workers, on any machine sharing a PostgreSQL store)."""
    from pareto._worker import run_worker

    _quiet_optuna()
    done = run_worker(
        _open_store(store),
        study=study,
        idle_exit_s=idle_exit,
        heartbeat_s=heartbeat,
        stale_after_s=max(10.0, 5 * heartbeat),
        log=lambda m: typer.echo(show_name(m), err=True),
    )
    typer.echo(f"worker finished {done} search(es)")


@app.command()
@_command
def searches(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List queued, running and finished searches, and the store's studies without a searches row ("study only":
    e.g. the demo's)."""
    from pareto._catalog import list_all_searches

    rows = list_all_searches(_open_store(store))
    if json_out:
        _echo_json(rows)
    elif not rows:
        typer.echo("no searches yet: hwpareto search --space S --objective ... [--queue]")
    else:
        _table(rows, ["name", "space", "status", "trials_done", "n_trials", "worker", "error"], title="searches")


@app.command()
@_command
def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8501,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser (headless).")] = False,
    store: StoreOpt = None,
) -> None:
    """Serve the web dashboard (Devices, Search, Fronts, Export) on the store until interrupted."""
    from dashboard import serve

    url = store or _open_store(store).url  # the default store is created (and checked) before serving
    typer.echo(f"hwpareto dashboard on http://{host}:{port} (store {url}); Ctrl+C stops it", err=True)
    raise typer.Exit(serve(url, host=host, port=port, open_browser=not no_browser))


@app.command()
@_command
def front(
    study: str,
    device: Annotated[str | None, typer.Option("--device", help="The front on this device's costs.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the front as CSV.")] = None,
    operating_points: Annotated[
        int | None,
        typer.Option("--operating-points", min=2, max=_COUNT_MAX, help="K SubNets spanning the latency range."),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The Pareto front of a study (feasible trials), per device, with its knee; or an operating-point table."""
    from pareto._analysis import study_results
    from pareto._tables import csv_safe

    _quiet_optuna()
    results = study_results(_open_store(store), study)
    if operating_points is not None:
        table = results.operating_points(device, operating_points)
        if json_out:
            _echo_json(table)
        else:
            _table(table, [c for c in table[0] if c != "config"], title=f"operating points of {study}")
        return
    fr = results.front(device)
    if csv_out is not None:
        csv_safe(fr.rows).to_csv(csv_out, index=False)
        typer.echo(f"wrote {len(fr.rows)} front SubNets to {csv_out}")
    elif json_out:
        _echo_json(
            {
                "study": study,
                "device": device,
                "objectives": list(fr.objectives),
                "knee": fr.knee_number,
                "front": fr.rows.to_dict(orient="records"),
                "ties": _ties_note(fr),
            }
        )
    else:
        cols = ["number", *fr.objectives, "ties", "config_key"]
        _table(
            [
                {c: (f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]) for c in cols}
                | ({"knee": "←" if r["number"] == fr.knee_number else ""})
                for r in fr.rows.to_dict(orient="records")
            ],
            [*cols, "knee"],
            title=f"front of {study}" + (f" on {device}" if device else ""),
        )
        typer.echo(_ties_note(fr))


def _ties_note(fr: Any) -> str:
    """How a front shows ties, and why Optuna's ``best_trials`` lists more."""
    trials = int(fr.rows["ties"].sum()) if len(fr.rows) else 0
    return (
        f"{len(fr.rows)} distinct objective vectors shared by {trials} non-dominated trials: one row (the first "
        "trial) per vector, 'ties' counts the trials with the same values (repeats, equivalent configs); "
        f"Optuna's best_trials lists all {trials}"
    )


@app.command("export")
@_command
def export_cmd(
    study: str,
    trial: int,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder.")],
    no_weights: Annotated[bool, typer.Option("--no-weights", help="Skip weights and ONNX.")] = False,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="SuperNet weights (safetensors).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out folder.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a trial's SubNet: config, predicted and measured metrics, provenance, weights and ONNX."""
    from rich.console import Console

    from pareto._analysis import export_trial

    _quiet_optuna()
    with Console(stderr=True).status(f"exporting trial {trial} of {study}") as status:
        info = export_trial(
            _open_store(store),
            study,
            trial,
            out,
            weights=not no_weights,
            onnx=not no_weights,
            checkpoint=checkpoint,
            progress=lambda step: status.update(f"{step}..."),
            force=force,
        )
    if json_out:
        _echo_json(info)
    else:
        typer.echo(
            f"exported trial {trial} of {study} ({info['key']}) to {info['directory']}: " + ", ".join(info["files"])
        )


# ---------------------------------------------------------------------------------------------------- training
DataOpt = Annotated[
    str, typer.Option("--data", help="digits, digits-affine, stdlib, cifar10:DIR, folder:DIR or text:FILE[,FILE].")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1 ...")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, max=_THREADS_MAX, help="CPU threads for torch.")]


def _training_setup(space: str, data: str, store: str | None, threads: int) -> tuple[SearchSpace, Any]:
    """The space and its dataset (images stored at the space's largest input resolution)."""
    import torch

    from supernet.data import load_data

    torch.set_num_threads(threads)
    sp = _space(space, store)
    if not sp.has_model:
        raise InvalidValueError("--space", "a space with a PyTorch SuperNet", f"declarative space {sp.name!r}")
    shape = sp.dummy_input(sp.largest()).shape
    return sp, load_data(data, resolution=int(shape[-1]) if len(shape) == 4 else 32)


def _every(total: int, parts: int = 20) -> Callable[[int], bool]:
    return lambda done: done == total or done % max(1, total // parts) == 0


@app.command("train-supernet")
@_command
def train_supernet_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space whose SuperNet to train.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (safetensors).")],
    steps: Annotated[int, typer.Option("--steps", min=1, max=_COUNT_MAX, help="Sandwich steps.")] = 1000,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=_BATCH_MAX, help="Images or byte windows per step.")
    ] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate.")] = 2e-3,
    n_random: Annotated[int, typer.Option("--n-random", min=0, max=_COUNT_MAX, help="Random SubNets per step.")] = 2,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Train every SubNet on labels.")] = False,
    largest_only: Annotated[
        int,
        typer.Option("--largest-only", min=0, max=_COUNT_MAX, help="First steps that train the largest SubNet alone."),
    ] = 0,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Init, batch and SubNet sampling seed.")
    ] = 0,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
) -> None:
    """Train a SuperNet with the sandwich rule (largest, smallest and random SubNets per step) and in-place
    distillation, and save it as a safetensors checkpoint (usable by export-config --checkpoint)."""
    import time

    import torch

    from supernet.training import save_checkpoint, train_supernet

    sp, dataset = _training_setup(space, data, store, threads)
    typer.echo(f"{sp.name}: {dataset.description}")
    supernet = sp.supernet(seed=seed)
    show, start = _every(steps), time.perf_counter()

    def advance(done: int, total: int, info: dict[str, float]) -> None:
        if show(done):
            typer.echo(
                f"  step {done}/{total}: loss largest {info['largest']:.4f}, smallest {info['smallest']:.4f}, "
                f"random {info['random']:.4f}, lr {info['lr']:.2e} ({time.perf_counter() - start:.0f} s)"
            )

    report = train_supernet(
        sp,
        supernet,
        dataset,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        n_random=n_random,
        distill=not no_distill,
        largest_only=largest_only,
        seed=seed,
        device=device,
        progress=advance,
    )
    meta = {
        "space": sp.name,
        "data": data,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "n_random": n_random,
        "distill": not no_distill,
        "largest_only": largest_only,
        "seed": seed,
        "device": device,
        "seconds": round(report.seconds, 1),
        "torch": torch.__version__,
        **{f"final_loss_{k}": round(v, 4) for k, v in report.final_losses.items()},
    }
    save_checkpoint(supernet, out, meta)
    typer.echo(
        f"saved {out} after {steps} steps in {report.seconds:.0f} s (final losses: "
        + ", ".join(f"{k} {v:.4f}" for k, v in report.final_losses.items())
        + ")"
    )


@app.command("eval-subnets")
@_command
def eval_subnets_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Trained SuperNet (safetensors).")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="CSV to write (one row per SubNet).")],
    n: Annotated[
        int, typer.Option("-n", min=2, max=_COUNT_MAX, help="SubNets: the largest, the smallest, then random ones.")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Sampling seed.")] = 0,
    split: Annotated[str, typer.Option("--split", help="val or test (train for debugging).")] = "val",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate N SubNets with inherited weights (batch norm recalibrated) on a held-out split and write the table
    (importable with hwpareto import ... --dataset D --column SPLIT_acc_pct)."""
    import numpy as np

    from pareto._export import load_supernet
    from supernet.training import evaluate_subnets, table_configs, write_accuracy_table

    sp, dataset = _training_setup(space, data, store, threads)
    supernet = load_supernet(sp, checkpoint)
    configs = table_configs(sp, n, seed)
    show = _every(n, 10)

    def advance(done: int, total: int, info: dict[str, float]) -> None:
        if show(done) and not json_out:
            typer.echo(f"  {done}/{total} SubNets, last {info['acc_pct']:.2f} %")

    metrics = evaluate_subnets(sp, supernet, configs, dataset, split=split, device=device, progress=advance)
    write_accuracy_table(out, sp, configs, metrics, split)
    acc = np.array([m["acc_pct"] for m in metrics])
    info = {
        "table": str(out),
        "subnets": len(configs),
        "split": split,
        "min_acc_pct": float(acc.min()),
        "median_acc_pct": float(np.median(acc)),
        "max_acc_pct": float(acc.max()),
    }
    if json_out:
        _echo_json(info)
    else:
        typer.echo(
            f"wrote {out}: {len(configs)} SubNets, {split} accuracy min {acc.min():.2f} %, median "
            f"{np.median(acc):.2f} %, max {acc.max():.2f} %"
        )


@app.command("finetune-check")
@_command
def finetune_check_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Trained SuperNet (safetensors).")],
    data: DataOpt,
    table: Annotated[Path, typer.Option("--table", help="Accuracy table written by eval-subnets.")],
    out: Annotated[Path, typer.Option("--out", help="Markdown report to write.")],
    k: Annotated[
        int, typer.Option("-k", min=3, max=_COUNT_MAX, help="SubNets to fine-tune, spread over the table's ranks.")
    ] = 10,
    steps: Annotated[int, typer.Option("--steps", min=1, max=_COUNT_MAX, help="Fine-tuning steps per SubNet.")] = 100,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 5e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=_BATCH_MAX)] = 64,
    split: Annotated[str, typer.Option("--split", help="Split the table was evaluated on.")] = "val",
    seed: Annotated[int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Batch seed.")] = 0,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
) -> None:
    """Sanity check of the accuracy table: fine-tune K SubNets briefly and rank-correlate inherited-weight and
    fine-tuned accuracy (Spearman, Kendall); writes a markdown report with the table's min/median/max."""
    import numpy as np

    from pareto._export import load_supernet
    from supernet.training import finetune_check, read_accuracy_table

    sp, dataset = _training_setup(space, data, store, threads)
    rows = read_accuracy_table(table, sp, f"{split}_acc_pct")
    supernet = load_supernet(sp, checkpoint)

    def advance(done: int, total: int, info: dict[str, float]) -> None:
        typer.echo(f"  {done}/{total}: inherited {info['inherited']:.2f} % -> fine-tuned {info['finetuned']:.2f} %")

    check = finetune_check(
        sp,
        supernet,
        dataset,
        rows,
        k=k,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        split=split,
        seed=seed,
        device=device,
        progress=advance,
    )
    acc = np.array([v for _, v in rows])
    lines = [
        f"# {sp.name}: inherited-weight accuracy vs short fine-tuning",
        "",
        f"Generated by `hwpareto finetune-check --space {sp.name} --checkpoint {checkpoint} --data {data} "
        f"--table {table} -k {k} --steps {steps} --lr {lr} --batch-size {batch_size} --seed {seed} --out {out}`.",
        "",
        f"- data: {dataset.description}",
        f"- table: {len(rows)} SubNets, {split} accuracy min {acc.min():.2f} %, median {np.median(acc):.2f} %, "
        f"max {acc.max():.2f} %",
        f"- fine-tuning: {check.steps} AdamW steps (lr {lr}, batch {batch_size}) per SubNet, on labels, alone",
        f"- rank correlation over {len(check.rows)} SubNets: Spearman ρ = {check.spearman:.3f}, "
        f"Kendall τ = {check.kendall:.3f}",
        "",
        "| key | SubNet | params | inherited acc % | fine-tuned acc % |",
        "|---|---|---:|---:|---:|",
        *(
            f"| `{r['key']}` | {r['summary']} | {r['params']:,} | {r['inherited']:.2f} | {r['finetuned']:.2f} |"
            for r in check.rows
        ),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    typer.echo(
        f"wrote {out}: Spearman {check.spearman:.3f}, Kendall {check.kendall:.3f} over {len(check.rows)} SubNets"
    )


# ---------------------------------------------------------------------------------------------------- demo
@app.command()
@_command
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the chosen SubNets' bundles.")] = Path("hwpareto-demo"),
    trials: Annotated[int, typer.Option("--trials", min=100, max=_COUNT_MAX, help="Trials per search.")] = 3000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=_SEED_MAX, help="Seed of budgets, predictors and searches.")
    ] = 0,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Everything but serving the dashboard.")] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Dashboard port.")] = 8501,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Serve without opening a browser.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The whole loop on the embedded default: devices, LUTs, predictors from the shipped tables, a search per
    device under a default latency budget, the chosen SubNets' bundles, then the dashboard on 127.0.0.1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pareto._demo import describe, run_demo

    s = _open_store(store)
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
    rows = describe(choices)
    if json_out:
        _echo_json(rows)
    else:
        columns = [c for c in rows[0] if c not in ("study", "bundle")] if rows else []
        _table(
            rows,
            columns,
            "Chosen SubNets: the most accurate within each device's latency budget (accuracy: "
            "val_acc_pct of the demo table, digits-affine / stdlib next byte)",
        )
        typer.echo(f"bundles (config, weights, ONNX, metrics): {out.resolve()}/<study>/")
    if no_dashboard:
        if not json_out:
            typer.echo(f"browse them: hwpareto dashboard --store {s.url}")
        return
    from dashboard import serve

    typer.echo(f"dashboard on http://127.0.0.1:{port} (Ctrl-C stops it)")
    raise typer.Exit(serve(s.url, port=port, open_browser=not no_browser))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="hwpareto")


if __name__ == "__main__":
    main()
