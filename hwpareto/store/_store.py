"""The SQL store: devices, spaces, SubNets, measurements, LUTs and exports beside Optuna's tables in one database.

A store is a SQLite file by default (see :func:`default_store_url`) or any SQLAlchemy URL (PostgreSQL through
psycopg 3). Its schema is versioned by Alembic (``pareto/migrations``, table ``hwp_alembic_version``); a new
database is initialised on first use, an older one must be upgraded explicitly (``hwpareto db upgrade``).
Writes that read before they write run under a store-wide write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock) so concurrent writers never conflict.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store._models import (
    DEVICE_KINDS,
    PREDICTOR_KINDS,
    SEARCH_STATUSES,
    SOURCES,
    SUBJECT_KINDS,
    TABLE_PREFIX,
    VERSION_TABLE,
    Base,
    Device,
    Export,
    LutEntry,
    Measurement,
    Predictor,
    Search,
    Space,
    SubNet,
    utcnow,
)
from supernet import (
    BUILTIN_SPACES,
    DeclarativeSpace,
    SearchSpace,
    SubNetConfig,
    check_metric_value,
    check_name,
    get_space,
    list_spaces,
    space_from_dict,
)

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

__all__ = ["MeasurementIn", "SchemaError", "Store", "WriteResult", "default_store_url"]

MIGRATIONS = Path(__file__).with_name("migrations")
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
_EXPECTED_URL = "expected a SQLite path or an SQLAlchemy URL such as postgresql+psycopg://user@host/db"
_METRIC = re.compile(r"^[a-z][a-z0-9_]*$")
_WRITE_OPTION = "hwpareto_write"
_PG_LOCK_KEY = 0x68777061  # "hwpa": the advisory lock every hwpareto writer takes on PostgreSQL
_CHUNK = 5000
_T = TypeVar("_T")


class SchemaError(HwparetoError):
    """The store's schema revision is not the one this hwpareto needs (older, newer or missing)."""


