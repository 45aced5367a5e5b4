"""Every access to Optuna's own tables and private API, in one module.

hwpareto keeps its searches' trials in Optuna studies (``optuna.load_study`` and optuna-dashboard read them
unchanged) but reads and writes them in bulk, beside Optuna's storage: the tables and columns relied on are
declared once in :data:`OPTUNA_TABLES` (``tests/test_optuna_schema.py`` fails, naming table and column, when
Optuna's schema no longer has them), and the private attributes of :class:`optuna.Study` are read here only.

Writes. Optuna's storage commits every trial operation separately (a few trials per second on SQLite). A surrogate
search finishes a whole generation at once, so :func:`bulk_add_trials` writes it in one transaction with
``executemany``: the trials (numbers assigned under the store's write lock, as Optuna's own ``count_past_trials``
would), their values, parameters (Optuna's internal representation and distribution JSON), user and system
attributes.

Constraints are written twice, as the two readers expect them: ``constraints:<name>`` per budget (what
``Trial.set_constraint`` writes; hwpareto reads it back by name) and the list ``constraints`` in the row's name
order (what ``constraints_func`` in Optuna's samplers writes, ``_CONSTRAINTS_KEY``; optuna-dashboard reads only
this one). Optuna 5's ``FrozenTrial.constraints`` therefore lists each budget twice, under its name and under its
position (``"0"``, ``"1"``, ...); feasibility (every value <= 0) is the same either way.

Reads return plain Python values, NumPy arrays or DataFrames; a study name that does not exist raises
InvalidValueError. Every function takes the store (its own connection) or, where a caller combines it with other
writes, a connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Enum,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from hwpareto.errors import InvalidValueError
from hwpareto.store._db import Database
from hwpareto.store._sql import chunks, fetch_raw

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CONSTRAINTS_KEY",
    "CONSTRAINT_PREFIX",
    "OPTUNA_TABLES",
    "StudyRow",
    "TrialRow",
    "bulk_add_trials",
    "completed_marker",
    "completed_trials",
    "find_study",
    "last_generation",
    "load_trials",
    "set_study_system_attr",
    "studies_with_user_attr",
    "study_id",
    "trial_system_attr",
    "trial_values",
    "user_attr_by_number",
]

CONSTRAINT_PREFIX = "constraints:"  # Optuna 5 keeps each named constraint as system attribute "constraints:<name>"
CONSTRAINTS_KEY = "constraints"  # Optuna's _CONSTRAINTS_KEY: the list constraints_func and optuna-dashboard use
_COMPLETE = TrialState.COMPLETE.name  # trials.state holds the TrialState's name

_META = MetaData()


def _attribute() -> tuple[Column[str], Column[str]]:
    return Column("key", String(512)), Column("value_json", Text)


OPTUNA_TABLES: Mapping[str, Table] = {
    t.name: t
    for t in (
        Table("studies", _META, Column("study_id", Integer, primary_key=True), Column("study_name", String(512))),
        Table("study_user_attributes", _META, Column("study_id", Integer), *_attribute()),
        Table("study_system_attributes", _META, Column("study_id", Integer), *_attribute()),
        Table(
            "trials",
            _META,
            Column("trial_id", Integer, primary_key=True),
            Column("number", Integer),
            Column("study_id", Integer),
            Column("state", Enum(*TrialState.__members__, name="trialstate")),
            Column("datetime_start", DateTime),
            Column("datetime_complete", DateTime),
        ),
        Table(
            "trial_values",
            _META,
            Column("trial_id", Integer),
            Column("objective", Integer),
            Column("value", Float(precision=53)),
            Column("value_type", Enum("FINITE", "INF_POS", "INF_NEG", name="trialvaluetype")),
        ),
        Table(
            "trial_params",
            _META,
            Column("trial_id", Integer),
            Column("param_name", String(512)),
            Column("param_value", Float(precision=53)),
            Column("distribution_json", Text),
        ),
        Table("trial_user_attributes", _META, Column("trial_id", Integer), *_attribute()),
        Table("trial_system_attributes", _META, Column("trial_id", Integer), *_attribute()),
    )
}
"""The tables and columns of Optuna's RDB schema hwpareto reads and writes directly (a subset of each table)."""
_STUDIES, _STUDY_USER = OPTUNA_TABLES["studies"], OPTUNA_TABLES["study_user_attributes"]
_STUDY_SYSTEM = OPTUNA_TABLES["study_system_attributes"]
_TRIALS, _VALUES = OPTUNA_TABLES["trials"], OPTUNA_TABLES["trial_values"]
_USER, _SYSTEM = OPTUNA_TABLES["trial_user_attributes"], OPTUNA_TABLES["trial_system_attributes"]


