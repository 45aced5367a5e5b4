"""Results of a search as data: the trials table, fronts per device and budget, hypervolume history, operating
points, and the export of one trial (compute here, render elsewhere)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwpareto.errors import InvalidValueError
from hwpareto.store import (
    CONSTRAINT_PREFIX,
    Store,
    completed_trials,
    find_study,
    trial_system_attr,
    trial_values,
    user_attr_by_number,
)
from pareto._objectives import Budget, Evaluator, Objective
from pareto.analysis._pareto import (
    hypervolume_history,
    knee_point,
    non_dominated_mask,
    operating_point_table,
    operating_points,
)
from pareto.search._search import SPEC_ATTR, SearchSpec

__all__ = ["Front", "StudyResults", "TrialConfigs", "export_trial", "study_results"]


class TrialConfigs(Mapping[int, dict[str, Any]]):
    """Completed trial number -> config, read from the store when asked (a 100,000-trial study's configs are never
    all needed at once: parsing them alone takes seconds); a trial stored without its config is missing."""

    def __init__(self, store: Store, study_id: int, numbers: Iterable[int]) -> None:
        self._store, self._study_id = store, study_id
        self._numbers = frozenset(int(n) for n in numbers)
        self._cache: dict[int, dict[str, Any]] = {}
        self._read: set[int] = set()

    def prefetch(self, numbers: Iterable[int]) -> None:
        """Read the configs of ``numbers`` not read yet, in one query per 500."""
        todo = sorted({int(n) for n in numbers} & self._numbers - self._read)
        self._cache.update(user_attr_by_number(self._store, self._study_id, "config", todo))
        self._read.update(todo)

    def __getitem__(self, number: int) -> dict[str, Any]:
        self.prefetch([number])
        return self._cache[number]

    def __contains__(self, number: object) -> bool:
        return number in self._numbers

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._numbers))

    def __len__(self) -> int:
        return len(self._numbers)


@dataclass(frozen=True)
class Front:
    """One Pareto front: its label (``all`` or a device), the objectives it spans, its rows (trials), the knee.

    Ties: one row (the first trial) per distinct objective vector; its ``ties`` column counts the trials sharing it
    (repeats of a SubNet, equivalent configs, or other SubNets with equal objectives), all of which Optuna's
    ``best_trials`` lists, so ``rows["ties"].sum()`` is what ``best_trials`` counts over the same trials."""

    label: str
    objectives: tuple[str, ...]
    rows: pd.DataFrame
    knee_number: int | None


@dataclass(frozen=True)
class StudyResults:
    """A study's completed trials (one row per trial: ``number``, ``config_key``, one column per objective,
    ``feasible`` and one ``budget:<text>`` column per budget holding the constraint value) and its spec."""

    spec: SearchSpec
    objectives: tuple[Objective, ...]
    budgets: tuple[Budget, ...]
    trials: pd.DataFrame
    configs: TrialConfigs

    def front(self, device: str | None = None, feasible_only: bool = True) -> Front:
        """The front over all objectives, or over the non-cost objectives plus the costs on ``device``: one row (the
        first trial) per distinct objective vector."""
        objectives = [o for o in self.objectives if device is None or not o.is_cost or o.subject == device]
        if device is not None and not any(o.is_cost and o.subject == device for o in objectives):
            devices = sorted({o.subject for o in self.objectives if o.is_cost and o.subject})
            raise InvalidValueError(
                "device",
                "one of " + ", ".join(devices) if devices else "a device the search has a cost objective for",
                device,
            )
        rows = self.trials[self.trials["feasible"]] if feasible_only else self.trials
        if rows.empty:
            return Front(device or "all", tuple(o.name for o in objectives), rows.assign(ties=0), None)
        points = rows[[o.name for o in objectives]].to_numpy(float)
        mask = non_dominated_mask(points, [o.direction for o in objectives])
        front = rows[mask].sort_values([o.name for o in objectives if o.is_cost] or [objectives[0].name], kind="stable")
        # a SubNet sampled again, or another config of the same network (e.g. a skipped layer's width), is one member:
        # one row (the first trial) per distinct objective vector, ``ties`` counting the trials that share it (Optuna's
        # ``best_trials`` lists each of them)
        names = [o.name for o in objectives]
        ties = front.groupby(names, sort=False, dropna=False)["number"].transform("size")
        front = front.assign(ties=ties.astype(int)).drop_duplicates("config_key").drop_duplicates(names)
        knee = knee_point(front[[o.name for o in objectives]].to_numpy(float), [o.direction for o in objectives])
        return Front(
            device or "all",
            tuple(o.name for o in objectives),
            front.reset_index(drop=True),
            int(front.iloc[knee]["number"]),
        )

    def device_fronts(self) -> list[Front]:
        """One front per device with a cost objective (the same trials, other devices' costs ignored)."""
        devices = sorted({o.subject for o in self.objectives if o.is_cost and o.subject})
        return [self.front(d) for d in devices] if len(devices) > 1 else [self.front()]

    def hypervolume_history(self, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hypervolume after each trial (feasible ones count), with the reference point used (default: the worst
        value of each objective over all trials, pushed 10 % outwards)."""
        names = [o.name for o in self.objectives]
        directions = [o.direction for o in self.objectives]
        points = self.trials[names].to_numpy(float)
        if reference is None:
            worst = np.where(np.array(directions) == "maximize", points.min(axis=0), points.max(axis=0))
            span = np.ptp(points, axis=0)
            reference = worst + np.where(np.array(directions) == "maximize", -0.1, 0.1) * np.where(span > 0, span, 1)
        feasible = self.trials["feasible"].to_numpy()
        masked = np.where(feasible[:, None], points, reference)  # infeasible trials add nothing
        return hypervolume_history(masked, reference, directions), reference

    def operating_points(self, device: str | None, k: int, cost: str | None = None) -> list[dict[str, Any]]:
        """k SubNets of a front spanning the range of one cost (``cost``, an objective's name, else the first cost
        objective on ``device``), each the best quality for the budgets it covers: a runtime switching table
        (:func:`~pareto.analysis._pareto.operating_point_table`, bounds named by the metric; JSON-ready)."""
        costs = [o for o in self.objectives if o.is_cost and (device is None or o.subject == device)]
        if cost is not None:
            costs = [o for o in self.objectives if o.name == cost]
        quality = [o for o in self.objectives if not o.is_cost]
        if not costs or not quality:
            raise InvalidValueError(
                "operating points",
                "a search with a latency/energy and an accuracy objective",
                [o.name for o in self.objectives],
            )
        front = self.front(device)
        points = front.rows[[costs[0].name, quality[0].name]].to_numpy(float)
        chosen = operating_points(points, 0, k, [costs[0].direction, quality[0].direction])
        numbers = [int(front.rows.iloc[i]["number"]) for i in chosen]
        self.configs.prefetch(numbers)
        rows = [
            {
                "trial": n,
                "config_key": front.rows.iloc[i]["config_key"],
                costs[0].name: float(points[i, 0]),
                quality[0].name: float(points[i, 1]),
                "config": self.configs[n],
            }
            for i, n in zip(chosen, numbers, strict=True)
        ]
        return operating_point_table(rows, costs[0].name, quality[0].name, quality[0].direction)


def study_results(store: Store, study: str) -> StudyResults:
    """A study's completed trials, read with a few bulk queries (values, constraints, config keys; a 100,000-trial
    study in well under a second), configs read on demand (:class:`TrialConfigs`). A budget's constraint missing
    from a trial is NaN: that trial is not feasible."""
    found = find_study(store, study, SPEC_ATTR)
    if found is None:
        raise InvalidValueError("study", "an existing study in the store", study)
    study_id, doc = found
    if doc is None:
        raise InvalidValueError(f"study {study!r}", "a study run by hwpareto (it has no hwpareto settings)", study)
    spec = SearchSpec.from_dict(json.loads(doc))
    objectives, budgets = spec.parsed()
    rows = completed_trials(store, study_id, "config_key")
    position = pd.Series(np.arange(len(rows)), index=np.array([r[0] for r in rows], dtype=np.int64))
    frame = pd.DataFrame(
        {
            "number": np.array([r[1] for r in rows], dtype=np.int64),
            "config_key": np.array([None if r[2] is None else json.loads(r[2]) for r in rows], dtype=object),
        }
    )

    def completed(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["trial_id"].isin(position.index)]

    values = np.full((len(rows), len(objectives)), np.nan)
    stored = completed(trial_values(store, study_id))
    stored = stored[stored["objective"] < len(objectives)]
    values[position[stored["trial_id"]].to_numpy(), stored["objective"].to_numpy(int)] = stored["value"].to_numpy()
    for j, o in enumerate(objectives):
        frame[o.name] = values[:, j]
    feasible = np.ones(len(rows), dtype=bool)
    for b in budgets:
        named = completed(
            pd.DataFrame.from_records(
                trial_system_attr(store, study_id, CONSTRAINT_PREFIX + b.text), columns=["trial_id", "value"]
            )
        )
        violation = np.full(len(rows), np.nan)
        violation[position[named["trial_id"]].to_numpy()] = named["value"].astype(float).to_numpy()
        frame[f"budget:{b.text}"] = violation
        feasible &= violation <= 0
    frame["feasible"] = feasible
    return StudyResults(
        spec, tuple(objectives), tuple(budgets), frame, TrialConfigs(store, study_id, frame["number"].to_numpy())
    )


def export_trial(
    store: Store,
    study: str,
    number: int,
    out_dir: str | Path,
    *,
    weights: bool = True,
    onnx: bool = True,
    checkpoint: str | Path | None = None,
    random_weights: bool = False,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Bundle trial ``number``: config, predicted metrics (mean ± std), stored measurements of that SubNet per
    device/dataset, provenance (space, LUTs, predictor versions), and the extracted SubNet's weights and ONNX (an
    LLM's as :mod:`pareto.bundles._export` lays them out). The weights come from ``checkpoint``, else the one the store
    recorded for the space's quality, else the shipped one (:func:`pareto.export_subnet`; untrained ones only
    with ``random_weights``); a named checkpoint is recorded so ``verify-bundle`` finds it by hash. ``progress`` is
    told the name of each slow step as it starts."""
    from pareto.bundles._export import export_subnet, record_checkpoint

    if progress is not None:
        progress(f"reading study {study}")
    results = study_results(store, study)
    if number not in results.configs:
        raise InvalidValueError(
            "trial", f"a completed trial number of study {study!r} (0..{len(results.configs) - 1})", number
        )
    space = store.spaces.get(results.spec.space)
    config = space.validate(results.configs[number])
    metrics = [*results.objectives, *(b.objective for b in results.budgets)]
    if progress is not None:
        progress("predicting its metrics")
    evaluator = Evaluator(store, space, [m for m in metrics if results.spec.mode == "surrogate" or m != metrics[0]])
    mean, std = evaluator.evaluate([config])
    predicted = {
        m.name: {"mean": float(mean[0, j]), "std": float(std[0, j]), "source": evaluator.sources[m]}
        for j, m in enumerate(evaluator.metrics)
    }
    measured = store.measurements.table(space=space.name)
    measured = measured[measured["config_key"] == config.key]
    used = {key.name for key in evaluator.predictors.values()}
    predictors = {
        p.name: {
            "created_at": p.created_at,
            "versions": p.meta.get("versions"),
            "validation": p.meta.get("validation"),
        }
        for p in store.predictors.list(space.name)
        if p.name in used
    }
    doc_metrics = {
        "study": study,
        "trial": number,
        "objectives": {
            o.name: float(results.trials.set_index("number").loc[number, o.name]) for o in results.objectives
        },
        "predicted": predicted,
        "measured": [
            {"subject": r.subject, "metric": r.metric, "value": float(r.value), "source": r.source}
            for r in measured.itertuples()
        ],
        "provenance": {
            "space": space.name,
            "sources": {m.name: evaluator.sources[m] for m in evaluator.metrics},
            "predictors": predictors,
        },
    }
    result = export_subnet(
        space,
        config,
        out_dir,
        weights=weights and space.has_model,
        onnx=onnx and space.has_model,
        checkpoint=checkpoint,
        recorded=store.checkpoints.trained(space.name),
        random_weights=random_weights,
        metrics=doc_metrics,
        progress=progress,
        force=force,
    )
    if checkpoint is not None and (weights or onnx) and space.has_model:
        record_checkpoint(store, space, checkpoint, recorded_by="export")
    store.exports.add(config, str(result.directory.resolve()), result.files)
    return {
        "directory": str(result.directory),
        "key": config.key,
        "files": result.files,
        "notes": list(result.notes),
        **doc_metrics,
    }