@dataclass(frozen=True, slots=True)
class MeasurementIn:
    """One value to write: ``metric`` of SubNet ``config`` on a device or dataset ``subject``.

    Units belong in the metric name (``latency_ms``, ``energy_mj``, ``test_acc``); ``origin`` names the file or
    command the value came from.
    """

    config: SubNetConfig
    subject_kind: str
    subject: str
    metric: str
    value: float
    std: float | None = None
    n: int | None = None
    batch: int = 1
    source: str = "imported"
    origin: str = ""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a bulk write did: rows inserted, updated (same key, new values), unchanged, devices registered."""

    inserted: int
    updated: int
    unchanged: int
    new_devices: tuple[str, ...] = ()


def default_store_url() -> str:
    """The store used when none is given.

    ``$HWPARETO_STORE`` when set, else the SQLite file ``${XDG_DATA_HOME:-~/.local/share}/hwpareto/hwpareto.db``
    (a relative ``XDG_DATA_HOME`` is ignored, as the XDG specification requires).
    """
    configured = os.environ.get("HWPARETO_STORE")
    if configured:
        return configured
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return URL.create("sqlite", database=str(base / "hwpareto" / "hwpareto.db")).render_as_string()


class Store:
    """hwpareto's database. Create it with :meth:`open`; ``url`` is the URL with the password hidden."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self.url = url.render_as_string(hide_password=True)
        self._optuna: RDBStorage | None = None

    # ------------------------------------------------------------------ opening and schema
    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> Store:
        """Open the store at ``url`` (default :func:`default_store_url`; a path without ``://`` is a SQLite file).

        A database without hwpareto tables is initialised (hwpareto's and Optuna's tables). An older schema raises
        :class:`SchemaError` unless ``upgrade`` is true; a bad URL, unwritable SQLite path or unreachable server
        raises :class:`HwparetoError`.
        """
        store = cls(*_engine_for(url))
        try:
            store._prepare(upgrade)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def upgrade(cls, url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
        """Run ``alembic upgrade`` on the store at ``url`` to ``revision``; return the revisions before and after."""
        known = _known_revisions()
        if revision != "head" and revision not in known:
            raise InvalidValueError("revision", "head or one of " + ", ".join(known), revision)
        store = cls(*_engine_for(url))
        try:
            with _open_errors(store.url):
                before, after = store._migrate(revision)
                if after == _head():
                    store.optuna_storage()
                return before, after
        finally:
            store.close()

    def revision(self) -> str | None:
        """The store's schema revision (None for a database hwpareto has not initialised)."""
        with self._engine.connect() as conn:
            return _schema_state(conn)[0]

    def _prepare(self, upgrade: bool) -> None:
        with _open_errors(self.url):
            with self._engine.connect() as conn:
                current, has_tables = _schema_state(conn)
            if current == _head():
                return
            self._check_known(current, has_tables)
            if current is not None and not upgrade:
                raise SchemaError(
                    f"store {self.url} has schema revision {current} but this hwpareto needs {_head()}: "
                    f"run 'hwpareto db upgrade --store {self.url}'"
                )
            self._migrate("head")
            self.optuna_storage()

    def _migrate(self, target: str) -> tuple[str | None, str | None]:
        with self.transaction() as conn:
            before, has_tables = _schema_state(conn)
            self._check_known(before, has_tables)
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, target)
            return before, _schema_state(conn)[0]

    def _check_known(self, current: str | None, has_tables: bool) -> None:
        if current is None and has_tables:
            raise SchemaError(
                f"store {self.url} has {TABLE_PREFIX} tables but no schema revision in {VERSION_TABLE}: "
                "it was not created by hwpareto"
            )
        if current is not None and current not in _known_revisions():
            raise SchemaError(
                f"store {self.url} has schema revision {current}, unknown to this hwpareto (which needs {_head()}): "
                "it was written by a newer hwpareto; upgrade hwpareto"
            )

    def optuna_storage(self) -> RDBStorage:
        """Optuna's storage on the same database (its tables are created on first use)."""
        if self._optuna is None:
            from optuna.storages import RDBStorage

            kwargs: dict[str, Any] = {} if self._engine.dialect.name == "sqlite" else {"pool_pre_ping": True}
            self._optuna = RDBStorage(self._url.render_as_string(hide_password=False), engine_kwargs=kwargs)
        return self._optuna

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (SQLite: foreign keys on, WAL, 30 s busy timeout)."""
        return self._engine

    def close(self) -> None:
        """Release every connection (the store's and Optuna's)."""
        if self._optuna is not None:
            self._optuna.engine.dispose()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session in a transaction: committed when the block succeeds, rolled back when it raises."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction holding the store-wide write lock."""
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                yield conn

    # ------------------------------------------------------------------ devices
    def add_device(
        self,
        name: str,
        kind: str,
        spec: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Register a device; an existing one of that name is returned unchanged unless ``replace``."""
        check_name("device.name", name)
        if kind not in DEVICE_KINDS:
            raise InvalidValueError("device.kind", "one of " + ", ".join(DEVICE_KINDS), kind)
        values = {
            "kind": kind,
            "spec_json": _canonical("device.spec", spec),
            "provenance_json": _canonical("device.provenance", provenance or {}),
        }
        with self.transaction() as conn:
            existing = conn.execute(select(Device.id).where(Device.name == name)).scalar_one_or_none()
            if existing is None:
                conn.execute(insert(Device).values(name=name, **values))
            elif replace:
                conn.execute(update(Device).where(Device.id == existing).values(**values))
        return self.get_device(name)

    def get_device(self, name: str) -> dict[str, Any]:
        """The device called ``name`` (see :meth:`list_devices` for the keys)."""
        with self._engine.connect() as conn:
            found = _devices(conn, name)
            if not found:
                raise _unknown_device(conn, name)
        return found[0]

    def list_devices(self) -> list[dict[str, Any]]:
        """Every device: name, kind, spec, provenance, lut_entries, measurements (counts), created_at, updated_at."""
        with self._engine.connect() as conn:
            return _devices(conn)

    # ------------------------------------------------------------------ spaces
    def register_space(self, space: DeclarativeSpace) -> None:
        """Store a declarative space; built-in names are rejected. Stored spaces belong to this store (they are
        not registered process-wide, so two stores may hold different spaces of one name)."""
        if not isinstance(space, DeclarativeSpace):
            raise InvalidValueError("space", "a DeclarativeSpace", type(space).__name__)
        if space.name in BUILTIN_SPACES:
            raise InvalidValueError(
                "space.name", "a name other than the built-ins " + ", ".join(BUILTIN_SPACES), space.name
            )
        document = _canonical("space", space.to_dict())
        with self.transaction() as conn:
            stored = conn.execute(select(Space.definition_json).where(Space.name == space.name)).scalar_one_or_none()
            if stored is not None and stored != document:
                raise InvalidValueError("space.name", "a name not already stored with another definition", space.name)
            if stored is None:
                conn.execute(insert(Space).values(name=space.name, definition_json=document))

    def space(self, name: str) -> SearchSpace:
        """The space called ``name``: a built-in, else one stored here, else one registered in this process."""
        if name in BUILTIN_SPACES:
            return get_space(name)
        with self._engine.connect() as conn:
            stored = conn.execute(select(Space.definition_json).where(Space.name == name)).scalar_one_or_none()
        if stored is not None:
            return space_from_dict(json.loads(stored), source=f"stored space {name!r}")
        try:
            return get_space(name)
        except InvalidValueError:
            raise InvalidValueError("space", "one of " + ", ".join(self.space_names()), name) from None

    def space_names(self) -> list[str]:
        """Built-in, registered and stored space names."""
        with self._engine.connect() as conn:
            stored = conn.execute(select(Space.name).order_by(Space.name)).scalars().all()
        return list(dict.fromkeys([*list_spaces(), *stored]))

    # ------------------------------------------------------------------ measurements
    def add_measurements(self, rows: Iterable[MeasurementIn], *, auto_devices: bool = False) -> WriteResult:
        """Upsert measurements in one transaction: all rows are written or none.

        A row whose key (SubNet, subject, metric, source, batch) exists counts as unchanged when value, std and n
        are equal, else it is updated (a later duplicate in ``rows`` wins). Device subjects must be registered
        unless ``auto_devices``, which registers them with kind ``imported``.
        """
        wanted: dict[tuple[Any, ...], tuple[float, float | None, int | None, str]] = {}
        configs: dict[tuple[str, str], str] = {}
        devices: dict[str, tuple[int, str]] = {}
        known_metrics: set[str] = set()
        for i, row in enumerate(rows):
            value, std, n = _check_measurement(i, row, known_metrics)
            config = row.config
            if (config.space, config.key) not in configs:
                configs[config.space, config.key] = _dumps(config.values)
            if row.subject_kind == "device":
                devices.setdefault(row.subject, (i, row.origin))
            identity = (config.space, config.key, row.subject_kind, row.subject, row.metric, row.source, row.batch)
            wanted[identity] = (value, std, n, row.origin)
        if not wanted:
            return WriteResult(0, 0, 0)
        with self.transaction() as conn:
            device_ids, new_devices = _resolve_devices(conn, devices, auto_devices)
            subnet_ids, old_subnets = _upsert_subnets(conn, configs)
            existing = _existing_measurements(conn, old_subnets)
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
            _bulk_insert(conn, _table(Measurement), new_rows)
            _bulk_update(conn, _table(Measurement), changed)
        return WriteResult(len(new_rows), len(changed), len(wanted) - len(new_rows) - len(changed), new_devices)

    def measurements(
        self,
        space: str | None = None,
        subject: str | None = None,
        subject_kind: str | None = None,
        metric: str | None = None,
        source: str | None = None,
    ) -> pd.DataFrame:
        """Measurements matching every given filter, one row each, in the order they were first written.

        Columns: space, config_key, config_json, subject_kind, subject, metric, value, std, n, batch, source,
        origin.
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
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame.from_records([tuple(row) for row in rows], columns=MEASUREMENT_COLUMNS)
        return frame.astype({"value": "float64", "std": "float64", "n": "Int64", "batch": "int64"})

    def measured_table(
        self, space: str, metric: str, subjects: Sequence[str] | None = None, subject_kind: str = "device"
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
        compiled = query.compile(dialect=self._engine.dialect, compile_kwargs={"render_postcompile": True})
        params: Any = compiled.construct_params()
        if compiled.positiontup is not None:
            params = tuple(params[name] for name in compiled.positiontup)
        with self._engine.connect() as conn:  # plain DB-API rows: 200k values in a fraction of a second
            cursor = conn.connection.cursor()
            try:
                cursor.execute(str(compiled), params)
                rows = cursor.fetchall()
            finally:
                cursor.close()
        frame = pd.DataFrame(rows, columns=["config_key", "subject", "value"])
        wide = frame.astype({"value": "float64"}).groupby(["config_key", "subject"])["value"].median().unstack()
        columns = sorted(wide.columns) if subjects is None else list(subjects)
        return wide.reindex(columns=columns).rename_axis(columns=None)

    def measurement_summary(self) -> list[dict[str, Any]]:
        """Measurement counts per (space, subject_kind, subject, metric, source)."""
        m = Measurement
        groups = (SubNet.space, m.subject_kind, m.subject, m.metric, m.source)
        query = select(*groups, func.count()).join(SubNet, SubNet.id == m.subnet_id).group_by(*groups)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(*groups)).all()
        keys = ("space", "subject_kind", "subject", "metric", "source", "count")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ layer LUTs
    def add_lut_entries(self, device: str, rows: Iterable[Mapping[str, Any]]) -> WriteResult:
        """Upsert the per-layer costs of ``device`` in one transaction, keyed by (layer_key, batch).

        Each row holds layer_key, op, spec_json (JSON text or a mapping), latency_ms_mean, latency_ms_std, n and
        optionally batch (1), energy_mj_mean, energy_mj_std (None) and source ("measured").
        """
        wanted = {(row["layer_key"], row["batch"]): row for row in (_check_lut(i, r) for i, r in enumerate(rows))}
        compared = [c for c in LUT_COLUMNS if c not in ("layer_key", "batch")]
        with self.transaction() as conn:
            device_id = conn.execute(select(Device.id).where(Device.name == device)).scalar_one_or_none()
            if device_id is None:
                raise _unknown_device(conn, device)
            existing = {
                (row.layer_key, row.batch): row
                for row in conn.execute(select(LutEntry).where(LutEntry.device_id == device_id))
            }
            new_rows: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            for key, row in wanted.items():
                found = existing.get(key)
                if found is None:
                    new_rows.append({"device_id": device_id, **row})
                elif any(getattr(found, c) != row[c] for c in compared):
                    changed.append({"id": found.id, **{c: row[c] for c in compared}})
            _bulk_insert(conn, _table(LutEntry), new_rows)
            _bulk_update(conn, _table(LutEntry), changed)
        return WriteResult(len(new_rows), len(changed), len(wanted) - len(new_rows) - len(changed))

    def lut(self, device: str, batch: int = 1) -> pd.DataFrame:
        """The LUT of ``device`` at ``batch``, sorted by layer_key (columns: ``LUT_COLUMNS``)."""
        query = (
            select(*(getattr(LutEntry, c) for c in LUT_COLUMNS))
            .join(Device, Device.id == LutEntry.device_id)
            .where(Device.name == device, LutEntry.batch == batch)
            .order_by(LutEntry.layer_key)
        )
        with self._engine.connect() as conn:
            if conn.execute(select(Device.id).where(Device.name == device)).first() is None:
                raise _unknown_device(conn, device)
            rows = conn.execute(query).all()
        return pd.DataFrame.from_records([tuple(row) for row in rows], columns=LUT_COLUMNS)

    # ------------------------------------------------------------------ predictors
    def save_predictor(
        self,
        name: str,
        *,
        kind: str,
        space: str,
        metric: str,
        blob: bytes,
        meta: Mapping[str, Any],
        device: str | None = None,
        dataset: str | None = None,
        fmt: str = "hwpareto-predictor",
    ) -> None:
        """Store (or replace) predictor ``name``: portable ``blob`` plus JSON ``meta`` (metrics, versions...)."""
        check_name("predictor.name", name)
        if kind not in PREDICTOR_KINDS:
            raise InvalidValueError("predictor.kind", "one of " + ", ".join(PREDICTOR_KINDS), kind)
        if not isinstance(blob, bytes) or not blob:
            raise InvalidValueError("predictor.blob", "non-empty bytes", type(blob).__name__)
        values = {
            "name": name,
            "kind": kind,
            "space": space,
            "dataset": dataset,
            "metric": metric,
            "format": fmt,
            "blob": blob,
            "meta_json": _canonical("predictor.meta", meta),
        }
        with self.transaction() as conn:
            if device is not None:
                device_id = conn.execute(select(Device.id).where(Device.name == device)).scalar_one_or_none()
                if device_id is None:
                    raise _unknown_device(conn, device)
                values["device_id"] = device_id
            conn.execute(delete(Predictor).where(Predictor.name == name))
            conn.execute(insert(Predictor).values(**values))

    def load_predictor(self, name: str) -> dict[str, Any]:
        """Predictor ``name``: its fields, ``meta`` (dict) and ``blob`` (bytes, to be parsed, never unpickled)."""
        with self._engine.connect() as conn:
            row = conn.execute(_predictor_query().add_columns(Predictor.blob).where(Predictor.name == name)).first()
            if row is None:
                known = conn.execute(select(Predictor.name).order_by(Predictor.name)).scalars().all()
                allowed = "one of " + ", ".join(known) if known else "a trained predictor (none yet: hwpareto train)"
                raise InvalidValueError("predictor", allowed, name)
        return {**_predictor_dict(row), "blob": bytes(row.blob)}

    def list_predictors(self, space: str | None = None) -> list[dict[str, Any]]:
        """All predictors (without blobs), optionally of one space, by name."""
        query = _predictor_query().order_by(Predictor.name)
        if space is not None:
            query = query.where(Predictor.space == space)
        with self._engine.connect() as conn:
            return [_predictor_dict(row) for row in conn.execute(query)]

    def update_predictor_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        """Replace the JSON metadata of predictor ``name`` (e.g. to append a drift check)."""
        with self.transaction() as conn:
            updated = conn.execute(
                update(Predictor).where(Predictor.name == name).values(meta_json=_canonical("predictor.meta", meta))
            ).rowcount
            if not updated:
                raise InvalidValueError("predictor", "a trained predictor", name)

    # ------------------------------------------------------------------ searches (the job queue)
    def submit_search(self, name: str, space: str, params: Mapping[str, Any], n_trials: int) -> dict[str, Any]:
        """Queue a search (its Optuna study is called ``name``); a name already used raises InvalidValueError."""
        check_name("search.name", name)
        with self.transaction() as conn:
            if conn.execute(select(Search.id).where(Search.name == name)).first() is not None:
                raise InvalidValueError("search name", "a name not used by another search", name)
            conn.execute(
                insert(Search).values(
                    name=name,
                    space=space,
                    params_json=_canonical("search", params),
                    status="queued",
                    n_trials=n_trials,
                    study_name=name,
                )
            )
        return self.get_search(name)

    def get_search(self, name: str) -> dict[str, Any]:
        """One search's row as a dict (``params`` parsed)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(Search).where(Search.name == name)).first()
            if row is None:
                known = conn.execute(select(Search.name).order_by(Search.id.desc()).limit(20)).scalars().all()
                raise InvalidValueError("search", "one of " + ", ".join(known) if known else "a submitted search", name)
        return _search_dict(row)

    def list_searches(self) -> list[dict[str, Any]]:
        """All searches, newest first."""
        with self._engine.connect() as conn:
            return [_search_dict(row) for row in conn.execute(select(Search).order_by(Search.id.desc()))]

    def delete_search(self, name: str) -> bool:
        """Remove search ``name``'s row (not its Optuna study); False when there is none. A queued or running
        search raises InvalidValueError (cancel it first)."""
        with self.transaction() as conn:
            status = conn.execute(select(Search.status).where(Search.name == name)).scalar_one_or_none()
            if status is None:
                return False
            if status in ("queued", "running"):
                raise InvalidValueError(f"search {name!r}", "a finished, failed or cancelled search to delete", status)
            conn.execute(delete(Search).where(Search.name == name))
        return True

    def claim_search(self, worker: str, name: str | None = None, stale_after_s: float = 30.0) -> dict[str, Any] | None:
        """Atomically give ``worker`` a search to run: the oldest queued one (or ``name``), or a running one whose
        worker stopped sending heartbeats ``stale_after_s`` ago (it resumes from the stored trials)."""
        now = utcnow()
        stale = now - timedelta(seconds=stale_after_s)
        with self.transaction() as conn:
            query = (
                select(Search)
                .where((Search.status == "queued") | ((Search.status == "running") & (Search.heartbeat_at < stale)))
                .order_by(Search.id)
            )
            if name is not None:
                query = query.where(Search.name == name)
            row = conn.execute(query.limit(1)).first()
            if row is None:
                return None
            conn.execute(
                update(Search)
                .where(Search.id == row.id)
                .values(status="running", worker=worker, heartbeat_at=now, error=None)
            )
        return self.get_search(row.name)

    def requeue_search(self, name: str, n_trials: int | None = None) -> None:
        """Put a finished, failed or queued search back in the queue (to retry, or to run up to ``n_trials``)."""
        values: dict[str, Any] = {"status": "queued", "worker": None, "error": None}
        with self.transaction() as conn:
            if n_trials is not None:
                params = conn.execute(select(Search.params_json).where(Search.name == name)).scalar_one()
                values.update(
                    n_trials=n_trials, params_json=_canonical("search", {**json.loads(params), "n_trials": n_trials})
                )
            conn.execute(update(Search).where(Search.name == name, Search.status != "running").values(**values))

    def heartbeat_search(self, name: str, worker: str, trials_done: int) -> bool:
        """Record progress; False when ``worker`` no longer owns the search (taken over or cancelled)."""
        with self._engine.begin() as conn:
            updated = conn.execute(
                update(Search)
                .where(Search.name == name, Search.worker == worker, Search.status == "running")
                .values(heartbeat_at=utcnow(), trials_done=trials_done)
            ).rowcount
        return bool(updated)

    def finish_search(
        self, name: str, worker: str, status: str, error: str | None = None, trials_done: int | None = None
    ) -> None:
        """Mark ``worker``'s search done, failed or cancelled."""
        if status not in SEARCH_STATUSES:
            raise InvalidValueError("search.status", "one of " + ", ".join(SEARCH_STATUSES), status)
        values: dict[str, Any] = {"status": status, "error": error, "heartbeat_at": utcnow()}
        if trials_done is not None:
            values["trials_done"] = trials_done
        with self._engine.begin() as conn:
            conn.execute(update(Search).where(Search.name == name, Search.worker == worker).values(**values))

    # ------------------------------------------------------------------ exports
    def add_export(self, config: SubNetConfig, path: str | os.PathLike[str], files: Mapping[str, Any]) -> None:
        """Record that SubNet ``config`` was exported to ``path`` (``files``: name -> details, JSON-ready)."""
        if not isinstance(config, SubNetConfig):
            raise InvalidValueError("export.config", "a SubNetConfig", type(config).__name__)
        values = {
            "space": config.space,
            "config_key": config.key,
            "config_json": _dumps(config.values),
            "path": os.fspath(path),
            "files_json": _canonical("export.files", files),
        }
        with self._engine.begin() as conn:
            conn.execute(insert(Export).values(**values))


# ---------------------------------------------------------------------- URLs and engines
def _engine_for(raw: str | None) -> tuple[Engine, URL]:
    """Parse ``raw`` and build its engine (nothing is connected or created on the server yet)."""
    url = _parse_url(default_store_url() if raw is None else raw)
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, hide_parameters=True)  # errors never show stored values
            _configure_sqlite(engine)
        else:
            fail_fast = url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query
            connect_args = {"connect_timeout": 5} if fail_fast else {}
            engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)
    except ImportError as exc:
        raise _url_error(
            url.render_as_string(hide_password=True), f"driver module {exc.name!r} is not installed"
        ) from None
    except ArgumentError as exc:
        raise _url_error(url.render_as_string(hide_password=True), str(exc).splitlines()[0]) from None
    return engine, url


