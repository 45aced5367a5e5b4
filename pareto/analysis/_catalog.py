"""Every study in a store, with or without a row in the searches table (``hwpareto searches``, the dashboard).

Studies written by ``hwpareto demo``, by ``run_search`` from Python or by an older hwpareto have no searches row;
they are listed as ``study only`` so the searches list and the studies a store holds never disagree."""

from __future__ import annotations

import json
from typing import Any

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import SearchRecord, Store, find_study, studies_with_user_attr
from pareto._objectives import parse_budget, parse_objective
from pareto.search._search import SPEC_ATTR

__all__ = ["STUDY_ONLY", "delete_study", "list_all_searches", "studies_using", "study_trial_counts"]

STUDY_ONLY = "study only"


def study_trial_counts(store: Store) -> dict[str, tuple[int, dict[str, Any]]]:
    """hwpareto's studies (newest first): name -> (completed trials, the stored search spec)."""
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for study in studies_with_user_attr(store, SPEC_ATTR):
        try:
            spec = json.loads(study.user_attr_json)
        except (TypeError, ValueError):
            spec = {}
        out[study.name] = (study.completed_trials, spec if isinstance(spec, dict) else {})
    return out


def list_all_searches(store: Store) -> list[SearchRecord]:
    """The searches table's rows (newest first), then every hwpareto study without a row, newest first, with
    status ``study only``, its completed trials as ``trials_done`` and its spec's ``n_trials``."""
    rows = store.searches.list()
    known = {r.study_name or r.name for r in rows} | {r.name for r in rows}
    for name, (count, spec) in study_trial_counts(store).items():
        if name in known:
            continue
        rows.append(
            SearchRecord(
                name=name,
                space=spec.get("space", ""),
                params=spec,
                status=STUDY_ONLY,
                n_trials=int(spec.get("n_trials") or count),
                trials_done=count,
                study_name=name,
                worker=None,
                heartbeat_at=None,
                error=None,
                created_at=None,
            )
        )
    return rows


def studies_using(store: Store, *, space: str | None = None, device: str | None = None) -> list[str]:
    """Names of the searches and studies (:func:`list_all_searches`) over ``space``, or with an objective or budget
    on ``device`` (``METRIC@DEVICE``; a stored objective that no longer parses counts when it names the device)."""
    out: list[str] = []
    for row in list_all_searches(store):
        subjects: set[str | None] = set()
        for key, parse in (("objectives", parse_objective), ("budgets", lambda t: parse_budget(t).objective)):
            for text in row.params.get(key) or ():
                try:
                    subjects.add(parse(str(text)).subject)
                except HwparetoError:
                    subjects.add(device if device is not None and f"@{device}" in str(text) else None)
        if (space is not None and row.space == space) or (device is not None and device in subjects):
            out.append(row.name)
    return out


def delete_study(store: Store, name: str) -> None:
    """Delete Optuna study ``name`` and hwpareto's searches row for it (if any), nothing else; a queued or running
    search raises InvalidValueError and deletes nothing, as does a name that is neither."""
    import optuna

    searches = {s.name: s for s in store.searches.list()}
    if name in searches and searches[name].status in ("queued", "running"):
        raise InvalidValueError(
            f"search {name!r}",
            f"a finished, failed or cancelled search to delete (cancel it first: hwpareto searches --cancel {name})",
            searches[name].status,
        )
    exists = find_study(store, name) is not None
    if not exists and name not in searches:
        raise InvalidValueError("study", "an existing study in the store", name)
    if exists:
        optuna.delete_study(study_name=name, storage=store.optuna_storage())
    store.searches.delete(name)
