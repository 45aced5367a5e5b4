"""Measurements of SubNets, per-layer LUTs and exports: the store's bulk data.

Contract. Bulk writes validate every row before they touch the database and run in one transaction: all rows
are written or none. A bad row raises InvalidValueError naming it (``measurements[3].metric``, ``lut[0].n``),
what is allowed and what it held. Device subjects and LUT devices must be registered (unknown names raise
InvalidValueError listing the registered ones) unless ``auto_devices``. Readers return DataFrames with the
documented columns, in a stable order. Every method takes an optional ``conn`` (the caller's transaction: a
device registered and measured in one block is committed with its measurements), else opens its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, select

from hwpareto.errors import InvalidValueError
from hwpareto.metrics import NAME as METRIC_NAME
from hwpareto.store._db import Database
from hwpareto.store._models import SOURCES, SUBJECT_KINDS, Device, Export, LutEntry, Measurement, SubNet
from hwpareto.store._records import MeasurementCount, MeasurementIn, WriteResult
from hwpareto.store._sql import (
    bulk_insert,
    bulk_update,
    canonical,
    chunks,
    device_id,
    dumps,
    fetch_raw,
    positive,
    table_of,
    unknown_device,
)
from supernet import SubNetConfig, check_metric_value, check_name

__all__ = ["LUT_COLUMNS", "MEASUREMENT_COLUMNS", "ExportRepository", "LutRepository", "MeasurementRepository"]

MEASUREMENT_COLUMNS = [
    "space",
    "config_key",
    "config_json",
    "subject_kind",
    "subject",
    "metric",
    "value",
    "std",
    "n",
    "batch",
    "source",
    "origin",
]
LUT_COLUMNS = [
    "layer_key",
    "op",
    "spec_json",
    "batch",
    "latency_ms_mean",
    "latency_ms_std",
    "energy_mj_mean",
    "energy_mj_std",
    "n",
    "source",
]
_LUT_REQUIRED = ("layer_key", "op", "spec_json", "latency_ms_mean", "latency_ms_std", "n")
_LUT_DEFAULTS: dict[str, Any] = {"batch": 1, "energy_mj_mean": None, "energy_mj_std": None, "source": "measured"}


class MeasurementRepository:
    """Write and read measurements (``store.measurements``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, rows: Iterable[MeasurementIn], *, auto_devices: bool = False, conn: Connection | None = None
    ) -> WriteResult:
        """Upsert measurements: all rows are written or none.

        A row whose key (SubNet, subject, metric, source, batch) exists counts as unchanged when value, std and n
        are equal, else it is updated (a later duplicate in ``rows`` wins). Device subjects must be registered
        unless ``auto_devices`` (then unknown ones are registered with kind ``imported``).
        """
        wanted: dict[tuple[Any, ...], tuple[float, float | None, int | None, str]] = {}
        configs: dict[tuple[str, str], str] = {}
        devices: dict[str, tuple[int, str]] = {}
        known_metrics: set[str] = set()
        for i, row in enumerate(rows):
            value, std, n = _check_measurement(i, row, known_metrics)
            config = row.config
            if (config.space, config.key) not in configs:
                configs[config.space, config.key] = dumps(config.values)
            if row.subject_kind == "device":
                devices.setdefault(row.subject, (i, row.origin))
            identity = (config.space, config.key, row.subject_kind, row.subject, row.metric, row.source, row.batch)
            wanted[identity] = (value, std, n, row.origin)
        if not wanted:
            return WriteResult(0, 0, 0)
        with self._db.write(conn) as c:
            device_ids, new_devices = _resolve_devices(c, devices, auto_devices)
            subnet_ids, old_subnets = _upsert_subnets(c, configs)
            existing = _existing_measurements(c, old_subnets)
            new_rows: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            for (space, key, kind, subject, metric, source, batch), (value, std, n, origin) in wanted.items():
                subnet_id = subnet_ids[space, key]
                found = existing.get((subnet_id, kind, subject, metric, source, batch))
                if found is None:
                    new_rows.append(
                        {
                            "subnet_id": subnet_id,
                            "subject_kind": kind,
                            "subject": subject,
                            "device_id": device_ids[subject] if kind == "device" else None,
                            "metric": metric,
                            "value": value,
                            "std": std,
                            "n": n,
                            "batch": batch,
                            "source": source,
                            "origin": origin,
                        }
                    )
                elif found[1:] != (value, std, n):
                    changed.append({"id": found[0], "value": value, "std": std, "n": n, "origin": origin})
            bulk_insert(c, table_of(Measurement), new_rows)
            bulk_update(c, table_of(Measurement), changed)
        return WriteResult(len(new_rows), len(changed), len(wanted) - len(new_rows) - len(changed), new_devices)

    def table(
        self,
        space: str | None = None,
        subject: str | None = None,
        subject_kind: str | None = None,
        metric: str | None = None,
        source: str | None = None,
        *,
        conn: Connection | None = None,
    ) -> pd.DataFrame:
        """Measurements matching every given filter, one row each, in the order they were first written.

        Columns: ``MEASUREMENT_COLUMNS`` (space, config_key, config_json, subject_kind, subject, metric, value,
        std, n, batch, source, origin).
        """
        if subject_kind is not None and subject_kind not in SUBJECT_KINDS:
            raise InvalidValueError("subject_kind", "one of " + ", ".join(SUBJECT_KINDS), subject_kind)
        if source is not None and source not in SOURCES:
            raise InvalidValueError("source", "one of " + ", ".join(SOURCES), source)
        m = Measurement
        query = (
            select(
                SubNet.space,
                SubNet.key,
                SubNet.config_json,
                m.subject_kind,
                m.subject,
                m.metric,
                m.value,
                m.std,
                m.n,
                m.batch,
                m.source,
                m.origin,
            )
            .join(SubNet, SubNet.id == m.subnet_id)
            .order_by(m.id)
        )
        for column, wanted in (
            (SubNet.space, space),
            (m.subject, subject),
            (m.subject_kind, subject_kind),
            (m.metric, metric),
            (m.source, source),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        with self._db.read(conn) as c:
            rows = c.execute(query).all()
        frame = pd.DataFrame.from_records([tuple(row) for row in rows], columns=MEASUREMENT_COLUMNS)
        return frame.astype({"value": "float64", "std": "float64", "n": "Int64", "batch": "int64"})

    def measured_table(
        self,
        space: str,
        metric: str,
        subjects: Sequence[str] | None = None,
        subject_kind: str = "device",
        *,
        conn: Connection | None = None,
    ) -> pd.DataFrame:
        """Measured values (median over repeats; stored predictions left out) as a wide table: one row per
        SubNet key (index ``config_key``), one column per subject (``subjects`` in order, else every subject with
        such values, sorted), NaN where a subject has not measured a SubNet."""
        m = Measurement
        query = (
            select(SubNet.key, m.subject, m.value)
            .join(SubNet, SubNet.id == m.subnet_id)
            .where(SubNet.space == space, m.metric == metric, m.subject_kind == subject_kind, m.source != "predicted")
        )
        if subjects is not None:
            query = query.where(m.subject.in_(list(subjects)))
        with self._db.read(conn) as c:  # plain DB-API rows: 200k values in a fraction of a second
            rows = fetch_raw(c, query)
        frame = pd.DataFrame(rows, columns=["config_key", "subject", "value"])
        wide = frame.astype({"value": "float64"}).groupby(["config_key", "subject"])["value"].median().unstack()
        columns = sorted(wide.columns) if subjects is None else list(subjects)
        return wide.reindex(columns=columns).rename_axis(columns=None)

    def summary(self, *, conn: Connection | None = None) -> list[MeasurementCount]:
        """Measurement counts per (space, subject_kind, subject, metric, source), in that order."""
        m = Measurement
        groups = (SubNet.space, m.subject_kind, m.subject, m.metric, m.source)
        query = select(*groups, func.count()).join(SubNet, SubNet.id == m.subnet_id).group_by(*groups)
        with self._db.read(conn) as c:
            rows = c.execute(query.order_by(*groups)).all()
        return [MeasurementCount(*row[:5], count=int(row[5])) for row in rows]


class LutRepository:
    """Write and read per-layer cost tables (``store.luts``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, device: str, rows: Iterable[Mapping[str, Any]], *, conn: Connection | None = None) -> WriteResult:
        """Upsert the per-layer costs of ``device``, keyed by (layer_key, batch): all rows are written or none.

        Each row holds layer_key, op, spec_json (JSON text or a mapping), latency_ms_mean, latency_ms_std, n and
        optionally batch (1), energy_mj_mean, energy_mj_std (None) and source ("measured").
        """
        wanted = {(row["layer_key"], row["batch"]): row for row in (_check_lut(i, r) for i, r in enumerate(rows))}
        compared = [c for c in LUT_COLUMNS if c not in ("layer_key", "batch")]
        with self._db.write(conn) as c:
            owner = device_id(c, device)
            existing = {
                (row.layer_key, row.batch): row
                for row in c.execute(select(LutEntry).where(LutEntry.device_id == owner))
            }
            new_rows: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            for key, row in wanted.items():
                found = existing.get(key)
                if found is None:
                    new_rows.append({"device_id": owner, **row})
                elif any(getattr(found, column) != row[column] for column in compared):
                    changed.append({"id": found.id, **{column: row[column] for column in compared}})
            bulk_insert(c, table_of(LutEntry), new_rows)
            bulk_update(c, table_of(LutEntry), changed)
        return WriteResult(len(new_rows), len(changed), len(wanted) - len(new_rows) - len(changed))

    def get(self, device: str, batch: int = 1, *, conn: Connection | None = None) -> pd.DataFrame:
        """The LUT of ``device`` at ``batch``, sorted by layer_key (columns: ``LUT_COLUMNS``)."""
        query = (
            select(*(getattr(LutEntry, column) for column in LUT_COLUMNS))
            .join(Device, Device.id == LutEntry.device_id)
            .where(Device.name == device, LutEntry.batch == batch)
            .order_by(LutEntry.layer_key)
        )
        with self._db.read(conn) as c:
            device_id(c, device)
            rows = c.execute(query).all()
        return pd.DataFrame.from_records([tuple(row) for row in rows], columns=LUT_COLUMNS)


class ExportRepository:
    """Record SubNets exported to files (``store.exports``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        config: SubNetConfig,
        path: str | os.PathLike[str],
        files: Mapping[str, Any],
        *,
        conn: Connection | None = None,
    ) -> None:
        """Record that SubNet ``config`` was exported to ``path`` (``files``: name -> details, JSON-ready)."""
        if not isinstance(config, SubNetConfig):
            raise InvalidValueError("export.config", "a SubNetConfig", type(config).__name__)
        values = {
            "space": config.space,
            "config_key": config.key,
            "config_json": dumps(config.values),
            "path": os.fspath(path),
            "files_json": canonical("export.files", files),
        }
        with self._db.write(conn, lock=False) as c:
            c.execute(insert(Export).values(**values))


# ---------------------------------------------------------------------- validation
def _check_text(field: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length or value != value.strip():
        raise InvalidValueError(field, f"a non-empty name of at most {max_length} characters", value)
    return value


def _check_measurement(i: int, row: Any, known_metrics: set[str]) -> tuple[float, float | None, int | None]:
    """Validate row ``i``; return its value, std and n as plain Python numbers."""
    where = f"measurements[{i}]"
    if not isinstance(row, MeasurementIn):
        raise InvalidValueError(where, "a MeasurementIn", type(row).__name__)
    if not isinstance(row.config, SubNetConfig):
        raise InvalidValueError(f"{where}.config", "a SubNetConfig", row.config)
    if row.subject_kind not in SUBJECT_KINDS:
        raise InvalidValueError(f"{where}.subject_kind", "one of " + ", ".join(SUBJECT_KINDS), row.subject_kind)
    check_name(f"{where}.subject", row.subject)
    if row.metric not in known_metrics:
        if not isinstance(row.metric, str) or len(row.metric) > 64 or not METRIC_NAME.fullmatch(row.metric):
            raise InvalidValueError(
                f"{where}.metric",
                "a lower-case name of letters, digits and '_' with units (e.g. latency_ms)",
                row.metric,
            )
        known_metrics.add(row.metric)
    if row.source not in SOURCES:
        raise InvalidValueError(f"{where}.source", "one of " + ", ".join(SOURCES), row.source)
    if not isinstance(row.origin, str) or len(row.origin) > 255:
        raise InvalidValueError(f"{where}.origin", "a string of at most 255 characters", row.origin)
    positive(f"{where}.batch", row.batch)
    value = check_metric_value(f"{where}.value", row.metric, row.value)
    std = None if row.std is None else check_metric_value(f"{where}.std", row.metric, row.std, std=True)
    n = None if row.n is None else positive(f"{where}.n", row.n)
    return value, std, n


def _check_lut(i: int, row: Any) -> dict[str, Any]:
    """Validate LUT row ``i``; return it complete, with canonical spec_json and plain numbers."""
    where = f"lut[{i}]"
    if not isinstance(row, Mapping):
        raise InvalidValueError(where, "a mapping", row)
    allowed = (*_LUT_REQUIRED, *_LUT_DEFAULTS)
    missing = [k for k in _LUT_REQUIRED if k not in row]
    extra = [k for k in row if k not in allowed]
    if missing or extra:
        raise InvalidValueError(where, "the keys " + ", ".join(allowed), sorted(row))
    out = {**_LUT_DEFAULTS, **row}
    _check_text(f"{where}.layer_key", out["layer_key"], 255)
    _check_text(f"{where}.op", out["op"], 32)
    spec = out["spec_json"]
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            raise InvalidValueError(f"{where}.spec_json", "JSON text of a mapping", spec) from None
    out["spec_json"] = canonical(f"{where}.spec_json", spec)
    for name in ("latency_ms_mean", "latency_ms_std", "energy_mj_mean", "energy_mj_std"):
        if out[name] is not None or name.startswith("latency"):
            metric, stat = name.rsplit("_", 1)  # latency_ms, energy_mj: one layer's cost may be 0
            out[name] = check_metric_value(f"{where}.{name}", metric, out[name], std=stat == "std", per_layer=True)
    out["n"] = positive(f"{where}.n", out["n"])
    out["batch"] = positive(f"{where}.batch", out["batch"])
    if out["source"] not in SOURCES:
        raise InvalidValueError(f"{where}.source", "one of " + ", ".join(SOURCES), out["source"])
    return out


# ---------------------------------------------------------------------- queries
def _resolve_devices(
    conn: Connection, first_rows: Mapping[str, tuple[int, str]], auto: bool
) -> tuple[dict[str, int], tuple[str, ...]]:
    """Ids of the device subjects (name -> index and origin of its first row); unknown ones are registered
    (kind ``imported``) when ``auto``, else rejected."""
    if not first_rows:
        return {}, ()
    ids = dict(conn.execute(select(Device.name, Device.id).where(Device.name.in_(list(first_rows)))).all())
    missing = tuple(name for name in first_rows if name not in ids)
    if missing and not auto:
        field = f"measurements[{first_rows[missing[0]][0]}].subject"
        raise unknown_device(conn, missing[0], field, " or auto_devices=True")
    if missing:
        rows = [
            {
                "name": name,
                "kind": "imported",
                "spec_json": dumps({"source": first_rows[name][1]}),
                "provenance_json": "{}",
            }
            for name in missing
        ]
        ids.update(conn.execute(insert(Device).returning(Device.name, Device.id), rows).all())
    return ids, missing


def _upsert_subnets(
    conn: Connection, configs: Mapping[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], int], list[int]]:
    """Ids of every config (inserting the new ones) and the ids of those that already existed."""
    ids = _subnet_ids(conn, configs)
    existed = list(ids.values())
    new = [{"space": s, "key": k, "config_json": doc} for (s, k), doc in configs.items() if (s, k) not in ids]
    bulk_insert(conn, table_of(SubNet), new)
    ids.update(_subnet_ids(conn, [(row["space"], row["key"]) for row in new]))
    return ids, existed


def _subnet_ids(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    by_space: dict[str, list[str]] = {}
    for space, key in keys:
        by_space.setdefault(space, []).append(key)
    ids: dict[tuple[str, str], int] = {}
    for space, space_keys in by_space.items():
        for chunk in chunks(space_keys):
            query = select(SubNet.key, SubNet.id).where(SubNet.space == space, SubNet.key.in_(chunk))
            ids.update(((space, key), subnet_id) for key, subnet_id in conn.execute(query))
    return ids


def _existing_measurements(conn: Connection, subnet_ids: Sequence[int]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Measurements of the given SubNets: key -> (id, value, std, n)."""
    m = Measurement
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for chunk in chunks(subnet_ids):
        query = select(
            m.subnet_id, m.subject_kind, m.subject, m.metric, m.source, m.batch, m.id, m.value, m.std, m.n
        ).where(m.subnet_id.in_(chunk))
        found.update((tuple(row[:6]), tuple(row[6:])) for row in conn.execute(query))
    return found
