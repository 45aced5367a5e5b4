"""SuperNet training and evaluation: ``train-supernet``, ``eval-subnets``, ``finetune-check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hwpareto.cli._app import app
from hwpareto.cli._common import (
    BATCH_MAX,
    COUNT_MAX,
    SEED_MAX,
    THREADS_MAX,
    JsonOpt,
    StoreOpt,
    command,
    emit,
    open_store,
    resolve_space,
)
from hwpareto.errors import InvalidValueError
from supernet import CHECKPOINT_EVERY_S, CHECKPOINT_EVERY_STEPS, SearchSpace, check_output_file, latest_step

# ---------------------------------------------------------------------------------------------------- training
DataOpt = Annotated[
    str, typer.Option("--data", help="digits, digits-affine, stdlib, cifar10:DIR, folder:DIR or text:FILE[,FILE].")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1 ...")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, max=THREADS_MAX, help="CPU threads for torch.")]
SEQ_LEN_MAX = 1_048_576


def _training_setup(space: str, data: str, store: str | None, threads: int) -> tuple[SearchSpace, Any]:
    """The space and its dataset (images stored at the space's largest input resolution, preprocessed as the space
    says)."""
    import torch

    from supernet.data import load_data

    torch.set_num_threads(threads)
    sp = resolve_space(space, store)
    if not sp.has_model:
        raise InvalidValueError("--space", "a space with a PyTorch SuperNet", f"declarative space {sp.name!r}")
    shape = sp.dummy_input(sp.largest()).shape
    resolution = int(shape[-1]) if len(shape) == 4 else 32
    return sp, load_data(data, resolution=resolution, preprocessing=sp.preprocessing)


def _trained(sp: SearchSpace, checkpoint: Path | None) -> Any:
    """The trained SuperNet: from ``--checkpoint``, or, for a Hugging Face space, from its folder (no checkpoint)."""
    from pareto import load_supernet

    if not sp.family.checkpoints:
        if checkpoint is not None:
            raise InvalidValueError(
                "--checkpoint",
                f"none: space {sp.name!r} has its folder's weights (register a trained folder with space from-hf)",
                str(checkpoint),
            )
        return load_supernet(sp)
    if checkpoint is None:
        raise InvalidValueError("--checkpoint", f"a trained SuperNet (safetensors) of space {sp.name!r}", None)
    return load_supernet(sp, checkpoint)


CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Trained SuperNet (safetensors); none for a Hugging Face space (its folder's)."),
]


def _every(total: int, parts: int = 20) -> Callable[[int], bool]:
    return lambda done: done == total or done % max(1, total // parts) == 0


@app.command("train-supernet")
@command
def train_supernet_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space whose SuperNet to train.")],
    data: DataOpt,
    out: Annotated[
        Path,
        typer.Option("--out", help="Checkpoint to write (safetensors); a model folder for a Hugging Face space."),
    ],
    steps: Annotated[int, typer.Option("--steps", min=1, max=COUNT_MAX, help="Sandwich steps.")] = 1000,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=BATCH_MAX, help="Images or byte windows per step.")
    ] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate.")] = 2e-3,
    n_random: Annotated[int, typer.Option("--n-random", min=0, max=COUNT_MAX, help="Random SubNets per step.")] = 2,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Train every SubNet on labels.")] = False,
    largest_only: Annotated[
        int,
        typer.Option("--largest-only", min=0, max=COUNT_MAX, help="First steps that train the largest SubNet alone."),
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Init, batch and SubNet sampling seed.")] = 0,
    seq_len: Annotated[
        int | None,
        typer.Option(
            "--seq-len",
            min=2,
            max=SEQ_LEN_MAX,
            help="Text: tokens per training sequence (default the model's context).",
        ),
    ] = None,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every", min=1, max=COUNT_MAX, help="Save resumable state every N steps (and on SIGTERM/INT)."
        ),
    ] = CHECKPOINT_EVERY_STEPS,
    checkpoint_seconds: Annotated[
        float,
        typer.Option("--checkpoint-seconds", min=1.0, max=7 * 86_400.0, help="... and at least every S seconds."),
    ] = CHECKPOINT_EVERY_S,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Continue from the state in OUT.resume/ (--no-resume: start over)."),
    ] = True,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
) -> None:
    """Train a SuperNet with the sandwich rule (largest, smallest and random SubNets per step) and in-place
    distillation, and save it as a safetensors checkpoint (usable by export-config --checkpoint), or, for a Hugging
    Face space, as a model folder (config.json, model.safetensors, tokenizer) to register with space from-hf.
    Resumable state (weights, optimizer, RNGs, step) goes to OUT.resume/ every --checkpoint-every steps or
    --checkpoint-seconds and on SIGTERM/SIGINT; the same command continues from it (bit for bit) and removes it
    once OUT is written."""
    import shutil
    import time

    import torch

    from supernet.training import Checkpointing, TrainingStopped, train_supernet

    sp, dataset = _training_setup(space, data, store, threads)
    if not sp.family.checkpoints and out.exists() and not out.is_dir():
        raise InvalidValueError("--out", f"a folder (space {sp.name!r} saves a model folder)", str(out))
    if sp.family.checkpoints:
        check_output_file(out, "--out")
    typer.echo(f"{sp.name}: {dataset.description}")
    side = out if out.name else out.resolve()  # "." names no file to sit beside
    checkpoints = Checkpointing(side.with_name(side.name + ".resume"), checkpoint_every, checkpoint_seconds, resume)
    found = latest_step(checkpoints.folder)
    if found is not None and resume:
        typer.echo(f"resuming from step {found} of {steps}: state in {checkpoints.folder} (--no-resume starts over)")
    else:
        typer.echo(
            f"resumable state: {checkpoints.folder} (every {checkpoint_every} steps or {checkpoint_seconds:g} s, "
            "and on SIGTERM/SIGINT)"
        )
    supernet = sp.supernet(seed=seed)
    show, start = _every(steps), time.perf_counter()

    def advance(done: int, total: int, info: dict[str, float]) -> None:
        if show(done):
            typer.echo(
                f"  step {done}/{total}: loss largest {info['largest']:.4f}, smallest {info['smallest']:.4f}, "
                f"random {info['random']:.4f}, lr {info['lr']:.2e} ({time.perf_counter() - start:.0f} s)"
            )

    try:
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
            seq_len=seq_len,
            checkpoints=checkpoints,
            progress=advance,
        )
    except TrainingStopped as stopped:
        typer.echo(str(stopped), err=True)
        raise typer.Exit(128 + stopped.signal_number) from None
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
        **({"seq_len": seq_len} if seq_len is not None else {}),
        "device": device,
        "seconds": round(report.seconds, 1),
        "torch": torch.__version__,
        **{f"final_loss_{k}": round(v, 4) for k, v in report.final_losses.items()},
    }
    sp.family.save_trained(sp, supernet, out, meta)
    shutil.rmtree(checkpoints.folder, ignore_errors=True)  # OUT holds the result now
    typer.echo(
        f"saved {out} after {steps} steps in {report.seconds:.0f} s (final losses: "
        + ", ".join(f"{k} {v:.4f}" for k, v in report.final_losses.items())
        + ")"
    )


@app.command("eval-subnets")
@command
def eval_subnets_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="CSV to write (one row per SubNet).")],
    checkpoint: CheckpointOpt = None,
    n: Annotated[
        int, typer.Option("-n", min=2, max=COUNT_MAX, help="SubNets: the largest, the smallest, then random ones.")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Sampling seed.")] = 0,
    split: Annotated[str, typer.Option("--split", help="val or test (train for debugging).")] = "val",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate N SubNets with inherited weights (batch norm recalibrated) on a held-out split and write the table
    (importable with hwpareto import ... --dataset D --column SPLIT_acc_pct, or SPLIT_ppl for text). The checkpoint
    is recorded in the store (path, SHA-256) as the one the space's quality comes from: export uses it by default."""
    import numpy as np

    from supernet.training import evaluate_subnets, table_configs, write_accuracy_table

    sp, dataset = _training_setup(space, data, store, threads)
    supernet = _trained(sp, checkpoint)
    configs = table_configs(sp, n, seed)
    show = _every(n, 10)

    def advance(done: int, total: int, info: dict[str, float]) -> None:
        if show(done) and not json_out:
            typer.echo(f"  {done}/{total} SubNets, last {info['acc_pct']:.2f} %")

    metrics = evaluate_subnets(sp, supernet, configs, dataset, split=split, device=device, progress=advance)
    write_accuracy_table(out, sp, configs, metrics, split)
    if checkpoint is not None:  # exports of this space default to the weights its quality came from
        from pareto import record_checkpoint

        record_checkpoint(open_store(store), sp, checkpoint, recorded_by="eval-subnets", evaluated=True)
    acc = np.array([m["acc_pct"] for m in metrics])
    info: dict[str, Any] = {"table": str(out), "subnets": len(configs), "split": split}
    line = f"wrote {out}: {len(configs)} SubNets, {split} accuracy min {acc.min():.2f} %, median "
    line += f"{np.median(acc):.2f} %, max {acc.max():.2f} %"
    for metric in ("acc_pct", "ppl") if "ppl" in metrics[0] else ("acc_pct",):
        values = np.array([m[metric] for m in metrics])
        info |= {
            f"{s}_{metric}": float(f(values)) for s, f in (("min", np.min), ("median", np.median), ("max", np.max))
        }
    if "ppl" in metrics[0]:
        line += f"; perplexity min {info['min_ppl']:.3f}, median {info['median_ppl']:.3f}, max {info['max_ppl']:.3f}"
    emit(info, json_out, line)


