"""Spaces and configs: ``spaces``, ``space show/register/remove/from-hf``, ``sample``, ``validate``,
``export-config``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from hwpareto.cli._app import app, space_app
from hwpareto.cli._common import (
    CONFIG_FORMATS,
    COUNT_MAX,
    SEED_MAX,
    ConfigFormatOpt,
    ExportCheckpointOpt,
    JsonOpt,
    RandomWeightsOpt,
    StoreOpt,
    command,
    config_printer,
    config_summary,
    emit,
    emit_rows,
    open_store,
    print_table,
    read_json,
    resolve_space,
)
from hwpareto.errors import HwparetoError, InvalidValueError
from supernet import SearchSpace, SubNetConfig


# ---------------------------------------------------------------------------------------------------- spaces
@app.command()
@command
def spaces(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List the search spaces (built-in and registered in the store); a broken installed plugin is listed with
    its error instead of failing the listing."""
    loaded, broken = open_store(store).spaces.load_all()
    rows = [sp.describe() for sp in loaded] + [{"name": name, "error": error} for name, error in broken.items()]
    emit_rows(
        rows,
        ["name", "dimensions", "size", "model", "description"],
        json_out=json_out,
        title="search spaces",
        cells=_space_cells({sp.name: sp for sp in loaded}),
    )


