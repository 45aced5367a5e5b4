"""Search strategies: what proposes the SubNets of a surrogate search, behind one small ask/tell interface.

:class:`AskTell` is the interface (modelled on Optuna's ``BaseSampler`` and Archai's ``Searcher``, batched: a
generation at a time); :class:`Strategy` is an :class:`AskTell` with the construction contract the registry relies
on. The search loop (:func:`pareto.search._search.run_surrogate`) owns everything else: the study, the
evaluation, repeats, the trials' Optuna attributes and the bulk writes. Built-ins:

- ``nsga2`` — NSGA-II written here, vectorised over a generation (Deb et al. 2002, as Optuna's ``NSGAIISampler``:
  constrained domination — feasible before infeasible, infeasible by total violation —, binary tournaments on
  rank and crowding distance, uniform crossover with probability 0.9, per-gene mutation 1/n_dims); uniform until
  a population has been evaluated;
- ``random`` — uniform per dimension;
- ``nsga3``, ``tpe`` — Optuna's own samplers, asked a generation at a time on an in-memory study that mirrors
  the evaluated trials (slower: Optuna samples trial by trial).

Strategies are found by name in :data:`STRATEGIES`, a :class:`hwpareto.plugins.Registry` over the entry-point
group ``hwpareto.strategies`` (the built-ins are declared there too, in hwpareto's ``pyproject.toml``); a strategy
can also be registered in code with :func:`register_strategy`. ``SearchSpec.sampler`` names one.

The evaluation-budgeted acquisition (:class:`pareto.BudgetedAcquisition`) is an :class:`AskTell` but not
a :class:`Strategy`: it is built from a finite pool of stored candidates whose cheap objectives are known up front
(not from a problem and a history), sizes its own steps (an initial design, then batches) and pays for evaluations
run as distributed trials; the worker dispatches it by ``SearchSpec.mode`` next to the surrogate loop
(:mod:`pareto.search._budgeted_study`).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.options import SearchOptions
from hwpareto.plugins import PluginError, Registry
from pareto.analysis._pareto import nondominated_sort
from supernet import SearchSpace, SubNetConfig

__all__ = [
    "GENERATION_KEY",
    "NSGA3_GENERATION_KEY",
    "PARENT_CACHE_PREFIX",
    "STRATEGIES",
    "AskTell",
    "ElitePool",
    "Genome",
    "NSGA2Strategy",
    "NSGA3Strategy",
    "OptunaStrategy",
    "Problem",
    "RandomStrategy",
    "Strategy",
    "TPEStrategy",
    "elite",
    "register_strategy",
    "strategy_class",
    "violation",
]

# Optuna's GA samplers' keys (BaseGASampler: f"{cls.__name__}:generation" / f"{cls.__name__}:parent:")
GENERATION_KEY = "NSGAIISampler:generation"
PARENT_CACHE_PREFIX = "NSGAIISampler:parent:"
NSGA3_GENERATION_KEY = "NSGAIIISampler:generation"


# ---------------------------------------------------------------------------------------------------- problem
DECODE_MEMO = 4096
"""Gene rows whose configs a :class:`Genome` remembers (NSGA-II proposes many rows again once it converges; about
20 MB of mbv3 configs, three quarters of the repeats of a 20,000-trial search)."""


class Genome:
    """Configs as rows of per-dimension values (categorical: choice indices) for vectorised variation; ``fixed``
    dimensions always take their given value."""

    def __init__(self, space: SearchSpace, fixed: Mapping[str, Any]) -> None:
        self.space = space
        self.dims = space.dimensions
        self.fixed = {
            space.dimensions.index(space.dimension(k)): space.dimension(k).coerce(v, space.name)
            for k, v in fixed.items()
        }
        self._genes = [(d.name, d.choices if d.kind == "categorical" else None, d.kind == "int") for d in self.dims]
        self._decoded: dict[bytes, SubNetConfig] = {}  # gene rows' configs (a strategy proposes rows again)

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
            for j, value in self.fixed.items():  # every strategy's proposals keep the fixed dimensions
                row[j] = self.dims[j].choices.index(value) if self.dims[j].kind == "categorical" else value
            memo = row.tobytes()
            known = self._decoded.get(memo)
            if known is not None:
                out.append(known)
                continue
            for attempt in range(100):
                values = {
                    name: choices[int(g)] if choices is not None else (int(g) if is_int else g)
                    for (name, choices, is_int), g in zip(self._genes, row.tolist(), strict=True)
                }
                try:
                    config = self.space.validate(values)
                except InvalidValueError:
                    row = self.random(rng, 1)[0]
                    continue
                if attempt == 0:  # a row breaking a cross rule is redrawn at random each time: not remembered
                    if len(self._decoded) >= DECODE_MEMO:
                        self._decoded.clear()
                    self._decoded[memo] = config
                out.append(config)
                break
            else:
                raise HwparetoError(f"space {self.space.name}: could not draw a valid config")
        return out

    def canonical(self, config: SubNetConfig) -> SubNetConfig:
        """``config`` with its inactive parts canonical (:meth:`SearchSpace.canonical`), fixed dimensions kept."""
        canon = self.space.canonical(config)
        if any(canon[self.dims[j].name] != v for j, v in self.fixed.items()):
            canon = self.space.validate(canon.values | {self.dims[j].name: v for j, v in self.fixed.items()})
        return canon


@dataclass(frozen=True)
class Problem:
    """What a strategy searches: the space with its ``fixed`` dimensions, the objectives' directions
    (``minimize``/``maximize``, the columns of ``values``) and the constraint names (the budgets, the columns of
    ``constraints``)."""

    space: SearchSpace
    directions: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signs(self) -> np.ndarray:
        """Multiply values by these to minimise every column."""
        return np.array([1.0 if d == "minimize" else -1.0 for d in self.directions])


def violation(constraints: np.ndarray, n: int) -> np.ndarray:
    """Total violation per row (0: feasible)."""
    return constraints.clip(min=0).sum(axis=1) if constraints.size else np.zeros(n)


# ---------------------------------------------------------------------------------------------------- protocol
@runtime_checkable
class AskTell(Protocol):
    """Proposes configs a batch at a time and learns from their evaluation: what a search loop drives.

    ``ask(n)`` returns up to ``n`` configs, ``[]`` when there is nothing left to propose (the driver stops there);
    ``tell(configs, values, constraints)`` gives the driver's evaluation of what it took from the asks since the
    last tell, in batch order: ``values`` of shape ``(len(configs), n_objectives)``, each objective in its own
    direction, and ``constraints`` ``(len(configs), n_constraints)``, a constraint ``<= 0`` when met
    (``n_constraints`` may be 0). The driver owns the evaluation, the storage and the stopping; an implementation
    owns its randomness (deterministic for a seed and the values told) and says what else it accepts (a
    :class:`Strategy` also takes fill-ins it did not propose; :class:`pareto.BudgetedAcquisition` exactly
    the batch it asked). ``isinstance(x, AskTell)`` checks that both methods exist, not their signatures.
    """

    def ask(self, n: int) -> list[SubNetConfig]: ...

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None: ...


class Strategy(AskTell, ABC):
    """Proposes SubNets of a problem's space a batch at a time and learns from their evaluation: an
    :class:`AskTell` plus the construction contract (first item below) that the ``hwpareto.strategies`` registry and
    the surrogate search loop rely on, to build any registered strategy from a :class:`Problem`, the options and
    the stored history.

    Contract:

    - Constructed once per run, ``cls(problem, options, configs, values, constraints)``: the last three are the
      study's evaluated trials so far, in trial order (a resumed search continues from them; empty for a new one),
      ``values`` of shape (n, len(problem.directions)) and ``constraints`` (n, len(problem.constraints)), a
      constraint ``<= 0`` when met.
    - ``ask(n)`` returns up to ``n`` valid configs of ``problem.space`` (:meth:`SearchSpace.validate`), each with
      the problem's fixed dimensions at their values (:class:`Genome` decodes that way). It may propose SubNets
      already evaluated: the search drops them (by effective architecture), asks again for the rest and, when the
      strategy keeps repeating itself, fills the batch with :meth:`uniform` draws.
    - ``tell(configs, values, constraints)`` gives the evaluation of the batch built from the asks since the last
      tell: canonical configs (:meth:`Genome.canonical`) in batch order, among them uniform draws the strategy did
      not propose; proposals left out were repeats.
    - All randomness comes from :attr:`rng` (seeded from ``options.seed`` and the number of evaluated trials, so a
      resumed run does not replay the first run's draws): a strategy is deterministic for a seed and a history.
    - ``generation_key`` is the trial system attribute holding each trial's generation; ``parent_prefix``, when
      set, the study system attribute prefix under which the search writes each generation's parents (the best
      ``population`` trials by constrained rank and crowding): Optuna's own sampler continues the study from there.
    """

    generation_key: ClassVar[str] = GENERATION_KEY
    parent_prefix: ClassVar[str | None] = PARENT_CACHE_PREFIX

    def __init__(
        self,
        problem: Problem,
        options: SearchOptions,
        configs: Sequence[SubNetConfig] = (),
        values: np.ndarray | None = None,
        constraints: np.ndarray | None = None,
    ) -> None:
        self.problem = problem
        self.options = options
        self.genome = Genome(problem.space, problem.fixed)
        self.rng = np.random.default_rng([options.seed, len(configs)])

    @abstractmethod
    def ask(self, n: int) -> list[SubNetConfig]:
        """Up to ``n`` proposals."""

    @abstractmethod
    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        """The evaluated batch."""

    def uniform(self, n: int) -> list[SubNetConfig]:
        """``n`` configs drawn uniformly per dimension (fixed dimensions kept)."""
        return self.genome.decode(self.genome.random(self.rng, n), self.rng)


def _history(
    problem: Problem, configs: Sequence[SubNetConfig], values: np.ndarray | None, constraints: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Values (n, m) and constraints (n, k) of a history (None: no trials)."""
    shapes = ((len(configs), len(problem.directions)), (len(configs), len(problem.constraints)))
    out = []
    for name, given, shape in zip(("values", "constraints"), (values, constraints), shapes, strict=True):
        arr = np.zeros(shape) if given is None and not len(configs) else np.asarray(given, dtype=float)
        if arr.size == 0 and 0 in shape:
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise InvalidValueError(f"history {name} shape", str(shape), arr.shape)
        out.append(arr)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------- NSGA-II
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


