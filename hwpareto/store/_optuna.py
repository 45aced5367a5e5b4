"""Bulk writes of finished trials into Optuna's own RDB schema (the same tables ``RDBStorage`` writes).

Optuna's storage commits every trial operation separately (a few trials per second on SQLite). A surrogate
search finishes a whole generation at once, so it writes the generation in one transaction with ``executemany``:
the trials (numbers assigned under the store's write lock, as Optuna's own ``count_past_trials`` would), their
values, parameters (Optuna's internal representation and distribution JSON), user and system attributes.
``optuna.load_study`` and optuna-dashboard read the result unchanged.

Constraints are written twice, as the two readers expect them: ``constraints:<name>`` per budget (what
``Trial.set_constraint`` writes; hwpareto reads it back by name) and the list ``constraints`` in the row's name
order (what ``constraints_func`` in Optuna's samplers writes, ``_CONSTRAINTS_KEY``; optuna-dashboard reads only
this one). Optuna 5's ``FrozenTrial.constraints`` therefore lists each budget twice, under its name and under its
position (``"0"``, ``"1"``, ...); feasibility (every value <= 0) is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import func, insert, select

from hwpareto.store._store import Store

__all__ = ["TrialRow", "bulk_add_trials"]

CONSTRAINT_PREFIX = "constraints:"  # Optuna 5 keeps each named constraint as system attribute "constraints:<name>"
CONSTRAINTS_KEY = "constraints"  # Optuna's _CONSTRAINTS_KEY: the list constraints_func and optuna-dashboard use


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


def bulk_add_trials(
    store: Store,
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
    trials_t = models.TrialModel.__table__
    with store.transaction() as conn:
        count = conn.execute(
            select(func.count()).select_from(trials_t).where(trials_t.c.study_id == study_id)
        ).scalar_one()
        ids = (
            conn.execute(
                insert(trials_t).returning(trials_t.c.trial_id, sort_by_parameter_order=True),
                [
                    {
                        "number": count + i,
                        "study_id": study_id,
                        "state": row.state,
                        "datetime_start": begin,
                        "datetime_complete": end,
                    }
                    for i, row in enumerate(rows)
                ],
            )
            .scalars()
            .all()
        )
        values, params, users, systems = [], [], [], []
        dist_json: dict[int, str] = {}
        for trial_id, row in zip(ids, rows, strict=True):
            for objective, value in enumerate(row.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(float(value))
                values.append((trial_id, objective, stored, kind.name))
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
        for table, columns, batch in (
            ("trial_values", ("trial_id", "objective", "value", "value_type"), values),
            ("trial_params", ("trial_id", "param_name", "param_value", "distribution_json"), params),
            ("trial_user_attributes", ("trial_id", "key", "value_json"), users),
            ("trial_system_attributes", ("trial_id", "key", "value_json"), systems),
        ):
            if not batch:
                continue
            if conn.dialect.name == "postgresql":
                with (
                    conn.connection.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
                ):
                    for record in batch:
                        copy.write_row(record)
            else:
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                conn.exec_driver_sql(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})", batch
                )
    return list(ids)
