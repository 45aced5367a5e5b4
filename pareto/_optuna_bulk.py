"""Bulk writes of finished trials into Optuna's own RDB schema (the same tables ``RDBStorage`` writes).

Optuna's storage commits every trial operation separately (a few trials per second on SQLite). A surrogate
search finishes a whole generation at once, so it writes the generation in one transaction with ``executemany``:
the trials (numbers assigned under the store's write lock, as Optuna's own ``count_past_trials`` would), their
values, parameters (Optuna's internal representation and distribution JSON), user and system attributes (the
constraints Optuna's samplers read). ``optuna.load_study`` and optuna-dashboard read the result unchanged.
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

from pareto._store import Store

__all__ = ["TrialRow", "bulk_add_trials"]

CONSTRAINT_PREFIX = "constraints:"  # Optuna 5 keeps each named constraint as system attribute "constraints:<name>"


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One finished trial: external parameter values with their distributions, objective values (None for a
    failed trial), named constraint values (<= 0 feasible, as ``Trial.set_constraint``), user attributes."""

    params: Mapping[str, Any]
    distributions: Mapping[str, BaseDistribution]
    values: Sequence[float] | None
    constraints: Mapping[str, float] | None = None
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    state: TrialState = TrialState.COMPLETE


def bulk_add_trials(store: Store, study_id: int, rows: Sequence[TrialRow]) -> list[int]:
    """Insert ``rows`` as trials of Optuna study ``study_id`` in one transaction; returns their trial numbers."""
    if not rows:
        return []
    now = datetime.now(UTC).replace(tzinfo=None)  # Optuna stores naive UTC
    trials_t = models.TrialModel.__table__
    with store.transaction() as conn:
        count = conn.execute(select(func.count()).select_from(trials_t)
                             .where(trials_t.c.study_id == study_id)).scalar_one()
        ids = conn.execute(
            insert(trials_t).returning(trials_t.c.trial_id, sort_by_parameter_order=True),
            [{"number": count + i, "study_id": study_id, "state": row.state, "datetime_start": now,
              "datetime_complete": now} for i, row in enumerate(rows)],
        ).scalars().all()
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
            systems.extend((trial_id, CONSTRAINT_PREFIX + name, json.dumps(float(value)))
                           for name, value in (row.constraints or {}).items())
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
                with conn.connection.cursor() as cursor, cursor.copy(
                        f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for record in batch:
                        copy.write_row(record)
            else:
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                     f"({', '.join([mark] * len(columns))})", batch)
    return [count + i for i in range(len(rows))]