def elite(signed: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Row indices best first by constrained rank, then crowding (``signed``: every column minimised)."""
    rank, crowd = _rank(signed, violation)
    return np.lexsort((-crowd, rank))


class ElitePool:
    """Evaluated rows with one payload each (gene rows, trial ids), their signed values (every column minimised)
    and total constraint violation. Once :meth:`add` takes it past ``4 × population`` rows it keeps the
    ``2 × population`` elite, so NSGA-II's parents (and those the search writes for Optuna's) come from a bounded
    pool; the history it starts from is kept whole until then."""

    def __init__(self, population: int, payload: np.ndarray, signed: np.ndarray, violation: np.ndarray) -> None:
        self.population = population
        self.payload, self.signed, self.violation = payload, signed, violation
        self._ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.payload)

    def ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Constrained rank, crowding distance and the row indices best first (:func:`elite`), computed once per
        state of the pool (a strategy asked many times between two tells ranks it once)."""
        if self._ranked is None:
            rank, crowd = _rank(self.signed, self.violation)
            self._ranked = rank, crowd, np.lexsort((-crowd, rank))
        return self._ranked

    def add(self, payload: np.ndarray, signed: np.ndarray, violation: np.ndarray) -> None:
        """Append evaluated rows, then bound the pool."""
        if not len(payload):
            return
        self.payload = np.concatenate([self.payload, payload]) if len(self.payload) else payload
        self.signed = np.vstack([self.signed, signed]) if len(self.signed) else signed
        self.violation = np.concatenate([self.violation, violation])
        self._ranked = None
        if len(self.payload) > 4 * self.population:
            keep = self.ranked()[2][: 2 * self.population]
            self.payload, self.signed, self.violation = self.payload[keep], self.signed[keep], self.violation[keep]
            self._ranked = None

    def best(self, k: int) -> np.ndarray:
        """Payloads of the ``k`` best rows by constrained rank, then crowding."""
        return self.payload[self.ranked()[2][:k]]


