"""Once-for-All's published MobileNetV3 SuperNets (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``) in hwpareto.

OFA trained its two widths as separate networks (w1.0 is not the first channels of w1.2), so each has its own space,
``ofa-mbv3-w1.0`` and ``ofa-mbv3-w1.2``: :class:`MobileNetV3Space` with that single width and OFA's ImageNet
input convention. :func:`import_ofa_checkpoint` reads OFA's checkpoint (``torch.save({"state_dict": ...})`` or a
bare state dict, current or older key names) with torch's restricted unpickler (tensors and plain containers only)
and writes it as a safetensors checkpoint of the matching space; :func:`ofa_config` reads OFA's config dicts
(``ks``/``e``/``d`` lists, ``r`` or ``image_size``, ``wid``).

The architectures are equal tensor for tensor: OFA's 475 tensors map one to one onto the SuperNet's by name only
(``blocks.0.conv.*`` is the first block, ``blocks.i`` is block ``i - 1``, ``.bn.bn.`` is ``.bn.``,
``7to5_matrix`` is ``ks_transform.7to5``, ``se.fc.`` is ``se.``, head names), without transposes or reordering.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet._files import check_output_file, save_tensors
from supernet._space import SearchSpace
from supernet._types import SubNetConfig
from supernet.mbv3._arch import N_STAGES, OFA_BASE_WIDTHS, make_divisible
from supernet.mbv3._space import MobileNetV3Space
from supernet.preprocessing import OFA_IMAGENET

if TYPE_CHECKING:
    import torch

__all__ = [
    "OFA_WIDTHS",
    "OFAMobileNetV3Space",
    "OfaImport",
    "checkpoint_width",
    "convert_ofa_state",
    "import_ofa_checkpoint",
    "ofa_config",
    "ofa_dict",
    "ofa_form",
    "ofa_mbv3_w10",
    "ofa_mbv3_w12",
    "read_ofa_state",
]

OFA_WIDTHS = (1.0, 1.2)
MAX_CHECKPOINT_BYTES = 2 * 1024**3
"""Largest checkpoint file read, and the most its zip entries may inflate to, all together."""
MAX_COMPRESSION_RATIO = 100
"""Inflated / compressed size allowed for a compressed zip entry of more than :data:`RATIO_FLOOR_BYTES` (torch
stores tensors uncompressed; weights deflate by about 1.1)."""
RATIO_FLOOR_BYTES = 1024**2
MAX_ZIP_ENTRIES = 100_000
_PIECE = 1024**2
FORMAT = "ofa-mbv3"
"""``format`` in the header of an imported checkpoint."""


class OFAMobileNetV3Space(MobileNetV3Space):
    """OFA's MobileNetV3 SuperNet at one width (``d234_e346_k357``, 1000 ImageNet classes, resolution 128-224)."""

    preprocessing = OFA_IMAGENET

    def __init__(self, width: float) -> None:
        super().__init__(
            name=space_name(width),
            width_choices=(width,),
            default_width=width,
            description=f"Once-for-All's ImageNet MobileNetV3 ofa_mbv3_d234_e346_k357_w{width} (import its "
            "checkpoint with hwpareto supernet import-ofa): elastic depth {2,3,4}/stage, kernel {3,5,7} and "
            f"expand {{3,4,6}}/block, resolution 128-224, width {width} only",
        )
        self.width = width


def space_name(width: float) -> str:
    """The built-in space of OFA's network of ``width``."""
    return f"ofa-mbv3-w{width:.1f}"


def ofa_mbv3_w10() -> OFAMobileNetV3Space:
    """Space of ``ofa_mbv3_d234_e346_k357_w1.0``."""
    return OFAMobileNetV3Space(1.0)


def ofa_mbv3_w12() -> OFAMobileNetV3Space:
    """Space of ``ofa_mbv3_d234_e346_k357_w1.2``."""
    return OFAMobileNetV3Space(1.2)


# ---------------------------------------------------------------------------------------------------- reading
def read_ofa_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in OFA checkpoint ``path``, read by torch's restricted unpickler (``weights_only=True``:
    tensors, dicts, lists and numbers; any other class or function in the pickle is refused before it is called,
    with its name in a one-line error). A ``{"state_dict": ...}`` checkpoint gives its ``state_dict``."""
    return _load_state(_read_checkpoint(Path(path)), Path(path))


def _read_checkpoint(p: Path) -> bytes:
    """The bytes of checkpoint file ``p``: a regular file of at most :data:`MAX_CHECKPOINT_BYTES`, and, when it is a
    zip (torch's format since 1.6), one whose entries are checked by :func:`_check_zip` before torch inflates them."""
    where = f"OFA checkpoint {p}"
    try:  # non-blocking: opening a pipe for reading would otherwise wait for a writer
        with os.fdopen(os.open(p, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise HwparetoError(f"{where}: expected a regular file, got {_file_kind(info.st_mode)}")
            if info.st_size > MAX_CHECKPOINT_BYTES:
                raise HwparetoError(f"{where}: expected at most {MAX_CHECKPOINT_BYTES:,} bytes, got {info.st_size:,}")
            data = fh.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as exc:
        raise HwparetoError(f"{where}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise HwparetoError(f"{where}: expected at most {MAX_CHECKPOINT_BYTES:,} bytes, got more (still growing?)")
    _check_zip(data, where)
    return data


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a pipe"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def _check_zip(data: bytes, where: str) -> None:
    """Refuse a zip of more than :data:`MAX_ZIP_ENTRIES` entries, or whose entries would inflate past
    :data:`MAX_CHECKPOINT_BYTES` together (declared sizes, checked first), compress more than
    :data:`MAX_COMPRESSION_RATIO` times, or inflate to other than their declared size (inflated here in 1 MiB pieces
    and never past the declared size + 1 byte: a zip that lies about sizes stops at the bound). Torch then inflates
    each entry into a buffer of its declared size. Data that is not a zip is left to torch."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return
    count = _zip_entry_count(data)
    if count > MAX_ZIP_ENTRIES:
        raise HwparetoError(f"{where}: expected a zip of at most {MAX_ZIP_ENTRIES:,} entries, got {count:,}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise HwparetoError(f"{where}: not a readable zip ({type(exc).__name__}: {detail})") from None
    declared = sum(e.file_size for e in entries)
    if declared > MAX_CHECKPOINT_BYTES:
        raise HwparetoError(
            f"{where}: expected zip entries of at most {MAX_CHECKPOINT_BYTES:,} bytes in all, they declare {declared:,}"
        )
    for entry in entries:
        name = f"{where}: zip entry {entry.filename[:100]!r}"
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise HwparetoError(
                f"{name}: expected stored or deflated data, got compression method {entry.compress_type}"
            )
        ratio = entry.file_size / max(1, entry.compress_size)
        if entry.file_size > RATIO_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise HwparetoError(
                f"{name}: expected a compression ratio of at most {MAX_COMPRESSION_RATIO}, got {ratio:,.0f} "
                f"({entry.compress_size:,} bytes declared to inflate to {entry.file_size:,})"
            )
        inflated = _inflated_bytes(data, entry, name)
        if inflated > entry.file_size:
            raise HwparetoError(f"{name}: inflates to more than the {entry.file_size:,} bytes it declares")
        if inflated < entry.file_size:
            raise HwparetoError(f"{name}: inflates to {inflated:,} bytes, it declares {entry.file_size:,}")


def _zip_entry_count(data: bytes) -> int:
    """The entry count the zip's end-of-central-directory record declares (zip64's when it has one)."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return 0  # zipfile's own reader says what is wrong
    count = struct.unpack_from("<H", data, end + 10)[0]
    locator = end - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        record = struct.unpack_from("<Q", data, locator + 8)[0]
        if record + 40 <= len(data) and data[record : record + 4] == b"PK\x06\x06":
            count = struct.unpack_from("<Q", data, record + 32)[0]
    return int(count)


def _inflated_bytes(data: bytes, entry: zipfile.ZipInfo, name: str) -> int:
    """How many bytes ``entry`` of the zip ``data`` inflates to, counted up to its declared size + 1 (never more)."""
    start = entry.header_offset
    if data[start : start + 4] != b"PK\x03\x04" or start + 30 > len(data):
        raise HwparetoError(f"{name}: not a readable zip (no local header at byte {start:,})")
    name_len, extra_len = struct.unpack_from("<HH", data, start + 26)
    begin = start + 30 + name_len + extra_len
    raw = memoryview(data)[begin : begin + entry.compress_size]
    if entry.compress_type == zipfile.ZIP_STORED:
        return len(raw)
    inflater, total, bound = zlib.decompressobj(-zlib.MAX_WBITS), 0, entry.file_size + 1
    try:
        for i in range(0, len(raw), _PIECE):
            pending: bytes | memoryview = raw[i : i + _PIECE]
            while pending and total < bound:
                total += len(inflater.decompress(pending, min(_PIECE, bound - total)))
                pending = inflater.unconsumed_tail
            if total >= bound:
                break
    except zlib.error as exc:
        raise HwparetoError(f"{name}: not readable deflated data ({exc})") from None
    return total


def _load_state(data: bytes, p: Path) -> dict[str, torch.Tensor]:
    """The state dict in checkpoint bytes ``data`` (read from ``p``), through torch's restricted unpickler."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says enough
            warnings.simplefilter("ignore")
            doc = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise HwparetoError(f"OFA checkpoint {p}: {_refusal(str(exc))} (refused, nothing executed)") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError, KeyError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise HwparetoError(
            f"OFA checkpoint {p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {detail})"
        ) from None
    state = doc.get("state_dict", doc) if isinstance(doc, dict) else doc
    if not isinstance(state, dict) or not state:
        raise InvalidValueError(f"OFA checkpoint {p}", "a state dict or {'state_dict': ...}", type(state).__name__)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InvalidValueError(
                f"OFA checkpoint {p} state_dict", "tensors named by strings", f"{key!r}: {type(value).__name__}"
            )
    return state


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refusal(message: str) -> str:
    """One line from torch's multi-line refusal: the class or function the pickle asked for."""
    found = _GLOBAL.search(message)
    if found:
        return f"the pickle refers to {found.group(1)}: only tensors and plain containers may be loaded"
    reason = next((line.strip() for line in message.splitlines() if "Unsupported" in line), "")
    return f"not a pickle of tensors and plain containers only ({reason[:200] or 'unreadable'})"


# ---------------------------------------------------------------------------------------------------- names
_NAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"first_conv\.(conv\.weight|bn\.\w+)", "first_conv.{0}"),
        (r"blocks\.0\.conv\.depth_conv\.conv\.weight", "first_block.dw.weight"),
        (r"blocks\.0\.conv\.depth_conv\.bn\.(\w+)", "first_block.dw_bn.{0}"),
        (r"blocks\.0\.conv\.point_linear\.(conv\.weight|bn\.\w+)", "first_block.project.{0}"),
        (r"blocks\.(\d+)\.conv\.inverted_bottleneck\.(conv\.weight|bn\.\w+)", "blocks.{i}.expand.{1}"),
        (r"blocks\.(\d+)\.conv\.depth_conv\.conv\.weight", "blocks.{i}.dw.weight"),
        (r"blocks\.(\d+)\.conv\.depth_conv\.conv\.(\d+to\d+)_matrix", "blocks.{i}.ks_transform.{1}"),
        (r"blocks\.(\d+)\.conv\.depth_conv\.bn\.(\w+)", "blocks.{i}.dw_bn.{1}"),
        (r"blocks\.(\d+)\.conv\.depth_conv\.se\.fc\.((?:reduce|expand)\.(?:weight|bias))", "blocks.{i}.se.{1}"),
        (r"blocks\.(\d+)\.conv\.point_linear\.(conv\.weight|bn\.\w+)", "blocks.{i}.project.{1}"),
        (r"final_expand_layer\.(conv\.weight|bn\.\w+)", "final_expand.{0}"),
        (r"feature_mix_layer\.conv\.weight", "feature_mix.conv.weight"),
        (r"classifier\.linear\.(weight|bias)", "classifier.{0}"),
    )
)


