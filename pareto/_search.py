"""Surrogate multi-objective search on an Optuna study in the store, one generation per transaction.

Every objective is predicted (LUT-sums, predictors, analytic), so a whole generation is proposed, evaluated and
written at once (:func:`hwpareto.store._optuna.bulk_add_trials`): the store is not the bottleneck, and every trial
is an ordinary Optuna trial, written so that Optuna's own tools read it as if Optuna had run the search:

- the study's metric names are the objective names (``Study.set_metric_names``);
- constraints (budget violations) as both ``constraints:<budget>`` and the list ``constraints`` (optuna-dashboard
  reads only the list);
- ``datetime_start``/``datetime_complete``: when the generation's proposal and evaluation began and ended;
- generation ``g`` (0, 1, ...; a resumed run goes on from the last stored one) in the trial system attribute
  ``NSGAIISampler:generation`` (``NSGAIIISampler:generation`` for ``nsga3``), and the parents of generation
  ``g >= 1`` (the ``population`` best stored trials by constrained rank and crowding) in the study system
  attribute ``NSGAIISampler:parent:<g>``: ``optuna.load_study`` with Optuna's ``NSGAIISampler`` of the same
  population size continues the search at the next generation from hwpareto's elite.

Samplers:

- ``nsga2`` — NSGA-II written here, vectorised over a generation (Deb et al. 2002, as Optuna's ``NSGAIISampler``:
  constrained domination — feasible before infeasible, infeasible by total violation —, binary tournaments on
  rank and crowding distance, uniform crossover with probability 0.9, per-gene mutation 1/n_dims);
- ``random`` — uniform per dimension;
- ``nsga3``, ``tpe`` — Optuna's own samplers, asked a generation at a time on an in-memory study that mirrors
  the stored trials (slower: Optuna samples trial by trial), written in bulk the same way.

A search whose study already has trials resumes from them (the population is rebuilt from the stored trials); a
finished one adds nothing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store._optuna import (
    TrialRow,
    bulk_add_trials,
    last_generation,
    load_trials,
    set_study_system_attr,
    study_id,
)
from hwpareto.store._store import Store
from pareto._objectives import Budget, Evaluator, Objective, parse_budget, parse_objective
from pareto._pareto import nondominated_sort
from supernet import SearchSpace, SubNetConfig, check_name

__all__ = ["SAMPLERS", "SearchResult", "SearchSpec", "load_trials", "run_surrogate"]

SAMPLERS = ("nsga2", "random", "nsga3", "tpe")
SPEC_ATTR = "hwpareto"
# Optuna's GA samplers' keys (BaseGASampler: f"{cls.__name__}:generation" / f"{cls.__name__}:parent:")
GENERATION_KEY = "NSGAIISampler:generation"
PARENT_CACHE_PREFIX = "NSGAIISampler:parent:"
NSGA3_GENERATION_KEY = "NSGAIIISampler:generation"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SearchSpec:
    """What to search: space, objectives (``METRIC[@SUBJECT]``), budgets (``OBJECTIVE <= BOUND``), sampler and
    trial count. ``name`` is the Optuna study name."""

    name: str
    space: str
    objectives: tuple[str, ...]
    budgets: tuple[str, ...] = ()
    sampler: str = "nsga2"
    n_trials: int = 1000
    population: int = 100
    seed: int = 0
    mode: str = "surrogate"
    fixed: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("search name", self.name)
        if not self.objectives:
            raise InvalidValueError("objectives", "at least one", [])
        if self.sampler not in SAMPLERS:
            raise InvalidValueError("sampler", "one of " + ", ".join(SAMPLERS), self.sampler)
        if self.mode not in ("surrogate", "budgeted"):
            raise InvalidValueError("mode", "surrogate or budgeted", self.mode)
        for field_name, value, low in (("n_trials", self.n_trials, 1), ("population", self.population, 4)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidValueError(field_name, f"an integer >= {low}", value)
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        self.parsed()  # validates the objective and budget syntax

    def parsed(self) -> tuple[list[Objective], list[Budget]]:
        """Objectives and budgets as objects."""
        objectives = [parse_objective(o) for o in self.objectives]
        if len({o.name for o in objectives}) != len(objectives):
            raise InvalidValueError("objectives", "distinct metrics", list(self.objectives))
        return objectives, [parse_budget(b) for b in self.budgets]

    def budgets_text(self) -> list[str]:
        """The budgets in canonical text (the constraint names of the trials)."""
        return [b.text for b in self.parsed()[1]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the study's ``hwpareto`` user attribute and the searches table hold it)."""
        return {
            **asdict(self),
            "objectives": list(self.objectives),
            "budgets": list(self.budgets),
            "fixed": dict(self.fixed),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SearchSpec:
        """Inverse of :meth:`to_dict`."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(doc) - known)
        if extra:
            raise InvalidValueError("search spec", "the fields " + ", ".join(sorted(known)), extra)
        return cls(**{**doc, "objectives": tuple(doc.get("objectives", ())), "budgets": tuple(doc.get("budgets", ()))})


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a run did: trials in the study afterwards, trials added now, seconds, trials per second."""

    study: str
    total: int
    added: int
    seconds: float
    note: str = ""
    """Why the run stopped short of ``n_trials`` (the space has no SubNet left that the study has not evaluated)."""

    @property
    def trials_per_s(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------------------------------------------- encoding
class _Genome:
    """Configs as rows of per-dimension values (categorical: choice indices) for vectorised variation; ``fixed``
    dimensions always take their given value."""

    def __init__(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        self.space = space
        self.dims = space.dimensions
        self.fixed = {
            space.dimensions.index(space.dimension(k)): space.dimension(k).coerce(v, space.name)
            for k, v in fixed.items()
        }

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        genes = np.empty((n, len(self.dims)))
        for j, d in enumerate(self.dims):
            if j in self.fixed:
                genes[:, j] = d.choices.index(self.fixed[j]) if d.kind == "categorical" else self.fixed[j]
            elif d.kind == "categorical":
                genes[:, j] = rng.integers(len(d.choices), size=n)
            else:
                genes[:, j] = [d.sample(rng) for _ in range(n)]
        return genes

    def encode(self, config: SubNetConfig | Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [d.choices.index(config[d.name]) if d.kind == "categorical" else float(config[d.name]) for d in self.dims]
        )

    def decode(self, genes: np.ndarray, rng: np.random.Generator) -> list[SubNetConfig]:
        """Configs for gene rows; rows breaking a cross-dimension rule are redrawn at random."""
        out = []
        for row in genes:
            for j, value in self.fixed.items():  # every sampler's proposals keep the fixed dimensions
                row[j] = self.dims[j].choices.index(value) if self.dims[j].kind == "categorical" else value
            for _ in range(100):
                values = {
                    d.name: d.choices[int(g)] if d.kind == "categorical" else (int(g) if d.kind == "int" else g)
                    for d, g in zip(self.dims, row, strict=True)
                }
                try:
                    out.append(self.space.validate(values))
                    break
                except InvalidValueError:
                    row = self.random(rng, 1)[0]
            else:
                raise HwparetoError(f"space {self.space.name}: could not draw a valid config")
        return out

    def canonical(self, config: SubNetConfig) -> SubNetConfig:
        """``config`` with its inactive parts canonical (:meth:`SearchSpace.canonical`), fixed dimensions kept."""
        canon = self.space.canonical(config)
        if any(canon[self.dims[j].name] != v for j, v in self.fixed.items()):
            canon = self.space.validate(canon.values | {self.dims[j].name: v for j, v in self.fixed.items()})
        return canon


MAX_PROPOSAL_ROUNDS = 50
"""Rounds of re-proposing (sampler first, then uniform draws) for a generation's repeated SubNets."""


def _distinct(
    genome: _Genome,
    first: list[SubNetConfig],
    propose: Callable[[int], list[SubNetConfig]],
    rng: np.random.Generator,
    seen: set[str],
    size: int,
) -> tuple[list[SubNetConfig], list[int]]:
    """Up to ``size`` canonical configs whose architectures (``arch_key``) are not in ``seen`` nor repeated in the
    batch; ``first`` are the sampler's proposals, ``propose(n)`` asks it for more (half the rounds), then uniform
    draws fill in. Returns the batch and, per config, the index of the sampler's proposal it comes from, counted
    over all its proposals (-1: a uniform draw). ``seen`` gains the batch's arch keys."""
    batch: list[SubNetConfig] = []
    origin: list[int] = []
    proposed = 0

    def take(configs: list[SubNetConfig], from_sampler: bool) -> None:
        nonlocal proposed
        for c in configs:
            index, proposed = (proposed, proposed + 1) if from_sampler else (-1, proposed)
            if len(batch) >= size:
                continue
            canon = genome.canonical(c)
            arch = genome.space.arch_key(canon)
            if arch not in seen:
                seen.add(arch)
                batch.append(canon)
                origin.append(index)

    take(first, True)
    for round_ in range(MAX_PROPOSAL_ROUNDS):
        if len(batch) >= size:
            break
        missing = size - len(batch)
        if round_ < MAX_PROPOSAL_ROUNDS // 2:
            take(propose(missing), True)
        else:
            take(genome.decode(genome.random(rng, 4 * missing), rng), False)
    return batch, origin


def _crowding(points: np.ndarray) -> np.ndarray:
    n = len(points)
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(points.shape[1]):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        distance[order[[0, -1]]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return distance


def _rank(values: np.ndarray, violation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constrained rank (feasible fronts first, infeasible after, by violation) and crowding distance."""
    rank = np.empty(len(values), dtype=float)
    crowd = np.zeros(len(values))
    feasible = violation <= 0
    if feasible.any():
        fronts = nondominated_sort(values[feasible])
        rank[feasible] = fronts
        idx = np.flatnonzero(feasible)
        for f in np.unique(fronts):
            members = idx[fronts == f]
            crowd[members] = _crowding(values[members])
    if (~feasible).any():
        top = rank[feasible].max() + 1 if feasible.any() else 0
        rank[~feasible] = top + violation[~feasible] / (violation[~feasible].max() + 1e-12)
    return rank, crowd


def _nsga2_offspring(
    genome: _Genome, genes: np.ndarray, values: np.ndarray, violation: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    rank, crowd = _rank(values, violation)
    order = np.lexsort((-crowd, rank))
    parents_pool = order[:size]
    a, b = rng.choice(parents_pool, size=(2, 2 * size))
    better = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
    winners = np.where(better, a, b).reshape(2, size)
    p1, p2 = genes[winners[0]], genes[winners[1]]
    swap = (rng.random(p1.shape) < 0.5) & (rng.random((size, 1)) < 0.9)
    child = np.where(swap, p2, p1)
    mutate = rng.random(child.shape) < 1.0 / child.shape[1]
    if mutate.any():
        fresh = genome.random(rng, size)
        child = np.where(mutate, fresh, child)
    return child


# ---------------------------------------------------------------------------------------------------- store I/O
def _study(store: Store, spec: SearchSpec, objectives: Sequence[Objective]) -> optuna.Study:
    storage = store.optuna_storage()
    directions = [o.direction for o in objectives]
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions)
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
        _name_metrics(study, objectives)
        return study
    stored = study.user_attrs.get(SPEC_ATTR)
    mine = {k: v for k, v in spec.to_dict().items() if k != "n_trials"}
    theirs = {k: v for k, v in (stored or {}).items() if k != "n_trials"}
    if stored is None or mine != theirs:
        raise InvalidValueError(
            "search name",
            f"a name not used by another study (study {spec.name!r} exists with other settings)",
            spec.name,
        )
    if study.metric_names is None:  # a study written before hwpareto named its metrics
        _name_metrics(study, objectives)
    return study


def _name_metrics(study: optuna.Study, objectives: Sequence[Objective]) -> None:
    """Objective names as the study's metric names (what optuna-dashboard and ``trials_dataframe`` show)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in objectives])


# ---------------------------------------------------------------------------------------------------- run
def run_surrogate(
    store: Store, spec: SearchSpec, *, progress: Progress | None = None, heartbeat: Callable[[int], bool] | None = None
) -> SearchResult:
    """Run (or resume) the search until its study holds ``n_trials`` completed trials. ``heartbeat(done)`` is
    called after every generation; when it returns False (another worker took the search over) the run stops."""
    start = time.monotonic()
    space = store.spaces.get(spec.space)
    objectives, budgets = spec.parsed()
    evaluator = Evaluator(store, space, [*objectives, *(b.objective for b in budgets)])
    dists = {d.name: d.distribution() for d in space.dimensions}
    genome = _Genome(space, spec.fixed)
    _check_budgets(genome, evaluator, budgets, spec.seed)
    study = _study(store, spec, objectives)
    rng = np.random.default_rng(spec.seed)
    stored, values, constraints = load_trials(store, spec.name)
    have = len(stored)
    configs = [space.validate(t["config"]) for t in stored if t["config"] is not None]
    seen = {space.arch_key(c) for c in configs}  # SubNets the study has evaluated (effective architectures)
    genes = np.array([genome.encode(c) for c in configs]) if configs else np.empty((0, len(space.dimensions)))
    violation = constraints.clip(min=0).sum(axis=1) if constraints.size else np.zeros(len(configs))
    ids = np.array([t["trial_id"] for t in stored], dtype=np.int64)  # rows of values and violation
    generation_key = NSGA3_GENERATION_KEY if spec.sampler == "nsga3" else GENERATION_KEY
    generation = last_generation(store, study_id(study), generation_key) + 1
    rng = np.random.default_rng([spec.seed, have])  # a resumed run does not replay the first run's draws
    signs = np.array([1.0 if o.direction == "minimize" else -1.0 for o in objectives])
    mirror = (
        _mirror(spec, objectives, stored, values, constraints, dists, genome)
        if spec.sampler in ("nsga3", "tpe")
        else None
    )
    added = 0
    note = ""
    while have < spec.n_trials:
        started = datetime.now(UTC)
        size = min(spec.population, spec.n_trials - have)
        if len(ids) and spec.sampler != "nsga3":  # generation's parents, where Optuna's NSGA-II looks for them
            rank, crowd = _rank(values[:, : len(objectives)] * signs, violation)
            set_study_system_attr(
                study,
                PARENT_CACHE_PREFIX + str(generation),
                ids[np.lexsort((-crowd, rank))[: spec.population]].tolist(),
            )
        asked: list[optuna.Trial] = []
        propose = _proposer(
            spec,
            genome,
            rng,
            genes,
            values[:, : len(objectives)] * signs if len(values) else values,
            violation,
            mirror,
            dists,
            asked,
        )
        # no trial on a SubNet the study has evaluated: canonical configs, repeats proposed again
        batch, origin = _distinct(genome, propose(size), propose, rng, seen, size)
        if not batch:
            note = (
                f"stopped at {have} trials: every SubNet of the searched region has been evaluated "
                f"({len(seen)} distinct architectures)"
            )
            for trial in asked:
                mirror.tell(trial, state=optuna.trial.TrialState.FAIL)  # type: ignore[union-attr]
            break
        mean, _ = evaluator.evaluate(batch)
        obj_values = mean[:, [evaluator.metrics.index(o) for o in objectives]]
        cons = (
            np.column_stack([b.violation(mean[:, evaluator.metrics.index(b.objective)]) for b in budgets])
            if budgets
            else None
        )
        rows = [
            TrialRow(
                c.values,
                dists,
                obj_values[i].tolist(),
                None if cons is None else {b.text: float(v) for b, v in zip(budgets, cons[i], strict=True)},
                {"config": c.values, "config_key": c.key, "arch_key": space.arch_key(c)},
                system_attrs={generation_key: generation},
            )
            for i, c in enumerate(batch)
        ]
        new_ids = np.array(
            bulk_add_trials(store, study_id(study), rows, started=started, completed=datetime.now(UTC)), dtype=np.int64
        )
        generation += 1
        if mirror is not None:  # proposals told their SubNet's values; repeats failed; uniform draws added
            told = set()
            for index, row in zip(origin, rows, strict=True):
                if index < 0:
                    mirror.add_trial(
                        optuna.trial.create_trial(
                            params=dict(row.params),
                            distributions=dists,
                            values=row.values,
                            constraints=dict(row.constraints) if row.constraints else None,
                        )
                    )
                    continue
                for name, value in (row.constraints or {}).items():
                    asked[index].set_constraint(name, value)
                mirror.tell(asked[index], row.values)
                told.add(index)
            for index, trial in enumerate(asked):
                if index not in told:
                    mirror.tell(trial, state=optuna.trial.TrialState.FAIL)
        new_genes = np.array([genome.encode(c) for c in batch])
        genes = np.vstack([genes, new_genes]) if len(genes) else new_genes
        values = np.vstack([values, obj_values]) if len(values) else obj_values
        new_violation = cons.clip(min=0).sum(axis=1) if cons is not None else np.zeros(len(batch))
        violation = np.concatenate([violation, new_violation])
        ids = np.concatenate([ids, new_ids])
        if len(genes) > 4 * spec.population:  # keep the elite pool bounded
            rank, crowd = _rank(values * signs, violation)
            keep = np.lexsort((-crowd, rank))[: 2 * spec.population]
            genes, values, violation, ids = genes[keep], values[keep], violation[keep], ids[keep]
        have += len(batch)
        added += len(batch)
        if progress is not None:
            progress(have, spec.n_trials)
        if heartbeat is not None and not heartbeat(have):
            raise HwparetoError(f"search {spec.name!r} was taken over by another worker")
    return SearchResult(spec.name, have, added, time.monotonic() - start, note)


def _proposer(
    spec: SearchSpec,
    genome: _Genome,
    rng: np.random.Generator,
    genes: np.ndarray,
    signed: np.ndarray,
    violation: np.ndarray,
    mirror: optuna.Study | None,
    dists: dict[str, Any],
    asked: list[optuna.Trial],
) -> Callable[[int], list[SubNetConfig]]:
    """``propose(n)``: n configs from the search's sampler (Optuna's asked trials are appended to ``asked``)."""
    if spec.sampler == "random" or (spec.sampler == "nsga2" and len(genes) < spec.population):
        return lambda n: genome.decode(genome.random(rng, n), rng)
    if spec.sampler == "nsga2":
        return lambda n: genome.decode(_nsga2_offspring(genome, genes, signed, violation, n, rng), rng)
    assert mirror is not None

    def propose(n: int) -> list[SubNetConfig]:
        new = [mirror.ask(dists) for _ in range(n)]
        asked.extend(new)
        return genome.decode(np.array([genome.encode(t.params) for t in new]), rng)

    return propose


def _mirror(
    spec: SearchSpec,
    objectives: Sequence[Objective],
    stored: list[dict[str, Any]],
    values: np.ndarray,
    constraints: np.ndarray,
    dists: dict[str, Any],
    genome: _Genome,
) -> optuna.Study:
    """An in-memory study holding the stored trials, for Optuna's own samplers (constraints as trial
    constraints, which Optuna 5's samplers read)."""
    if spec.sampler == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=spec.seed)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.NSGAIIISampler(population_size=spec.population, seed=spec.seed)
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=sampler)
    for i, trial in enumerate(stored):
        if trial["config"] is None:
            continue
        params = {d.name: trial["config"][d.name] for d in genome.dims}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                values=values[i, : len(objectives)].tolist(),
                constraints={b: float(v) for b, v in zip(spec.budgets_text(), constraints[i], strict=True)}
                if constraints.size
                else None,
            )
        )
    return study


def _check_budgets(genome: _Genome, evaluator: Evaluator, budgets: Sequence[Budget], seed: int) -> None:
    """Refuse a budget no SubNet meets (probed on 256 random SubNets of the searched region), naming the best
    reachable value found, before anything is written."""
    if not budgets:
        return
    rng = np.random.default_rng(seed)
    probe = genome.decode(genome.random(rng, 256), rng)
    mean, _ = evaluator.evaluate(probe)
    for budget in budgets:
        column = mean[:, evaluator.metrics.index(budget.objective)]
        if not (budget.violation(column) <= 0).any():
            best = column.max() if budget.objective.direction == "maximize" else column.min()
            raise InvalidValueError(
                f"budget {budget.text!r}",
                f"a bound some SubNet meets (best reachable value found: {best:.4g})",
                budget.bound,
            )
