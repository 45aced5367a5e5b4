"""Devices and LUTs: ``device add/show/presets``, ``profile``, ``measure``, ``lut import/export/sum``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from hwpareto.cli._app import app, device_app, lut_app
from hwpareto.cli._common import (
    BATCH_MAX,
    COUNT_MAX,
    SEED_MAX,
    THREADS_MAX,
    WORKERS_MAX,
    JsonOpt,
    StoreOpt,
    command,
    echo_json,
    emit,
    emit_rows,
    exactly_one,
    open_store,
    read_configs,
    read_json,
)
from hwpareto.errors import HwparetoError, InvalidValueError
from supernet import check_name


# ---------------------------------------------------------------------------------------------------- devices
@device_app.command("add")
@command
def device_add(
    file: Annotated[Path | None, typer.Argument(help="Device spec (YAML): name, kind, backend, params.")] = None,
    local_cpu: Annotated[
        str | None, typer.Option("--local-cpu", help="Register this machine's CPU under this name instead.")
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", min=1, max=THREADS_MAX, help="Threads for --local-cpu timing.")
    ] = 1,
    runtime: Annotated[
        str, typer.Option("--runtime", help="Runtime --local-cpu times in: torch (eager), onnxruntime, a plugin's.")
    ] = "torch",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace a device of this name registered with other parameters, dropping its LUT entries, "
            "measurements and predictors (refused while a study uses it).",
        ),
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Register a device from a YAML spec (or this machine's CPU with --local-cpu NAME, in --runtime). A name
    registered with other parameters is refused with the differences, unless --replace."""
    from dataclasses import replace as with_name

    from pareto import studies_using
    from profilers import backend_for, load_device_file, local_cpu_spec

    exactly_one("FILE/--local-cpu", file, local_cpu)
    if local_cpu is not None:
        check_name("--local-cpu", local_cpu)
    elif runtime != "torch":
        raise InvalidValueError("--runtime", "only with --local-cpu (a device file says its runtime: key)", runtime)
    spec = (
        load_device_file(file) if file is not None else with_name(local_cpu_spec(threads, runtime), name=str(local_cpu))
    )
    backend = backend_for(spec)
    backend.check()
    s = open_store(store)
    known = spec.name in {d.name for d in s.devices.list()}
    try:
        s.devices.check(spec.name, spec.kind, spec.to_dict(), backend.describe())
    except HwparetoError:
        if not replace:
            raise
        users = studies_using(s, device=spec.name)
        if users:
            shown = ", ".join(users[:5]) + (", ..." if len(users) > 5 else "")
            raise HwparetoError(
                f"device {spec.name!r} is not replaced while {len(users)} "
                f"{'study uses' if len(users) == 1 else 'studies use'} it ({shown}): delete "
                f"{'it' if len(users) == 1 else 'them'} first, or register the new parameters under a new name"
            ) from None
        with s.transaction() as conn:
            dropped = s.devices.held(spec.name, conn=conn)
            s.devices.add(spec.name, spec.kind, spec.to_dict(), backend.describe(), replace=True, conn=conn)
        typer.echo(
            f"replaced device {spec.name!r} ({spec.kind}, backend {spec.backend}) in {s.url}: dropped {dropped} "
            "measured with the old parameters"
        )
        return
    s.devices.add(spec.name, spec.kind, spec.to_dict(), backend.describe())
    if known:
        typer.echo(f"device {spec.name!r} is already registered with these parameters in {s.url}: unchanged")
    else:
        typer.echo(f"registered device {spec.name!r} ({spec.kind}, backend {spec.backend}) in {s.url}")


@device_app.command("show")
@command
def device_show(name: str, store: StoreOpt = None) -> None:
    """Show a device's spec and provenance (JSON)."""
    echo_json(asdict(open_store(store).devices.get(name)))


@device_app.command("presets")
@command
def device_presets(json_out: JsonOpt = False) -> None:
    """List the shipped device presets (data/devices/*.yaml) and the local CPU, one device per runtime."""
    from profilers import LOCAL_CPUS, local_cpu_spec, presets

    specs = [*(local_cpu_spec(runtime=r) for r in LOCAL_CPUS), *presets().values()]
    emit_rows(
        [{**sp.to_dict(), "runtime": sp.runtime} for sp in specs],
        ["name", "kind", "backend", "runtime", "description"],
        json_out=json_out,
        title="device presets",
    )


