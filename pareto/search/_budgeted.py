"""Evaluation-budgeted multi-objective search: recover the Pareto front of (accuracy ↑, cheap objectives ↓) over a
pool of candidates while paying for at most ``budget`` accuracy evaluations.

Accuracy is the expensive objective (an extracted SubNet on a validation set, or a measurement table acting as the
oracle); the others (latency from a LUT or a predictor, parameters, FLOPs) are cheap and known for every candidate
up front. A candidate is on the front when no candidate at most as costly on every cheap objective is at least as
accurate (one of them strictly better), so the search is a sequence of decisions on whose accuracy to pay for.

Method (:class:`BudgetedAcquisition`, an ask/tell :class:`~pareto.search._strategies.AskTell` over the pool;
:func:`budgeted_search` drives it with an ``evaluate`` callable):

1. Initial design: ``initial`` candidates spread over the cheap objectives: a Latin hypercube in their rank
   (quantile) space, each point taking the nearest unused candidate (one candidate per latency quantile in 1-D).
2. Model: the accuracy predictor (default :class:`~predictors.AccuracyPredictor`: calibrated mean ± std) is fitted
   on the evaluated candidates and predicts all the others. It is refitted once the evaluations since the last fit
   reach ``max(batch_size, refit_growth × evaluations at that fit)``: every batch early, every ~10 % growth later,
   so thousands of evaluations cost tens of fits. Between fits each batch still sees every measured accuracy.
3. Hopeful candidates: an unevaluated candidate stays in play while its optimistic accuracy ``mean + kappa × std``
   beats the best measured accuracy of the candidates at most as costly (its *floor*: with one cheap objective a
   sort and a running maximum, O(n log n)). As the measured front fills in, the floor rises and the pool shrinks
   from the whole space to the few candidates that could still join the front.
4. Batch, optimistic front peeling: the hopeful candidates are ranked into non-dominated layers of
   (``mean + ucb × std`` ↑, cheap objectives ↓); the batch takes the first layer, then the next, and so on, and a
   layer larger than the room left contributes members spread evenly over the cheap ranks (farthest-point picks
   with several cheap objectives). Each batch thus covers the whole predicted front, cheap end to costly end,
   instead of spending itself on one stretch; ``ucb`` favours candidates the model knows little about.

On NAS-Bench-201 (CIFAR-10 × measured latency, ``benchmarks/bench_budgeted.py``) this recalls most of the exact front
within 300 evaluations, where a probability-of-Pareto-optimality acquisition (Monte-Carlo draws from the predictive
distribution) was tried and recalled markedly less: the front climbs by tenths of a percent at high accuracy,
below the predictor's error, and covering the predicted front evenly beats betting on the candidates the model
considers most likely.

Duplicates: a candidate equal to an earlier one (same :class:`~supernet.SubNetConfig`) is never evaluated; ties in
the cheap objectives follow the dominance rule above (equal cost and equal accuracy dominate neither way).

:func:`enqueue_batch` and :func:`study_evaluator` run the evaluations as trials of an Optuna study.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import qmc

from hwpareto.errors import InvalidValueError
from pareto.analysis._pareto import non_dominated_mask
from pareto.search._strategies import AskTell
from supernet import SearchSpace, SubNetConfig

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BudgetedAcquisition",
    "BudgetedResult",
    "BudgetedStep",
    "budgeted_search",
    "enqueue_batch",
    "study_evaluator",
]

PredictorFactory = Callable[[int], Any]
"""A seed → an unfitted regressor with ``fit(X, y)`` and ``predict(X, return_std=True)`` (without ``return_std``
support the std is taken as 0: a predicted front without uncertainty)."""

_PREDICT_CELLS = 4_000_000  # rows × training rows per prediction chunk (bounds the GP's kernel matrix)
_DENSE_CELLS = 20_000_000  # rows × front size × cheap columns per dominance chunk


@dataclass(frozen=True)
class BudgetedStep:
    """Diagnostics of one step (step 0: the initial design)."""

    step: int
    batch: tuple[int, ...]
    """Candidate indices evaluated in this step, in the order chosen."""
    n_evaluated: int
    """Evaluations spent after this step."""
    refit: bool
    """Whether the predictor was (re)fitted before choosing the batch."""
    cv_kendall_tau: float | None
    """The predictor's cross-validated Kendall τ-b (``cv_kendall_tau_``) where it has one."""
    predicted: tuple[tuple[float, float], ...]
    """The predictor's (mean, std) of each batch member when it was chosen (empty for the initial design): compare
    with the measured accuracies to watch calibration."""
    n_hopeful: int
    """Unevaluated candidates that could still join the front (optimistic accuracy above their floor)."""
    front_size: int
    """Non-dominated candidates among those evaluated, after the step."""
    fit_s: float
    acquire_s: float
    evaluate_s: float