def _parse_url(raw: str) -> URL:
    if not raw.strip():
        raise _url_error(raw, "empty")
    if "://" not in raw and (":" not in raw or raw.startswith(("/", "./", "../", "~"))):
        return _sqlite_url(Path(raw))
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise _url_error(_mask_password(raw), "not a valid URL") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise _url_error(_mask_password(raw), f"unknown database dialect or driver {url.drivername!r}") from None
    if url.get_backend_name() != "sqlite":
        return url
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        raise _url_error(raw, "an in-memory database cannot hold a store")
    return _sqlite_url(Path(url.database), url)


def _sqlite_url(path: Path, url: URL | None = None) -> URL:
    """Check that SQLite can create or write ``path`` (raising before anything is changed), then make its folder."""
    path = path.expanduser().absolute()

    def fail(reason: str) -> HwparetoError:
        return HwparetoError(f"store path '{path}': {reason}")

    if path.is_dir():
        raise fail("is a directory")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise fail("the file is read-only")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise fail(f"'{folder}' is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(f"directory '{folder}' is not writable")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create directory '{path.parent}' ({exc.strerror})") from None
    return (url or URL.create("sqlite")).set(database=str(path))


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys, WAL, 30 s busy timeout; transactions are begun by SQLAlchemy (``IMMEDIATE`` for writers)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("foreign_keys=ON", "busy_timeout=30000", "journal_mode=WAL", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")


def _url_error(shown: str, reason: str) -> HwparetoError:
    return HwparetoError(f"store URL '{shown}': {reason}; {_EXPECTED_URL}")


def _mask_password(raw: str) -> str:
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", raw)


@contextmanager
def _open_errors(shown: str) -> Iterator[None]:
    """Turn driver errors (server unreachable, database missing, not a database file) into one-line errors."""
    try:
        yield
    except DBAPIError as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        raise HwparetoError(f"cannot open store {shown}: {reason[0] if reason else type(exc.orig).__name__}") from None


# ---------------------------------------------------------------------- Alembic
def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _head() -> str | None:
    return _scripts().get_current_head()


@cache
def _known_revisions() -> list[str]:
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def _schema_state(conn: Connection) -> tuple[str | None, bool]:
    """The store's revision and whether any other ``hwp_`` table exists."""
    tables = inspect(conn).get_table_names()
    has_tables = any(t.startswith(TABLE_PREFIX) and t != VERSION_TABLE for t in tables)
    if VERSION_TABLE not in tables:
        return None, has_tables
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision(), has_tables


# ---------------------------------------------------------------------- validation and JSON
def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _canonical(field: str, value: Any) -> str:
    if not isinstance(value, Mapping):
        raise InvalidValueError(field, "a mapping", value)
    try:
        return _dumps(value)
    except (TypeError, ValueError):
        raise InvalidValueError(field, "JSON-serialisable values (finite numbers)", value) from None


def _check_text(field: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length or value != value.strip():
        raise InvalidValueError(field, f"a non-empty name of at most {max_length} characters", value)
    return value


def _count(field: str, value: Any) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return int(value)
    raise InvalidValueError(field, "a positive integer", value)


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
        if not isinstance(row.metric, str) or len(row.metric) > 64 or not _METRIC.match(row.metric):
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
    _count(f"{where}.batch", row.batch)
    value = check_metric_value(f"{where}.value", row.metric, row.value)
    std = None if row.std is None else check_metric_value(f"{where}.std", row.metric, row.std, std=True)
    n = None if row.n is None else _count(f"{where}.n", row.n)
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
    out["spec_json"] = _canonical(f"{where}.spec_json", spec)
    for name in ("latency_ms_mean", "latency_ms_std", "energy_mj_mean", "energy_mj_std"):
        if out[name] is not None or name.startswith("latency"):
            metric, stat = name.rsplit("_", 1)  # latency_ms, energy_mj: one layer's cost may be 0
            out[name] = check_metric_value(f"{where}.{name}", metric, out[name], std=stat == "std", per_layer=True)
    out["n"] = _count(f"{where}.n", out["n"])
    out["batch"] = _count(f"{where}.batch", out["batch"])
    if out["source"] not in SOURCES:
        raise InvalidValueError(f"{where}.source", "one of " + ", ".join(SOURCES), out["source"])
    return out


# ---------------------------------------------------------------------- queries
def _devices(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    lut = select(LutEntry.device_id, func.count().label("n")).group_by(LutEntry.device_id).subquery()
    measured = (
        select(Measurement.device_id, func.count().label("n"))
        .where(Measurement.device_id.is_not(None))
        .group_by(Measurement.device_id)
        .subquery()
    )
    query = (
        select(
            Device.name,
            Device.kind,
            Device.spec_json,
            Device.provenance_json,
            func.coalesce(lut.c.n, 0),
            func.coalesce(measured.c.n, 0),
            Device.created_at,
            Device.updated_at,
        )
        .outerjoin(lut, lut.c.device_id == Device.id)
        .outerjoin(measured, measured.c.device_id == Device.id)
        .order_by(Device.name)
    )
    if name is not None:
        query = query.where(Device.name == name)
    return [
        {
            "name": row[0],
            "kind": row[1],
            "spec": json.loads(row[2]),
            "provenance": json.loads(row[3]),
            "lut_entries": row[4],
            "measurements": row[5],
            "created_at": row[6].isoformat(),
            "updated_at": row[7].isoformat(),
        }
        for row in conn.execute(query)
    ]


def _unknown_device(conn: Connection, name: str, field: str = "device", alternative: str = "") -> InvalidValueError:
    known = conn.execute(select(Device.name).order_by(Device.name).limit(21)).scalars().all()
    if not known:
        allowed = "a registered device (none registered yet: run hwpareto profile or hwpareto import)"
    else:
        allowed = "one of " + ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return InvalidValueError(field, allowed + alternative, name)


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
        raise _unknown_device(conn, missing[0], field, " or auto_devices=True")
    if missing:
        rows = [
            {
                "name": name,
                "kind": "imported",
                "spec_json": _dumps({"source": first_rows[name][1]}),
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
    _bulk_insert(conn, _table(SubNet), new)
    ids.update(_subnet_ids(conn, [(row["space"], row["key"]) for row in new]))
    return ids, existed


def _subnet_ids(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    by_space: dict[str, list[str]] = {}
    for space, key in keys:
        by_space.setdefault(space, []).append(key)
    ids: dict[tuple[str, str], int] = {}
    for space, space_keys in by_space.items():
        for chunk in _chunks(space_keys):
            query = select(SubNet.key, SubNet.id).where(SubNet.space == space, SubNet.key.in_(chunk))
            ids.update(((space, key), subnet_id) for key, subnet_id in conn.execute(query))
    return ids


def _existing_measurements(conn: Connection, subnet_ids: Sequence[int]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Measurements of the given SubNets: key -> (id, value, std, n)."""
    m = Measurement
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for chunk in _chunks(subnet_ids):
        query = select(
            m.subnet_id, m.subject_kind, m.subject, m.metric, m.source, m.batch, m.id, m.value, m.std, m.n
        ).where(m.subnet_id.in_(chunk))
        found.update((tuple(row[:6]), tuple(row[6:])) for row in conn.execute(query))
    return found


def _table(entity: type[Base]) -> Table:
    return Base.metadata.tables[entity.__tablename__]


def _bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys): COPY on PostgreSQL, chunked executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table.name, list(rows[0]), rows)
        return
    for chunk in _chunks(rows, 20_000):
        conn.execute(insert(table), chunk)


def _bulk_update(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the columns of every row by ``id`` (PostgreSQL: COPY into a temporary table, then one UPDATE)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    if conn.dialect.name == "postgresql":
        staging = f"{table.name}_staging"
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {staging} AS SELECT id, {', '.join(columns)} FROM {table.name} WITH NO DATA"
        )
        _copy(conn, staging, ["id", *columns], rows)
        assignments = ", ".join(f"{c} = s.{c}" for c in columns)
        conn.exec_driver_sql(f"UPDATE {table.name} AS t SET {assignments} FROM {staging} AS s WHERE t.id = s.id")
        conn.exec_driver_sql(f"DROP TABLE {staging}")
        return
    statement = update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(f"_{c}") for c in columns})
    for chunk in _chunks(rows, 20_000):
        conn.execute(statement, [{f"_{k}": v for k, v in row.items()} for row in chunk])


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` through psycopg, inside the connection's transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _predictor_query() -> Any:
    return select(
        Predictor.name,
        Predictor.kind,
        Predictor.space,
        Device.name.label("device"),
        Predictor.dataset,
        Predictor.metric,
        Predictor.format,
        Predictor.meta_json,
        Predictor.created_at,
    ).outerjoin(Device, Device.id == Predictor.device_id)


def _predictor_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "space": row.space,
        "device": row.device,
        "dataset": row.dataset,
        "metric": row.metric,
        "format": row.format,
        "meta": json.loads(row.meta_json),
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def _search_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "space": row.space,
        "params": json.loads(row.params_json),
        "status": row.status,
        "n_trials": row.n_trials,
        "trials_done": row.trials_done,
        "study_name": row.study_name,
        "worker": row.worker,
        "heartbeat_at": row.heartbeat_at.isoformat() if row.heartbeat_at else None,
        "error": row.error,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }
