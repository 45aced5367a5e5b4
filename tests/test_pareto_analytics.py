"""Pareto analytics (pareto.analysis._pareto) against brute-force references on random data, plus hand-checked cases."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import optuna
import pytest

from hwpareto.errors import InvalidValueError
from pareto.analysis._pareto import (
    front_for_budget,
    front_recall,
    hypervolume,
    hypervolume_history,
    igd_plus,
    knee_point,
    non_dominated_mask,
    nondominated_sort,
    operating_point_table,
    operating_points,
)

SEEDS = [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------- references


def as_loss(points: np.ndarray, directions: list[str] | None) -> np.ndarray:
    if directions is None:
        return np.asarray(points, dtype=float)
    return np.asarray(points, dtype=float) * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])


def brute_dominates(loss: np.ndarray) -> np.ndarray:
    """dom[i, j]: point j dominates point i."""
    le = (loss[None, :, :] <= loss[:, None, :]).all(axis=2)
    lt = (loss[None, :, :] < loss[:, None, :]).any(axis=2)
    return le & lt


def brute_ranks(loss: np.ndarray) -> np.ndarray:
    dom = brute_dominates(loss)
    ranks = np.full(len(loss), -1)
    rank = 0
    while (ranks < 0).any():
        left = ranks < 0
        front = left & ~(dom[:, left].any(axis=1))
        ranks[front] = rank
        rank += 1
    return ranks


def grid_hypervolume(loss: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV of integer-valued points with an integer reference: count the dominated unit cells."""
    low = np.minimum(loss.min(axis=0), ref).astype(int)
    axes = [np.arange(lo, int(r)) for lo, r in zip(low, ref, strict=True)]
    if any(len(a) == 0 for a in axes):
        return 0.0
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(ref))
    covered = np.zeros(len(cells), dtype=bool)
    for p in loss:
        covered |= (cells >= p).all(axis=1)
    return float(covered.sum())


def inclusion_exclusion_hypervolume(loss: np.ndarray, ref: np.ndarray) -> float:
    inside = loss[(loss < ref).all(axis=1)]
    total = 0.0
    for size in range(1, len(inside) + 1):
        for subset in itertools.combinations(range(len(inside)), size):
            corner = inside[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(ref - corner))
    return total


def loop_igd_plus(approx: np.ndarray, ref_front: np.ndarray) -> float:
    total = 0.0
    for z in ref_front:
        best = math.inf
        for a in approx:
            best = min(best, math.sqrt(sum(max(ak - zk, 0.0) ** 2 for ak, zk in zip(a, z, strict=True))))
        total += best
    return total / len(ref_front)


