"""Every study in a store, with or without a row in the searches table (``hwpareto searches``, the dashboard).

Studies written by ``hwpareto demo``, by ``run_search`` from Python or by an older hwpareto have no searches row;
they are listed as ``study only`` so the searches list and the studies a store holds never disagree."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from hwpareto.store._store import Store
from pareto._search import SPEC_ATTR

__all__ = ["STUDY_ONLY", "list_all_searches", "study_trial_counts"]

STUDY_ONLY = "study only"


def study_trial_counts(store: Store) -> dict[str, tuple[int, dict[str, Any]]]:
    """hwpareto's studies (newest first): name -> (completed trials, the stored search spec)."""
    query = (
        "SELECT s.study_name, a.value_json, (SELECT COUNT(*) FROM trials t WHERE t.study_id = s.study_id "
        "AND t.state = 'COMPLETE') FROM studies s JOIN study_user_attributes a ON a.study_id = s.study_id "
        "WHERE a.key = :key ORDER BY s.study_id DESC"
    )
    store.optuna_storage()  # creates Optuna's tables in a new store
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for name, value, count in conn.execute(text(query), {"key": SPEC_ATTR}):
            try:
                spec = json.loads(value)
            except (TypeError, ValueError):
                spec = {}
            out[str(name)] = (int(count), spec if isinstance(spec, dict) else {})
    return out


def list_all_searches(store: Store) -> list[dict[str, Any]]:
    """The searches table's rows (newest first), then every hwpareto study without a row, newest first, with
    status ``study only``, its completed trials as ``trials_done`` and its spec's ``n_trials``."""
    rows = store.list_searches()
    known = {r["study_name"] or r["name"] for r in rows} | {r["name"] for r in rows}
    for name, (count, spec) in study_trial_counts(store).items():
        if name in known:
            continue
        rows.append(
            {
                "name": name,
                "space": spec.get("space", ""),
                "params": spec,
                "status": STUDY_ONLY,
                "n_trials": int(spec.get("n_trials") or count),
                "trials_done": count,
                "study_name": name,
                "worker": None,
                "heartbeat_at": None,
                "error": None,
                "created_at": None,
            }
        )
    return rows
