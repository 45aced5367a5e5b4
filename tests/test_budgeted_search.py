"""Evaluation-budgeted search (pareto.search): dominance helpers against brute force, the search loop's contract
(budget, duplicates, determinism, stopping, bad input), its recall on a synthetic problem with a known front, and the
acquisition driven through the ask/tell protocol (pareto.search._strategies.AskTell) like every strategy."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from sklearn.linear_model import BayesianRidge

from hwpareto.errors import InvalidValueError
from hwpareto.options import SearchOptions
from pareto import non_dominated_mask
from pareto.search._budgeted import (
    BudgetedAcquisition,
    BudgetedResult,
    _dominator_max,
    budgeted_search,
    enqueue_batch,
    study_evaluator,
)
from pareto.search._strategies import STRATEGIES, AskTell, Problem, strategy_class
from supernet import get_space
from supernet.nb201 import NB201Space


def brute_mask(points: np.ndarray) -> np.ndarray:
    n = len(points)
    return np.array(
        [
            not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in range(n) if j != i)
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_non_dominated_mask_matches_brute_force_with_ties(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(20):
        pts = rng.integers(0, 6, size=(int(rng.integers(1, 60)), d)).astype(float)  # many exact ties
        assert np.array_equal(non_dominated_mask(pts), brute_mask(pts))


@pytest.mark.parametrize("m", [1, 2])
def test_dominator_max_matches_brute_force(m: int) -> None:
    rng = np.random.default_rng(10 + m)
    cost = rng.integers(0, 8, size=(80, m)).astype(float)
    values = np.where(rng.random(80) < 0.3, -np.inf, rng.integers(0, 5, 80).astype(float))
    want = np.array(
        [
            max([values[j] for j in range(80) if j != i and np.all(cost[j] <= cost[i])], default=-np.inf)
            for i in range(80)
        ]
    )
    assert np.array_equal(_dominator_max(cost, values), want)


def synthetic(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features in [0, 1]^4; accuracy rises with size (with diminishing returns) and cost rises with it too, so the
    front is a thin ridge the predictor has to find."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4))
    size = X[:, 0] + 0.5 * X[:, 1]
    acc = np.sqrt(size) + 0.3 * X[:, 2] * (1 - X[:, 3]) + 0.01 * rng.standard_normal(n)
    cost = size + 0.2 * X[:, 3] + 0.05 * rng.random(n)
    return X, acc, cost


def recall(order: np.ndarray, acc: np.ndarray, cost: np.ndarray) -> float:
    front = np.flatnonzero(non_dominated_mask(np.column_stack([-acc, cost])))
    return float(np.isin(front, order).mean())


def ridge(seed: int) -> BayesianRidge:
    """A fast predictor with a std: quadratic features are not needed for the test's ridge to rank the pool."""
    return BayesianRidge()


def test_search_finds_the_front_far_better_than_random() -> None:
    X, acc, cost = synthetic()
    features = np.column_stack([X, X**2, X[:, [2]] * X[:, [3]]])
    calls: list[list[int]] = []

    def evaluate(idx: list[int]) -> np.ndarray:
        calls.append(idx)
        return acc[idx]

    result = budgeted_search(
        range(len(acc)), features, cost, evaluate, 120, batch_size=10, initial=20, seed=0, predictor_factory=ridge
    )
    assert len(result.indices) == 120 and len(set(result.indices.tolist())) == 120
    assert result.stopped == "budget" and [len(c) for c in calls] == [20] + [10] * 10
    assert np.array_equal(result.accuracy, acc[result.indices])
    assert result.steps[0].predicted == () and all(len(s.predicted) == len(s.batch) for s in result.steps[1:])
    # the reported front is exactly the non-dominated set of what was evaluated, cheapest first
    evaluated = result.indices
    want = evaluated[non_dominated_mask(np.column_stack([-acc[evaluated], cost[evaluated]]))]
    assert sorted(result.front.tolist()) == sorted(want.tolist())
    assert np.all(np.diff(cost[result.front]) >= 0)
    ours = recall(result.indices, acc, cost)
    rng = np.random.default_rng(1)
    random_recall = np.mean([recall(rng.permutation(len(acc))[:120], acc, cost) for _ in range(20)])
    assert ours >= 0.8 and ours >= 4 * random_recall


@pytest.mark.slow
def test_default_predictor_runs_and_is_deterministic() -> None:
    X, acc, cost = synthetic(400, seed=3)
    runs = [
        budgeted_search(list(range(400)), X, cost, lambda i: acc[i], 40, batch_size=10, initial=20, seed=7)
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].steps[1].refit and runs[0].steps[1].cv_kendall_tau is not None