def random_points(seed: int, n: int, m: int, levels: int | None = 6) -> np.ndarray:
    """Random points; with ``levels`` integer-valued (many ties and duplicates)."""
    rng = np.random.default_rng(seed)
    if levels is None:
        return rng.random((n, m))
    pts = rng.integers(0, levels, size=(n, m)).astype(float)
    pts[n // 2 :: 7] = pts[: len(pts[n // 2 :: 7])]  # exact duplicates of earlier rows
    return pts


DIRECTIONS = {
    2: [None, ["minimize", "maximize"]],
    3: [None, ["maximize", "minimize", "maximize"]],
    4: [None, ["minimize", "maximize", "minimize", "maximize"]],
}


# --------------------------------------------------------------------------------------------- sorting


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("levels", [4, 12, None])
def test_sorting_matches_brute_force(seed: int, m: int, levels: int | None) -> None:
    pts = random_points(seed, 150, m, levels)
    for directions in DIRECTIONS.get(m, [None]):
        loss = as_loss(pts, directions)
        expected = brute_ranks(loss)
        np.testing.assert_array_equal(nondominated_sort(pts, directions), expected)
        np.testing.assert_array_equal(non_dominated_mask(pts, directions), expected == 0)


def brute_dominated(loss: np.ndarray) -> np.ndarray:
    """Is each row dominated by some row? O(n²), in chunks of rows."""
    out = np.zeros(len(loss), dtype=bool)
    for start in range(0, len(loss), 500):
        rows = loss[start : start + 500]
        le = np.ones((len(rows), len(loss)), dtype=bool)
        lt = np.zeros((len(rows), len(loss)), dtype=bool)
        for c in range(loss.shape[1]):
            le &= loss[None, :, c] <= rows[:, c, None]
            lt |= loss[None, :, c] < rows[:, c, None]
        out[start : start + 500] = (le & lt).any(axis=1)
    return out


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("shape", ["cube", "simplex"])
def test_sorting_larger_than_one_block(m: int, shape: str) -> None:
    """Past the seed screening (4096 points), several sweep blocks and, in 3-D, the staircase of a large front."""
    rng = np.random.default_rng(7)
    if shape == "cube":
        pts = random_points(7, 4500, m, levels=40)
    else:  # near a simplex, rounded: large fronts with ties and duplicates
        pts = np.round(rng.dirichlet(np.ones(m), size=4500) * 200)
    dominated = brute_dominated(pts)
    np.testing.assert_array_equal(non_dominated_mask(pts), ~dominated)
    ranks = nondominated_sort(pts)
    assert (ranks[~dominated] == 0).all() and (ranks[dominated] > 0).all()
    sub = rng.choice(len(pts), 300, replace=False)
    np.testing.assert_array_equal(nondominated_sort(pts[sub]), brute_ranks(pts[sub]))


def test_sorting_hand_checked() -> None:
    pts = [(1, 3), (2, 2), (3, 1), (2, 2), (2, 3), (3, 3), (1, 4)]
    np.testing.assert_array_equal(non_dominated_mask(pts), [True, True, True, True, False, False, False])
    np.testing.assert_array_equal(nondominated_sort(pts), [0, 0, 0, 0, 1, 2, 1])
    # ties in one objective: (1, 3) dominates (1, 4) and (2, 3)
    np.testing.assert_array_equal(non_dominated_mask([(1, 4), (1, 3), (2, 3)]), [False, True, False])
    # maximised accuracy: (10 ms, 0.7) vs (12 ms, 0.8) both optimal, (12 ms, 0.6) dominated
    mask = non_dominated_mask([(10, 0.7), (12, 0.8), (12, 0.6)], ["minimize", "maximize"])
    np.testing.assert_array_equal(mask, [True, True, False])
    assert non_dominated_mask(np.zeros((0, 3))).shape == (0,)
    assert nondominated_sort(np.zeros((0, 2))).shape == (0,)
    np.testing.assert_array_equal(nondominated_sort([[3.0], [1.0], [3.0], [2.0]]), [2, 0, 2, 1])


def test_sorting_all_on_one_front_3d() -> None:
    rng = np.random.default_rng(5)
    pts = rng.dirichlet(np.ones(3), size=3000)  # on the simplex: mutually non-dominated
    assert non_dominated_mask(pts).all()
    assert (nondominated_sort(pts) == 0).all()


def test_invalid_points_name_the_row() -> None:
    pts = np.ones((5, 2))
    pts[3, 1] = np.nan
    with pytest.raises(InvalidValueError, match=r"points\[3\]: expected finite"):
        non_dominated_mask(pts)
    pts[3, 1] = np.inf
    with pytest.raises(InvalidValueError, match=r"points\[3\]"):
        hypervolume(pts, [2, 2])
    with pytest.raises(InvalidValueError, match=r"points_in_trial_order\[3\]"):
        hypervolume_history(pts, [2, 2])
    with pytest.raises(InvalidValueError, match=r"directions\[1\]: expected 'minimize' or 'maximize'"):
        nondominated_sort(np.ones((3, 2)), ["minimize", "max"])
    with pytest.raises(InvalidValueError, match="directions: expected 2 directions"):
        nondominated_sort(np.ones((3, 2)), ["minimize"])
    with pytest.raises(InvalidValueError, match="points: expected a 2-D array"):
        non_dominated_mask([1.0, 2.0])
    with pytest.raises(InvalidValueError, match="reference: expected 2 numbers"):
        hypervolume(np.ones((3, 2)), [1, 2, 3])


def test_optuna_study_directions_are_accepted() -> None:
    from optuna.study import StudyDirection

    pts = [(10, 0.7), (12, 0.8), (12, 0.6)]
    mask = non_dominated_mask(pts, [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE])
    np.testing.assert_array_equal(mask, [True, True, False])


# ------------------------------------------------------------------------------------------ hypervolume


def test_hypervolume_hand_checked() -> None:
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == 6.0
    assert hypervolume([(1, 3), (2, 2), (3, 1), (2, 2), (3, 3)], (4, 4)) == 6.0  # duplicate and dominated point
    assert hypervolume([(1, 3), (5, 0), (4, 1)], (4, 4)) == 3.0  # beyond or on the reference: nothing
    assert hypervolume(np.zeros((0, 2)), (4, 4)) == 0.0
    assert hypervolume([], (4, 4)) == 0.0
    # maximised: accuracy 0.9 at 2 ms, reference (4 ms, 0.5): (4 - 2) * (0.9 - 0.5)
    assert hypervolume([(2, 0.9)], (4, 0.5), ["minimize", "maximize"]) == pytest.approx(0.8)
    assert hypervolume([(1, 1, 1)], (2, 3, 4)) == 6.0
    assert hypervolume([(1, 1, 1), (0, 2, 2)], (3, 3, 3)) == 8.0 + 3.0 - 2.0  # overlap [1,3]x[2,3]x[2,3]
    assert hypervolume([(1, 2, 3, 4)], (2, 3, 4, 5)) == 1.0
    assert hypervolume([[1.0], [2.0]], [4.0]) == 3.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_grid_count(seed: int, m: int) -> None:
    pts = random_points(seed, 60, m, levels=9)
    for directions in DIRECTIONS[m]:
        loss = as_loss(pts, directions)
        ref_loss = np.full(m, 7.0)  # some points lie on or beyond the reference
        reference = ref_loss * (as_loss(np.ones((1, m)), directions)[0])
        assert hypervolume(pts, reference, directions) == grid_hypervolume(loss, ref_loss)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(seed: int, m: int) -> None:
    pts = random_points(seed, 9, m, levels=None)
    ref = np.full(m, 0.9)
    assert hypervolume(pts, ref) == pytest.approx(inclusion_exclusion_hypervolume(pts, ref), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_optuna_on_floats(m: int) -> None:
    from optuna._hypervolume import compute_hypervolume

    pts = np.random.default_rng(11).random((5000, m))
    ref = np.full(m, 1.1)
    assert hypervolume(pts, ref) == pytest.approx(compute_hypervolume(pts, ref), rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_hypervolume_history_matches_prefix_hypervolume(seed: int, m: int) -> None:
    pts = random_points(seed, 40 if m == 4 else 80, m, levels=10)
    for directions in DIRECTIONS.get(m, [None]):
        reference = np.full(m, 8.0) * as_loss(np.ones((1, m)), directions)[0]
        history = hypervolume_history(pts, reference, directions)
        expected = [hypervolume(pts[:k], reference, directions) for k in range(1, len(pts) + 1)]
        np.testing.assert_allclose(history, expected, rtol=1e-12)
        assert (np.diff(history) >= 0).all()


def test_hypervolume_history_many_points_2d() -> None:
    pts = np.random.default_rng(3).random((6000, 2))  # more than one screening block
    history = hypervolume_history(pts, (1.0, 1.0))
    for k in (1, 2, 100, 2047, 2048, 2049, 5000, 6000):
        assert history[k - 1] == pytest.approx(hypervolume(pts[:k], (1.0, 1.0)), rel=1e-12)


# ------------------------------------------------------------------------------------------ IGD+, recall


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m", [2, 3])
def test_igd_plus_matches_loop(seed: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    approx = rng.random((25, m)) * 10
    ref_front = rng.random((30, m)) * 10
    for directions in DIRECTIONS[m]:
        expected = loop_igd_plus(as_loss(approx, directions), as_loss(ref_front, directions))
        assert igd_plus(approx, ref_front, directions) == pytest.approx(expected, rel=1e-12)
    scale = np.arange(1, m + 1, dtype=float)
    expected = loop_igd_plus(approx / scale, ref_front / scale)
    assert igd_plus(approx, ref_front, scale=scale) == pytest.approx(expected, rel=1e-12)
    ranges = np.ptp(ref_front, axis=0)
    expected = loop_igd_plus(approx / ranges, ref_front / ranges)
    assert igd_plus(approx, ref_front, scale="reference") == pytest.approx(expected, rel=1e-12)


def test_igd_plus_hand_checked() -> None:
    ref_front = [(0, 1), (1, 0)]
    assert igd_plus(ref_front, ref_front) == 0.0
    assert igd_plus([(0, 0)], ref_front) == 0.0  # better than the reference everywhere: IGD+ ignores that
    assert igd_plus([(1, 1)], ref_front) == pytest.approx(1.0)  # worse by 1 in one objective for each
    with pytest.raises(InvalidValueError, match="scale: expected positive ranges"):
        igd_plus([(1, 1)], ref_front, scale=[1, 0])
    with pytest.raises(InvalidValueError, match="reference_front: expected at least one point"):
        igd_plus([(1, 1)], np.zeros((0, 2)))


def test_front_recall() -> None:
    ref_front = np.array([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (4.0, 0.5)])
    found = np.array([(1.0, 3.0), (2.0, 2.0 + 1e-9), (3.4, 1.0), (9.0, 9.0)])
    assert front_recall(found, ref_front) == 0.25
    assert front_recall(found, ref_front, atol=1e-6) == 0.5
    assert front_recall(found, ref_front, atol=0.5) == 0.75
    assert front_recall(np.zeros((0, 2)), ref_front) == 0.0
    assert front_recall([], ref_front) == 0.0
    assert front_recall(ref_front[::-1], ref_front) == 1.0
    with pytest.raises(InvalidValueError, match="atol"):
        front_recall(found, ref_front, atol=-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (200, 3)).astype(float), rng.integers(0, 4, (50, 3)).astype(float)
    expected = np.mean([any((row == other).all() for other in a) for row in b])
    assert front_recall(a, b) == expected


# --------------------------------------------------------------------------------------------- knee


def test_knee_point_2d() -> None:
    front = np.array([(0.0, 1.0), (0.2, 0.25), (0.4, 0.15), (0.6, 0.08), (1.0, 0.0), (0.1, 0.5)])
    assert knee_point(front) == 1
    scaled = front * [10.0, 200.0] + [5.0, -3.0]  # the knee does not depend on units
    assert knee_point(scaled) == 1
    # latency minimised, accuracy maximised: the same shape mirrored
    mirrored = np.column_stack([front[:, 0], 1.0 - front[:, 1]])
    assert knee_point(mirrored, ["minimize", "maximize"]) == 1
    # dominated rows are never the knee
    assert knee_point(np.vstack([front, [(0.3, 0.3)], [(0.05, 0.05)]])) == 7


def test_knee_point_3d_and_small_fronts() -> None:
    rng = np.random.default_rng(0)
    plane = rng.dirichlet(np.ones(3), size=50)
    plane = np.vstack([np.eye(3), plane])
    front = np.vstack([plane, [(0.2, 0.2, 0.2)]])
    assert knee_point(front) == len(front) - 1
    assert knee_point([(1.0, 2.0)]) == 0
    assert knee_point([(1.0, 2.0), (2.0, 1.0)]) == 0  # both on the line: lowest index
    assert knee_point([(2.0, 1.0), (1.0, 2.0)]) == 0
    assert knee_point([(1.0, 2.0), (1.0, 2.0)]) == 0
    assert knee_point([(2.0, 1.0), (1.5, 1.5), (1.0, 2.0)]) == 0  # all on the line, equal sums: lowest index


# ------------------------------------------------------------------------------------ operating points


def brute_operating_points(lat: np.ndarray, k: int) -> tuple[float, ...]:
    targets = np.linspace(lat.min(), lat.max(), k)
    order = np.argsort(lat, kind="stable")
    best = min(
        sum(abs(lat[order[p]] - t) for p, t in zip((0, *inner, len(lat) - 1), targets, strict=True))
        for inner in itertools.combinations(range(1, len(lat) - 1), k - 2)
    )
    return best


def test_operating_points_constructed_front() -> None:
    lat = np.arange(1.0, 11.0)
    front = np.column_stack([lat, 0.5 + lat / 100])  # slower is more accurate: all on the front
    perm = np.random.default_rng(0).permutation(len(front))
    shuffled = front[perm]
    dirs = ["minimize", "maximize"]
    picks = operating_points(shuffled, 0, 4, dirs)
    assert shuffled[picks, 0].tolist() == [1.0, 4.0, 7.0, 10.0]
    uneven = np.array([(1.0, 0.5), (1.5, 0.6), (2.0, 0.7), (8.0, 0.8), (10.0, 0.9)])
    assert operating_points(uneven, 0, 3, dirs) == [0, 3, 4]
    assert operating_points(uneven, 0, 5, dirs) == [0, 1, 2, 3, 4]
    assert operating_points(uneven[::-1], 0, 9, dirs) == [4, 3, 2, 1, 0]  # fewer points than k: all
    # a dominated row (slower and less accurate) is never chosen
    with_dominated = np.vstack([uneven, [(9.0, 0.1)]])
    assert operating_points(with_dominated, 0, 3, dirs) == [0, 3, 4]
    with pytest.raises(InvalidValueError, match="k: expected an integer >= 2"):
        operating_points(uneven, 0, 1, dirs)
    with pytest.raises(InvalidValueError, match="latency_column"):
        operating_points(uneven, 2, 3, dirs)


@pytest.mark.parametrize("seed", SEEDS)
def test_operating_points_optimal_and_spanning(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lat = np.sort(rng.random(12) * 100)
    front = np.column_stack([lat, np.sort(rng.random(12))])[rng.permutation(12)]
    dirs = ["minimize", "maximize"]
    for k in (2, 3, 5):
        picks = operating_points(front, 0, k, dirs)
        chosen = front[picks, 0]
        assert len(set(picks)) == k and (np.diff(chosen) > 0).all()
        assert chosen[0] == lat.min() and chosen[-1] == lat.max()
        targets = np.linspace(lat.min(), lat.max(), k)
        assert np.abs(chosen - targets).sum() == pytest.approx(brute_operating_points(front[:, 0], k))


def test_operating_point_table() -> None:
    rows = [
        {"name": "large", "latency_ms": np.float64(9.0), "accuracy": np.float32(0.8), "config": np.array([3, 4])},
        {"name": "small", "latency_ms": 2.0, "accuracy": 0.6},
        {"name": "medium", "latency_ms": 5, "accuracy": 0.7},
        {"name": "slow_but_worse", "latency_ms": 6.0, "accuracy": 0.65},
    ]
    table = operating_point_table(rows, "latency_ms", "accuracy", "maximize")
    assert [r["name"] for r in table] == ["small", "medium", "large"]
    assert [(r["max_latency_ms"], r["use_until_latency_ms"]) for r in table] == [(2.0, 5.0), (5.0, 9.0), (9.0, None)]
    assert table[2]["config"] == [3, 4]
    json.dumps(table)  # JSON-ready
    budget = 6.5  # a runtime picks the last row that fits its budget
    chosen = next(r for r in reversed(table) if r["max_latency_ms"] <= budget)
    assert chosen["name"] == "medium" and chosen["max_latency_ms"] <= budget < chosen["use_until_latency_ms"]
    assert operating_point_table([], "latency_ms", "accuracy", "maximize") == []
    with pytest.raises(InvalidValueError, match=r"rows\[1\]\.accuracy: expected a finite number"):
        operating_point_table(
            [{"latency_ms": 1.0, "accuracy": 0.5}, {"latency_ms": 2.0}], "latency_ms", "accuracy", "maximize"
        )
    with pytest.raises(InvalidValueError, match=r"directions\[0\]: expected 'minimize' or 'maximize'"):
        operating_point_table(rows, "latency_ms", "accuracy", "higher")
    # the bounds are named by the cost's metric (an LLM's decode time per token; the device dropped)
    decode = [{"decode_ms_per_token@npu": r["latency_ms"], "accuracy": r["accuracy"]} for r in rows]
    table = operating_point_table(decode, "decode_ms_per_token@npu", "accuracy", "maximize")
    assert [(r["max_decode_ms_per_token"], r["use_until_decode_ms_per_token"]) for r in table] == [
        (2.0, 5.0),
        (5.0, 9.0),
        (9.0, None),
    ]
    assert all("max_latency_ms" not in r for r in table)


def test_operating_point_table_of_a_minimised_quality() -> None:
    """Perplexity: lower is better, so slower rows stay only while they lower it (the mirror of accuracy)."""
    rows = [
        {"name": "large", "latency_ms": 9.0, "ppl": 3.2},
        {"name": "small", "latency_ms": 2.0, "ppl": 6.0},
        {"name": "medium", "latency_ms": 5.0, "ppl": 4.1},
        {"name": "slow_but_worse", "latency_ms": 6.0, "ppl": 4.5},
        {"name": "tie_worse", "latency_ms": 2.0, "ppl": 6.5},
    ]
    for direction in ("minimize", optuna.study.StudyDirection.MINIMIZE):
        table = operating_point_table(rows, "latency_ms", "ppl", direction)
        assert [r["name"] for r in table] == ["small", "medium", "large"]
        assert [r["use_until_latency_ms"] for r in table] == [5.0, 9.0, None]
    mirrored = [{**r, "ppl": -r["ppl"]} for r in rows]  # the same table for the negated quality maximised
    assert operating_point_table(mirrored, "latency_ms", "ppl", "maximize") == [
        {**r, "ppl": -r["ppl"]} for r in operating_point_table(rows, "latency_ms", "ppl", "minimize")
    ]


# ---------------------------------------------------------------------------------------------- budget


@pytest.mark.parametrize("seed", SEEDS)
def test_front_for_budget_matches_brute_force(seed: int) -> None:
    pts = random_points(seed, 120, 3, levels=8)
    dirs = ["minimize", "maximize", "minimize"]
    for bound in (2.0, 4.5, 7.0):
        mask = front_for_budget(pts, dirs, 0, bound)
        feasible = pts[:, 0] <= bound
        expected = np.zeros(len(pts), dtype=bool)
        expected[np.flatnonzero(feasible)[brute_ranks(as_loss(pts[feasible], dirs)) == 0]] = True
        np.testing.assert_array_equal(mask, expected)
        assert not mask[~feasible].any()


def test_front_for_budget_infeasible_states_best_value() -> None:
    pts = np.array([(12.5, 0.7), (13.25, 0.8), (20.0, 0.9)])
    with pytest.raises(InvalidValueError) as info:
        front_for_budget(pts, ["minimize", "maximize"], 0, 10.0)
    assert "12.5" in str(info.value) and str(info.value).startswith("bound: expected")
    # feasible-first: the fastest feasible point is kept even though it is far less accurate
    mask = front_for_budget(pts, ["minimize", "maximize"], 0, 13.0)
    np.testing.assert_array_equal(mask, [True, False, False])