class NSGA2Strategy(Strategy):
    """NSGA-II (see the module docstring); its pool of parents is bounded to the ``2 × population`` elite once it
    exceeds ``4 × population``."""

    def __init__(
        self,
        problem: Problem,
        options: SearchOptions,
        configs: Sequence[SubNetConfig] = (),
        values: np.ndarray | None = None,
        constraints: np.ndarray | None = None,
    ) -> None:
        super().__init__(problem, options, configs, values, constraints)
        v, c = _history(problem, configs, values, constraints)
        genes = np.array([self.genome.encode(x) for x in configs]) if configs else np.empty((0, len(self.genome.dims)))
        self.pool = ElitePool(options.population, genes, v * problem.signs, violation(c, len(configs)))

    def ask(self, n: int) -> list[SubNetConfig]:
        if len(self.pool) < self.options.population:
            return self.uniform(n)
        return self.genome.decode(self._offspring(n), self.rng)

    def _offspring(self, size: int) -> np.ndarray:
        rank, crowd, order = self.pool.ranked()
        parents_pool = order[:size]
        a, b = self.rng.choice(parents_pool, size=(2, 2 * size))
        better = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
        winners = np.where(better, a, b).reshape(2, size)
        p1, p2 = self.pool.payload[winners[0]], self.pool.payload[winners[1]]
        swap = (self.rng.random(p1.shape) < 0.5) & (self.rng.random((size, 1)) < 0.9)
        child: np.ndarray = np.where(swap, p2, p1)
        mutate = self.rng.random(child.shape) < 1.0 / child.shape[1]
        if mutate.any():
            fresh = self.genome.random(self.rng, size)
            child = np.where(mutate, fresh, child)
        return child

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        if not len(configs):
            return
        self.pool.add(
            np.array([self.genome.encode(c) for c in configs]),
            np.asarray(values, dtype=float) * self.problem.signs,
            violation(np.asarray(constraints), len(configs)),
        )


