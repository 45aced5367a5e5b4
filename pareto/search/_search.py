"""Surrogate multi-objective search on an Optuna study in the store, one generation per transaction.

Every objective is predicted (LUT-sums, predictors, analytic), so a whole generation is proposed, evaluated and
written at once (:func:`hwpareto.store._optuna.bulk_add_trials`): the store is not the bottleneck, and every trial
is an ordinary Optuna trial, written so that Optuna's own tools read it as if Optuna had run the search:

- the study's metric names are the objective names (``Study.set_metric_names``);
- constraints (budget violations) as both ``constraints:<budget>`` and the list ``constraints`` (optuna-dashboard
  reads only the list);
- ``datetime_start``/``datetime_complete``: when the generation's proposal and evaluation began and ended;
- generation ``g`` (0, 1, ...; a resumed run goes on from the last stored one) in the trial system attribute of
  the strategy (``NSGAIISampler:generation``; ``NSGAIIISampler:generation`` for ``nsga3``), and the parents of
  generation ``g >= 1`` (the ``population`` best stored trials by constrained rank and crowding) in the study
  system attribute ``NSGAIISampler:parent:<g>`` (not for ``nsga3``): ``optuna.load_study`` with Optuna's
  ``NSGAIISampler`` of the same population size continues the search at the next generation from hwpareto's elite.

What proposes the SubNets is the spec's strategy (``sampler``: :mod:`pareto.search._strategies`, asked a generation at a
time and told its evaluation); this loop keeps every trial on a SubNet the study has not evaluated.

A search whose study already has trials resumes from them (the strategy is rebuilt from the stored trials); a
finished one adds nothing.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.options import SEARCH, BudgetedOptions, SearchOptions
from hwpareto.store import (
    Store,
    TrialRow,
    bulk_add_trials,
    completed_marker,
    last_generation,
    load_trials,
    set_study_system_attr,
    study_id,
)
from pareto._objectives import Budget, Evaluator, Objective, parse_budget, parse_objective
from pareto.search._strategies import (
    GENERATION_KEY,
    NSGA3_GENERATION_KEY,
    PARENT_CACHE_PREFIX,
    ElitePool,
    Genome,
    Problem,
    Strategy,
    strategy_class,
    violation,
)
from supernet import SearchSpace, SubNetConfig, check_name

__all__ = [
    "GENERATION_KEY",
    "NSGA3_GENERATION_KEY",
    "PARENT_CACHE_PREFIX",
    "ResolvedSearch",
    "SearchResult",
    "SearchSpec",
    "load_trials",
    "resolve_surrogate",
    "run_surrogate",
]

SPEC_ATTR = "hwpareto"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SearchSpec:
    """What to search: space, objectives (``METRIC[@SUBJECT]``), budgets (``OBJECTIVE <= BOUND``), the strategy
    (``sampler``) and trial count; the fields after ``budgets`` are keyword-only. ``name`` is the Optuna study
    name. Defaults: :data:`hwpareto.options.SEARCH`; ``options`` are a budgeted search's
    :class:`hwpareto.options.BudgetedOptions` (stored canonical), none for a surrogate search."""

    name: str
    space: str
    objectives: tuple[str, ...]
    budgets: tuple[str, ...] = ()
    _: KW_ONLY
    sampler: str = SEARCH.sampler
    n_trials: int = SEARCH.n_trials
    population: int = SEARCH.population
    seed: int = SEARCH.seed
    mode: str = "surrogate"
    fixed: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("search name", self.name)
        if not self.objectives:
            raise InvalidValueError("objectives", "at least one", [])
        strategy_class(self.search_options.sampler)
        if self.mode == "budgeted":
            object.__setattr__(self, "options", BudgetedOptions.from_dict(dict(self.options)).to_dict())
        elif self.mode != "surrogate":
            raise InvalidValueError("mode", "surrogate or budgeted", self.mode)
        elif self.options:
            raise InvalidValueError("options", "none for a surrogate search", dict(self.options))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        self.parsed()  # validates the objective and budget syntax

    @property
    def search_options(self) -> SearchOptions:
        """Strategy, trials, population and seed, typed (and validated)."""
        return SearchOptions(self.sampler, self.n_trials, self.population, self.seed)

    @property
    def budgeted_options(self) -> BudgetedOptions:
        """The options of a budgeted search (the defaults for a surrogate one)."""
        return BudgetedOptions.from_dict(self.options)

    def strategy(self) -> type[Strategy]:
        """The strategy class ``sampler`` names."""
        return strategy_class(self.sampler)

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

    def same_search(self, stored: dict[str, Any] | None) -> bool:
        """Whether ``stored`` (a :meth:`to_dict`) is this search, whatever its ``n_trials`` (both canonical)."""
        if stored is None:
            return False
        try:
            theirs = SearchSpec.from_dict(stored).to_dict()
        except HwparetoError:
            return False
        return {k: v for k, v in theirs.items() if k != "n_trials"} == {
            k: v for k, v in self.to_dict().items() if k != "n_trials"
        }


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedSearch:
    """A spec checked against the store once, with what running it needs: its space, objectives and budgets
    parsed, its strategy class and its evaluator (predictors and LUTs loaded; a budgeted search's holds the cheap
    objectives), its budgets probed. :func:`pareto.search._worker.validate_spec` builds it; whatever runs the search
    reuses it, so a search builds one evaluator and probes its budgets once."""

    spec: SearchSpec
    space: SearchSpace
    objectives: tuple[Objective, ...]
    budgets: tuple[Budget, ...]
    strategy: type[Strategy]
    evaluator: Evaluator


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


# ---------------------------------------------------------------------------------------------------- repeats
MAX_PROPOSAL_ROUNDS = 50
"""Rounds of re-proposing (strategy first, then uniform draws) for a generation's repeated SubNets."""
ENUMERATE_MAX = 1_000_000
"""Largest searched region (configs) whose unevaluated SubNets are enumerated once proposals stop finding them."""