# ---------------------------------------------------------------------- Optuna's private API
def study_id(study: optuna.Study) -> int:
    """The storage id of ``study`` (Optuna keeps it private)."""
    return int(study._study_id)


def set_study_system_attr(db: Database, study_id: int, key: str, value: Any) -> None:
    """Set system attribute ``key`` of study ``study_id`` to ``value`` (what Optuna's samplers write, e.g. NSGA-II's
    parent cache) as Optuna's storage does (its JSON, replacing an earlier value), in one short transaction: a
    search writes one per generation, and Optuna's own session took ten times as long."""
    text = json.dumps(value)
    where = (_STUDY_SYSTEM.c.study_id == study_id) & (_STUDY_SYSTEM.c.key == key)
    with db.transaction() as conn:
        if not conn.execute(update(_STUDY_SYSTEM).where(where).values(value_json=text)).rowcount:
            conn.execute(insert(_STUDY_SYSTEM).values(study_id=study_id, key=key, value_json=text))


# ---------------------------------------------------------------------- writes
@dataclass(frozen=True, slots=True)
class TrialRow:
    """One finished trial: external parameter values with their distributions, objective values (None for a
    failed trial), named constraint values (<= 0 feasible, as ``Trial.set_constraint``), user attributes and
    further system attributes (JSON-ready values)."""

    params: Mapping[str, Any]
    distributions: Mapping[str, BaseDistribution]
    values: Sequence[float] | None
    constraints: Mapping[str, float] | None = None
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    state: TrialState = TrialState.COMPLETE
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


def _naive_utc(moment: datetime | None) -> datetime:
    """Optuna stores naive UTC datetimes."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _stored_value(value: float) -> tuple[float | None, str]:
    """``trial_values``' (value, value_type) of an objective value (infinities are stored as a type, no value)."""
    if value == float("inf"):
        return None, "INF_POS"
    if value == float("-inf"):
        return None, "INF_NEG"
    return value, "FINITE"


def bulk_add_trials(
    db: Database,
    study_id: int,
    rows: Sequence[TrialRow],
    *,
    started: datetime | None = None,
    completed: datetime | None = None,
) -> list[int]:
    """Insert ``rows`` as trials of Optuna study ``study_id`` in one transaction; returns their trial ids (in row
    order). ``started`` and ``completed`` (default: now) are every trial's ``datetime_start`` and
    ``datetime_complete``: the window in which the rows were proposed and evaluated."""
    if not rows:
        return []
    end = _naive_utc(completed)
    begin = min(_naive_utc(started), end) if started is not None else end
    with db.transaction() as conn:
        count = conn.execute(
            select(func.count()).select_from(_TRIALS).where(_TRIALS.c.study_id == study_id)
        ).scalar_one()
        ids = (
            conn.execute(
                insert(_TRIALS).returning(_TRIALS.c.trial_id, sort_by_parameter_order=True),
                [
                    {
                        "number": count + i,
                        "study_id": study_id,
                        "state": row.state.name,
                        "datetime_start": begin,
                        "datetime_complete": end,
                    }
                    for i, row in enumerate(rows)
                ],
            )
            .scalars()
            .all()
        )
        values: list[tuple[Any, ...]] = []
        params: list[tuple[Any, ...]] = []
        users: list[tuple[Any, ...]] = []
        systems: list[tuple[Any, ...]] = []
        dist_json: dict[int, str] = {}
        for trial_id, row in zip(ids, rows, strict=True):
            for objective, value in enumerate(row.values or ()):
                values.append((trial_id, objective, *_stored_value(float(value))))
            for name, value in row.params.items():
                dist = row.distributions[name]
                text = dist_json.get(id(dist))
                if text is None:
                    text = dist_json[id(dist)] = distribution_to_json(dist)
                params.append((trial_id, name, dist.to_internal_repr(value), text))
            users.extend((trial_id, k, json.dumps(v)) for k, v in row.user_attrs.items())
            systems.extend(
                (trial_id, CONSTRAINT_PREFIX + name, json.dumps(float(value)))
                for name, value in (row.constraints or {}).items()
            )
            if row.constraints:
                systems.append((trial_id, CONSTRAINTS_KEY, json.dumps([float(v) for v in row.constraints.values()])))
            systems.extend((trial_id, k, json.dumps(v)) for k, v in row.system_attrs.items())
        # plain DB-API: SQLAlchemy's per-row parameter processing would dominate at ~50 rows a trial;
        # PostgreSQL takes COPY, SQLite executemany
        for table, batch in (
            (_VALUES, values),
            (OPTUNA_TABLES["trial_params"], params),
            (_USER, users),
            (_SYSTEM, systems),
        ):
            if batch:
                _insert_raw(conn, table, batch)
    return list(ids)