@app.command("finetune-check")
@command
def finetune_check_cmd(
    space: Annotated[str, typer.Option("--space", help="Search space.")],
    data: DataOpt,
    table: Annotated[Path, typer.Option("--table", help="Accuracy table written by eval-subnets.")],
    out: Annotated[Path, typer.Option("--out", help="Markdown report to write.")],
    checkpoint: CheckpointOpt = None,
    k: Annotated[
        int, typer.Option("-k", min=3, max=COUNT_MAX, help="SubNets to fine-tune, spread over the table's ranks.")
    ] = 10,
    steps: Annotated[int, typer.Option("--steps", min=1, max=COUNT_MAX, help="Fine-tuning steps per SubNet.")] = 100,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 5e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=BATCH_MAX)] = 64,
    split: Annotated[str, typer.Option("--split", help="Split the table was evaluated on.")] = "val",
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="Batch seed.")] = 0,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 1,
    store: StoreOpt = None,
) -> None:
    """Sanity check of the accuracy table: fine-tune K SubNets briefly and rank-correlate inherited-weight and
    fine-tuned accuracy (Spearman, Kendall); writes a markdown report with the table's min/median/max."""
    import numpy as np

    from supernet.training import finetune_check, read_accuracy_table

    sp, dataset = _training_setup(space, data, store, threads)
    rows = read_accuracy_table(table, sp, f"{split}_acc_pct")
    supernet = _trained(sp, checkpoint)

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
        f"Generated by `hwpareto finetune-check --space {sp.name}"
        + (f" --checkpoint {checkpoint}" if checkpoint is not None else "")
        + f" --data {data} "
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