class _Unseen:
    """Draws batches of SubNets the study has not evaluated (by effective architecture, ``arch_key``).

    The strategy proposes first (asked again for repeats, half of :data:`MAX_PROPOSAL_ROUNDS`), uniform draws fill
    in; when that leaves a batch short and the searched region holds at most :data:`ENUMERATE_MAX` configs, the
    region is enumerated once and the batch is filled from its unevaluated SubNets (in the strategy's random order),
    so a search that stops for lack of SubNets has evaluated every one (``exhausted``) rather than about every one."""

    def __init__(self, genome: Genome, seen: set[str]) -> None:
        self.genome = genome
        self.seen = seen
        """Arch keys of the SubNets evaluated or in a batch already."""
        self.region = _region_size(genome)
        """Configs in the searched region (``inf`` with a continuous dimension), valid or not."""
        self._rest: list[tuple[str, SubNetConfig]] | None = None  # the unevaluated SubNets, once enumerated
        self._known: set[str] = set()  # keys of the proposals checked: each one's architecture is in ``seen``
        self.arch: dict[str, str] = {}
        """The arch key of each config of the last batch, by config key."""

    @property
    def exhausted(self) -> bool:
        """Whether the region was enumerated and every SubNet of it has been taken."""
        return self._rest is not None and not self._rest

    def batch(self, strategy: Strategy, size: int) -> list[SubNetConfig]:
        """Up to ``size`` canonical configs whose architectures are neither evaluated nor repeated in the batch
        (fewer only when the region has no more, or could not be enumerated)."""
        out: list[SubNetConfig] = []
        self.arch = {}

        def take(configs: list[SubNetConfig]) -> None:
            for c in configs:
                if len(out) >= size:
                    return
                if c.key in self._known:  # proposed before (a strategy repeats itself): seen already
                    continue
                self._known.add(c.key)
                canon = self.genome.canonical(c)
                arch = self.genome.space.arch_key(canon)
                if arch not in self.seen:
                    self.seen.add(arch)
                    self.arch[canon.key] = arch
                    out.append(canon)

        take(strategy.ask(size))
        rounds = MAX_PROPOSAL_ROUNDS if self._rest is None else 0  # once enumerated, the rest is known
        for round_ in range(rounds):
            if len(out) >= size:
                break
            missing = size - len(out)
            take(strategy.ask(missing) if round_ < MAX_PROPOSAL_ROUNDS // 2 else strategy.uniform(4 * missing))
        if len(out) < size and self.region <= ENUMERATE_MAX:
            if self._rest is None:
                rest = list(self._enumerate().items())
                self._rest = [rest[i] for i in strategy.rng.permutation(len(rest))]
            for arch, canon in self._rest:
                if len(out) >= size:
                    break
                if arch not in self.seen:
                    self.seen.add(arch)
                    self.arch[canon.key] = arch
                    out.append(canon)
            self._rest = [(arch, canon) for arch, canon in self._rest if arch not in self.seen]
        return out

    def _enumerate(self) -> dict[str, SubNetConfig]:
        """The region's valid SubNets not in ``seen``, canonical, one per architecture (by arch key)."""
        space, dims = self.genome.space, self.genome.dims
        axes = [
            [self.genome.fixed[j]]
            if j in self.genome.fixed
            else list(d.choices)
            if d.kind == "categorical"
            else list(range(int(d.bounds()[0]), int(d.bounds()[1]) + 1, d.step))
            for j, d in enumerate(dims)
        ]
        names = [d.name for d in dims]
        found: dict[str, SubNetConfig] = {}
        for values in itertools.product(*axes):
            try:
                canon = self.genome.canonical(space.validate(dict(zip(names, values, strict=True))))
            except InvalidValueError:
                continue  # breaks a cross-dimension rule
            arch = space.arch_key(canon)
            if arch not in self.seen:
                found.setdefault(arch, canon)
        return found


def _region_size(genome: Genome) -> float:
    """Configs of the searched region (free dimensions' value counts multiplied; ``inf`` for a float one)."""
    total = 1.0
    for j, d in enumerate(genome.dims):
        if j in genome.fixed:
            continue
        if d.kind == "float":
            return math.inf
        low, high = d.bounds()
        total *= len(d.choices) if d.kind == "categorical" else (int(high) - int(low)) // d.step + 1
    return total


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
    if not spec.same_search(study.user_attrs.get(SPEC_ATTR)):
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
    store: Store,
    search: SearchSpec | ResolvedSearch,
    *,
    progress: Progress | None = None,
    heartbeat: Callable[[int], bool] | None = None,
) -> SearchResult:
    """Run (or resume) the search until its study holds ``n_trials`` completed trials; a spec is resolved here
    (:func:`resolve_surrogate`) unless its study is finished. ``heartbeat(done)`` is called after every generation;
    when it returns False (another worker took the search over) the run stops."""
    start = time.monotonic()
    spec = search.spec if isinstance(search, ResolvedSearch) else search
    store.spaces.get(spec.space)  # an unknown space is refused first, even for a finished study
    store.optuna_storage()  # creates Optuna's tables in a new store
    have = completed_marker(store, spec.name)[0]
    if have >= spec.n_trials:  # finished: nothing to evaluate (a spec is not resolved: no predictor loaded)
        _study(store, spec, spec.parsed()[0])  # still refuses a study of that name with other settings
        return SearchResult(spec.name, have, 0, time.monotonic() - start)
    resolved = search if isinstance(search, ResolvedSearch) else resolve_surrogate(store, spec)
    space, evaluator, strategy_cls = resolved.space, resolved.evaluator, resolved.strategy
    objectives, budgets = list(resolved.objectives), list(resolved.budgets)
    dists = {d.name: d.distribution() for d in space.dimensions}
    study = _study(store, spec, objectives)
    stored, values, constraints = load_trials(store, spec.name)
    have = len(stored)
    kept = [i for i, t in enumerate(stored) if t["config"] is not None]
    configs = [space.validate(stored[i]["config"]) for i in kept]
    seen = {space.arch_key(c) for c in configs}  # SubNets the study has evaluated (effective architectures)
    values = values[kept, : len(objectives)] if len(values) else np.empty((0, len(objectives)))
    constraints = constraints[kept] if constraints.size else np.empty((len(kept), len(budgets)))
    problem = Problem(space, tuple(o.direction for o in objectives), tuple(b.text for b in budgets), spec.fixed)
    strategy = strategy_cls(problem, spec.search_options, configs, values, constraints)
    # the elite trials, written as each generation's parents where Optuna's NSGA-II looks for them
    ids = np.array([stored[i]["trial_id"] for i in kept], dtype=np.int64)
    parents = ElitePool(spec.population, ids, values * problem.signs, violation(constraints, len(kept)))
    unseen = _Unseen(strategy.genome, seen)
    generation_key = strategy_cls.generation_key
    generation = last_generation(store, study_id(study), generation_key) + 1
    added = 0
    note = ""
    while have < spec.n_trials:
        started = datetime.now(UTC)
        size = min(spec.population, spec.n_trials - have)
        if len(parents) and strategy_cls.parent_prefix is not None:
            set_study_system_attr(
                store,
                study_id(study),
                strategy_cls.parent_prefix + str(generation),
                parents.best(spec.population).tolist(),
            )
        # no trial on a SubNet the study has evaluated: canonical configs, repeats proposed again
        batch = unseen.batch(strategy, size)
        if not batch:
            note = (
                f"stopped at {have} trials: every SubNet of the searched region has been evaluated "
                f"({len(seen)} distinct architectures)"
                if unseen.exhausted
                else f"stopped at {have} trials: {MAX_PROPOSAL_ROUNDS} rounds of proposals found no SubNet the "
                f"study has not evaluated, so about every SubNet of the searched region has been ({len(seen)} "
                f"distinct architectures; the region's {unseen.region:.3g} configs are too many to enumerate)"
            )
            break
        mean, _ = evaluator.evaluate(batch)
        obj_values = mean[:, [evaluator.metrics.index(o) for o in objectives]]
        cons = (
            np.column_stack([b.violation(mean[:, evaluator.metrics.index(b.objective)]) for b in budgets])
            if budgets
            else np.empty((len(batch), 0))
        )
        rows = [
            TrialRow(
                c.values,
                dists,
                obj_values[i].tolist(),
                {b.text: float(v) for b, v in zip(budgets, cons[i], strict=True)} if budgets else None,
                {"config": c.values, "config_key": c.key, "arch_key": unseen.arch[c.key]},
                system_attrs={generation_key: generation},
            )
            for i, c in enumerate(batch)
        ]
        new_ids = np.array(
            bulk_add_trials(store, study_id(study), rows, started=started, completed=datetime.now(UTC)), dtype=np.int64
        )
        generation += 1
        strategy.tell(batch, obj_values, cons)
        parents.add(new_ids, obj_values * problem.signs, violation(cons, len(batch)))
        have += len(batch)
        added += len(batch)
        if progress is not None:
            progress(have, spec.n_trials)
        if heartbeat is not None and not heartbeat(have):
            raise HwparetoError(
                f"search {spec.name!r} is no longer this worker's (cancelled, or taken over by another)"
            )
    return SearchResult(spec.name, have, added, time.monotonic() - start, note)


