"""The Devices page's data: the registry, LUT coverage and layers, predictor checks, profiling progress, and uploads
(device YAML, measurement CSV) read by the CLI's own functions."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import pandas as pd

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store

if TYPE_CHECKING:
    from profilers import DeviceSpec


__all__ = [
    "UPLOAD_FILE",
    "PredictorQuality",
    "device_table",
    "import_upload",
    "lut_by_op",
    "lut_coverage",
    "lut_layers",
    "predictor_quality",
    "profile_progress",
    "shown_name",
    "validate_device_upload",
]


def device_table(store: Store) -> pd.DataFrame:
    """The device registry: one row per device with its kind, backend, provenance and LUT/measurement counts."""
    rows = []
    for d in store.devices.list():
        spec, provenance = d.spec, d.provenance
        rows.append(
            {
                "device": d.name,
                "kind": d.kind,
                "backend": spec.get("backend", "-"),
                "lut_entries": d.lut_entries,
                "measurements": d.measurements,
                "description": spec.get("description", ""),
                "provenance": ", ".join(f"{k}: {v}" for k, v in provenance.items() if not isinstance(v, dict | list))
                or "-",
                "registered": d.created_at,
            }
        )
    columns = ["device", "kind", "backend", "lut_entries", "measurements", "description", "provenance", "registered"]
    return pd.DataFrame(rows, columns=columns)


def lut_coverage(store: Store, device: str) -> pd.DataFrame:
    """Per space with a model: distinct layers in ``device``'s LUT, distinct layers of the space, coverage (%)."""
    from profilers import lut_entries_per_space

    spaces = [s for s in store.spaces.load_all()[0] if s.has_model]  # a broken space plugin: left out
    have = lut_entries_per_space(store, device, spaces)
    rows = []
    for space in spaces:
        total = len(space.layer_universe())
        rows.append(
            {
                "space": space.name,
                "layers_in_lut": have.get(space.name, 0),
                "layers_in_space": total,
                "coverage_pct": round(100.0 * have.get(space.name, 0) / total, 1) if total else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["space", "layers_in_lut", "layers_in_space", "coverage_pct"])


def lut_layers(store: Store, device: str) -> pd.DataFrame:
    """``device``'s LUT (batch 1): op, shape (the cost-relevant sizes of the layer key), latency (ms) and energy
    (mJ) per layer."""
    lut = store.luts.get(device)
    frame = pd.DataFrame(
        {
            "op": lut["op"],
            "shape": [k.partition(":")[2] or k for k in lut["layer_key"]],
            "latency_ms": lut["latency_ms_mean"].astype(float),
            "energy_mj": pd.to_numeric(lut["energy_mj_mean"], errors="coerce"),
            "source": lut["source"],
        }
    )
    return frame


def lut_by_op(layers: pd.DataFrame) -> pd.DataFrame:
    """Per op: number of layers, mean and max latency (ms), mean energy (mJ)."""
    if layers.empty:
        return pd.DataFrame(columns=["op", "layers", "latency_ms_mean", "latency_ms_max", "energy_mj_mean"])
    grouped = layers.groupby("op")
    return (
        pd.DataFrame(
            {
                "layers": grouped.size(),
                "latency_ms_mean": grouped["latency_ms"].mean(),
                "latency_ms_max": grouped["latency_ms"].max(),
                "energy_mj_mean": grouped["energy_mj"].mean(),
            }
        )
        .reset_index()
        .sort_values("latency_ms_mean", ascending=False, ignore_index=True)
    )


@dataclass(frozen=True)
class PredictorQuality:
    """A cost predictor of one device checked on that device's stored measurements."""

    name: str
    space: str
    metric: str
    points: pd.DataFrame  # config_key, measured, predicted
    metrics: dict[str, float]  # held-out metrics recorded at training (Kendall τ, MAPE, ...)


def predictor_quality(store: Store, device: str) -> list[PredictorQuality]:
    """Every latency/energy predictor of ``device``: predicted vs measured on its stored measurements, with the
    held-out metrics recorded when it was trained."""
    from predictors import load_model

    out = []
    for p in store.predictors.list():
        if p.device != device:
            continue
        space = store.spaces.get(p.space)
        measured = store.measurements.table(space=space.name, subject=device, subject_kind="device", metric=p.metric)
        measured = (
            measured[measured["source"] != "predicted"]
            .groupby("config_key", as_index=False)
            .agg(config_json=("config_json", "first"), measured=("value", "median"))
        )
        if measured.empty:
            continue
        configs = [space.validate(json.loads(c)) for c in measured["config_json"]]
        mean, _ = load_model(store, p.name).predict(configs)
        points = pd.DataFrame(
            {"config_key": measured["config_key"], "measured": measured["measured"], "predicted": mean}
        )
        out.append(PredictorQuality(p.name, space.name, p.metric, points, dict(p.meta.get("validation") or {})))
    return out


def profile_progress(store: Store, device: str, space_name: str) -> tuple[int, int]:
    """(distinct layers of ``space_name`` in ``device``'s LUT, distinct layers of the space)."""
    from profilers import lut_entries_per_space

    space = store.spaces.get(space_name)
    try:
        done = lut_entries_per_space(store, device, [space]).get(space.name, 0)
    except InvalidValueError:  # not registered yet: the profile job registers it
        done = 0
    return done, len(space.layer_universe())


UPLOAD_FILE = "upload"
"""The name an upload is written under in its temporary folder (its own name may be '..', empty or too long)."""
_MARKDOWN = "\\`*_{}[]<>#|~$"  # characters the pages' Markdown would act on, shown escaped


def shown_name(filename: str) -> str:
    """An uploaded file's name as messages show it: its last path part cut to 80 characters (the middle elided), then
    control characters escaped (one line) and Markdown characters backslash-escaped; ``(unnamed upload)`` when
    empty."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > 80:
        name = f"{name[:50]}…{name[-20:]}"
    escaped = (
        f"\\{c}" if c in _MARKDOWN else c if c.isprintable() else repr(c)[1:-1].replace("\\", "\\\\") for c in name
    )
    return "".join(escaped) or "(unnamed upload)"


@contextlib.contextmanager
def _uploaded(filename: str, data: bytes) -> Iterator[Path]:
    """``data`` written to a temporary file of a fixed name; a message that names it (the CLI's functions name the
    file they read) names :func:`shown_name` of ``filename`` instead, and a write that fails is one line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / UPLOAD_FILE
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise HwparetoError(
                f"upload {shown_name(filename)}: cannot write a temporary copy ({exc.strerror})"
            ) from None
        try:
            yield path
        except HwparetoError as exc:
            raise HwparetoError(str(exc).replace(str(path), shown_name(filename)).replace(f"{tmp}/", "")) from None


def validate_device_upload(filename: str, data: bytes) -> DeviceSpec:
    """Parse an uploaded device YAML exactly as ``hwpareto device add FILE`` does (safe YAML, no code)."""
    from profilers import load_device_file

    with _uploaded(filename, data) as path:
        return load_device_file(path)


def import_upload(
    store: Store,
    filename: str,
    data: bytes,
    *,
    space: str,
    subject_kind: str,
    subject: str,
    metric: str,
    columns: Sequence[str],
    source: str = "imported",
    batch: int = 1,
) -> dict[str, Any]:
    """Import an uploaded CSV exactly as ``hwpareto import CSV --space ... --column ...`` does."""
    from pareto import import_table, parse_columns

    if subject_kind not in ("device", "dataset"):
        raise InvalidValueError("--device/--dataset", "device or dataset", subject_kind)
    kind = cast(Literal["device", "dataset"], subject_kind)
    with _uploaded(filename, data) as path:
        report = import_table(
            store,
            path,
            space=store.spaces.get(space),
            columns=parse_columns(list(columns), subject),
            subject_kind=kind,
            metric=metric,
            defaults={},
            source=source,
            batch=batch,
            where={},
        )
    w = report.written
    return {
        "rows": report.rows,
        "subnets": report.subnets,
        "inserted": w.inserted,
        "updated": w.updated,
        "unchanged": w.unchanged,
        "new_devices": list(w.new_devices),
    }