class RandomStrategy(Strategy):
    """Uniform per dimension."""

    def ask(self, n: int) -> list[SubNetConfig]:
        return self.uniform(n)

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        """Nothing to learn."""


# ---------------------------------------------------------------------------------------------------- Optuna
class OptunaStrategy(Strategy):
    """An Optuna sampler (:meth:`sampler`) asked trial by trial on an in-memory study that mirrors the evaluated
    trials (constraints as trial constraints, which Optuna 5's samplers read). Told configs that it proposed are
    told to their trial, uniform draws added as finished trials, proposals left out (repeats) failed."""

    def __init__(
        self,
        problem: Problem,
        options: SearchOptions,
        configs: Sequence[SubNetConfig] = (),
        values: np.ndarray | None = None,
        constraints: np.ndarray | None = None,
    ) -> None:
        import optuna

        super().__init__(problem, options, configs, values, constraints)
        v, c = _history(problem, configs, values, constraints)
        self.dists = {d.name: d.distribution() for d in problem.space.dimensions}
        directions: list[Any] = list(problem.directions)
        self.study = optuna.create_study(directions=directions, sampler=self.sampler())
        self._asked: list[optuna.Trial] = []  # proposals since the last tell
        self._first: dict[str, int] = {}  # canonical config key -> index of the first proposal of it
        for i, config in enumerate(configs):
            self.study.add_trial(self._finished(config, v[i], c[i]))

    @abstractmethod
    def sampler(self) -> Any:
        """The Optuna sampler (an ``optuna.samplers.BaseSampler``) seeded from ``self.options``."""

    def _finished(self, config: SubNetConfig, values: np.ndarray, constraints: np.ndarray) -> Any:
        import optuna

        return optuna.trial.create_trial(
            params={d.name: config[d.name] for d in self.genome.dims},
            distributions=self.dists,
            values=np.asarray(values, dtype=float).tolist(),
            constraints=dict(zip(self.problem.constraints, map(float, constraints), strict=True))
            if self.problem.constraints
            else None,
        )

    def ask(self, n: int) -> list[SubNetConfig]:
        trials = [self.study.ask(self.dists) for _ in range(n)]
        configs = self.genome.decode(np.array([self.genome.encode(t.params) for t in trials]), self.rng)
        for trial, config in zip(trials, configs, strict=True):
            self._first.setdefault(self.genome.canonical(config).key, len(self._asked))
            self._asked.append(trial)
        return configs

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        from optuna.trial import TrialState

        told = set()
        for config, v, c in zip(configs, values, constraints, strict=True):
            index = self._first.get(config.key)
            if index is None:  # a uniform draw
                self.study.add_trial(self._finished(config, v, c))
                continue
            trial = self._asked[index]
            for name, value in zip(self.problem.constraints, c, strict=True):
                trial.set_constraint(name, float(value))
            self.study.tell(trial, np.asarray(v, dtype=float).tolist())
            told.add(index)
        for index, trial in enumerate(self._asked):
            if index not in told:
                self.study.tell(trial, state=TrialState.FAIL)
        self._asked, self._first = [], {}


class TPEStrategy(OptunaStrategy):
    """Optuna's ``TPESampler``."""

    def sampler(self) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=self.options.seed)


class NSGA3Strategy(OptunaStrategy):
    """Optuna's ``NSGAIIISampler`` (its own generation key; no parents written)."""

    generation_key = NSGA3_GENERATION_KEY
    parent_prefix = None

    def sampler(self) -> Any:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.NSGAIIISampler(population_size=self.options.population, seed=self.options.seed)


# ---------------------------------------------------------------------------------------------------- registry
def _check(name: str, obj: object) -> type[Strategy]:
    if isinstance(obj, type) and issubclass(obj, Strategy) and not getattr(obj, "__abstractmethods__", None):
        return obj
    raise PluginError(f"hwpareto.strategies plugin {name!r}: expected a concrete pareto.Strategy subclass, got {obj!r}")


STRATEGIES: Registry[type[Strategy]] = Registry("hwpareto.strategies", "sampler", _check)
"""Strategies by name: the ``hwpareto.strategies`` entry points and those registered in code."""


def register_strategy(name: str, cls: type[Strategy], *, replace: bool = False) -> type[Strategy]:
    """Make ``cls`` available as ``SearchSpec(sampler=name)`` in this process."""
    return STRATEGIES.register(name, cls, replace=replace)


def strategy_class(name: str) -> type[Strategy]:
    """The strategy called ``name``; an unknown name is a one-line error listing the available ones."""
    return STRATEGIES.get(name)