def test_duplicates_are_never_evaluated_and_the_pool_can_run_out() -> None:
    space = NB201Space()
    distinct = [space.from_index(i) for i in range(30)]
    pool = distinct + distinct[:10]  # ten repeats
    features = np.array([[i % 30] for i in range(len(pool))], dtype=float)
    acc = np.sin(features[:, 0])
    seen: list[int] = []

    def evaluate(idx: list[int]) -> np.ndarray:
        seen.extend(idx)
        return acc[idx]

    result = budgeted_search(pool, features, features[:, 0], evaluate, 30, initial=10, predictor_factory=ridge)
    assert sorted(seen) == list(range(30)) and result.configs == [pool[i] for i in result.indices]
    with pytest.raises(InvalidValueError, match=r"budget: expected an integer in \[1, 30\], got 31"):
        budgeted_search(pool, features, features[:, 0], evaluate, 31, initial=10)


def test_constant_accuracy_keeps_filling_space_and_callback_stops() -> None:
    X, _, cost = synthetic(300)
    result = budgeted_search(range(300), X, cost, lambda i: np.ones(len(i)), 50, initial=20)
    assert len(result.indices) == 50 and all(not s.refit for s in result.steps)
    stopped = budgeted_search(
        range(300),
        X,
        cost,
        lambda i: cost[i],
        100,
        initial=20,
        predictor_factory=ridge,
        callback=lambda step: step.n_evaluated >= 40,
    )
    assert stopped.stopped == "callback" and len(stopped.indices) == 40


def test_maximised_cheap_column_flips_dominance() -> None:
    X, acc, cost = synthetic(300, seed=5)
    result = budgeted_search(
        range(300), X, -cost, lambda i: acc[i], 60, initial=20, directions=["maximize"], predictor_factory=ridge
    )
    ev = result.indices
    assert sorted(result.front.tolist()) == sorted(
        ev[non_dominated_mask(np.column_stack([-acc[ev], cost[ev]]))].tolist()
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": np.ones((5, 2))}, r"features rows: expected 10 \(one per candidate\), got 5"),
        ({"cheap": np.r_[np.ones(9), np.nan]}, r"cheap\[9, 0\]: expected a finite number, got nan"),
        ({"budget": 3}, r"budget: expected at least initial \(5\), got 3"),
        ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
        ({"directions": ["down"]}, r"directions: expected 'minimize' or 'maximize' per cheap column, got 'down'"),
        ({"ucb": -1.0}, r"ucb: expected a finite number >= 0, got -1.0"),
        ({"evaluate": lambda i: [1.0]}, r"result: expected 5 finite accuracies"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, match: str) -> None:
    args = {
        "candidates": range(10),
        "features": np.arange(20.0).reshape(10, 2),
        "cheap": np.arange(10.0),
        "evaluate": lambda i: np.asarray(i, dtype=float),
        "budget": 8,
        "initial": 5,
    }
    args.update(kwargs)
    with pytest.raises(InvalidValueError, match=match):
        budgeted_search(**args)


def test_evaluations_run_as_optuna_trials() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = NB201Space()
    candidates = [space.from_index(i) for i in range(0, 15625, 125)]  # 125 cells
    features = np.array([[space.index_of(c) % 7, space.index_of(c) % 11] for c in candidates], dtype=float)
    cost = np.array([sum(op == "nor_conv_3x3" for op in c.values.values()) for c in candidates], dtype=float)
    study = optuna.create_study(direction="maximize")
    evaluate = study_evaluator(study, space, candidates, lambda c: float(space.index_of(c) % 97))
    result = budgeted_search(candidates, features, cost, evaluate, 30, initial=10, predictor_factory=ridge)
    trials = study.trials
    assert len(trials) == 30 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["candidate_index"] for t in trials] == result.indices.tolist()
    assert all(space.validate(t.params) == candidates[t.user_attrs["candidate_index"]] for t in trials)
    assert [t.value for t in trials] == result.accuracy.tolist()
    with pytest.raises(InvalidValueError, match=r"candidate index: expected an integer in \[0, 124\], got 125"):
        enqueue_batch(study, candidates, [125])


# ---------------------------------------------------------------------------------------------------- ask/tell
def no_constraints(k: int) -> np.ndarray:
    return np.empty((k, 0))


def comparable(result: BudgetedResult) -> tuple:
    """A result without its timings."""
    steps = [
        (s.step, s.batch, s.n_evaluated, s.refit, s.cv_kendall_tau, s.predicted, s.n_hopeful, s.front_size)
        for s in result.steps
    ]
    return result.indices.tolist(), result.accuracy.tolist(), result.front.tolist(), result.stopped, steps


def test_every_strategy_and_the_acquisition_are_ask_tell() -> None:
    problem = Problem(get_space("nb201"), ("maximize", "minimize"))
    for name in STRATEGIES.names():
        strategy = strategy_class(name)(problem, SearchOptions(sampler=name, population=4, seed=0))
        assert isinstance(strategy, AskTell), name
    assert isinstance(BudgetedAcquisition(range(10), np.ones((10, 1)), np.arange(10.0), 5, initial=5), AskTell)
    assert not isinstance(object(), AskTell)