@app.command()
@command
def profile(
    device: Annotated[str, typer.Option("--device", help="Registered device, preset or cpu-local.")],
    space: Annotated[str, typer.Option("--space", help="Search space whose layers to profile.")],
    resolution: Annotated[
        list[int] | None,
        typer.Option("--resolution", help="Only these input sizes (mbv3: r, gpt: seq_len); repeatable."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Batch size.")] = 1,
    budget_s: Annotated[float | None, typer.Option("--budget-s", min=1, help="Stop scheduling after T s.")] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=WORKERS_MAX, help="Processes for simulated devices.")
    ] = 2,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Build DEVICE's LUT for SPACE: every distinct layer once, stored as it completes (rerun to resume)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from profilers import build_lut, device_spec

    s = open_store(store)
    sp = s.spaces.get(space)
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
    lines = [
        f"{report.device} × {report.space}: {report.total} distinct layers, {report.already} already in the "
        f"LUT, {report.measured} measured now, {len(report.failed)} failed, {report.remaining} left "
        f"({report.seconds:.1f} s)",
        *(f"  failed: {reason}" for _key, reason in report.failed[:10]),
    ]
    if report.remaining:
        lines.append("  budget reached: run the same command again to continue")
    emit(info, json_out, "\n".join(lines))


@app.command()
@command
def measure(
    device: Annotated[str, typer.Option("--device", help="Registered device, preset or cpu-local.")],
    space: Annotated[str, typer.Option("--space", help="Search space to sample from.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=COUNT_MAX, help="Number of SubNets.")] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Sampling seed.")] = 0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Batch size.")] = 1,
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

    s = open_store(store)
    sp = s.spaces.get(space)
    spec = device_spec(s, device)
    rng = np.random.default_rng(seed)
    configs = read_configs(sp, in_file) if in_file is not None else [sp.sample(rng) for _ in range(n)]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(f"{spec.name} × {sp.name}", total=len(configs))
        stored = measure_subnets(
            s, spec, sp, configs, batch=batch, progress=lambda done, total, key: bar.update(task, completed=done)
        )
    typer.echo(f"stored end-to-end figures of {stored} {sp.name} SubNets on {spec.name}")


@lut_app.command("import")
@command
def lut_import(
    file: Annotated[Path, typer.Argument(help="LUT CSV (hwpareto format, or OFA's per-resolution block LUT).")],
    device: Annotated[str, typer.Option("--device", help="Device the LUT belongs to (new: kind imported).")],
    fmt: Annotated[str, typer.Option("--format", help="hwpareto | ofa")] = "hwpareto",
    store: StoreOpt = None,
) -> None:
    """Import a LUT file (all rows checked first; nothing written on error)."""
    from profilers import import_lut_csv

    s = open_store(store)
    n = import_lut_csv(s, file, device, fmt=fmt)
    typer.echo(f"imported {n} LUT entries for device {device!r} into {s.url}")


@lut_app.command("export")
@command
def lut_export(
    device: Annotated[str, typer.Option("--device", help="Device whose LUT to write.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    batch: Annotated[int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Batch size.")] = 1,
    store: StoreOpt = None,
) -> None:
    """Write a device's LUT as a portable CSV (hwpareto format)."""
    from profilers import export_lut_csv

    n = export_lut_csv(open_store(store), device, out, batch)
    typer.echo(f"wrote {n} LUT entries of {device!r} to {out}")


@lut_app.command("sum")
@command
def lut_sum(
    space: str,
    config: Path,
    device: Annotated[str, typer.Option("--device", help="Device whose LUT to sum.")],
    batch: Annotated[int, typer.Option("--batch", min=1, max=BATCH_MAX, help="Batch size.")] = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """LUT-sum latency (and energy) of a config on a device."""
    from profilers import Lut, MissingLutError

    s = open_store(store)
    sp = s.spaces.get(space)
    cfg = sp.validate(read_json(config, "config"))
    lut = Lut.load(s, device, batch)
    out: dict[str, Any] = {"device": device, "key": cfg.key, "latency_ms": lut.latency_sum_ms(sp, cfg)}
    try:
        out["energy_mj"] = lut.energy_sum_mj(sp, cfg)
    except MissingLutError:
        out["energy_mj"] = None
    energy = f", {out['energy_mj']:.4f} mJ" if out["energy_mj"] is not None else ""
    emit(out, json_out, f"{sp.name} {cfg.key} on {device}: {out['latency_ms']:.3f} ms{energy} (LUT-sum)")