@dataclass(frozen=True)
class BudgetedResult:
    """Evaluated candidates in evaluation order, their accuracies and the steps that chose them."""

    indices: np.ndarray
    accuracy: np.ndarray
    steps: tuple[BudgetedStep, ...]
    front: np.ndarray
    """Indices of the evaluated candidates that are non-dominated among the evaluated, by the first cheap objective."""
    stopped: str
    """``budget`` (spent), ``exhausted`` (no distinct candidate left), ``callback`` (:func:`budgeted_search`'s
    callback stopped it) or ``running`` (:meth:`BudgetedAcquisition.result` before either)."""
    candidates: Sequence[Any] = field(repr=False)

    @property
    def configs(self) -> list[Any]:
        """The evaluated candidates (e.g. :class:`SubNetConfig`), in evaluation order."""
        return [self.candidates[int(i)] for i in self.indices]


def _default_factory(seed: int) -> Any:
    from predictors import AccuracyPredictor

    return AccuracyPredictor(random_state=seed, n_jobs=1)


# ---------------------------------------------------------------------------------------------------- validation
def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or int(value) < low
        or (high is not None and int(value) > high)
    ):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise InvalidValueError(where, allowed, value)
    return int(value)


def _matrix(value: Any, where: str, rows: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidValueError(where, "a 2-D array of numbers", type(value).__name__) from None
    if arr.ndim == 1 and where == "cheap":
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise InvalidValueError(f"{where} shape", "(n_candidates, n_columns)", arr.shape)
    if rows is not None and arr.shape[0] != rows:
        raise InvalidValueError(f"{where} rows", f"{rows} (one per candidate)", arr.shape[0])
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise InvalidValueError(f"{where}[{bad[0][0]}, {bad[0][1]}]", "a finite number", float(arr[tuple(bad[0])]))
    return arr


def _signs(directions: Sequence[str] | None, m: int) -> np.ndarray:
    if directions is None:
        return np.ones(m)
    if isinstance(directions, str) or len(directions) != m:
        raise InvalidValueError("directions", f"{m} of 'minimize' / 'maximize' (one per cheap column)", directions)
    bad = [d for d in directions if d not in ("minimize", "maximize")]
    if bad:
        raise InvalidValueError("directions", "'minimize' or 'maximize' per cheap column", bad[0])
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def _first_of_duplicates(candidates: Sequence[Any]) -> np.ndarray:
    """Mask of candidates that equal no earlier candidate (unhashable candidates count as distinct)."""
    seen: set[Any] = set()
    out = np.ones(len(candidates), dtype=bool)
    for i, c in enumerate(candidates):
        try:
            if c in seen:
                out[i] = False
            else:
                seen.add(c)
        except TypeError:
            continue
    return out


# ---------------------------------------------------------------------------------------------------- dominance
def _dominator_max(cost: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each row ``i``: the largest ``values[j]`` over ``j != i`` with ``cost[j] <= cost[i]`` in every column
    (``-inf`` when none; rows with value ``-inf`` are no dominators)."""
    n, m = cost.shape
    out = np.full(n, -np.inf)
    if m == 1:
        order = np.argsort(cost[:, 0], kind="stable")
        c, v = cost[order, 0], values[order]
        new = np.r_[True, c[1:] != c[:-1]]
        starts = np.flatnonzero(new)
        gid = np.cumsum(new) - 1
        gmax = np.maximum.reduceat(v, starts)
        before = np.r_[-np.inf, np.maximum.accumulate(gmax)[:-1]]
        # the best other member of the own group: the group's best, or its second best for the best member
        within = np.lexsort((-v, gid))
        size = np.diff(np.r_[starts, n])
        second = np.where(size > 1, v[within[np.minimum(starts + 1, n - 1)]], -np.inf)
        other = gmax[gid].copy()
        other[within[starts]] = second
        out[order] = np.maximum(before[gid], other)
        return out
    live = np.flatnonzero(np.isfinite(values))
    if not len(live):
        return out
    reps = live[non_dominated_mask(np.column_stack([-values[live], cost[live]]))]
    rows = max(1, _DENSE_CELLS // (len(reps) * m))
    for lo in range(0, n, rows):
        i = np.arange(lo, min(n, lo + rows))
        dom = np.all(cost[reps][None] <= cost[i][:, None], axis=2) & (reps[None] != i[:, None])
        out[i] = np.where(dom, values[reps][None], -np.inf).max(axis=1)
    return out


def _ranks(cost: np.ndarray) -> np.ndarray:
    """Each cheap column as mid-ranks scaled to [0, 1]."""
    from scipy.stats import rankdata

    n = len(cost)
    return (rankdata(cost, axis=0) - 0.5) / max(n, 1)


def _space_filling(rank: np.ndarray, available: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` available candidates nearest to the points of a Latin hypercube in cheap-rank space."""
    pool = np.flatnonzero(available)
    points = qmc.LatinHypercube(d=rank.shape[1], seed=rng).random(k)
    jitter = rng.random(len(pool)) * 1e-9
    taken = np.zeros(len(pool), dtype=bool)
    chosen: list[int] = []
    for p in points:
        dist = np.sum((rank[pool] - p) ** 2, axis=1) + jitter
        dist[taken] = np.inf
        j = int(np.argmin(dist))
        taken[j] = True
        chosen.append(int(pool[j]))
    return chosen


def _predict(model: Any, X: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std in row chunks (std 0 where the model gives none)."""
    mean, std = np.empty(len(X)), np.zeros(len(X))
    rows = max(1000, _PREDICT_CELLS // max(n_train, 1))
    for lo in range(0, len(X), rows):
        part = X[lo : lo + rows]
        try:
            m, s = model.predict(part, return_std=True)
        except TypeError:
            m, s = model.predict(part), 0.0
        mean[lo : lo + rows], std[lo : lo + rows] = m, s
    return mean, np.maximum(std, 0.0)


def _spread_pick(members: np.ndarray, rank: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``members`` spread over cheap-rank space: evenly along the sorted ranks with one cheap objective,
    farthest-point picks from the cheapest with several."""
    if len(members) <= k:
        return members
    if rank.shape[1] == 1:
        ordered = members[np.argsort(rank[members, 0], kind="stable")]
        return ordered[np.unique(np.linspace(0, len(ordered) - 1, k).round().astype(int))]
    r = rank[members]
    chosen = [int(np.argmin(r.sum(axis=1)))]
    dist = np.sum((r - r[chosen[0]]) ** 2, axis=1)
    while len(chosen) < k:
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.sum((r - r[j]) ** 2, axis=1))
    return members[chosen]


def _peel(score: np.ndarray, cost: np.ndarray, rank: np.ndarray, pool: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` of ``pool``: the non-dominated layers of (``score`` ↑, ``cost`` ↓) in turn, each spread out."""
    chosen: list[int] = []
    left = pool
    while len(chosen) < k and len(left):
        layer = left[non_dominated_mask(np.column_stack([-score[left], cost[left]]))]
        pick = _spread_pick(layer, rank, k - len(chosen))
        chosen += [int(i) for i in pick]
        left = np.setdiff1d(left, pick, assume_unique=True)
    return chosen


# ---------------------------------------------------------------------------------------------------- search
class BudgetedAcquisition(AskTell):
    """The evaluation-budgeted acquisition over a pool of candidates, as an :class:`~pareto.search._strategies.AskTell`
    (see the module docstring for the method; :func:`budgeted_search` drives it with a callable).

    Built from the pool and the settings :func:`budgeted_search` takes (validated the same way, one-line
    :class:`InvalidValueError` per bad field). ``ask(n)`` returns the next batch of candidates (members of
    ``candidates``, never one told before nor a duplicate of an earlier candidate): the space-filling design until
    ``initial`` have been told, then batches of ``batch_size`` chosen by the model; at most ``n`` and never past the
    budget, so ``[]`` once the budget is spent or no distinct candidate is left. :attr:`pending` holds the asked
    batch's candidate indices. ``tell(configs, values, constraints)`` takes its evaluation: exactly the configs
    asked, in the order asked, ``values`` shape ``(len(configs), 1)`` of finite accuracies (maximised) and no
    constraints (shape ``(len(configs), 0)``: budgets filter the pool beforehand); one batch at a time, so a second
    ask before the tell is refused (a refused tell leaves the batch pending). Each tell records a
    :class:`BudgetedStep` (``evaluate_s``: the time from ask to tell); :meth:`result` summarises the evaluations
    told so far. Deterministic for a ``seed`` and a deterministic predictor, whatever the driver.
    """

    def __init__(
        self,
        candidates: Sequence[SubNetConfig] | Iterable[Any],
        features: Any,
        cheap: Any,
        budget: int,
        *,
        directions: Sequence[str] | None = None,
        batch_size: int = 10,
        initial: int = 20,
        seed: int = 0,
        predictor_factory: PredictorFactory | None = None,
        refit_growth: float = 0.1,
        ucb: float = 0.5,
        kappa: float = 2.0,
    ) -> None:
        pool = (
            list(candidates)
            if not isinstance(candidates, Sequence) or isinstance(candidates, (str, bytes))
            else candidates
        )
        n = len(pool)
        if n == 0:
            raise InvalidValueError("candidates", "at least one candidate", 0)
        self._X = _matrix(features, "features", n)
        cost = _matrix(cheap, "cheap", n)
        self._cost = cost * _signs(directions, cost.shape[1])
        self._distinct = _first_of_duplicates(pool)
        self.budget = _int(budget, "budget", 1, int(self._distinct.sum()))
        self.initial = _int(initial, "initial", 1)
        if self.budget < self.initial:
            raise InvalidValueError("budget", f"at least initial ({self.initial})", budget)
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.seed = _int(seed, "seed", 0, 2**31 - 1)
        for name, value in (("refit_growth", refit_growth), ("ucb", ucb), ("kappa", kappa)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < np.inf:
                raise InvalidValueError(name, "a finite number >= 0", value)
        self.refit_growth, self.ucb, self.kappa = refit_growth, ucb, kappa
        factory = predictor_factory or _default_factory
        if not callable(factory):
            raise InvalidValueError(
                "predictor_factory", "a callable seed -> unfitted regressor", type(factory).__name__
            )
        self._factory = factory
        self.candidates: Sequence[Any] = pool
        self._rng = np.random.default_rng(self.seed)
        self._rank = _ranks(self._cost)
        self._evaluated = np.zeros(n, dtype=bool)
        self._acc = np.full(n, np.nan)
        self._order: list[int] = []
        self._steps: list[BudgetedStep] = []
        self._model: Any = None
        self._mean = self._std = np.zeros(n)
        self._n_at_fit = 0
        self._pending: _Pending | None = None

    @property
    def steps(self) -> tuple[BudgetedStep, ...]:
        """The steps told so far (step 0: the first of the initial design)."""
        return tuple(self._steps)

    @property
    def pending(self) -> tuple[int, ...]:
        """Candidate indices of the batch asked and not yet told (empty when none is)."""
        return self._pending.batch if self._pending is not None else ()

    def ask(self, n: int) -> list[Any]:
        """Up to ``n`` candidates to evaluate next (``[]``: budget spent or no distinct candidate left)."""
        n = _int(n, "ask(n)", 0)
        if self._pending is not None:
            raise InvalidValueError(
                "ask", f"a tell of the {len(self._pending.batch)} candidates asked before", "another ask"
            )
        available = self._distinct & ~self._evaluated
        k = min(n, self.budget - len(self._order), int(available.sum()))
        if k <= 0:
            return []
        start = time.perf_counter()
        if len(self._order) < self.initial:  # the initial design: space-filling
            batch = _space_filling(self._rank, available, min(k, self.initial - len(self._order)), self._rng)
            return self._asked(_Pending(tuple(batch), False, None, 0, 0.0, time.perf_counter() - start, ()))
        k = min(k, self.batch_size)
        y = self._acc[self._order]
        if np.ptp(y) == 0:  # nothing to learn from: keep filling space
            batch = _space_filling(self._rank, available, k, self._rng)
            return self._asked(_Pending(tuple(batch), False, None, 0, 0.0, time.perf_counter() - start, ()))
        fit_s, refit = 0.0, False
        if self._model is None or len(self._order) - self._n_at_fit >= max(
            self.batch_size, self.refit_growth * self._n_at_fit
        ):
            self._model = self._factory(self.seed).fit(self._X[self._order], y)
            rows = np.flatnonzero(available)
            self._mean, self._std = np.zeros(len(self._acc)), np.zeros(len(self._acc))
            self._mean[rows], self._std[rows] = _predict(self._model, self._X[rows], len(self._order))
            self._n_at_fit, refit = len(self._order), True
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
        known = np.where(self._evaluated, self._acc, -np.inf)
        floor = _dominator_max(self._cost, known)  # best measured accuracy at most as costly
        left = np.flatnonzero(available)
        hopeful = left[self._mean[left] + self.kappa * self._std[left] > floor[left]]
        pool = hopeful if len(hopeful) >= k else left
        batch = _peel(self._mean + self.ucb * self._std, self._cost, self._rank, pool, k)
        tau = getattr(self._model, "cv_kendall_tau_", None)
        predicted = tuple((float(self._mean[i]), float(self._std[i])) for i in batch)
        acquire_s = time.perf_counter() - start
        return self._asked(
            _Pending(
                tuple(batch), refit, None if tau is None else float(tau), len(hopeful), fit_s, acquire_s, predicted
            )
        )

    def _asked(self, pending: _Pending) -> list[Any]:
        pending.asked_at = time.perf_counter()
        self._pending = pending
        return [self.candidates[i] for i in pending.batch]

    def tell(self, configs: Sequence[Any], values: np.ndarray, constraints: np.ndarray) -> None:
        """The accuracies of the batch asked: ``values`` (len(configs), 1), ``constraints`` empty."""
        told = time.perf_counter()
        p = self._pending
        if p is None:
            raise InvalidValueError("tell", "the evaluation of a batch asked", "a tell with no batch asked")
        configs = list(configs)
        wrong = [j for j, (c, i) in enumerate(zip(configs, p.batch, strict=False)) if not _same(c, self.candidates[i])]
        if len(configs) != len(p.batch) or wrong:
            got = (
                f"{len(configs)} configs" if len(configs) != len(p.batch) else f"another config at position {wrong[0]}"
            )
            raise InvalidValueError("tell configs", f"the {len(p.batch)} candidates asked, in the order asked", got)
        try:
            v = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidValueError("tell values", "an array of accuracies", type(values).__name__) from None
        if v.shape != (len(p.batch), 1):
            raise InvalidValueError("tell values shape", f"({len(p.batch)}, 1) (one accuracy per config)", v.shape)
        if not np.all(np.isfinite(v)):
            raise InvalidValueError("tell values", "finite accuracies", v[:5, 0].tolist())
        if constraints is not None and np.size(constraints):
            raise InvalidValueError(
                "tell constraints", f"none, shape ({len(p.batch)}, 0) (budgets filter the pool)", np.shape(constraints)
            )
        batch = list(p.batch)
        self._acc[batch] = v[:, 0]
        self._evaluated[batch] = True
        self._order.extend(batch)
        front = non_dominated_mask(np.column_stack([-self._acc[self._order], self._cost[self._order]])).sum()
        self._steps.append(
            BudgetedStep(
                len(self._steps),
                p.batch,
                len(self._order),
                p.refit,
                p.tau,
                p.predicted,
                p.n_hopeful,
                int(front),
                p.fit_s,
                p.acquire_s,
                told - p.asked_at,
            )
        )
        self._pending = None

    def result(self) -> BudgetedResult:
        """The evaluations told so far; ``stopped``: ``budget`` (spent), ``exhausted`` (no distinct candidate
        left) or ``running`` (the driver stopped before either)."""
        if len(self._order) >= self.budget:
            stopped = "budget"
        elif not (self._distinct & ~self._evaluated).any():
            stopped = "exhausted"
        else:
            stopped = "running"
        idx = np.asarray(self._order, dtype=np.int64)
        acc, cost = self._acc, self._cost
        front = idx[non_dominated_mask(np.column_stack([-acc[idx], cost[idx]]))] if len(idx) else idx
        front = front[np.lexsort((-acc[front], cost[front, 0]))]
        return BudgetedResult(idx, acc[idx].copy(), self.steps, front, stopped, self.candidates)


@dataclass
class _Pending:
    """A batch asked and not yet told, with what its step will record."""

    batch: tuple[int, ...]
    refit: bool
    tau: float | None
    n_hopeful: int
    fit_s: float
    acquire_s: float
    predicted: tuple[tuple[float, float], ...]
    asked_at: float = 0.0


def _same(told: Any, asked: Any) -> bool:
    if told is asked:
        return True
    try:
        return bool(told == asked)
    except (TypeError, ValueError):  # e.g. arrays: compared by identity only
        return False


def budgeted_search(
    candidates: Sequence[SubNetConfig] | Iterable[Any],
    features: Any,
    cheap: Any,
    evaluate: Callable[[list[int]], Any],
    budget: int,
    *,
    directions: Sequence[str] | None = None,
    batch_size: int = 10,
    initial: int = 20,
    seed: int = 0,
    predictor_factory: PredictorFactory | None = None,
    callback: Callable[[BudgetedStep], bool | None] | None = None,
    refit_growth: float = 0.1,
    ucb: float = 0.5,
    kappa: float = 2.0,
) -> BudgetedResult:
    """Spend at most ``budget`` calls' worth of accuracy evaluations to find the Pareto front of (accuracy ↑, cheap
    objectives); see the module docstring for the method. A loop over :class:`BudgetedAcquisition`.

    ``candidates`` (a sequence, or any iterable, materialised) pairs with the rows of ``features``
    ``(n_candidates, n_features)`` (the predictor's input, e.g. :class:`~predictors.SpaceFeatures`) and ``cheap``
    ``(n_candidates, m)`` (or ``(n_candidates,)``), each column minimised unless ``directions`` says ``maximize``.
    ``evaluate(indices)`` returns the accuracies (maximised) of those candidates. The first ``initial`` evaluations
    are a space-filling design, then batches of ``batch_size``. ``predictor_factory(seed)`` makes an unfitted
    predictor (default: :class:`~predictors.AccuracyPredictor`, which needs 10 rows and two distinct accuracies;
    with constant accuracies the search keeps filling space). ``callback(step)`` runs after each step; ``True``
    stops the search. ``refit_growth``, ``ucb`` (the peeled score is ``mean + ucb × std``) and ``kappa`` (hopeful:
    ``mean + kappa × std`` above the floor) tune the acquisition. Deterministic for a ``seed`` and a deterministic
    predictor.
    """
    acquisition = BudgetedAcquisition(
        candidates,
        features,
        cheap,
        budget,
        directions=directions,
        batch_size=batch_size,
        initial=initial,
        seed=seed,
        predictor_factory=predictor_factory,
        refit_growth=refit_growth,
        ucb=ucb,
        kappa=kappa,
    )
    while batch := acquisition.ask(acquisition.budget):
        indices = list(acquisition.pending)
        values = np.asarray(evaluate(list(indices)), dtype=np.float64).reshape(-1)
        if values.shape != (len(indices),) or not np.all(np.isfinite(values)):
            raise InvalidValueError(
                f"evaluate({indices[:3]}...) result", f"{len(indices)} finite accuracies", values.tolist()[:5]
            )
        acquisition.tell(batch, values[:, None], np.empty((len(indices), 0)))
        if callback is not None and callback(acquisition.steps[-1]):
            return replace(acquisition.result(), stopped="callback")
    return acquisition.result()


# ---------------------------------------------------------------------------------------------------- Optuna
def _params(candidate: SubNetConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(candidate, SubNetConfig):
        return candidate.values
    if isinstance(candidate, Mapping):
        return dict(candidate)
    raise InvalidValueError(
        "candidate", "a SubNetConfig or a mapping of dimension names to values", type(candidate).__name__
    )


def enqueue_batch(
    study: optuna.Study, candidates: Sequence[SubNetConfig | Mapping[str, Any]], indices: Iterable[int]
) -> list[dict[str, Any]]:
    """Enqueue the candidates at ``indices`` as trials of ``study`` (params = dimension name → value; the user
    attribute ``candidate_index`` records the index). Returns the enqueued params, in order."""
    out = []
    for i in indices:
        i = _int(i, "candidate index", 0, len(candidates) - 1)
        params = _params(candidates[i])
        study.enqueue_trial(params, user_attrs={"candidate_index": i})
        out.append(params)
    return out


def study_evaluator(
    study: optuna.Study,
    space: SearchSpace,
    candidates: Sequence[SubNetConfig],
    objective: Callable[[SubNetConfig], float],
) -> Callable[[list[int]], np.ndarray]:
    """An ``evaluate`` for :func:`budgeted_search` that runs each evaluation as a trial of ``study`` (one objective,
    ``maximize``; run in one process): it enqueues the batch, lets the trials suggest every dimension of ``space``
    (so they carry the usual params and distributions) and returns ``objective(config)`` of each."""

    def trial_fn(trial: optuna.Trial) -> float:
        values = {}
        for dim in space.dimensions:
            dist: Any = dim.distribution()
            if dim.kind == "categorical":
                values[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
            elif dim.kind == "int":
                values[dim.name] = trial.suggest_int(dim.name, dist.low, dist.high, step=dist.step)
            else:
                values[dim.name] = trial.suggest_float(dim.name, dist.low, dist.high)
        return float(objective(space.validate(values)))

    def evaluate(indices: list[int]) -> np.ndarray:
        before = len(study.trials)
        enqueue_batch(study, candidates, indices)
        study.optimize(trial_fn, n_trials=len(indices))
        got = {t.user_attrs.get("candidate_index"): t.value for t in study.trials[before:]}
        missing = [i for i in indices if got.get(i) is None]
        if missing:
            raise InvalidValueError("study trials", "a finished trial per enqueued candidate", missing)
        return np.array([got[i] for i in indices], dtype=np.float64)

    return evaluate