def resolve_surrogate(store: Store, spec: SearchSpec) -> ResolvedSearch:
    """Check a surrogate spec against the store (space, devices, LUTs, predictors, fixed dimensions, budgets some
    SubNet meets) before any write; its evaluator is built and its budgets probed here, once."""
    space = store.spaces.get(spec.space)
    objectives, budgets = spec.parsed()
    evaluator = Evaluator(store, space, [*objectives, *(b.objective for b in budgets)])
    _check_budgets(Genome(space, spec.fixed), evaluator, budgets, spec.seed)
    return ResolvedSearch(spec, space, tuple(objectives), tuple(budgets), spec.strategy(), evaluator)


BUDGET_PROBE = 256
"""Random SubNets of the searched region a budget is first probed on (with the smallest and the largest)."""
BUDGET_DESCENT_STEPS = 50
"""Most moves of the local search a budget the probe does not meet gets before it is refused."""


def _check_budgets(genome: Genome, evaluator: Evaluator, budgets: Sequence[Budget], seed: int) -> None:
    """Refuse a budget no SubNet meets, naming the best value found, before anything is written.

    A budget is probed on :data:`BUDGET_PROBE` random SubNets of the searched region plus its smallest and largest
    SubNets (every free dimension at its first / last value: the optimum of a cost monotone in the dimensions);
    one the probe does not meet gets a local search on its metric alone from the best probed SubNet (each step
    moves to the best SubNet one dimension away, a batch of neighbours at a time) and is refused only when that
    search, too, finds no SubNet meeting it."""
    if not budgets:
        return
    rng = np.random.default_rng(seed)
    probe = genome.decode(genome.random(rng, BUDGET_PROBE), rng) + _extremes(genome)
    mean, _ = evaluator.evaluate(probe)
    for budget in budgets:
        column = evaluator.metrics.index(budget.objective)
        sign = -1.0 if budget.objective.direction == "maximize" else 1.0  # lower sign * value is better
        if (budget.violation(mean[:, column]) <= 0).any():
            continue
        start = int(np.argmin(sign * mean[:, column]))
        best = _descend(genome, evaluator, probe[start], float(mean[start, column]), column, sign, budget)
        if budget.violation(np.array([best]))[0] > 0:
            raise InvalidValueError(
                f"budget {budget.text!r}",
                f"a bound some SubNet meets (best reachable value found: {best:.4g})",
                budget.bound,
            )


