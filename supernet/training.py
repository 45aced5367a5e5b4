"""SuperNet training with the sandwich rule and in-place distillation, and SubNet evaluation with inherited weights.

Each step (BigNAS / OFA style) runs the largest SubNet on the labels, then the smallest and ``n_random`` random
SubNets on the largest's soft targets (KL divergence; labels when ``distill`` is off), accumulates the gradients
of all of them and takes one optimizer step. Optionally the first steps train the largest SubNet alone (OFA trains
the full network first): a teacher that is still near chance otherwise drags the shared weights with it. SubNets
are selected with the SuperNets' own ``set_active(config)``.

Image spaces see every batch resized to each SubNet's resolution (random affine distortions while training);
``gpt`` spaces see byte windows truncated to each SubNet's ``seq_len``. A SubNet is evaluated as OFA does: the
extracted module's batch-norm statistics are recomputed on training images as the space's
:class:`~supernet.preprocessing.ImagePreprocessing` says (hwpareto's spaces: one batch of 500, distorted as in
training; OFA's networks: OFA's ``set_running_statistics`` on 2,000 images under OFA's training transform), then
it runs on a held-out split.
Text SubNets report next-byte top-1 accuracy, loss (nats) and perplexity on evenly spaced windows of the split.

A space's model family may bring its own text task (``ModelFamily.training_task``): Hugging Face causal-LM
spaces (``supernet.llama``) read the text through their folder's tokenizer when it has one, else as bytes (their
vocabulary must then hold 256 ids). Every SubNet sees the same
windows of ``W = min(max_position_embeddings, LM_WINDOW_TOKENS)`` tokens (the runtime dimensions batch /
prompt_len / gen_len are cost only): it predicts tokens 2..W of each window from those before, as transformers'
``model(ids, labels=ids).loss`` does. Training samples windows at random from the train split; evaluation cuts the
split into consecutive windows and takes ``EVAL_WINDOWS`` of them evenly spaced (all when fewer), so perplexity is
``exp`` of the mean token NLL over those windows.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet._family import SuperNet, save_checkpoint
from supernet._resume import Checkpointing, TrainingState, TrainingStopped, load_state, save_state, stop_requests
from supernet._space import SearchSpace
from supernet._types import SubNetConfig
from supernet.data import ImageData, TextData
from supernet.preprocessing import HWPARETO_IMAGES, ImagePreprocessing

__all__ = [
    "Checkpointing",
    "FinetuneCheck",
    "TrainReport",
    "TrainingStopped",
    "evaluate_subnet",
    "evaluate_subnets",
    "extract_calibrated",
    "finetune_check",
    "read_accuracy_table",
    "save_checkpoint",
    "set_running_statistics",
    "table_configs",
    "train_supernet",
    "write_accuracy_table",
]

Progress = Callable[[int, int, dict[str, float]], None]
"""``progress(done, total, info)``: called after every training step or evaluated SubNet."""

CALIBRATION_IMAGES = 500
OFA_SUB_SEED = 937162211
"""The seed of OFA's BN-calibration subset (``DataProvider.SUB_SEED``)."""
EVAL_WINDOWS = 64
EVAL_BATCH = 256
LM_WINDOW_TOKENS = 1024
"""Longest window (tokens) of a Hugging Face space: ``min(max_position_embeddings, LM_WINDOW_TOKENS)``."""
LM_EVAL_BATCH = 16


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What :func:`train_supernet` did: steps, wall time (of every run that continued it) and the mean losses of the
    last 10 % of steps; ``resumed_from``: the step a saved state continued from (0 for a fresh start)."""

    steps: int
    seconds: float
    final_losses: dict[str, float]
    resumed_from: int = 0


@dataclass(frozen=True, slots=True)
class FinetuneCheck:
    """Inherited-weight vs fine-tuned metric of a few SubNets and their rank correlations."""

    metric: str
    steps: int
    rows: list[dict[str, Any]]
    spearman: float
    kendall: float


class _Task(Protocol):
    """How a data kind feeds a space: training batches, per-SubNet inputs, output checks, BN calibration and
    evaluation batches."""

    def sample(self, gen: torch.Generator, batch_size: int) -> tuple[Any, torch.Tensor]: ...
    def prepare(self, batch: tuple[Any, torch.Tensor], config: SubNetConfig) -> tuple[torch.Tensor, torch.Tensor]: ...
    def check_output(self, logits: torch.Tensor) -> None: ...
    def calibration(self, config: SubNetConfig) -> Iterator[torch.Tensor]: ...
    def eval_batches(self, split: str, config: SubNetConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    metrics: tuple[str, ...]


class _ImageTask:
    metrics: tuple[str, ...] = ("acc_pct", "loss")

    def __init__(self, space: SearchSpace, data: ImageData, device: torch.device) -> None:
        self.space, self.data, self.device = space, data, device
        self.preprocessing = space.preprocessing or HWPARETO_IMAGES
        self.train = data.train.images.to(device)
        self.labels = data.train.labels.to(device)
        self._resized: dict[tuple[str, int], torch.Tensor] = {}

    def resolution(self, config: SubNetConfig) -> int:
        dim = self.space.input_dimension
        return int(config[dim]) if dim else int(self.space.dummy_input(config).shape[-1])

    def sample(self, gen: torch.Generator, batch_size: int) -> tuple[Any, torch.Tensor]:
        idx = torch.randint(len(self.labels), (batch_size,), generator=gen).to(self.device)
        theta = self.data.augment.sample(gen, batch_size)
        return (self.train[idx], theta.to(self.device)), self.labels[idx]

    def prepare(self, batch: tuple[Any, torch.Tensor], config: SubNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
        (images, theta), labels = batch
        r = self.resolution(config)
        grid = F.affine_grid(theta, [len(images), images.shape[1], r, r], align_corners=False)
        return F.grid_sample(images + 1, grid, align_corners=False) - 1, labels  # black (-1) outside the image

    def check_output(self, logits: torch.Tensor) -> None:
        if logits.shape[-1] != len(self.data.classes):
            raise InvalidValueError(
                f"dataset {self.data.name} classes", f"{logits.shape[-1]} (the space's head)", len(self.data.classes)
            )

    def _images(self, split: str, r: int) -> torch.Tensor:
        key = (split, r)
        if key not in self._resized:
            images = self.data.split(split).images.to(self.device)
            self._resized[key] = (
                images
                if images.shape[-1] == r
                else F.interpolate(
                    images, size=(r, r), mode="bilinear", align_corners=False, antialias=self.preprocessing.antialias
                )
            )
        return self._resized[key]

    def calibration(self, config: SubNetConfig) -> Iterator[torch.Tensor]:
        """The preprocessing's calibration batches: one fixed batch of training images distorted as in training,
        or OFA's: a seeded subset of 2,000 training images in batches of 200 under OFA's training transform."""
        prep = self.preprocessing
        if prep.calibration == "affine":
            yield self.prepare(self.sample(torch.Generator().manual_seed(0), CALIBRATION_IMAGES), config)[0]
            return
        gen = torch.Generator().manual_seed(OFA_SUB_SEED)
        chosen = torch.randperm(len(self.labels), generator=gen)[: prep.calibration_images].to(self.device)
        for index in chosen.split(prep.calibration_batch_images):
            yield _ofa_train_transform(self.train[index], self.resolution(config), gen, prep)

    def eval_batches(self, split: str, config: SubNetConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self._images(split, self.resolution(config)), self.data.split(split).labels.to(self.device)
        for i in range(0, len(labels), EVAL_BATCH):
            yield images[i : i + EVAL_BATCH], labels[i : i + EVAL_BATCH]


OFA_SCALE = (0.08, 1.0)
OFA_RATIO = (3 / 4, 4 / 3)
OFA_BRIGHTNESS = 32 / 255
OFA_SATURATION = 0.5


def _ofa_train_transform(images: torch.Tensor, r: int, gen: torch.Generator, prep: ImagePreprocessing) -> torch.Tensor:
    """OFA's training transform on normalised square images: random resized crop (area 8-100 %, aspect 3/4-4/3,
    10 tries then the whole image, as torchvision) to ``r`` px, horizontal flip with probability 1/2, brightness
    and saturation jitter (``ColorJitter(32/255, saturation=0.5)``), normalised again."""
    n, tries = len(images), 10
    area = torch.empty(n, tries).uniform_(*OFA_SCALE, generator=gen)
    log_ratio = torch.empty(n, tries).uniform_(math.log(OFA_RATIO[0]), math.log(OFA_RATIO[1]), generator=gen)
    w, h = (area * log_ratio.exp()).sqrt(), (area / log_ratio.exp()).sqrt()
    fits = (w <= 1) & (h <= 1)
    first = fits.int().argmax(1, keepdim=True)
    w = torch.where(fits.any(1), w.gather(1, first).squeeze(1), torch.ones(n))
    h = torch.where(fits.any(1), h.gather(1, first).squeeze(1), torch.ones(n))
    u = torch.rand(n, 5, generator=gen)
    flip = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w * flip, h
    theta[:, 0, 2], theta[:, 1, 2] = (u[:, 1] * 2 - 1) * (1 - w), (u[:, 2] * 2 - 1) * (1 - h)
    theta = theta.to(images.device)
    grid = F.affine_grid(theta, [n, images.shape[1], r, r], align_corners=False)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = torch.tensor(prep.mean_rgb, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std_rgb, device=images.device).view(1, 3, 1, 1)
    pixels = crops * std + mean
    brightness = (1 + (u[:, 3] * 2 - 1) * OFA_BRIGHTNESS).to(images.device).view(n, 1, 1, 1)
    pixels = (pixels * brightness).clamp(0, 1)
    saturation = (1 + (u[:, 4] * 2 - 1) * OFA_SATURATION).to(images.device).view(n, 1, 1, 1)
    grey = (0.299 * pixels[:, 0:1] + 0.587 * pixels[:, 1:2] + 0.114 * pixels[:, 2:3]).expand_as(pixels)
    pixels = (grey + saturation * (pixels - grey)).clamp(0, 1)
    return (pixels - mean) / std


def train_seq(seq_len: int | None, context: int, where: str) -> int:
    """Input tokens per training sequence: ``seq_len`` when given (2 to the model's ``context``), else ``context``."""
    if seq_len is None:
        return context
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= context:
        raise InvalidValueError("seq_len", f"an integer in [2, {context}] (the context of {where})", seq_len)
    return seq_len


class TextTask:
    metrics: tuple[str, ...] = ("acc_pct", "loss", "ppl")

    def __init__(self, space: SearchSpace, data: TextData, device: torch.device, seq_len: int | None = None) -> None:
        if space.input_dimension is None:
            raise InvalidValueError(f"space {space.name!r}", "a token space with a sequence-length dimension", "none")
        self.space, self.data, self.device = space, data, device
        self.max_seq = int(space.dimension(space.input_dimension).bounds()[1])
        where = f"space {space.name!r}: its largest {space.input_dimension}"
        self.train_seq = train_seq(seq_len, self.max_seq, where)
        self.train = data.train.tokens.to(device)
        self._check_train_split("bytes")

    def _check_train_split(self, unit: str) -> None:
        if len(self.train) <= self.train_seq + 1:
            raise HwparetoError(
                f"text {self.data.name}: the train split has {len(self.train)} {unit}, "
                f"need more than {self.train_seq + 1}"
            )

    def _windows(
        self, tokens: torch.Tensor, starts: torch.Tensor, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets of ``length`` (default ``max_seq``) tokens from each start."""
        w = tokens[starts[:, None] + torch.arange((length or self.max_seq) + 1, device=tokens.device)]
        return w[:, :-1], w[:, 1:]

    def sample(self, gen: torch.Generator, batch_size: int) -> tuple[Any, torch.Tensor]:
        """Training sequences of ``train_seq`` tokens at random starts (a SubNet with a shorter ``seq_len`` sees the
        first tokens of each)."""
        starts = torch.randint(len(self.train) - self.train_seq - 1, (batch_size,), generator=gen).to(self.device)
        return self._windows(self.train, starts, self.train_seq)

    def prepare(self, batch: tuple[Any, torch.Tensor], config: SubNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        t = int(config[self.space.input_dimension or ""])
        return x[:, :t], y[:, :t]

    def check_output(self, logits: torch.Tensor) -> None:
        if logits.shape[-1] != self.data.vocab_size:
            raise InvalidValueError(
                f"corpus {self.data.name} vocabulary", f"{logits.shape[-1]} (the space's)", self.data.vocab_size
            )

    def calibration(self, config: SubNetConfig) -> Iterator[torch.Tensor]:
        return iter(())

    def eval_batches(self, split: str, config: SubNetConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``EVAL_WINDOWS`` evenly spaced windows of ``max_seq`` bytes for every SubNet, cut into pieces of
        the SubNet's ``seq_len`` (so every SubNet predicts the same bytes when ``seq_len`` divides ``max_seq``)."""
        tokens = self.data.split(split).tokens.to(self.device)
        if len(tokens) <= self.max_seq + 1:
            raise HwparetoError(f"text {self.data.name}: the {split} split is shorter than {self.max_seq + 1} bytes")
        starts = torch.linspace(0, len(tokens) - self.max_seq - 1, EVAL_WINDOWS, device=self.device).long()
        x, y = self._windows(tokens, starts)
        t = int(config[self.space.input_dimension or ""])
        n = self.max_seq // t * t
        yield x[:, :n].reshape(-1, t), y[:, :n].reshape(-1, t)


def _task(space: SearchSpace, data: ImageData | TextData, device: torch.device, seq_len: int | None = None) -> _Task:
    """How ``data`` feeds ``space``; ``seq_len``: input tokens per training sequence (text only; default the
    model's context)."""
    if not space.has_model:
        raise InvalidValueError(f"space {space.name!r}", "a space with a PyTorch SuperNet", "a declarative space")
    tokens = not space.dummy_input(space.smallest()).dtype.is_floating_point
    if tokens != isinstance(data, TextData):
        raise InvalidValueError(
            f"data for space {space.name!r}", "a text corpus" if tokens else "an image dataset", data.name
        )
    if isinstance(data, TextData):
        task = space.family.training_task(space, data, device, seq_len)
        return task if task is not None else TextTask(space, data, device, seq_len)
    if seq_len is not None:
        raise InvalidValueError("seq_len", f"none for image data ({data.name})", seq_len)
    return _ImageTask(space, data, device)


def _logits(out: Any) -> torch.Tensor:
    """Logits of a SubNet's output: the tensor itself or a ``transformers`` output's ``logits``."""
    return out if isinstance(out, torch.Tensor) else out.logits


def _ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per position; a text teacher is cut to the student's length (causal, same start)."""
    if student.dim() == 3:
        teacher = teacher[:, : student.shape[1]]
    s, t = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG inside the block (restored afterwards), so runs repeat exactly."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _set_active(space: SearchSpace, supernet: nn.Module, config: SubNetConfig) -> None:
    if not isinstance(supernet, SuperNet):
        raise InvalidValueError("supernet", "a SuperNet with set_active(config)", type(supernet).__name__)
    supernet.set_active(config)


def train_supernet(
    space: SearchSpace,
    supernet: nn.Module,
    data: ImageData | TextData,
    *,
    steps: int,
    lr: float = 2e-3,
    batch_size: int = 64,
    n_random: int = 2,
    distill: bool = True,
    largest_only: int = 0,
    weight_decay: float = 0.01,
    seed: int = 0,
    device: str = "cpu",
    seq_len: int | None = None,
    checkpoints: Checkpointing | None = None,
    progress: Progress | None = None,
) -> TrainReport:
    """Train ``supernet`` in place for ``steps`` steps, the first ``largest_only`` on the largest SubNet alone and
    the others with the sandwich rule (AdamW, 5 % linear warm-up then cosine decay over all steps, gradient norm
    clipped at 1). Returns when done; the largest SubNet is active afterwards. ``seq_len``: input tokens per
    training sequence of text data (default the model's context).

    With ``checkpoints`` the state (weights, optimizer, schedule, every RNG, step) is saved as it says and on
    SIGTERM/SIGINT, which then raise :class:`TrainingStopped` after the step in progress; a state found in its
    folder is continued, and the result is bit for bit that of an uninterrupted run (same device and threads)."""
    if steps < 1:
        raise InvalidValueError("steps", "a positive integer", steps)
    if not 0 <= largest_only < steps:
        raise InvalidValueError("largest_only", f"an integer in [0, steps = {steps})", largest_only)
    if n_random < 0:
        raise InvalidValueError("n_random", "a non-negative integer", n_random)
    dev = torch.device(device)
    task = _task(space, data, dev, seq_len)
    supernet.to(dev).train()
    params = [p for p in supernet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    largest, smallest = space.largest(), space.smallest()
    options = {
        "space": space.name,
        "data": data.description,
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "n_random": n_random,
        "distill": distill,
        "largest_only": largest_only,
        "weight_decay": weight_decay,
        "seed": seed,
        "seq_len": seq_len,
    }
    tail_from = steps - max(1, (steps - largest_only) // 10)  # final losses: means over the last 10 % of steps
    sums = {"largest": 0.0, "smallest": 0.0, "random": 0.0}
    saved = load_state(checkpoints.folder, options) if checkpoints is not None and checkpoints.resume else None
    first, seconds_before = 0, 0.0
    if saved is not None:
        try:
            supernet.load_state_dict(saved.model)
            opt.load_state_dict(saved.optimizer)
            sched.load_state_dict(saved.scheduler)
            gen.set_state(saved.rng["rng.batches"])
            rng.bit_generator.state = saved.numpy_rng
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise HwparetoError(
                f"training state in {checkpoints.folder if checkpoints else ''}: does not fit space {space.name!r} "
                f"({' '.join(str(exc).split())[:200]})"
            ) from None
        first, seconds_before, sums = saved.step, saved.seconds, dict(saved.loss_sums)
    start = time.perf_counter()
    stopper: contextlib.AbstractContextManager[list[int]] = (
        stop_requests() if checkpoints is not None else contextlib.nullcontext([])
    )
    with _seeded(seed, dev), stopper as stop:
        if saved is not None:  # dropout draws from the global RNG
            torch.set_rng_state(saved.rng["rng.torch"])
            if dev.type == "cuda" and "rng.cuda" in saved.rng:
                torch.cuda.set_rng_state(saved.rng["rng.cuda"], dev)
        last_saved, last_saved_at = first, time.monotonic()
        for step in range(first, steps):
            batch = task.sample(gen, batch_size)
            opt.zero_grad(set_to_none=True)
            _set_active(space, supernet, largest)
            x, y = task.prepare(batch, largest)
            logits = supernet(x)
            if step == first:
                task.check_output(logits)
            loss = _ce(logits, y)
            loss.backward()
            teacher = logits.detach()
            losses = {"largest": loss.item(), "smallest": 0.0, "random": 0.0}
            sandwich = [("smallest", smallest), *(("random", space.sample(rng)) for _ in range(n_random))]
            for name, cfg in sandwich if step >= largest_only else []:
                _set_active(space, supernet, cfg)
                x, y = task.prepare(batch, cfg)
                out = supernet(x)
                sub_loss = _kd(out, teacher) if distill else _ce(out, y)
                sub_loss.backward()
                losses[name] += sub_loss.item() / (n_random if name == "random" else 1)
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses["lr"] = float(sched.get_last_lr()[0])
            if step >= tail_from:
                sums = {k: v + losses[k] for k, v in sums.items()}
            if progress is not None:
                progress(step + 1, steps, losses)
            if checkpoints is None:
                continue
            done = step + 1
            if (
                stop
                or done == steps
                or done - last_saved >= checkpoints.every_steps
                or time.monotonic() - last_saved_at >= checkpoints.every_s
            ):
                state = TrainingState(
                    step=done,
                    options=options,
                    model=supernet.state_dict(),
                    optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(),
                    rng=_rng_states(gen, dev),
                    numpy_rng=dict(rng.bit_generator.state),
                    loss_sums=sums,
                    seconds=seconds_before + time.perf_counter() - start,
                )
                where = save_state(checkpoints.folder, state)
                last_saved, last_saved_at = done, time.monotonic()
                if stop and done < steps:
                    name = signal.Signals(stop[0]).name
                    raise TrainingStopped(
                        f"stopped by {name} after step {done} of {steps}: state saved in {where}; run the same "
                        "command again to continue",
                        stop[0],
                    )
    _set_active(space, supernet, largest)
    _recalibrate(supernet, task, largest)  # the SuperNet's own BN statistics serve the largest SubNet
    count = steps - tail_from
    final = {k: v / count for k, v in sums.items()}
    return TrainReport(steps, seconds_before + time.perf_counter() - start, final, first)


def _rng_states(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """The states of the batch generator and torch's global RNG(s), as :class:`TrainingState` keeps them."""
    states = {"rng.batches": gen.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def _uses_ofa_statistics(task: _Task) -> bool:
    return isinstance(task, _ImageTask) and task.preprocessing.calibration == "ofa"


@torch.no_grad()
def set_running_statistics(module: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """OFA's ``set_running_statistics`` on a standalone module: every ``BatchNorm2d`` normalises each batch with
    that batch's mean and biased variance over (N, H, W), and its running statistics become their averages
    weighted by batch size. BN layers no batch reaches keep theirs; the module is left in eval mode."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[nn.BatchNorm2d, list[Any]] = {bn: [0, 0.0, 0.0] for bn in norms}

    def batch_forward(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((0, 2, 3))
        var = (x - mean.view(1, -1, 1, 1)).square().mean((0, 2, 3))
        acc = sums[bn]
        acc[0], acc[1], acc[2] = acc[0] + x.size(0), acc[1] + mean * x.size(0), acc[2] + var * x.size(0)
        return F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)

    module.eval()
    try:
        for bn in norms:
            bn.forward = functools.partial(batch_forward, bn)  # type: ignore[method-assign]
        for x in batches:
            module(x)
    finally:
        for bn in norms:
            del bn.forward
    for bn, (count, mean_sum, var_sum) in sums.items():
        if count and bn.running_mean is not None and bn.running_var is not None:
            bn.running_mean.copy_(mean_sum / count)
            bn.running_var.copy_(var_sum / count)


def _calibrate_subnet(module: nn.Module, task: _Task, config: SubNetConfig) -> None:
    """Recompute an extracted SubNet's BN statistics as its space's preprocessing says; eval mode afterwards."""
    if _uses_ofa_statistics(task):
        set_running_statistics(module, task.calibration(config))
    else:
        _recalibrate(module, task, config)


@torch.no_grad()
def _recalibrate(module: nn.Module, task: _Task, config: SubNetConfig) -> None:
    """Set the batch-norm statistics of ``module`` (running ``config``) to those of the one calibration batch; the
    module is left in eval mode."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = 1.0
        module.train()
        for x in task.calibration(config):
            module(x)
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
    module.eval()


def extract_calibrated(
    space: SearchSpace,
    supernet: nn.Module,
    config: Mapping[str, Any] | SubNetConfig,
    data: ImageData | TextData,
    *,
    device: str = "cpu",
) -> nn.Module:
    """The SubNet ``config`` with inherited weights, batch-norm statistics recomputed on training images of
    ``data`` as its space's preprocessing says (as every evaluation here does), in eval mode: what to export.
    Shared BN statistics of a SuperNet trained with the sandwich rule fit no SubNet (the largest included until
    recalibrated)."""
    cfg = space.validate(config)
    dev = torch.device(device)
    module = space.extract(supernet.to(dev), cfg).to(dev)
    _calibrate_subnet(module, _task(space, data, dev), cfg)
    return module


@torch.no_grad()
def _evaluate_module(module: nn.Module, task: _Task, config: SubNetConfig, split: str) -> dict[str, float]:
    _calibrate_subnet(module, task, config)
    loss = correct = count = 0.0
    for x, y in task.eval_batches(split, config):
        logits = _logits(module(x))
        flat, target = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        loss += F.cross_entropy(flat, target, reduction="sum").item()
        correct += (flat.argmax(-1) == target).sum().item()
        count += target.numel()
    out = {"acc_pct": 100.0 * correct / count, "loss": loss / count}
    if "ppl" in task.metrics:
        out["ppl"] = math.exp(out["loss"])
    return out


def evaluate_subnet(
    space: SearchSpace,
    supernet: nn.Module,
    config: Mapping[str, Any] | SubNetConfig,
    data: ImageData | TextData,
    *,
    split: str = "val",
    device: str = "cpu",
) -> dict[str, float]:
    """Metrics of one SubNet with inherited weights on ``split``: ``acc_pct``, ``loss`` (+ ``ppl`` for text).

    A config outside the space raises :class:`InvalidValueError` naming the field."""
    return evaluate_subnets(space, supernet, [config], data, split=split, device=device)[0]


def evaluate_subnets(
    space: SearchSpace,
    supernet: nn.Module,
    configs: Sequence[Mapping[str, Any] | SubNetConfig],
    data: ImageData | TextData,
    *,
    split: str = "val",
    device: str = "cpu",
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """:func:`evaluate_subnet` for many configs (resized evaluation sets are shared); configs are validated first."""
    checked = [space.validate(c) for c in configs]
    data.split(split)
    dev = torch.device(device)
    task = _task(space, data, dev)
    supernet.to(dev)
    out: list[dict[str, float]] = []
    for i, cfg in enumerate(checked):
        out.append(_evaluate_module(space.extract(supernet, cfg).to(dev), task, cfg, split))
        if progress is not None:
            progress(i + 1, len(checked), out[-1])
    return out


def table_configs(space: SearchSpace, n: int, seed: int = 0) -> list[SubNetConfig]:
    """``n`` distinct configs: the largest, the smallest, then uniform samples (seeded)."""
    if n < 2:
        raise InvalidValueError("n", "at least 2 (the largest and smallest SubNets come first)", n)
    rng = np.random.default_rng(seed)
    chosen = {c.key: c for c in (space.largest(), space.smallest())}
    for _ in range(100 * n):
        if len(chosen) >= n:
            break
        cfg = space.sample(rng)
        chosen.setdefault(cfg.key, cfg)
    if len(chosen) < n:
        raise InvalidValueError("n", f"at most the {len(chosen)} distinct configs found by sampling", n)
    return list(chosen.values())


def write_accuracy_table(
    path: str | Path,
    space: SearchSpace,
    configs: Sequence[SubNetConfig],
    metrics: Sequence[Mapping[str, float]],
    split: str = "val",
) -> None:
    """CSV: ``key``, one column per dimension, ``params``, ``macs``, then ``{split}_{metric}`` per metric
    (readable by ``hwpareto import`` and :func:`read_accuracy_table`)."""
    names = list(metrics[0])
    columns = ["key", *(d.name for d in space.dimensions), "params", "macs", *(f"{split}_{m}" for m in names)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for cfg, row in zip(configs, metrics, strict=True):
            writer.writerow(
                [cfg.key, *cfg.values.values(), space.params(cfg), space.macs(cfg), *(f"{row[m]:.4f}" for m in names)]
            )


def read_accuracy_table(path: str | Path, space: SearchSpace, column: str) -> list[tuple[SubNetConfig, float]]:
    """``(config, value of column)`` per row of a table written by :func:`write_accuracy_table`."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise HwparetoError(f"accuracy table {p}: cannot read ({exc.strerror})") from None
    if not rows or column not in rows[0]:
        raise InvalidValueError(f"accuracy table {p} columns", f"a {column!r} column", list(rows[0]) if rows else [])
    return [(space.from_record(r), float(r[column])) for r in rows]


def finetune_check(
    space: SearchSpace,
    supernet: nn.Module,
    data: ImageData | TextData,
    table: Sequence[tuple[SubNetConfig, float]],
    *,
    k: int = 10,
    steps: int = 100,
    lr: float = 5e-4,
    batch_size: int = 64,
    metric: str = "acc_pct",
    split: str = "val",
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> FinetuneCheck:
    """Fine-tune ``k`` SubNets spread over the inherited-metric range of ``table`` (evenly spaced ranks) alone on the
    labels for ``steps`` AdamW steps, evaluate them again and rank-correlate inherited vs fine-tuned ``metric``."""
    from scipy.stats import kendalltau, spearmanr

    if not 3 <= k <= len(table):
        raise InvalidValueError("k", f"an integer in [3, {len(table)}] (rows of the table)", k)
    ranked = sorted(table, key=lambda item: item[1])
    picks = [ranked[int(i)][0] for i in np.unique(np.linspace(0, len(ranked) - 1, k).round().astype(int))]
    dev = torch.device(device)
    task = _task(space, data, dev)
    supernet.to(dev)
    rows: list[dict[str, Any]] = []
    for n, cfg in enumerate(picks):
        module = space.extract(supernet, cfg).to(dev)
        before = _evaluate_module(module, task, cfg, split)[metric]
        module = space.extract(supernet, cfg).to(dev).train()
        opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.01)
        gen = torch.Generator().manual_seed(seed + n)
        with _seeded(seed + n, dev):
            for _ in range(steps):
                x, y = task.prepare(task.sample(gen, batch_size), cfg)
                opt.zero_grad(set_to_none=True)
                _ce(_logits(module(x)), y).backward()
                opt.step()
        after = _evaluate_module(module, task, cfg, split)[metric]
        rows.append(
            {
                "key": cfg.key,
                "summary": space.summary(cfg),
                "params": space.params(cfg),
                "inherited": before,
                "finetuned": after,
            }
        )
        if progress is not None:
            progress(n + 1, len(picks), {"inherited": before, "finetuned": after})
    a, b = [r["inherited"] for r in rows], [r["finetuned"] for r in rows]
    return FinetuneCheck(metric, steps, rows, float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic))
