"""Files shipped with hwpareto (the repository's ``data/`` folder, installed as the package ``hwpareto.data``)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["data_path"]


def data_path(*parts: str) -> Path:
    """The shipped file or folder ``data/<parts...>`` as a file-system path (wheels are installed unpacked, and the
    simulators and loaders read paths), whether hwpareto runs from a checkout or from an installed wheel."""
    root = files("hwpareto.data")
    if not isinstance(root, Path):  # a zipped install: not supported, since the readers need real files
        raise RuntimeError(f"hwpareto.data: expected a package on the file system, got {root!r}")
    return root.joinpath(*parts)