def _space_cells(spaces: dict[str, SearchSpace]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The table row of a space of ``hwpareto spaces`` (a broken plugin: its error as the description)."""

    def cells(row: Mapping[str, Any]) -> dict[str, Any]:
        if "error" in row:
            return {"name": row["name"], "description": f"broken plugin: {row['error']}"}
        sp = spaces[row["name"]]
        return {
            "name": sp.name,
            "dimensions": len(sp.dimensions),
            "size": f"{sp.size():.3g}",
            "model": "yes" if sp.has_model else "no (declarative)",
            "description": sp.description,
        }

    return cells


@space_app.command("show")
@command
def space_show(name: str, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Show a space's dimensions and allowed values."""
    sp = resolve_space(name, store)

    def human() -> None:
        typer.echo(f"{sp.name}: {sp.description}")
        typer.echo(
            f"{len(sp.dimensions)} dimensions, {sp.size():.4g} configs; table columns: "
            + " or ".join("(" + ", ".join(c) + ")" for c in sp.record_columns())
        )
        print_table(
            [{"name": d.name, "group": d.group, "allowed": d.allowed} for d in sp.dimensions],
            ["name", "group", "allowed"],
        )

    emit(sp.describe(), json_out, human)


@space_app.command("register")
@command
def space_register(file: Path, store: StoreOpt = None) -> None:
    """Register a declarative space (YAML/JSON: named categorical/int/float dimensions) in the store."""
    from supernet import load_space_file

    sp = load_space_file(file)
    open_store(store).spaces.register(sp)
    typer.echo(f"registered space {sp.name!r} ({len(sp.dimensions)} dimensions)")


@space_app.command("remove")
@command
def space_remove(
    name: str,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade",
            help="Also delete the studies over the space, its measurements and predictors.",
        ),
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Remove a space registered in the store (space register / from-hf; built-in and installed spaces stay).
    Refused while studies, measurements or predictors use it, unless --cascade (which says what it deletes)."""
    from pareto import delete_study, list_all_searches, studies_using

    s = open_store(store)
    held = s.spaces.held(name)
    users = studies_using(s, space=name)
    studies = f"{len(users)} {'study' if len(users) == 1 else 'studies'}" + (
        " (" + ", ".join(users[:5]) + (", ..." if len(users) > 5 else "") + ")" if users else ""
    )
    if not cascade and (users or held.measurements or held.predictors):
        raise HwparetoError(
            f"space {name!r} is used by {studies}, {held}: delete them with it (hwpareto space remove {name} "
            "--cascade) or keep the space"
        )
    active = [r.name for r in list_all_searches(s) if r.name in users and r.status in ("queued", "running")]
    if active:
        raise InvalidValueError(
            f"space {name!r}",
            "no queued or running search over it (cancel them first: hwpareto searches --cancel NAME)",
            ", ".join(active),
        )
    if users or held.measurements or held.predictors or held.exports or held.checkpoints:
        typer.echo(f"removing space {name!r} with {studies}, {held}")
    for study in users:
        delete_study(s, study)
    s.spaces.remove(name)
    typer.echo(f"removed space {name!r} from {s.url}")


@space_app.command("from-hf")
@command
def space_from_hf(
    path: Path,
    name: Annotated[str, typer.Option("--name", help="Name of the new space in the store.")],
    uniform: Annotated[
        bool, typer.Option("--uniform", help="One shared heads and FFN choice: every SubNet is a plain HF model.")
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="UTF-8 text for the importance ordering (through the folder's tokenizer; bytes without one).",
        ),
    ] = None,
    batch: Annotated[
        list[int] | None,
        typer.Option("--batch", min=1, max=65_536, help="Runtime batch sizes (repeat the option; default 1, 4, 16)."),
    ] = None,
    prompt_len: Annotated[
        list[int] | None,
        typer.Option(
            "--prompt-len",
            min=1,
            max=4_194_304,
            help="Prompt lengths in tokens (repeat the option; default 128, 512, 2048 where they fit the context).",
        ),
    ] = None,
    gen_len: Annotated[
        list[int] | None,
        typer.Option(
            "--gen-len",
            min=0,
            max=4_194_304,
            help="Generated lengths in tokens (repeat the option; default 32, 128, 512 where they fit the context).",
        ),
    ] = None,
    no_importance: Annotated[
        bool,
        typer.Option(
            "--no-importance", help="Keep the folder's channel order (a SuperNet trained by train-supernet is ordered)."
        ),
    ] = False,
    cost_only: Annotated[
        bool,
        typer.Option(
            "--cost-only",
            help="Register a model whose SuperNet does not fit this machine's memory: cost objectives only here "
            "(building it stays refused where it does not fit).",
        ),
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register the space of a local Hugging Face model folder (config.json + safetensors weights) or of a lone
    config.json (random weights: cost objectives only). Llama, Mistral, Qwen2; local files only, no remote code. The
    weights' headers are checked against config.json, and the SuperNet's memory against this machine's."""
    from hwpareto.safeload import read_text
    from supernet.llama import space_from_hf as build

    options: dict[str, Any] = {"uniform": uniform, "importance": not no_importance}
    for key, values in (("batch", batch), ("prompt_len", prompt_len), ("gen_len", gen_len)):
        if values:
            options[key] = values
    if calibration is not None:
        options["calibration_text"] = read_text(calibration, "calibration text")
    sp = build(path, name, cost_only=cost_only, **options)
    open_store(store).spaces.register(sp)
    emit(
        sp.describe(),
        json_out,
        f"registered space {sp.name!r} ({len(sp.dimensions)} dimensions, {sp.size():.4g} configs)",
    )


# ---------------------------------------------------------------------------------------------------- configs
@app.command()
@command
def sample(
    space: str,
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=COUNT_MAX, help="Number of SubNets.")] = 5,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Random seed.")] = 0,
    fmt: ConfigFormatOpt = "hwpareto",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sample random SubNet configs of SPACE (--format ofa: each with OFA's dict as ``config``)."""
    import numpy as np

    sp = resolve_space(space, store)
    printed = config_printer(sp, fmt)
    rng = np.random.default_rng(seed)
    cfgs = [sp.sample(rng) for _ in range(n)]
    configs = [config_summary(sp, cfg) | {"config": printed(cfg)} for cfg in cfgs]

    def human() -> None:
        rows = [
            {
                "key": c["key"],
                "params (M)": f"{c['params'] / 1e6:.3f}" if "params" in c else "",
                "MMACs": f"{c['macs'] / 1e6:.1f}" if "macs" in c else "",
                "config": sp.summary(cfg) if fmt == "hwpareto" else json.dumps(c["config"], separators=(",", ":")),
            }
            for c, cfg in zip(configs, cfgs, strict=True)
        ]
        title = f"{n} sampled {sp.name} SubNets (seed {seed})"
        print_table(rows, ["key", "params (M)", "MMACs", "config"], title=title)

    emit(configs, json_out, human)


FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="hwpareto (dimension values or {space, values}) or ofa (OFA's dict: ks, e, d lists, r or image_size, "
        "wid; wid None takes the --checkpoint's width).",
    ),
]