@pytest.mark.parametrize("seed", [0, 1])
def test_driving_the_acquisition_by_hand_equals_budgeted_search(seed: int) -> None:
    X, acc, cost = synthetic(600, seed=seed)
    cheap = np.column_stack([cost, X[:, 3]])
    kwargs = {"directions": ["minimize", "maximize"], "batch_size": 7, "initial": 12, "seed": seed}
    want = budgeted_search(range(600), X, cheap, lambda i: acc[i], 61, predictor_factory=ridge, **kwargs)
    acquisition: AskTell = BudgetedAcquisition(range(600), X, cheap, 61, predictor_factory=ridge, **kwargs)
    asked: list[int] = []
    while configs := acquisition.ask(100):  # the acquisition sizes its steps: ask(n) caps them
        assert len(configs) <= 12 and not set(configs) & set(asked)
        asked += configs
        acquisition.tell(configs, acc[configs][:, None], no_constraints(len(configs)))
    assert isinstance(acquisition, BudgetedAcquisition)
    got = acquisition.result()
    assert comparable(got) == comparable(want) and got.stopped == "budget" and len(asked) == 61
    assert acquisition.ask(5) == [] and acquisition.ask(0) == []  # after the budget: nothing more


def test_ask_respects_the_budget_and_n_and_never_repeats_a_candidate() -> None:
    space = NB201Space()
    distinct = [space.from_index(i) for i in range(40)]
    pool = distinct + distinct[:15]  # repeats are never asked
    features = np.array([[i % 40, (i % 40) ** 2] for i in range(len(pool))], dtype=float)
    acc = np.cos(features[:, 0] / 7)
    acquisition = BudgetedAcquisition(
        pool, features, features[:, 0], 33, batch_size=8, initial=10, seed=3, predictor_factory=ridge
    )
    sizes, seen = [], []
    for n in [4, 100, 3, 100, 100, 100, 100, 100]:
        configs = acquisition.ask(n)
        if not configs:
            break
        indices = list(acquisition.pending)
        assert [pool[i] for i in indices] == configs and len(configs) <= n
        assert not set(indices) & set(seen) and all(i < 40 for i in indices)
        seen += indices
        sizes.append(len(configs))
        acquisition.tell(configs, acc[indices][:, None], no_constraints(len(configs)))
    # the design (10) in the asks' sizes, then batches of 8 up to the budget
    assert sizes == [4, 6, 3, 8, 8, 4] and len(set(seen)) == 33 == len(acquisition.result().indices)
    assert acquisition.ask(100) == [] and acquisition.pending == () and acquisition.result().stopped == "budget"
    assert [s.n_evaluated for s in acquisition.steps] == list(np.cumsum(sizes))
    assert acquisition.steps[1].predicted == () and len(acquisition.steps[3].predicted) == 8


def test_tell_of_the_wrong_batch_or_shape_is_one_line_error() -> None:
    acquisition = BudgetedAcquisition(
        range(30), np.arange(60.0).reshape(30, 2), np.arange(30.0), 20, initial=5, predictor_factory=ridge
    )
    with pytest.raises(InvalidValueError, match=r"^tell: expected the evaluation of a batch asked"):
        acquisition.tell([], np.zeros((0, 1)), no_constraints(0))
    configs = acquisition.ask(10)
    assert len(configs) == 5
    bad = [
        ((configs, np.zeros(5), no_constraints(5)), r"tell values shape: expected \(5, 1\) .*, got \(5,\)$"),
        ((configs, np.zeros((5, 2)), no_constraints(5)), r"tell values shape: expected \(5, 1\)"),
        ((configs, np.r_[np.zeros(4), np.nan][:, None], no_constraints(5)), r"tell values: expected finite"),
        (
            (configs[:4], np.zeros((4, 1)), no_constraints(4)),
            r"tell configs: expected the 5 candidates .*got '4 configs'",
        ),
        ((configs[::-1], np.zeros((5, 1)), no_constraints(5)), r"tell configs: .*another config at position 0"),
        ((configs, np.zeros((5, 1)), np.zeros((5, 1))), r"tell constraints: expected none, shape \(5, 0\)"),
        ((configs, "high", no_constraints(5)), r"tell values: expected an array of accuracies, got 'str'"),
    ]
    for args, match in bad:
        with pytest.raises(InvalidValueError, match=match) as info:
            acquisition.tell(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidValueError, match=r"ask: expected a tell of the 5 candidates asked before"):
        acquisition.ask(10)  # one batch at a time; the refused tells left it pending
    with pytest.raises(InvalidValueError, match=r"ask\(n\): expected an integer >= 0, got -1"):
        BudgetedAcquisition(range(30), np.ones((30, 1)), np.arange(30.0), 20, initial=5).ask(-1)
    acquisition.tell(configs, np.arange(5.0)[:, None], None)  # type: ignore[arg-type]
    assert acquisition.result().stopped == "running" and len(acquisition.ask(10)) == 10