def _insert_raw(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert tuples in the order of ``table``'s declared columns through the DB-API (COPY on PostgreSQL)."""
    columns = ", ".join(c.name for c in table.columns)
    if conn.dialect.name == "postgresql":
        cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for record in rows:
                copy.write_row(record)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join([mark] * len(table.columns))})", list(rows)
    )


# ---------------------------------------------------------------------- reads
@dataclass(frozen=True, slots=True)
class StudyRow:
    """A study with one of its user attributes (JSON text) and its number of completed trials."""

    name: str
    user_attr_json: str
    completed_trials: int


def find_study(db: Database, name: str, user_attr: str | None = None) -> tuple[int, str | None] | None:
    """Study ``name``'s id and the JSON text of its user attribute ``user_attr`` (None when unset or not asked
    for); None when the store holds no such study."""
    db.optuna_storage()  # creates Optuna's tables in a new store
    with db.read() as conn:
        found = conn.execute(select(_STUDIES.c.study_id).where(_STUDIES.c.study_name == name)).scalar_one_or_none()
        if found is None or user_attr is None:
            return None if found is None else (int(found), None)
        value = conn.execute(
            select(_STUDY_USER.c.value_json).where(_STUDY_USER.c.study_id == found, _STUDY_USER.c.key == user_attr)
        ).scalar_one_or_none()
    return int(found), value


def _study_id_of(conn: Connection, name: str) -> int:
    found = conn.execute(select(_STUDIES.c.study_id).where(_STUDIES.c.study_name == name)).scalar_one_or_none()
    if found is None:
        raise InvalidValueError("study", "an existing study in the store", name)
    return int(found)


def studies_with_user_attr(db: Database, key: str, *, count: bool = True) -> list[StudyRow]:
    """The studies that have user attribute ``key``, newest first, with the attribute's JSON text and (when
    ``count``, else 0) their completed trials."""
    completed = (
        select(func.count())
        .where(_TRIALS.c.study_id == _STUDIES.c.study_id, _TRIALS.c.state == _COMPLETE)
        .scalar_subquery()
    )
    query = (
        select(_STUDIES.c.study_name, _STUDY_USER.c.value_json, completed if count else func.abs(0))
        .join(_STUDY_USER, _STUDY_USER.c.study_id == _STUDIES.c.study_id)
        .where(_STUDY_USER.c.key == key)
        .order_by(_STUDIES.c.study_id.desc())
    )
    db.optuna_storage()  # creates Optuna's tables in a new store
    with db.read() as conn:
        return [StudyRow(str(name), value, int(n)) for name, value, n in conn.execute(query)]


def completed_marker(db: Database, study: str) -> tuple[int, int]:
    """(completed trials, newest trial id) of study ``study`` ((0, 0) for none): changes whenever trials are
    added."""
    query = (
        select(func.count(), func.coalesce(func.max(_TRIALS.c.trial_id), 0))
        .join(_STUDIES, _STUDIES.c.study_id == _TRIALS.c.study_id)
        .where(_STUDIES.c.study_name == study, _TRIALS.c.state == _COMPLETE)
    )
    with db.read() as conn:
        count, newest = conn.execute(query).one()
    return int(count), int(newest)


def completed_trials(db: Database, study_id: int, user_attr: str) -> list[tuple[int, int, str | None]]:
    """(trial_id, number, JSON text of user attribute ``user_attr`` or None) of the study's completed trials, by
    trial id."""
    query = (
        select(_TRIALS.c.trial_id, _TRIALS.c.number, _USER.c.value_json)
        .outerjoin(_USER, (_USER.c.trial_id == _TRIALS.c.trial_id) & (_USER.c.key == user_attr))
        .where(_TRIALS.c.study_id == study_id, _TRIALS.c.state == _COMPLETE)
        .order_by(_TRIALS.c.trial_id)
    )
    with db.read() as conn:
        return [(int(i), int(n), v) for i, n, v in fetch_raw(conn, query)]


def user_attr_by_number(db: Database, study_id: int, key: str, numbers: Sequence[int]) -> dict[int, Any]:
    """Trial number -> parsed user attribute ``key`` of the study's trials ``numbers`` (those that have it)."""
    out: dict[int, Any] = {}
    with db.read() as conn:
        for chunk in chunks(list(numbers), 500):
            query = (
                select(_TRIALS.c.number, _USER.c.value_json)
                .join(_TRIALS, _TRIALS.c.trial_id == _USER.c.trial_id)
                .where(_TRIALS.c.study_id == study_id, _USER.c.key == key, _TRIALS.c.number.in_(list(chunk)))
            )
            out.update((int(n), json.loads(v)) for n, v in fetch_raw(conn, query))
    return out