def _hwpareto_name(ofa_key: str) -> str | None:
    """The SuperNet's name for OFA's ``ofa_key`` (current or older spelling), or None when it has none."""
    key = ofa_key.replace(".mobile_inverted_conv.", ".conv.")
    # OFA's dynamic layers nest one more level than its static ones (``bn.bn``, ``conv.conv``, ``linear.linear``);
    # checkpoints hold either spelling (OFA's own load_state_dict accepts both)
    key = key.replace(".bn.bn.", ".bn.").replace(".conv.conv.", ".conv.").replace(".linear.linear.", ".linear.")
    for pattern, template in _NAMES:
        found = pattern.fullmatch(key)
        if found:
            groups = found.groups()
            block = int(groups[0]) - 1 if template.startswith("blocks.") else 0
            return template.format(*groups, i=block)
    return None


def convert_ofa_state(state: Mapping[str, torch.Tensor], where: str = "OFA checkpoint") -> tuple[float, dict[str, Any]]:
    """OFA MobileNetV3 ``state`` under hwpareto's names, and its width (1.0 or 1.2, read from the shapes).

    Every tensor must map to one of the width's SuperNet with the same shape and hold finite values, and every
    SuperNet tensor must be present (BN ``num_batches_tracked`` counters, absent from old files, are set to 0).
    Names that all start with ``module.`` (saved from ``DataParallel``/``DistributedDataParallel``) lose it."""
    import torch

    prefix = "module."  # torch.nn.DataParallel / DistributedDataParallel save their wrapped model under it
    if all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: tensor for key, tensor in state.items()}
    renamed: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for key, tensor in state.items():
        name = _hwpareto_name(key)
        if name is None:
            raise InvalidValueError(f"{where} tensor names", "those of OFA's MobileNetV3 (OFAMobileNetV3)", key)
        if name in renamed:
            raise InvalidValueError(f"{where} tensor names", "each tensor once", f"{key!r} twice (as {name!r})")
        renamed[name], source[name] = tensor, key
    stem = renamed.get("first_conv.conv.weight")
    stem_channels = {make_divisible(OFA_BASE_WIDTHS[0] * w): w for w in OFA_WIDTHS}
    got = None if stem is None else int(stem.shape[0])
    if got not in stem_channels:
        widths = ", ".join(f"{c} (w{w})" for c, w in stem_channels.items())
        raise InvalidValueError(f"{where} first_conv output channels", f"one of {widths}", got)
    width = stem_channels[got]
    with torch.device("meta"):
        expected = OFAMobileNetV3Space(width).supernet().state_dict()
    for name, ref in expected.items():
        if name not in renamed and name.endswith("num_batches_tracked"):
            renamed[name] = torch.zeros((), dtype=ref.dtype)
    missing = [n for n in expected if n not in renamed]
    extra = [n for n in renamed if n not in expected]
    if missing or extra:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {', '.join(extra[:3])}" if extra else ""
        )
        raise InvalidValueError(f"{where} tensors", f"the {len(expected)} tensors of OFA MobileNetV3 w{width}", detail)
    for name, ref in expected.items():
        if tuple(renamed[name].shape) != tuple(ref.shape):
            raise InvalidValueError(f"{where} {name} shape", str(tuple(ref.shape)), tuple(renamed[name].shape))
        if renamed[name].dtype != ref.dtype:
            renamed[name] = renamed[name].to(ref.dtype)
        tensor = renamed[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int(tensor.numel() - torch.isfinite(tensor).sum())
            raise InvalidValueError(
                f"{where} tensor {source.get(name, name)!r}",
                "finite values",
                f"{bad:,} NaN or infinite of {tensor.numel():,}",
            )
    return width, {n: renamed[n].contiguous() for n in expected}


@dataclass(frozen=True, slots=True)
class OfaImport:
    """What :func:`import_ofa_checkpoint` wrote: the space name, the checkpoint, OFA's width and tensor count."""

    space: str
    checkpoint: Path
    width: float
    tensors: int

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "checkpoint": str(self.checkpoint), "width": self.width, "tensors": self.tensors}