def _read_config(sp: SearchSpace, path: Path, fmt: str, checkpoint: Path | None) -> SubNetConfig:
    """The config in JSON file ``path``, in hwpareto's or OFA's format (``checkpoint`` gives OFA's ``wid: None``
    its width)."""
    if fmt not in CONFIG_FORMATS:
        raise InvalidValueError("--format", " or ".join(CONFIG_FORMATS), fmt)
    doc = read_json(path, "config")
    if fmt == "hwpareto":
        return sp.validate(doc)
    from supernet.mbv3 import MobileNetV3Space, ofa_config

    if not isinstance(sp, MobileNetV3Space):
        raise InvalidValueError("--format ofa", "a MobileNetV3 space (ofa-mbv3-w1.0, ofa-mbv3-w1.2, mbv3)", sp.name)
    return ofa_config(sp, doc, checkpoint)


@app.command()
@command
def validate(
    space: str,
    config: Path,
    fmt: FormatOpt = "hwpareto",
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Imported OFA checkpoint whose width OFA's wid: None means.")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate a config JSON file against SPACE (plain values or {"space", "values"}; --format ofa: OFA's dict)."""
    sp = resolve_space(space, store)
    cfg = _read_config(sp, config, fmt, checkpoint)
    summary = config_summary(sp, cfg)
    extra = f", {summary['params'] / 1e6:.3f} M params, {summary['macs'] / 1e6:.1f} MMACs" if sp.has_model else ""
    emit(summary, json_out, f"valid {sp.name} config {cfg.key}{extra}")


@app.command("export-config")
@command
def export_config(
    space: str,
    config: Path,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the bundle to.")],
    weights: Annotated[bool, typer.Option("--weights", help="Also write the SubNet's weights (safetensors).")] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write the SubNet as ONNX (dynamic batch).")] = False,
    checkpoint: ExportCheckpointOpt = None,
    random_weights: RandomWeightsOpt = False,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Init seed of --random-weights.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out folder.")] = False,
    fmt: FormatOpt = "hwpareto",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a SubNet: config JSON, and optionally extracted weights and ONNX, each loadable back (config.json
    also records the input preprocessing of image SubNets). Weights are refused when no trained SuperNet weights
    are known, unless --random-weights; the output says where they came from and whether batch norm was
    recalibrated."""
    from pareto import export_subnet, record_checkpoint

    sp = resolve_space(space, store)
    cfg = _read_config(sp, config, fmt, checkpoint)
    db = open_store(store)
    result = export_subnet(
        sp,
        cfg,
        out,
        weights=weights,
        onnx=onnx,
        checkpoint=checkpoint,
        recorded=db.checkpoints.trained(sp.name) if weights or onnx else None,
        random_weights=random_weights,
        seed=seed,
        force=force,
    )
    if checkpoint is not None and (weights or onnx):
        record_checkpoint(db, sp, checkpoint, recorded_by="export-config")
    db.exports.add(cfg, str(result.directory.resolve()), result.files)
    emit(
        {"directory": str(result.directory), "key": cfg.key, "files": result.files, "notes": list(result.notes)},
        json_out,
        "\n".join(
            [f"exported {sp.name} SubNet {cfg.key} to {result.directory}: " + ", ".join(result.files), *result.notes]
        ),
    )
