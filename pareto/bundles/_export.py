"""SubNet bundles: config JSON, safetensors weights of the extracted SubNet, ONNX graph; and loading them back.

What differs between families of spaces is asked of the space's :class:`~supernet.ModelFamily` (``space.family``),
never of its class: a family may save the SubNet as a model folder instead of ``weights.safetensors`` (a Hugging
Face causal-LM SubNet: ``model/``, its source folder's tokenizer files copied, the prefill graph as ONNX and a
README; see ``supernet.llama._family``), carry its SuperNet's weights in a folder of its own, trace another graph.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.resources import data_path
from hwpareto.store import CheckpointRecord
from supernet import (
    ONNX_DATA_FILE,
    ONNX_FILE,
    CopiedFile,
    OnnxGraph,
    SearchSpace,
    SubNetConfig,
    get_space,
    installed_spaces,
    space_document,
    space_from_document,
)

if TYPE_CHECKING:
    from torch import nn

    from hwpareto.store import Store

__all__ = [
    "BundleCheck",
    "ExportResult",
    "bundle_files",
    "checkpoint_meta",
    "export_subnet",
    "find_supernet",
    "load_subnet",
    "load_supernet",
    "record_checkpoint",
    "shipped_checkpoint",
    "verify_bundle",
]

SHIPPED = data_path("demo")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HF_FOLDER = "model"
"""The one model-folder name a bundle may hold (a family's ``model_folder``)."""
README_FILE = "README.md"
FILE_MODE = 0o644
FOLDER_MODE = 0o755
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export_subnet` wrote: the folder, ``{file name: sha256}``, and lines saying where the weights
    came from and whether batch norm was recalibrated (for the command's output)."""

    directory: Path
    files: dict[str, str]
    notes: tuple[str, ...] = ()


def load_supernet(space: SearchSpace, checkpoint: str | Path | None = None, seed: int = 0) -> nn.Module:
    """The space's SuperNet, with weights from a safetensors ``checkpoint`` (never a pickle) when given."""
    supernet = space.supernet(seed=seed)
    if checkpoint is None:
        return supernet
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(checkpoint)
    try:
        state = load_file(path)
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise HwparetoError(f"checkpoint {path}: not a readable safetensors file ({exc})") from None
    if meta.get("space", space.name) != space.name:  # e.g. OFA's w1.2 network is no SuperNet of width 1.0
        held = repr(meta["space"]) + (f" (width {meta['width']} only)" if "width" in meta else "")
        raise HwparetoError(f"checkpoint {path}: expected a SuperNet of space {space.name!r}, got one of space {held}")
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])[:300]
        raise HwparetoError(f"checkpoint {path}: does not fit space {space.name!r}: {detail}") from None
    return supernet


def shipped_checkpoint(space: SearchSpace) -> Path | None:
    """The SuperNet checkpoint the project trained for ``space`` (``data/demo/<space>.safetensors``), if any."""
    path = SHIPPED / f"{space.name}.safetensors"
    return path if path.is_file() else None


def checkpoint_meta(checkpoint: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors checkpoint (``hwpareto train-supernet`` writes ``space``, ``data``,
    ``seed``, ...); a file that is not safetensors is a one-line error."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(checkpoint), "pt") as fh:
            return dict(fh.metadata() or {})
    except (OSError, SafetensorError) as exc:
        raise HwparetoError(f"checkpoint {checkpoint}: not a readable safetensors file ({exc})") from None


def record_checkpoint(
    store: Store, space: SearchSpace, checkpoint: str | Path, *, recorded_by: str, evaluated: bool = False
) -> CheckpointRecord:
    """Record ``checkpoint`` (absolute path, SHA-256, header) in the store as a SuperNet of ``space``;
    ``evaluated``: the space's quality was just evaluated with it, so exports use it by default."""
    path = Path(checkpoint).resolve()
    meta = checkpoint_meta(path)
    return store.checkpoints.record(
        space.name, str(path), _sha256(path), meta, recorded_by=recorded_by, evaluated=evaluated
    )


def _calibration(checkpoint: str | Path | None) -> dict[str, Any] | None:
    """The training data named in a checkpoint's header (``hwpareto train-supernet`` writes ``data`` and ``seed``)."""
    if checkpoint is None:
        return None
    meta = checkpoint_meta(checkpoint)
    if "data" not in meta:
        return None
    try:
        seed = int(meta.get("seed", 0))
    except ValueError:
        raise InvalidValueError(f"checkpoint {checkpoint}: header seed", "an integer", meta["seed"]) from None
    return {"data": meta["data"], "seed": seed}


def _extract(
    space: SearchSpace, supernet: nn.Module, config: SubNetConfig, calibration: dict[str, Any] | None
) -> tuple[nn.Module, dict[str, Any] | None, bool]:
    """The SubNet with inherited weights; with batch norm and ``calibration`` data, its BN statistics recomputed on
    that data's training split (a sandwich-trained SuperNet's shared statistics fit no SubNet). Also what was
    recalibrated (``calibration`` and the number of training images; None when nothing was) and whether the SubNet
    has batch norm at all."""
    from torch import nn

    module = space.extract(supernet, config).eval()
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    if calibration is None or not has_bn:
        return module, None, has_bn
    from supernet.data import load_data
    from supernet.training import CALIBRATION_IMAGES, extract_calibrated

    data = load_data(calibration["data"], seed=calibration["seed"], preprocessing=space.preprocessing)
    prep = space.preprocessing
    images = CALIBRATION_IMAGES if prep is None or prep.calibration == "affine" else prep.calibration_images
    return extract_calibrated(space, supernet, config, data), calibration | {"images": images}, True


@dataclass(frozen=True, slots=True)
class _Weights:
    """The SuperNet weights an export reads: a safetensors ``checkpoint`` (None: the space's model folder, or a
    fresh SuperNet from the seed) and where that choice came from."""

    checkpoint: Path | None
    origin: str  # "checkpoint" (named), "recorded", "shipped", "folder", "random"


def _weights(
    space: SearchSpace, checkpoint: str | Path | None, recorded: CheckpointRecord | None, random_weights: bool
) -> _Weights:
    """Which trained weights to export: the named ``checkpoint``, else the model folder of a Hugging Face space,
    else the checkpoint the store ``recorded`` the space's quality came from (checked on disk against its hash), else
    the shipped one; a fresh untrained SuperNet only when ``random_weights`` asks for it, else a one-line refusal."""
    folder = space.family.weights_folder(space) is not None
    if random_weights and (checkpoint is not None or folder):
        got = f"--checkpoint {checkpoint}" if checkpoint is not None else f"space {space.name!r}'s model folder"
        raise InvalidValueError("--random-weights", "no trained weights named besides it", got)
    if checkpoint is not None:
        return _Weights(Path(checkpoint), "checkpoint")
    if folder:
        return _Weights(None, "folder")
    if random_weights:
        return _Weights(None, "random")
    if recorded is not None:
        path = Path(recorded.path)
        if not path.is_file():
            raise HwparetoError(
                f"space {space.name!r}: the checkpoint its quality was evaluated with, {path} (SHA-256 "
                f"{recorded.sha256}), is missing: restore it or name one with --checkpoint"
            )
        digest = _sha256(path)
        if digest != recorded.sha256:
            raise HwparetoError(
                f"space {space.name!r}: checkpoint {path}: expected SHA-256 {recorded.sha256} (as recorded when its "
                f"quality was evaluated), got {digest} (the file changed): name a checkpoint with --checkpoint"
            )
        return _Weights(path, "recorded")
    shipped = shipped_checkpoint(space)
    if shipped is not None:
        return _Weights(shipped, "shipped")
    raise HwparetoError(
        f"space {space.name!r}: no trained SuperNet weights known (no --checkpoint, none recorded in the store by "
        "eval-subnets --checkpoint, none shipped): name a checkpoint with --checkpoint, or ask for an untrained "
        "SuperNet's weights with --random-weights"
    )


_ORIGINS = {
    "checkpoint": "the checkpoint named",
    "recorded": "the checkpoint the space's quality was evaluated with (recorded in the store)",
    "shipped": "the checkpoint shipped with hwpareto",
}


def _notes(space: SearchSpace, source: dict[str, Any], has_bn: bool) -> tuple[str, ...]:
    """What the command says about an export's weights: their source and the batch-norm recalibration."""
    if source["source"] == "random":
        lines = [f"weights: an untrained SuperNet (random init, seed {source['seed']}), as asked (--random-weights)"]
    elif source["source"] == "folder":
        lines = [f"weights: space {space.name!r}'s model folder (SHA-256 {source['weights_sha256'][:12]}…)"]
    else:
        lines = [
            f"weights: {_ORIGINS[source['source']]}, {source['checkpoint']} (SHA-256 "
            f"{source['checkpoint_sha256'][:12]}…)"
        ]
    bn = source.get("bn_recalibrated")
    if bn is not None:
        lines.append(
            f"batch norm recalibrated on {bn['images']} training images of {bn['data']} (seed {bn['seed']}), the "
            "data the checkpoint was trained on"
        )
    elif has_bn:
        why = "a fresh SuperNet" if source["source"] == "random" else "the checkpoint names no training data"
        lines.append(f"batch norm not recalibrated ({why}): the SuperNet's shared statistics")
    return tuple(lines)


def export_subnet(
    space: SearchSpace,
    config: SubNetConfig,
    out_dir: str | Path,
    *,
    weights: bool = False,
    onnx: bool = False,
    checkpoint: str | Path | None = None,
    recorded: CheckpointRecord | None = None,
    random_weights: bool = False,
    seed: int = 0,
    metrics: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> ExportResult:
    """Write ``config.json`` (+ ``weights.safetensors``, ``model.onnx``) for ``config`` into ``out_dir``.

    Weights are those of the SubNet extracted from the SuperNet: ``checkpoint``, else a Hugging Face space's model
    folder, else the checkpoint the store ``recorded`` for the space's quality (its hash checked), else the
    project's trained one (:func:`shipped_checkpoint`); a fresh SuperNet from ``seed`` only with ``random_weights``,
    else a one-line refusal. A checkpoint that names its training data gets batch-norm statistics recomputed for
    the SubNet on that data (config.json's ``supernet.bn_recalibrated``). ``config.json`` records the space,
    values, OFA/NB201-style record, params, MACs, the input preprocessing of image SubNets (resize, centre crop,
    mean/std, layout: how to feed the ONNX file), the SuperNet source, ``metrics`` and the SHA-256 of every file,
    so :func:`load_subnet` can check the bundle. ``progress`` is told the name of each slow step as it starts.
    A non-empty ``out_dir`` is refused unless ``force`` (an earlier export's files there are then replaced).
    An LLM SubNet's bundle is laid out as the module docstring says.
    """
    config = space.validate(config)
    model = weights or onnx
    if model and not space.has_model:
        raise HwparetoError(f"space {space.name!r} is declarative: it has no weights or ONNX graph to export")
    source = _weights(space, checkpoint, recorded, random_weights) if model else None  # before anything is written
    copied = space.family.copied_files(space) if weights else {}  # read and checked before anything is written
    out = Path(out_dir)
    if not force and out.is_dir() and any(out.iterdir()):
        raise HwparetoError(f"export folder {out}: not empty (choose an empty or new folder, or --force to overwrite)")
    if out.exists() and not out.is_dir():
        raise HwparetoError(f"export folder {out}: not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HwparetoError(f"export folder {out}: cannot create ({exc.strerror})") from None
    _clear(out, config_too=False)  # --force: no earlier artefact stays behind
    try:
        files, notes = _write_bundle(
            space,
            config,
            out,
            source,
            copied,
            weights=weights,
            onnx=onnx,
            seed=seed,
            metrics=metrics,
            progress=progress,
        )
    except BaseException:  # a full disk, an interrupt: no half-written bundle is left
        _clear(out, config_too=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return ExportResult(out, {CONFIG_FILE: _sha256(out / CONFIG_FILE), **files}, notes)


def _clear(out: Path, *, config_too: bool) -> None:
    """Remove what an export writes into ``out`` (``config.json`` only when ``config_too``)."""
    for name in (WEIGHTS_FILE, ONNX_FILE, ONNX_DATA_FILE, README_FILE, *((CONFIG_FILE,) if config_too else ())):
        (out / name).unlink(missing_ok=True)
    if (out / HF_FOLDER).is_dir():
        shutil.rmtree(out / HF_FOLDER)  # a stale hwpareto_subnet.json would change how the folder loads


def _write_bundle(
    space: SearchSpace,
    config: SubNetConfig,
    out: Path,
    source: _Weights | None,
    copied: dict[str, CopiedFile],
    *,
    weights: bool,
    onnx: bool,
    seed: int,
    metrics: dict[str, Any] | None,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The body of :func:`export_subnet`: extract the SubNet from ``source``'s SuperNet, write its files and
    ``config.json`` last; the files written (name → SHA-256) and the notes on its weights. A failed write is one
    line naming the file (:func:`_writing`)."""
    family = space.family
    doc: dict[str, Any] = {
        "space": space.name,
        "key": config.key,
        "values": config.values,
        "record": space.to_record(config),
        "metrics": metrics or {},
    }
    files: dict[str, str] = {}
    notes: tuple[str, ...] = ()
    if space.has_model:
        doc["params"] = space.params(config)
        doc["macs"] = space.macs(config)
    if space.preprocessing is not None:
        doc["preprocessing"] = space.preprocessing.to_record(_resolution_px(space, config))
    definition = _definition(space)
    if definition is not None:
        doc["space_definition"] = definition
    if source is not None:
        _stage(progress, "loading the SuperNet")
        import torch

        ckpt = source.checkpoint
        with _single_thread(torch):
            supernet = load_supernet(space, ckpt, seed)
            calibration = _calibration(ckpt)
            _stage(progress, "extracting the SubNet" + (" and recalibrating batch norm" if calibration else ""))
            module, recalibrated, has_bn = _extract(space, supernet, config, calibration)
        doc["supernet"] = {  # by content, the file name a hint: a bundle holds no path of the exporting machine
            "source": source.origin,
            "checkpoint": ckpt.name if ckpt else None,
            "checkpoint_sha256": _sha256(ckpt) if ckpt else None,
            "seed": None if ckpt or source.origin == "folder" else seed,
            "bn_recalibrated": recalibrated,
        }
        doc["supernet"] |= family.provenance(space)  # e.g. the model folder the weights are (by hash)
        notes = _notes(space, doc["supernet"], has_bn)
        doc["input_shape"] = list(space.dummy_input(config).shape)
        if weights and family.model_folder is not None and family.bundle_key is not None:
            _stage(progress, f"writing the {family.name} model folder")
            with _writing(out / HF_FOLDER):
                doc[family.bundle_key] = family.save_subnet(module, out / HF_FOLDER, copied)
            files |= {f"{HF_FOLDER}/{f.name}": _sha256(f) for f in sorted((out / HF_FOLDER).iterdir())}
        elif weights:
            from safetensors.torch import save_file

            state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
            with _writing(out / WEIGHTS_FILE):
                save_file(state, str(out / WEIGHTS_FILE), metadata={"space": space.name, "key": config.key})
            files[WEIGHTS_FILE] = _sha256(out / WEIGHTS_FILE)
        if onnx:
            _stage(progress, "exporting the ONNX graph")
            graph = family.onnx_graph(module, space.dummy_input(config, batch=2))
            with _single_thread(torch), _writing(out / ONNX_FILE):
                written = _export_graph(graph, out, torch)
            files |= {name: _sha256(out / name) for name in written}
    readme = family.readme(space, config, doc, files)
    if readme is not None:
        with _writing(out / README_FILE):
            (out / README_FILE).write_text(readme, encoding="utf-8")
        files[README_FILE] = _sha256(out / README_FILE)
    doc["files"] = files
    with _writing(out / CONFIG_FILE):
        (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    private = {f"{HF_FOLDER}/{name}" for name, c in copied.items() if c.private}
    for name in (CONFIG_FILE, *files):  # safetensors writes 0600: every file of a bundle alike, a private copy 0600
        (out / name).chmod(FILE_MODE & ~0o044 if name in private else FILE_MODE)
    if (out / HF_FOLDER).is_dir():
        (out / HF_FOLDER).chmod(FOLDER_MODE)
    return files, notes


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write of ``path`` (a full disk, a file-size limit, no permission: ``OSError`` or safetensors'
    ``SafetensorError``) as one line naming it, instead of the writer's traceback."""
    from safetensors import SafetensorError

    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise HwparetoError(
            f"{path}: cannot write ({reason})" + ("; free some space and rerun" if full else "")
        ) from None
    except SafetensorError as exc:
        match = re.search(r"I/O error: ([^(]+)", str(exc))
        reason = match.group(1).strip() if match else " ".join(str(exc).split())[:200]
        raise HwparetoError(f"{path}: cannot write ({reason})") from None


def _definition(space: SearchSpace) -> dict[str, Any] | None:
    """The stored-space document of ``space`` (so that the bundle loads without the store); None for an installed
    space and one of a kind that has no document. The family leaves out what is of this machine (a Hugging Face
    space's model folder: the bundle's ``supernet`` section names it by hash)."""
    if space.name in installed_spaces():
        return None
    try:
        doc = space_document(space)
    except InvalidValueError:
        return None
    return space.family.portable_document(space, doc)


def _resolution_px(space: SearchSpace, config: SubNetConfig) -> int:
    """The side of the square images ``config`` runs on."""
    if space.input_dimension is not None:
        return int(config[space.input_dimension])
    return int(space.dummy_input(config).shape[-1])


def _stage(progress: Callable[[str], None] | None, step: str) -> None:
    if progress is not None:
        progress(step)


@contextlib.contextmanager
def _single_thread(torch: Any) -> Iterator[None]:
    """Run torch on one intra-op thread: an export's tensors are small (one calibration batch, a batch-2 trace), and
    OpenMP's spinning barriers on a busy machine with few cores cost seconds per call (the demo box: 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _export_graph(graph: OnnxGraph, out: Path, torch: Any) -> list[str]:
    """The family's ONNX ``graph`` as ``out/model.onnx``; the names of the files written. Past 2 GB torch writes
    every weight as a file of its own beside the graph: they are gathered into :data:`ONNX_DATA_FILE`."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".onnx-") as tmp:
        path = Path(tmp) / ONNX_FILE
        names = (graph.input_name, graph.output_name, dict(graph.axes) if graph.axes else None)
        _export_onnx(graph.module, graph.example, path, torch, *names)
        if [p.name for p in Path(tmp).iterdir()] == [ONNX_FILE]:
            path.replace(out / ONNX_FILE)
            return [ONNX_FILE]
        import onnx

        model = onnx.load(str(path))  # with the external tensors beside it
        dest, data = str(out / ONNX_FILE), ONNX_DATA_FILE
        onnx.save_model(model, dest, save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    return [ONNX_FILE, ONNX_DATA_FILE]


def _export_onnx(
    module: nn.Module,
    example: Any,
    path: Path,
    torch: Any,
    input_name: str = "input",
    output_name: str = "output",
    axes: dict[int, str] | None = None,
) -> None:
    """ONNX (opset 17) with dynamic ``axes`` (default: batch) through torch's TorchScript-based exporter; its
    chatter is silenced. Not the torch.export-based one: that takes 5-10 s per SubNet on a 2-core machine
    (translation to ONNX, not tracing), this one 0.3 s, and :func:`verify_bundle` checks the graph against torch
    either way."""
    axes = axes or {0: "batch"}
    quiet = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: axes, output_name: axes},
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)


def load_subnet(directory: str | Path) -> tuple[SearchSpace, SubNetConfig, nn.Module]:
    """Rebuild an exported SubNet: validate ``config.json``, check the folder's files against it
    (:func:`bundle_files`), load ``weights.safetensors`` (an LLM bundle: its ``model/`` folder through hwpareto's
    strict loader, every tensor's shape checked against the config)."""
    space, config, module, _, _ = _load_bundle(Path(directory))
    return space, config, module


def _load_bundle(folder: Path) -> tuple[SearchSpace, SubNetConfig, nn.Module, dict[str, Any], dict[str, str]]:
    """:func:`load_subnet`, also returning ``config.json`` and the files it lists (checked)."""
    doc = _bundle_doc(folder)
    space = _bundle_space(folder, doc)
    config = space.validate(doc)
    if config.key != doc.get("key", config.key):
        raise HwparetoError(f"bundle {folder}: key {doc.get('key')!r} does not match its values ({config.key})")
    listed = bundle_files(folder, doc)
    family = space.family
    in_folder = any(name.startswith(f"{HF_FOLDER}/") for name in listed)
    key = family.bundle_key or "transformers"
    if in_folder != (family.model_folder is not None and doc.get(key) is not None):
        raise InvalidValueError(
            f"bundle {folder}: {CONFIG_FILE} {key}",
            f"an object exactly when the bundle holds a {HF_FOLDER}/ folder (a SubNet saved as a model folder)",
            doc.get(key),
        )
    if in_folder:
        return space, config, family.load_subnet(space, folder / HF_FOLDER, config, f"bundle {folder}"), doc, listed
    module = space.subnet(config)
    if WEIGHTS_FILE in listed:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            module.load_state_dict(load_file(folder / WEIGHTS_FILE), strict=True)
        except (SafetensorError, RuntimeError) as exc:  # not safetensors; missing/unexpected keys, shapes
            detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])[:300]
            raise HwparetoError(
                f"bundle {folder}: {WEIGHTS_FILE}: not the weights of SubNet {config.key} ({detail})"
            ) from None
    return space, config, module.eval(), doc, listed


MODEL_FILES = (WEIGHTS_FILE, ONNX_FILE, ONNX_DATA_FILE)
"""Top-level files of a bundle that hold a model (with ``model/``): each is compared against the SuperNet."""
BUNDLE_FILES = (*MODEL_FILES, README_FILE)
"""Every top-level file a bundle may list besides ``config.json`` (and ``model/NAME`` files)."""
MAX_BUNDLE_FILES = 10_000
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


def bundle_files(folder: Path, doc: dict[str, Any]) -> dict[str, str]:
    """The files ``config.json`` lists (name → SHA-256), checked against what is in the folder: every listed file
    is there with that hash, and the folder holds nothing else (``config.json`` aside): no unlisted file, no
    folder but ``model/``, no symlink, FIFO or device. A bundle is only what its export wrote; anything beside it
    could be taken for part of it."""
    where = f"bundle {folder}: {CONFIG_FILE} files"
    listed = doc.get("files", {})
    if not isinstance(listed, dict):
        raise InvalidValueError(where, "an object of file name to SHA-256", type(listed).__name__)
    if len(listed) > MAX_BUNDLE_FILES:
        raise InvalidValueError(where, f"at most {MAX_BUNDLE_FILES:,} files", len(listed))
    for name, digest in listed.items():
        top, _, rest = name.partition("/")
        known = name in BUNDLE_FILES or (top == HF_FOLDER and _FILE_NAME.fullmatch(rest) is not None)
        if not known:
            shown = name if len(name) <= 80 else f"{name[:60]}... ({len(name):,} characters)"
            allowed = ", ".join(BUNDLE_FILES) + f" or {HF_FOLDER}/NAME (a name of at most 255 letters, digits, '._-')"
            raise InvalidValueError(f"{where} name", allowed, shown)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise InvalidValueError(f"{where}[{name!r}]", "a SHA-256 of 64 hex digits", digest)
    present = _folder_files(folder)
    unlisted = sorted(present - set(listed) - {CONFIG_FILE})
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise HwparetoError(
            f"bundle {folder}: {unlisted[0]}{more} is not listed in {CONFIG_FILE} files: a bundle holds only the "
            "files its export wrote, each with its SHA-256"
        )
    for name, digest in listed.items():
        if name not in present:
            raise HwparetoError(f"bundle {folder}: {name} is missing (listed in {CONFIG_FILE})")
        if _sha256(folder / name) != digest:
            raise HwparetoError(f"bundle {folder}: {name}: its SHA-256 differs from {CONFIG_FILE} (file changed)")
    if ONNX_DATA_FILE in listed and ONNX_FILE not in listed:
        raise HwparetoError(f"bundle {folder}: {ONNX_DATA_FILE} is listed without {ONNX_FILE}")
    return listed


def _folder_files(folder: Path) -> set[str]:
    """The plain files of a bundle folder (``model/NAME`` for those of its model folder), refusing what no export
    writes: symlinks, other folders, FIFOs, devices, more than :data:`MAX_BUNDLE_FILES` entries."""
    found: set[str] = set()

    def entries(path: Path, prefix: str) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if len(found) >= MAX_BUNDLE_FILES:
                        raise InvalidValueError(f"bundle {folder}", f"at most {MAX_BUNDLE_FILES:,} files", "more")
                    yield entry
        except OSError as exc:
            raise HwparetoError(f"bundle {folder}: cannot list {prefix or 'the folder'} ({exc.strerror})") from None

    for entry in entries(folder, ""):
        if entry.is_symlink():
            raise HwparetoError(f"bundle {folder}: {entry.name} is a symbolic link (a bundle holds plain files only)")
        if entry.is_dir(follow_symlinks=False) and entry.name == HF_FOLDER:
            for sub in entries(Path(entry.path), f"{HF_FOLDER}/"):
                name = f"{HF_FOLDER}/{sub.name}"
                if sub.is_symlink() or not sub.is_file(follow_symlinks=False):
                    kind = "a symbolic link" if sub.is_symlink() else "not a plain file"
                    raise HwparetoError(f"bundle {folder}: {name} is {kind} (a bundle holds plain files only)")
                found.add(name)
        elif entry.is_file(follow_symlinks=False):
            found.add(entry.name)
        else:
            kind = "a folder" if entry.is_dir(follow_symlinks=False) else "not a plain file"
            raise HwparetoError(f"bundle {folder}: {entry.name} is {kind} (a bundle holds its files and {HF_FOLDER}/)")
    return found


def _bundle_doc(folder: Path) -> dict[str, Any]:
    """A bundle's ``config.json``: a plain file (not a symlink, FIFO or device) of at most
    :data:`~hwpareto.safeload.MAX_FILE_BYTES` (its size checked before it is read), parsed by the bounded JSON
    reader (nesting depth, integer digits)."""
    from hwpareto.safeload import MAX_FILE_BYTES, load_json

    path = folder / CONFIG_FILE
    try:
        mode, size = path.lstat().st_mode, path.lstat().st_size
    except OSError as exc:
        raise HwparetoError(f"bundle {folder}: cannot read {CONFIG_FILE} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
        raise HwparetoError(f"bundle {folder}: {CONFIG_FILE} is {kind} (a bundle holds plain files only)")
    if size > MAX_FILE_BYTES:
        raise InvalidValueError(
            f"bundle {folder}: {CONFIG_FILE}", f"at most {MAX_FILE_BYTES:,} bytes", f"{size:,} bytes"
        )
    doc = load_json(path, "bundle file")
    if not isinstance(doc, dict) or "space" not in doc:
        raise HwparetoError(f"bundle {folder}: {CONFIG_FILE} has no 'space' field")
    return doc


def _bundle_space(folder: Path, doc: dict[str, Any]) -> SearchSpace:
    """The bundle's space: an installed one by name, else the definition the bundle carries, else by name."""
    definition = doc.get("space_definition")
    if definition is None or doc["space"] in installed_spaces():
        return get_space(doc["space"])
    space = space_from_document(definition, f"bundle {folder}: {CONFIG_FILE} space_definition")
    if space.name != doc["space"]:
        raise InvalidValueError(f"bundle {folder}: {CONFIG_FILE} space_definition.name", repr(doc["space"]), space.name)
    return space


@dataclass(frozen=True, slots=True)
class BundleCheck:
    """Largest absolute output difference between the freshly extracted SubNet and the bundle's reloaded
    weights / ONNX graph (run in onnxruntime), on the space's dummy input at batch 3; None where not exported.
    ``pretrained_max_abs_diff``: an LLM bundle's plain ``model/`` folder through ``AutoModelForCausalLM``."""

    weights_max_abs_diff: float | None
    onnx_max_abs_diff: float | None
    pretrained_max_abs_diff: float | None = None

    def ok(self, atol: float = 1e-4) -> bool:
        """Whether every exported artefact reproduces the extracted SubNet within ``atol``."""
        diffs = (self.weights_max_abs_diff, self.onnx_max_abs_diff, self.pretrained_max_abs_diff)
        return all(d is None or d <= atol for d in diffs)


def verify_bundle(
    directory: str | Path,
    *,
    checkpoint: str | Path | None = None,
    store: Callable[[], Store] | None = None,
    hashes_only: bool = False,
) -> BundleCheck:
    """Check every file of the bundle against ``config.json`` (:func:`load_subnet`), then re-extract its SubNet
    from the SuperNet it names and compare each model artefact with it (weights, ``model/``, ONNX in onnxruntime) on
    :func:`_inputs` (two seeded inputs of different batch sizes; for an LLM, token ids of two lengths). The SuperNet
    is found by the hash the bundle records (:func:`find_supernet`: ``checkpoint``, the shipped ones, then the store
    ``store()`` opens), never by a path the bundle gives; batch norm is recalibrated on the data the found
    checkpoint's own header names. A bundle with a model artefact that names no SuperNet is refused unless
    ``hashes_only`` (then nothing is compared)."""
    import torch

    folder = Path(directory)
    space, config, module, doc, listed = _load_bundle(folder)
    source = doc.get("supernet")
    models = [name for name in listed if name in MODEL_FILES or name.startswith(f"{HF_FOLDER}/")]
    if hashes_only:
        return BundleCheck(None, None)
    if source is None:
        if not models and "supernet" not in doc:  # a config-only export: nothing to compare
            return BundleCheck(None, None)
        raise HwparetoError(
            f"bundle {folder}: {CONFIG_FILE} names no SuperNet (supernet: {json.dumps(source)}) to compare "
            f"{', '.join(models) or 'its files'} with: ask for --hashes-only to check file hashes alone"
        )
    space, ckpt = find_supernet(folder, space, source, checkpoint, store)
    if any(name.startswith(f"{HF_FOLDER}/") for name in listed):
        _check_model_files(folder, space, listed)
    supernet = load_supernet(space, ckpt, _seed(folder, source))
    reference, recalibrated, _ = _extract(space, supernet, config, _calibration(ckpt))
    if source.get("bn_recalibrated") != recalibrated:  # what the bundle says of its weights is checked too
        raise InvalidValueError(
            f"bundle {folder}: {CONFIG_FILE} supernet.bn_recalibrated",
            f"what the extraction from its SuperNet does: {json.dumps(recalibrated)}",
            source.get("bn_recalibrated"),
        )
    inputs = space.family.verify_inputs(space, config)
    llm = any(name.startswith(f"{HF_FOLDER}/") for name in listed)
    weights_diff = pretrained_diff = onnx_diff = None
    with torch.no_grad():
        expected = [_outputs(reference, x) for x in inputs]
        if llm or WEIGHTS_FILE in listed:
            weights_diff = _max_diff(folder, "weights", [_outputs(module, x) for x in inputs], expected)
        plain = space.family.reload_plain(folder / HF_FOLDER) if llm else None  # by its ecosystem's loader too
        if plain is not None:
            pretrained_diff = _max_diff(folder, HF_FOLDER, [_outputs(plain, x) for x in inputs], expected)
    if ONNX_FILE in listed:
        outputs = _onnx_outputs(folder, set(listed), [x.numpy() for x in inputs])
        onnx_diff = _max_diff(folder, ONNX_FILE, [torch.from_numpy(o) for o in outputs], expected)
    return BundleCheck(weights_diff, onnx_diff, pretrained_diff)


def _check_model_files(folder: Path, space: SearchSpace, listed: dict[str, str]) -> None:
    """An LLM bundle's ``model/`` holds what an export writes, nothing else: the SubNet's files and, byte for byte,
    the tokenizer files of the model folder the SuperNet was found in (read as an export reads them, checked
    against the hashes the bundle records). No output comparison sees a tokenizer: it maps text to the ids the
    comparison feeds."""
    family = space.family
    path = family.weights_folder(space)
    try:
        tokenizer = family.copied_files(space)
    except HwparetoError as exc:
        raise HwparetoError(
            f"bundle {folder}: {CONFIG_FILE} supernet.tokenizer_files_sha256 does not describe the SuperNet's model "
            f"folder ({exc})"
        ) from None
    for name, digest in listed.items():
        top, _, rest = name.partition("/")
        if top != HF_FOLDER:
            continue
        if rest in tokenizer:
            if hashlib.sha256(tokenizer[rest].data).hexdigest() != digest:
                raise HwparetoError(
                    f"bundle {folder}: {name}: not the tokenizer file of the SuperNet's model folder (its SHA-256 "
                    f"differs from {path}/{rest}'s)"
                )
        elif not family.subnet_file(rest):
            copied = ", ".join(tokenizer) or "none"
            raise InvalidValueError(
                f"bundle {folder}: {name}",
                "a file an export writes (config.json, generation_config.json, hwpareto_subnet.json, "
                f"model*.safetensors and the SuperNet folder's tokenizer files: {copied})",
                rest,
            )
    for rest in tokenizer:
        if f"{HF_FOLDER}/{rest}" not in listed:
            raise HwparetoError(f"bundle {folder}: {HF_FOLDER}/{rest} is missing (the SuperNet's model folder has it)")


def _max_diff(folder: Path, what: str, got: list[Any], expected: list[Any]) -> float:
    """Largest absolute difference of ``got`` from ``expected`` over every input; outputs of another shape are a
    one-line error."""
    worst = 0.0
    for g, e in zip(got, expected, strict=True):
        if tuple(g.shape) != tuple(e.shape):
            raise InvalidValueError(f"bundle {folder}: {what} output shape", str(tuple(e.shape)), tuple(g.shape))
        worst = max(worst, float((g.float() - e.float()).abs().max()))
    return worst


MAX_ONNX_BYTES = 2**31 - 1
"""Largest ONNX graph file (protobuf's limit; larger weights live in :data:`ONNX_DATA_FILE`)."""


def _check_onnx_data(folder: Path, listed: set[str]) -> None:
    """Refuse, before onnxruntime opens it, an ONNX graph whose tensors keep their data anywhere but the bundle's
    listed :data:`ONNX_DATA_FILE` (``external_data`` may name any path: ``../x``, ``/etc/passwd``)."""
    import onnx

    path = folder / ONNX_FILE
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise InvalidValueError(f"bundle {folder}: {ONNX_FILE}", f"at most {MAX_ONNX_BYTES:,} bytes", f"{size:,}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own
        detail = " ".join(str(exc).split())[:200]
        raise HwparetoError(f"bundle {folder}: {ONNX_FILE}: not a readable ONNX model ({detail})") from None
    allowed = ONNX_DATA_FILE if ONNX_DATA_FILE in listed else None
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None or location != allowed:
            raise InvalidValueError(
                f"bundle {folder}: {ONNX_FILE} tensor {tensor.name!r} external data location",
                f"{ONNX_DATA_FILE}, listed in {CONFIG_FILE}" if allowed else "none (no data file is listed)",
                location,
            )


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of an ONNX graph and its subgraphs (initializers, sparse ones, node attributes)."""
    graphs = [graph]
    while graphs:
        g = graphs.pop()
        sparse = [*g.sparse_initializer]
        yield from g.initializer
        for node in g.node:
            for a in node.attribute:
                yield from [*([a.t] if a.HasField("t") else []), *a.tensors]
                sparse += [*([a.sparse_tensor] if a.HasField("sparse_tensor") else []), *a.sparse_tensors]
                graphs += [*([a.g] if a.HasField("g") else []), *a.graphs]
        for s in sparse:
            yield from (s.values, s.indices)


def _onnx_outputs(folder: Path, listed: set[str], inputs: list[Any]) -> list[Any]:
    """The bundle's ONNX graph run in onnxruntime on each input; whatever onnxruntime refuses is one line."""
    import onnxruntime as ort

    _check_onnx_data(folder, listed)
    outputs = []
    try:
        session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for x in inputs:
            outputs.append(session.run(None, {name: x})[0])
    except Exception as exc:  # onnxruntime's own types (Fail, InvalidArgument, InvalidGraph, ...)
        detail = " ".join(str(exc).split())[:300]
        raise HwparetoError(f"bundle {folder}: {ONNX_FILE}: onnxruntime cannot run it ({detail})") from None
    return outputs


def find_supernet(
    folder: Path,
    space: SearchSpace,
    source: Any,
    checkpoint: str | Path | None = None,
    store: Callable[[], Store] | None = None,
) -> tuple[SearchSpace, Path | None]:
    """The SuperNet a bundle's ``supernet`` section names by hash: the space (a Hugging Face space rebuilt on the
    model folder found) and the checkpoint to load (None: the folder's weights or a seeded init). Looked for in
    ``checkpoint`` (its hash must match), the checkpoints and model folders shipped with hwpareto, then the store's
    recorded checkpoints and stored spaces; not found is a one-line error naming the hash."""
    where = f"bundle {folder}: {CONFIG_FILE} supernet"
    if not isinstance(source, dict):
        raise InvalidValueError(where, "an object naming the SuperNet", type(source).__name__)
    ckpt_sha, folder_sha = source.get("checkpoint_sha256"), source.get("weights_sha256")
    for field, value in (("checkpoint_sha256", ckpt_sha), ("weights_sha256", folder_sha)):
        if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
            raise InvalidValueError(f"{where}.{field}", "64 hex digits or null", value)
    if ckpt_sha is not None:
        return space, _find(where, "checkpoint", ckpt_sha, source.get("checkpoint"), checkpoint, space, store)
    if folder_sha is not None:
        if space.family.checkpoints:
            raise InvalidValueError(f"{where}.weights_sha256", f"null (space {space.name!r} has no model folder)", 1)
        recorded = source.get("tokenizer_files_sha256")
        tokenizer = recorded if isinstance(recorded, dict) else None
        found = _find(where, "model folder", folder_sha, source.get("folder"), checkpoint, space, store, tokenizer)
        return space.family.on_folder(space, found, source, where), None
    if checkpoint is not None:
        raise InvalidValueError("--checkpoint", "none: the bundle's SuperNet is an untrained one (seeded)", checkpoint)
    return space, None


def _find(
    where: str,
    kind: str,
    digest: str,
    hint: Any,
    given: str | Path | None,
    space: SearchSpace,
    store: Callable[[], Store] | None,
    tokenizer: dict[str, Any] | None = None,
) -> Path:
    """The ``kind`` (a checkpoint file or a model folder) whose content hash is ``digest``; a model folder found
    (not ``given``) must also hold the ``tokenizer`` files the bundle records (folders may share weights)."""
    family = space.family

    def content(path: Path) -> str | None:
        if kind != "model folder":
            return _file_sha256(path)
        same = given is not None or tokenizer is None or family.hash_copied(path) == tokenizer
        return family.hash_folder(path) if same else None

    if given is not None:
        got = content(Path(given))
        if got != digest:
            shown = f"SHA-256 {got}" if got else f"no readable {kind}"
            raise InvalidValueError(f"--checkpoint {given}", f"the bundle's {kind}: SHA-256 {digest}", shown)
        return Path(given)
    for candidate in _shipped(kind):
        if content(candidate) == digest:
            return candidate
    if store is not None:
        db = store()
        paths = [Path(r.path) for r in db.checkpoints.with_sha256(digest)] if kind == "checkpoint" else []
        if kind == "model folder":
            spaces, _ = db.spaces.load_all()
            folders = [s.family.weights_folder(s) for s in spaces if s.family.folder_sha256(s) == digest]
            paths += [f for f in folders if f is not None]
        for candidate in paths:
            if content(candidate) == digest:  # the file on disk, not what the store says about it
                return candidate
    named = f", exported from {hint!r}" if isinstance(hint, str) and len(hint) <= 255 else ""
    option = "--checkpoint FOLDER" if kind == "model folder" else "--checkpoint PATH"
    raise HwparetoError(
        f"{where}: the {kind} with SHA-256 {digest}{' and the tokenizer files it records' if tokenizer else ''} "
        f"(space {space.name!r}{named}) is not found (not shipped, not "
        f"in the store): name it with {option}"
    )


def _shipped(kind: str) -> list[Path]:
    """The SuperNet checkpoints (``*.safetensors``) or model folders shipped in ``data/demo``."""
    if kind == "checkpoint":
        return sorted(p for p in SHIPPED.glob("*.safetensors") if p.is_file())
    return sorted(p for p in SHIPPED.iterdir() if p.is_dir() and (p / "config.json").is_file())


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of a regular file (None for anything else: a folder, a device, a missing path)."""
    try:
        return _sha256(path) if path.is_file() else None
    except OSError:
        return None


def _seed(folder: Path, source: dict[str, Any]) -> int:
    seed = source.get("seed") or 0
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise InvalidValueError(f"bundle {folder}: {CONFIG_FILE} supernet.seed", "an integer in [0, 2^32)", seed)
    return seed


def _outputs(module: nn.Module, x: Any) -> Any:
    """The output tensor of ``module`` on ``x`` (a transformers causal LM: its logits)."""
    out = module(x)
    return getattr(out, "logits", out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