def import_ofa_checkpoint(source: str | Path, out: str | Path) -> OfaImport:
    """Convert OFA checkpoint ``source`` into a safetensors checkpoint ``out`` of space ``ofa-mbv3-w<width>``
    (its header names the space, the width and the source file's SHA-256), written whole or not at all; ``out``
    must be a new or regular file."""
    import hashlib

    src, dst = Path(source), check_output_file(out, "--out")
    data = _read_checkpoint(src)
    width, state = convert_ofa_state(_load_state(data, src), f"OFA checkpoint {src}")
    sha = hashlib.sha256(data).hexdigest()
    name = space_name(width)
    meta = {"space": name, "format": FORMAT, "width": str(width), "source": src.name, "source_sha256": sha}
    save_tensors(dst, state, "--out", meta)
    return OfaImport(name, dst, width, len(state))


def checkpoint_width(checkpoint: str | Path) -> float | None:
    """The OFA width recorded in an imported checkpoint's header (None for other checkpoints)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(checkpoint), "pt") as fh:
            meta = fh.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise HwparetoError(f"checkpoint {checkpoint}: not a readable safetensors file ({exc})") from None
    return float(meta["width"]) if meta.get("format") == FORMAT and "width" in meta else None


# ---------------------------------------------------------------------------------------------------- configs
OFA_CONFIG_KEYS = ("ks", "e", "d", "r", "image_size", "wid")


def ofa_config(space: MobileNetV3Space, doc: Any, checkpoint: str | Path | None = None) -> SubNetConfig:
    """A config of ``space`` from OFA's dict: ``ks``, ``e`` (20 values), ``d`` (5), ``r`` or ``image_size`` (a
    number or ``[number]``) and ``wid`` (the width multiplier). ``wid`` absent or None means the width of
    ``checkpoint`` (an imported OFA checkpoint); without one it is an error naming the space's widths, never a
    default. An explicit ``wid`` must equal the checkpoint's width."""
    if not isinstance(doc, Mapping):
        raise InvalidValueError("OFA config", "a JSON object with ks, e, d, r or image_size, wid", type(doc).__name__)
    extra = [k for k in doc if k not in OFA_CONFIG_KEYS]
    if extra:
        allowed = "only the keys " + ", ".join(OFA_CONFIG_KEYS)
        raise InvalidValueError("OFA config", allowed, "extra " + ", ".join(extra))
    record = {k: doc[k] for k in ("ks", "e", "d") if k in doc}
    sizes = [_one(doc[k], k) for k in ("r", "image_size") if doc.get(k) is not None]
    if not sizes:
        raise InvalidValueError("OFA config r", "a resolution (r or image_size)", "none (missing)")
    if len(sizes) == 2 and sizes[0] != sizes[1]:
        raise InvalidValueError("OFA config image_size", f"the same resolution as r ({sizes[0]})", sizes[1])
    widths = space.width_choices
    held = checkpoint_width(checkpoint) if checkpoint is not None else None
    wid = doc.get("wid")
    if wid is None:
        if held is None:
            why = "its header records no OFA width" if checkpoint is not None else "give --checkpoint"
            raise InvalidValueError(
                "wid",
                f"one of {', '.join(map(str, widths))} (the widths of space {space.name!r}; OFA's None means the "
                f"checkpoint's width: {why})",
                None,
            )
        wid = held
    elif held is not None and _one(wid, "wid") != held:
        raise InvalidValueError("wid", f"{held} (the width checkpoint {checkpoint} holds)", wid)
    missing = [k for k in ("ks", "e", "d") if k not in record]
    if missing:
        raise InvalidValueError("OFA config", "the keys ks, e, d", "none for " + ", ".join(missing))
    return space.from_record({**record, "r": sizes[0], "w": _one(wid, "wid")})