def trial_values(db: Database, study_id: int) -> pd.DataFrame:
    """Every objective value of the study's trials: columns trial_id, objective, value (infinities restored)."""
    query = (
        select(_VALUES.c.trial_id, _VALUES.c.objective, _VALUES.c.value, _VALUES.c.value_type)
        .join(_TRIALS, _TRIALS.c.trial_id == _VALUES.c.trial_id)
        .where(_TRIALS.c.study_id == study_id)
    )
    with db.read() as conn:
        rows = fetch_raw(conn, query)
    table = pd.DataFrame.from_records(rows, columns=["trial_id", "objective", "value", "value_type"])
    kind = table["value_type"].to_numpy()
    stored = table["value"].to_numpy(float, na_value=np.nan)
    value = np.where(kind == "INF_POS", np.inf, np.where(kind == "INF_NEG", -np.inf, stored))
    return pd.DataFrame(
        {
            "trial_id": table["trial_id"].to_numpy(np.int64),
            "objective": table["objective"].to_numpy(np.int64),
            "value": value.astype(float),
        }
    )


def trial_system_attr(db: Database, study_id: int, key: str) -> list[tuple[int, Any]]:
    """(trial_id, parsed value) of system attribute ``key`` of the study's trials that have it."""
    query = (
        select(_SYSTEM.c.trial_id, _SYSTEM.c.value_json)
        .join(_TRIALS, _TRIALS.c.trial_id == _SYSTEM.c.trial_id)
        .where(_TRIALS.c.study_id == study_id, _SYSTEM.c.key == key)
    )
    with db.read() as conn:
        return [(int(i), json.loads(v)) for i, v in fetch_raw(conn, query)]


def last_generation(db: Database, study_id: int, key: str) -> int:
    """The highest generation stored under trial system attribute ``key`` in the study (-1: none)."""
    return max((int(v) for _, v in trial_system_attr(db, study_id, key)), default=-1)


def load_trials(db: Database, study_name: str) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Completed trials of a study read in bulk: per trial ``number``, ``trial_id``, ``config`` (values) and
    ``config_key`` (user attributes), the objective values (n, m) and the named constraint values (n, k) in
    first-seen name order."""
    with db.read() as conn:
        sid = _study_id_of(conn, study_name)
    ids = {trial_id: number for trial_id, number, _ in completed_trials(db, sid, "config_key")}
    with db.read() as conn:
        attrs: dict[str, dict[int, Any]] = {"config": {}, "config_key": {}}
        for row in conn.execute(
            select(_USER.c.trial_id, _USER.c.key, _USER.c.value_json)
            .join(_TRIALS, _TRIALS.c.trial_id == _USER.c.trial_id)
            .where(_TRIALS.c.study_id == sid, _USER.c.key.in_(list(attrs)))
        ):
            attrs[row.key][row.trial_id] = json.loads(row.value_json)
        named: dict[int, dict[str, float]] = {}
        for row in conn.execute(
            select(_SYSTEM.c.trial_id, _SYSTEM.c.key, _SYSTEM.c.value_json)
            .join(_TRIALS, _TRIALS.c.trial_id == _SYSTEM.c.trial_id)
            .where(_TRIALS.c.study_id == sid, _SYSTEM.c.key.like(CONSTRAINT_PREFIX + "%"))
        ):
            named.setdefault(row.trial_id, {})[row.key[len(CONSTRAINT_PREFIX) :]] = json.loads(row.value_json)
    order = sorted(ids, key=ids.__getitem__)
    position = {trial_id: i for i, trial_id in enumerate(order)}
    stored = trial_values(db, sid)
    n_obj = 1 + int(stored["objective"].max()) if len(stored) else 1
    values = np.full((len(order), n_obj), np.nan)
    for trial_id, objective, value in stored.itertuples(index=False):
        if trial_id in position:
            values[position[trial_id], objective] = value
    trials = [
        {"number": ids[i], "trial_id": i, "config": attrs["config"].get(i), "config_key": attrs["config_key"].get(i)}
        for i in order
    ]
    names = list(dict.fromkeys(name for i in order for name in named.get(i, {})))
    cons = np.array([[named.get(i, {}).get(n, np.nan) for n in names] for i in order]).reshape(len(order), len(names))
    return trials, values, cons
