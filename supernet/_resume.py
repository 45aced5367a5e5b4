"""Resumable SuperNet training: the state :func:`supernet.training.train_supernet` saves every few steps or seconds
and on SIGTERM/SIGINT, and reads back to continue exactly where it stopped.

A state is a folder ``step-NNNNNNNNN`` inside the checkpoint folder holding ``model.safetensors`` (the SuperNet's
state dict), ``optimizer.safetensors`` (the optimizer's tensors and the torch RNG states) and ``state.json`` (step,
options, optimizer groups, LR schedule, NumPy RNG, loss sums, seconds); no pickle. It is written under a temporary
name and renamed when complete, so a kill or a full disk while saving leaves the previous state; older states are
removed after a new one is in place.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from hwpareto.errors import HwparetoError
from hwpareto.safeload import load_json
from supernet._files import safetensors_bytes, write_synced

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINT_EVERY_S",
    "CHECKPOINT_EVERY_STEPS",
    "Checkpointing",
    "TrainingState",
    "TrainingStopped",
    "latest_step",
    "load_state",
    "save_state",
    "stop_requests",
]

CHECKPOINT_EVERY_STEPS = 200
CHECKPOINT_EVERY_S = 300.0
FORMAT = "hwpareto-training-state"
VERSION = 1
_STEP_DIR = re.compile(r"step-(\d{9})")


@dataclass(frozen=True, slots=True)
class Checkpointing:
    """Where and how often training saves resumable state: in ``folder``, after every ``every_steps`` steps or
    ``every_s`` seconds (whichever comes first), after the last step and on SIGTERM/SIGINT. With ``resume`` a state
    already in ``folder`` is continued (its options must be this run's); without, it is replaced."""

    folder: Path
    every_steps: int = CHECKPOINT_EVERY_STEPS
    every_s: float = CHECKPOINT_EVERY_S
    resume: bool = True


class TrainingStopped(HwparetoError):
    """Training stopped by a signal after saving its state; ``signal_number`` is the signal's."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


@dataclass(slots=True)
class TrainingState:
    """Everything a run needs to continue bit for bit after ``step`` steps."""

    step: int
    options: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    numpy_rng: dict[str, Any]
    loss_sums: dict[str, float]
    seconds: float


def _states(folder: Path) -> list[tuple[int, Path]]:
    """Complete states in ``folder`` (``step-N`` folders with a ``state.json``), latest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir() and not p.is_symlink() and (p / "state.json").is_file()
    ]
    return sorted(found, reverse=True)


def latest_step(folder: Path) -> int | None:
    """The step of the latest state in ``folder``, or None when it holds none."""
    states = _states(folder)
    return states[0][0] if states else None


def save_state(folder: Path, state: TrainingState) -> Path:
    """Write ``state`` as ``folder/step-N`` (complete or not at all) and remove older states; returns its folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HwparetoError(f"training state {folder}: cannot write ({exc.strerror})") from None
    final = folder / f"step-{state.step:09d}"
    part = folder / f".{final.name}.{secrets.token_hex(4)}.part"
    model, storages = dict(state.model), set()
    for name, tensor in state.model.items():  # tied weights (an LLM's embedding and head): one copy each
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if storage in storages:
            model[name] = tensor.clone()
        storages.add(storage)
    tensors: dict[str, torch.Tensor] = dict(state.rng)
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state.optimizer["state"].items():
        for key, value in values.items():
            if hasattr(value, "detach"):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "options": state.options,
        "optimizer_groups": state.optimizer["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": {k: v for k, v in state.scheduler.items() if k != "lr_lambdas"},
        "numpy_rng": state.numpy_rng,
        "loss_sums": state.loss_sums,
        "seconds": state.seconds,
    }
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"  # NaN losses of a diverged run are kept as NaN
    try:
        part.mkdir()
        model_bytes = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in model.items()})
        write_synced(part / "model.safetensors", model_bytes)
        del model_bytes
        write_synced(part / "optimizer.safetensors", safetensors_bytes(tensors))
        write_synced(part / "state.json", text.encode())
        if final.exists():
            shutil.rmtree(final)
        part.rename(final)
    except OSError as exc:
        shutil.rmtree(part, ignore_errors=True)
        raise HwparetoError(f"training state {final}: cannot write ({exc.strerror})") from None
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    for _, older in _states(folder)[1:]:
        shutil.rmtree(older, ignore_errors=True)
    for stray in folder.glob(".step-*.part"):
        shutil.rmtree(stray, ignore_errors=True)
    return final


def load_state(folder: Path, options: Mapping[str, Any]) -> TrainingState | None:
    """The latest state in ``folder`` (None when there is none). Its options must equal ``options``, else a one-line
    error naming the first that differs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    states = _states(folder)
    if not states:
        return None
    step, path = states[0]
    doc = load_json(path / "state.json", "training state")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise HwparetoError(f"training state {path}: expected {FORMAT} version {VERSION}, got another file")
    if doc.get("step") != step:
        raise HwparetoError(f"training state {path}: expected step {step} (its folder's name), got {doc.get('step')}")
    saved = doc.get("options")
    if not isinstance(saved, dict):
        raise HwparetoError(f"training state {path}: no options recorded")
    for key in sorted({*saved, *options}):
        if saved.get(key) != options.get(key):
            raise HwparetoError(
                f"training state {path} was saved by a run with {key} {saved.get(key)!r}, this run has "
                f"{options.get(key)!r}: rerun with the same options to continue, or --no-resume to start over"
            )
    try:
        model = load_file(path / "model.safetensors")
        tensors = load_file(path / "optimizer.safetensors")
    except (OSError, SafetensorError) as exc:
        raise HwparetoError(f"training state {path}: unreadable ({' '.join(str(exc).split())[:200]})") from None
    try:
        optimizer_state: dict[int, dict[str, Any]] = {}
        for name, tensor in tensors.items():
            if name.startswith("optimizer."):
                index, key = name.removeprefix("optimizer.").split(".", 1)
                optimizer_state.setdefault(int(index), {})[key] = tensor
        for index, values in doc["optimizer_scalars"].items():
            optimizer_state.setdefault(int(index), {}).update(values)
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
            for group in doc["optimizer_groups"]
        ]
        return TrainingState(
            step=step,
            options=saved,
            model=model,
            optimizer={"state": optimizer_state, "param_groups": groups},
            scheduler={**doc["scheduler"], "lr_lambdas": [None] * len(groups)},
            rng={k: v for k, v in tensors.items() if k.startswith("rng.")},
            numpy_rng=doc["numpy_rng"],
            loss_sums={k: float(v) for k, v in doc["loss_sums"].items()},
            seconds=float(doc["seconds"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HwparetoError(f"training state {path}: incomplete ({type(exc).__name__}: {exc})") from None


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While inside, SIGTERM and SIGINT do not stop the process but append their number to the yielded list (read
    between steps); a second signal stops at once (KeyboardInterrupt). Outside the main thread nothing changes."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: FrameType | None) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
