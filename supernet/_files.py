"""Output files written whole or not at all: a temporary file beside the target, synced, then renamed over it, so a
full disk, a size limit or an interruption leaves the previous file (or none), never half of one."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hwpareto.errors import HwparetoError, InvalidValueError

if TYPE_CHECKING:
    import torch

__all__ = ["check_output_file", "safetensors_bytes", "save_tensors", "write_atomic", "write_synced"]


def check_output_file(path: str | Path, field: str) -> Path:
    """``path`` as an output file: new, or an existing regular file (replaced). An existing folder, device or pipe
    is refused (renaming over a device would replace it)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return p
    except OSError as exc:
        raise HwparetoError(f"{field} {p}: cannot write ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        got = "an existing folder" if stat.S_ISDIR(mode) else "an existing special file (a device or pipe)"
        raise InvalidValueError(field, "a new file or an existing regular file", f"{p} ({got})")
    return p


def write_atomic(path: str | Path, data: bytes, field: str) -> None:
    """Write ``data`` to ``path`` whole or not at all (mode 0666 less the umask, as ``open`` gives); any failure
    (no space, no permission, ``/proc``) is one :class:`HwparetoError` naming ``field`` and ``path``, and removes
    the temporary file."""
    p = check_output_file(path, field)
    part = p.with_name(f".{p.name}.{secrets.token_hex(4)}.part")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        write_synced(part, data)
        os.replace(part, p)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise HwparetoError(f"{field} {p}: cannot write ({exc.strerror})") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def write_synced(path: Path, data: bytes) -> None:
    """Write the new file ``path`` (refused when it exists) and sync it to disk; failures raise ``OSError``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as fh:
        view = memoryview(data)
        for start in range(0, len(view), 1 << 24):
            fh.write(view[start : start + (1 << 24)])
        fh.flush()
        os.fsync(fh.fileno())


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """``tensors`` (on the CPU, contiguous, sharing no memory) in the safetensors format (no pickle)."""
    from safetensors.torch import save

    return save(dict(tensors), metadata=dict(metadata) if metadata else None)


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], field: str, metadata: Mapping[str, str] | None = None
) -> None:
    """``tensors`` as a safetensors file at ``path``, written by :func:`write_atomic` (safetensors' own
    ``save_file`` reports a full disk as a multi-line ``SafetensorError`` and leaves a truncated file)."""
    write_atomic(path, safetensors_bytes(tensors, metadata), field)
