"""The Export page's data: an exported bundle as a zip with a manifest of file hashes."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from hwpareto.errors import HwparetoError
from hwpareto.store import Store

__all__ = ["MANIFEST_FILE", "bundle_zip"]


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MANIFEST_FILE = "manifest.json"
"""The bundle zip's manifest, beside the bundle folder (inside it, ``verify-bundle`` would count it as unlisted)."""
_STORED = (".safetensors", ".onnx", ".data", ".bin")  # weights barely compress: stored, not deflated


def _file_rows(folder: Path) -> list[dict[str, Any]]:
    """Every regular file under ``folder`` (recursively, sorted; a symlink is refused): its path relative to the
    folder, size in bytes and SHA-256 (read from disk, not taken from the bundle's own record)."""
    import hashlib

    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            got = "a symlink" if path.is_symlink() else "a special file"
            raise HwparetoError(f"bundle file {path.relative_to(folder)}: expected a regular file, got {got}")
        if path.is_dir():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        rows.append(
            {
                "file": path.relative_to(folder).as_posix(),
                "size_bytes": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return rows


def bundle_zip(
    store: Store, study: str, number: int, *, weights: bool = True, random_weights: bool = False
) -> tuple[bytes, pd.DataFrame, dict[str, Any]]:
    """Export trial ``number`` (:func:`pareto.export_trial`: config, metrics, weights, ONNX; an LLM's ``model/``
    folder) and zip the whole bundle folder under ``STUDY-TRIAL/`` with :data:`MANIFEST_FILE` beside it; returns the
    zip, its manifest (every file: path in the bundle, size in bytes, SHA-256) and the metrics and provenance it
    records."""
    from pareto import export_trial

    folder = f"{_SAFE.sub('-', study)}-{number}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / folder
        info = export_trial(store, study, number, root, weights=weights, onnx=weights, random_weights=random_weights)
        rows = _file_rows(root)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for row in rows:
                stored = row["file"].endswith(_STORED)
                archive.write(
                    root / row["file"],
                    f"{folder}/{row['file']}",
                    compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                )
            archive.writestr(MANIFEST_FILE, json.dumps({"bundle": folder, "files": rows}, indent=2) + "\n")
    metrics = {k: info[k] for k in ("objectives", "predicted", "measured", "provenance", "notes")}
    return buffer.getvalue(), pd.DataFrame(rows, columns=["file", "size_bytes", "sha256"]), metrics