def ofa_form(space: SearchSpace) -> MobileNetV3Space:
    """``space`` when configs of it have an OFA form (a MobileNetV3 space); else the error naming the spaces that
    have one (``--format ofa`` refused)."""
    if isinstance(space, MobileNetV3Space):
        return space
    from supernet._registry import get_space, list_spaces

    ofa = [n for n in list_spaces() if isinstance(get_space(n), MobileNetV3Space)]
    raise InvalidValueError("--format ofa", "a space with an OFA form: " + ", ".join(ofa), space.name)


def ofa_dict(space: SearchSpace, config: SubNetConfig) -> dict[str, Any]:
    """``config`` as OFA's dict, what :func:`ofa_config` reads back: ``wid`` (the width multiplier), ``ks`` and
    ``e`` (one per block), ``d`` (one per stage) as lists, and ``r`` as OFA's ``[resolution]``; a space without an
    OFA form raises (:func:`ofa_form`)."""
    mbv3 = ofa_form(space)
    return {
        "wid": config["w"],
        "ks": [config[f"ks_{i}"] for i in range(mbv3.n_blocks)],
        "e": [config[f"e_{i}"] for i in range(mbv3.n_blocks)],
        "d": [config[f"d_{s}"] for s in range(N_STAGES)],
        "r": [config["r"]],
    }


def _one(value: Any, field: str) -> Any:
    """OFA stores resolutions as ``[224]``: the single value of a one-element list, else the value."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InvalidValueError(field, "a number or a list of one number", value)
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidValueError(field, "a number", value)
    return value