def _extremes(genome: Genome) -> list[SubNetConfig]:
    """The searched region's smallest and largest SubNets (fixed dimensions kept); those the space refuses (a
    cross-dimension rule) are left out."""
    out = []
    for index in (0, 1):
        values = {d.name: d.bounds()[index] for d in genome.dims}
        values |= {genome.dims[j].name: v for j, v in genome.fixed.items()}
        try:
            out.append(genome.space.validate(values))
        except InvalidValueError:
            continue
    return out


def _descend(
    genome: Genome,
    evaluator: Evaluator,
    config: SubNetConfig,
    value: float,
    column: int,
    sign: float,
    budget: Budget,
) -> float:
    """Greedy local search on metric ``column`` (``sign * value`` lower is better) from ``config``: move to the best
    SubNet differing in one free dimension while that improves, until ``budget`` is met or after
    :data:`BUDGET_DESCENT_STEPS` moves; returns the best value reached."""
    for _ in range(BUDGET_DESCENT_STEPS):
        if budget.violation(np.array([value]))[0] <= 0:
            break
        neighbours = _neighbours(genome, config)
        if not neighbours:
            break
        mean, _ = evaluator.evaluate(neighbours)
        i = int(np.argmin(sign * mean[:, column]))
        if sign * mean[i, column] >= sign * value:
            break
        config, value = neighbours[i], float(mean[i, column])
    return value


def _neighbours(genome: Genome, config: SubNetConfig) -> list[SubNetConfig]:
    """The valid SubNets differing from ``config`` in one free dimension: every other choice of a categorical
    dimension, the neighbouring steps and both bounds of a numeric one."""
    out = []
    for j, d in enumerate(genome.dims):
        if j in genome.fixed:
            continue
        current = config[d.name]
        if d.kind == "categorical":
            values = [c for c in d.choices if c != current]
        else:
            low, high = (float(b) for b in d.bounds())
            step = d.step if d.kind == "int" else (high - low) / 16
            near = (low, high, float(current) - step, float(current) + step)
            values = [int(v) if d.kind == "int" else v for v in dict.fromkeys(near) if low <= v <= high]
            values = [v for v in values if v != current]
        for v in values:
            try:
                out.append(genome.space.validate(config.values | {d.name: v}))
            except InvalidValueError:
                continue
    return out
