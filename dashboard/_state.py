"""What the pages show about the store's state, as data (no Streamlit): every study with or without a searches
row, the default study, the devices a search of a space can use, the space a hint names, a job's real status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto import STUDY_ONLY, list_all_searches, study_trial_counts

__all__ = [
    "STUDY_ONLY",
    "all_searches_frame",
    "default_study_index",
    "hint_space",
    "log_status",
    "search_devices",
    "watched_progress",
]


def all_searches_frame(store: Store) -> pd.DataFrame:
    """The searches table plus every study without a searches row (status ``study only``), as ``hwpareto
    searches`` lists them."""
    rows = [
        {
            "search": s.name,
            "space": s.space,
            "status": s.status,
            "trials_done": s.trials_done,
            "n_trials": s.n_trials,
            "worker": s.worker or "",
            "error": s.error or "",
            "updated": s.heartbeat_at or s.created_at,
        }
        for s in list_all_searches(store)
    ]
    return pd.DataFrame(
        rows, columns=["search", "space", "status", "trials_done", "n_trials", "worker", "error", "updated"]
    )


def default_study_index(store: Store, studies: Sequence[str]) -> int:
    """Index in ``studies`` (newest first) of the newest study with completed trials; 0 when none has any (a
    failed, empty study is never the default while another has results)."""
    counts = study_trial_counts(store)
    for i, name in enumerate(studies):
        if counts.get(name, (0, {}))[0] > 0:
            return i
    return 0


def search_devices(store: Store, space: str) -> list[str]:
    """Devices a search of ``space`` can cost: those whose LUT holds layers of the space, or with a stored
    latency/energy predictor for it."""
    from profilers import lut_entries_per_space

    model = store.spaces.get(space)
    predicted = {p.device for p in store.predictors.list(space) if p.device}
    out = []
    for d in store.devices.list():
        if d.name in predicted or (
            d.lut_entries and model.has_model and lut_entries_per_space(store, d.name, [model]).get(space)
        ):
            out.append(d.name)
    return out


def hint_space(store: Store, device: str | None = None, chosen: str | None = None) -> str:
    """The space a next-step hint names: the space ``device``'s LUT covers most, else ``chosen`` (the space
    picked on the page) when it is a space of the store, else the first space with a model, else the first."""
    loaded = store.spaces.load_all()[0]  # a broken space plugin: left out
    names = [s.name for s in loaded]
    spaces = [s for s in loaded if s.has_model]
    if device is not None:
        from profilers import lut_entries_per_space

        try:
            covered = lut_entries_per_space(store, device, spaces)
        except HwparetoError:  # an unregistered device: fall back to the chosen or first space
            covered = {}
        if covered:
            return max(covered, key=covered.__getitem__)
    if chosen in names:
        return str(chosen)
    return spaces[0].name if spaces else names[0] if names else "SPACE"


def log_status(job_status: str, search_status: str | None) -> str:
    """A search worker's log label: the search's own status once the worker has exited (a worker that exits 0
    after its search failed is labelled ``failed``), else the job's (``running``, ``failed``, ``lost``)."""
    if job_status == "done" and search_status:
        return search_status
    return job_status


def watched_progress(store: Store, name: str, results: Any | None) -> dict[str, Any]:
    """:func:`dashboard._data.search_progress` for a search; for a study without a searches row, the same keys
    from its stored trials (status ``study only``)."""
    from dashboard import _data

    if any(s.name == name for s in store.searches.list()):
        return _data.search_progress(store, name, results)
    count, spec = study_trial_counts(store).get(name, (0, {}))
    out: dict[str, Any] = {
        "name": name,
        "status": STUDY_ONLY,
        "n_trials": int(spec.get("n_trials") or count),
        "trials_done": count,
        "worker": None,
        "error": None,
        "feasible": 0,
        "stored": 0,
        "hypervolume": np.empty(0),
    }
    if results is not None and len(results.trials):
        out["stored"] = len(results.trials)
        out["feasible"] = int(results.trials["feasible"].sum())
        out["hypervolume"] = results.hypervolume_history()[0]
    return out
