"""Pareto analytics on objective arrays: dominance sorting, hypervolume, IGD+, front recall, knees, operating points.

Compute-first: every function takes objective values as an ``(n, m)`` float array plus one direction per column
(``"minimize"`` or ``"maximize"``, an ``optuna.study.StudyDirection`` works too; ``None`` minimises every column)
and returns numpy arrays or plain Python data, no plots. Internally maximised columns are negated so that lower is
better everywhere, as Optuna does; reference points are normalised the same way. A point *dominates* another when
it is no worse in every objective and strictly better in one, so identical rows never dominate each other.

Bad input (NaN or inf in a row, wrong shapes or directions, an unreachable budget) raises
:class:`~hwpareto.errors.InvalidValueError` naming the field, e.g.
``points[7]: expected finite values, got [nan, 1.0]``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from hwpareto.errors import InvalidValueError

__all__ = [
    "front_for_budget",
    "front_recall",
    "hypervolume",
    "hypervolume_history",
    "igd_plus",
    "knee_point",
    "non_dominated_mask",
    "nondominated_sort",
    "operating_point_table",
    "operating_points",
]

Directions = Sequence[Any] | str | None
"""One direction per objective column (``"minimize"``/``"maximize"``), one string for all columns, or ``None``."""

_SIGN = {"minimize": 1.0, "maximize": -1.0}
_BLOCK = 2048  # points checked per vectorised step of the dominance sweeps
_CELLS = 1 << 21  # largest pairwise comparison matrix built at once (bools / floats)
_STAIRCASE_FROM = 1024  # 3-D: front size from which the sweep switches to a per-point staircase
_PREFILTER_MIN = 4096  # from this many points on, screen with a few seed points before sorting


# --------------------------------------------------------------------------------------------------- validation


def _signs(directions: Directions, m: int) -> np.ndarray:
    if directions is None:
        return np.ones(m)
    dirs = [directions] * m if isinstance(directions, str) else list(directions)
    if len(dirs) != m:
        raise InvalidValueError("directions", f"{m} directions (one per objective column)", dirs)
    signs = np.empty(m)
    for j, d in enumerate(dirs):
        name = getattr(d, "name", d)  # optuna.study.StudyDirection.MAXIMIZE -> "MAXIMIZE"
        key = name.lower() if isinstance(name, str) else None
        if key not in _SIGN:
            raise InvalidValueError(f"directions[{j}]", "'minimize' or 'maximize'", d)
        signs[j] = _SIGN[key]
    return signs


def _as_points(points: ArrayLike, field: str = "points", m: int | None = None) -> np.ndarray:
    """``points`` as a finite float array of shape (n, m); an empty 1-D input becomes (0, m)."""
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise InvalidValueError(field, "a 2-D array of numbers (n_points, n_objectives)", points) from None
    if arr.ndim == 1 and arr.size == 0 and m is not None:
        arr = arr.reshape(0, m)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidValueError(field, "a 2-D array of shape (n_points, n_objectives)", arr.shape)
    if m is not None and arr.shape[1] != m:
        raise InvalidValueError(field, f"{m} objective columns", arr.shape[1])
    if not np.isfinite(arr).all():
        row = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise InvalidValueError(f"{field}[{row}]", "finite values (no NaN or inf)", arr[row].tolist())
    return arr


def _loss(points: ArrayLike, directions: Directions, field: str = "points", m: int | None = None) -> np.ndarray:
    """Validated points in "lower is better" form (maximised columns negated; a new array when any is)."""
    arr = _as_points(points, field, m)
    signs = _signs(directions, arr.shape[1])
    return arr if (signs > 0).all() else arr * signs


def _columns_if_empty(points: ArrayLike, reference: ArrayLike) -> int | None:
    """The number of objectives an empty ``points`` (e.g. ``[]``) stands for: the reference's length."""
    try:
        return int(np.size(reference)) if np.size(points) == 0 else None
    except ValueError:  # ragged input: let the validation report it
        return None


def _vector(values: ArrayLike, m: int, field: str) -> np.ndarray:
    try:
        vec = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidValueError(field, f"{m} numbers", values) from None
    if vec.shape != (m,):
        raise InvalidValueError(field, f"{m} numbers (one per objective column)", values)
    if not np.isfinite(vec).all():
        raise InvalidValueError(field, "finite values (no NaN or inf)", vec.tolist())
    return vec


def _column(column: Any, m: int, field: str) -> int:
    if isinstance(column, bool) or not isinstance(column, int | np.integer) or not -m <= column < m:
        raise InvalidValueError(field, f"a column index in [0, {m})", column)
    return int(column) % m


# --------------------------------------------------------------------------------------------- dominance


def non_dominated_mask(points: ArrayLike, directions: Directions = None) -> np.ndarray:
    """Boolean mask of the first Pareto front (points dominated by no other point; duplicates all stay).

    From 4096 points on, points dominated by a few seed points (minimisers of weighted sums) are dropped first,
    vectorised, which leaves few candidates on typical data. Two objectives: O(n log n) (sort by the first,
    running minimum of the second). Three or more: lexicographic sort, then a sweep in blocks that checks each
    block against the front found so far (no later point can dominate an earlier one), vectorised and fast while
    the front is small. Three objectives with a front beyond 1024 points: the rest of the sweep keeps a 2-D
    staircase of the front instead (a Python loop, O(log f) per point), so O(n log n) overall. Four or more
    objectives with a huge front are the O(n² m) worst case.
    """
    return _nd_mask(_loss(points, directions))


def nondominated_sort(points: ArrayLike, directions: Directions = None) -> np.ndarray:
    """Front rank of each point (0 = Pareto front, 1 = front once rank 0 is removed, ...); duplicates share a rank.

    One objective: dense rank of the values. Two: O(n log n) patience-sorting sweep over the lexicographically
    sorted distinct points (rank = number of fronts already holding a dominator, found by bisection on each
    front's last second-objective value). Three: the same sweep with a 2-D staircase per front, O(n log² n).
    Both are Python loops over the distinct points (about 1 µs / 4 µs per point). Four or more: fronts peeled
    one at a time with the vectorised sweep of :func:`non_dominated_mask` on the still unranked points.
    """
    loss = _loss(points, directions)
    n, m = loss.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if m == 1:
        return np.unique(loss[:, 0], return_inverse=True)[1].reshape(-1).astype(np.int64)
    uniq, inverse = _unique_lexsorted(loss)
    if m == 2:
        ranks = _ranks_2d(uniq[:, 1])
    elif m == 3:
        ranks = _ranks_3d(uniq[:, 1], uniq[:, 2])
    else:
        ranks = np.empty(len(uniq), dtype=np.int64)
        left = np.arange(len(uniq))
        rank = 0
        while left.size:
            on = _front_of_sorted_unique(uniq[left])
            ranks[left[on]] = rank
            left = left[~on]
            rank += 1
    return ranks[inverse]


def _nd_mask(loss: np.ndarray) -> np.ndarray:
    n, m = loss.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if m == 1:
        return loss[:, 0] == loss[:, 0].min()
    if n < _PREFILTER_MIN:
        return _nd_mask_exact(loss)
    cand = _prefilter(loss)
    mask = np.zeros(n, dtype=bool)
    mask[cand[_nd_mask_exact(loss[cand])]] = True
    return mask


def _nd_mask_exact(loss: np.ndarray) -> np.ndarray:
    if loss.shape[1] == 2:
        return _nd_mask_2d(loss[:, 0], loss[:, 1])
    uniq, inverse = _unique_lexsorted(loss)
    return _front_of_sorted_unique(uniq)[inverse]


def _prefilter(loss: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated by a few seed points, the minimisers of positively weighted sums of
    the range-scaled objectives (each seed lies near the front, so on typical data few points survive)."""
    n, m = loss.shape
    sample = loss[:: max(1, n // 4096)]  # the scale only has to be rough: any positive weights are correct
    span = sample.max(axis=0) - sample.min(axis=0)
    span[span == 0] = 1.0
    weights = np.vstack([np.ones(m), 1.0 + 4.0 * np.eye(m), 5.0 - 4.0 * np.eye(m)]) / span
    seeds = loss[np.unique(np.argmin(weights @ loss.T, axis=1))]
    cand = np.arange(n)
    for seed in seeds:
        rows = loss if len(cand) == n else loss[cand]
        le = rows[:, 0] >= seed[0]
        lt = rows[:, 0] > seed[0]
        for c in range(1, m):
            le &= rows[:, c] >= seed[c]
            lt |= rows[:, c] > seed[c]
        cand = cand[~(le & lt)]
    return cand


def _nd_mask_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A point survives iff its y is the smallest among equal x and below every y at a smaller x."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    new = np.empty(len(xs), dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    group_min = np.minimum.reduceat(ys, starts)
    before = np.empty_like(group_min)  # smallest y over strictly smaller x
    before[0] = np.inf
    np.minimum.accumulate(group_min[:-1], out=before[1:])
    group = np.cumsum(new) - 1
    keep = (ys == group_min[group]) & (ys < before[group])
    mask = np.empty(len(xs), dtype=bool)
    mask[order] = keep
    return mask


def _unique_lexsorted(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows sorted lexicographically (first column first) and, per input row, its index among them."""
    order = np.lexsort(loss.T[::-1])
    rows = loss[order]
    new = np.empty(len(rows), dtype=bool)
    new[:1] = True
    np.any(rows[1:] != rows[:-1], axis=1, out=new[1:])
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return rows[new], inverse


def _dominated_by(front: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """For each row of ``pts``: is some row of ``front`` <= it in every column (weak dominance)?"""
    out = np.zeros(len(pts), dtype=bool)
    if len(front) == 0 or len(pts) == 0:
        return out
    todo = np.arange(len(pts))
    step = max(1, _CELLS // len(pts))
    for start in range(0, len(front), step):
        chunk, sub = front[start : start + step], pts[todo]
        le = chunk[:, 0, None] <= sub[None, :, 0]
        for c in range(1, pts.shape[1]):
            le &= chunk[:, c, None] <= sub[None, :, c]
        hit = le.any(axis=0)
        out[todo[hit]] = True
        todo = todo[~hit]
        if not todo.size:
            break
    return out


def _front_of_sorted_unique(uniq: np.ndarray) -> np.ndarray:
    """Pareto mask of distinct, lexicographically sorted rows.

    Rows are visited in order, a block at a time: an earlier row q can dominate a later row p, never the reverse,
    and since q's first value is <= p's, q dominates p iff q <= p in the other columns. A block is first checked
    against the front found so far, then the survivors against each other.
    """
    rest = uniq[:, 1:]
    on = np.zeros(len(uniq), dtype=bool)
    found = rest[:0]
    for start in range(0, len(rest), _BLOCK):
        if rest.shape[1] == 2 and len(found) > _STAIRCASE_FROM:  # 3-D with a large front: O(log f) per point
            on[start:] = _staircase_front(found, rest[start:])
            break
        block = rest[start : start + _BLOCK]
        idx = np.flatnonzero(~_dominated_by(found, block))
        if idx.size > 1:
            cand = block[idx]
            le = cand[None, :, 0] <= cand[:, 0, None]  # le[i, j]: cand[j] <= cand[i]
            for c in range(1, rest.shape[1]):
                le &= cand[None, :, c] <= cand[:, c, None]
            idx = idx[~np.tril(le, -1).any(axis=1)]
        if idx.size:
            on[start + idx] = True
            found = np.concatenate([found, block[idx]])
    return on


def _staircase_front(found: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Pareto mask of the (y, z) rows ``rest`` that follow the front rows ``found`` in lexicographic order.

    Keeps the 2-D staircase of the front's (y, z) (y ascending, z strictly descending); a row is dominated iff the
    step left of its y is <= its z. A Python loop over ``rest``, O(log f) per row plus amortised removals.
    """
    steps = found[_nd_mask_2d(found[:, 0], found[:, 1])]
    steps = steps[np.lexsort((steps[:, 1], steps[:, 0]))]
    keep = np.ones(len(steps), dtype=bool)
    keep[1:] = steps[1:, 0] != steps[:-1, 0]  # duplicates of (y, z): one step
    sy, sz = steps[keep, 0].tolist(), steps[keep, 1].tolist()
    on = []
    for y, z in zip(rest[:, 0].tolist(), rest[:, 1].tolist(), strict=True):
        i = bisect_right(sy, y)
        if i and sz[i - 1] <= z:
            on.append(False)
            continue
        on.append(True)
        k = j = bisect_left(sy, y)
        while j < len(sy) and sz[j] >= z:
            j += 1
        sy[k:j] = [y]
        sz[k:j] = [z]
    return np.asarray(on, dtype=bool)


def _ranks_2d(ys_sorted: np.ndarray) -> np.ndarray:
    """Patience sort on distinct points sorted by (x, y): ``tails[r]`` is front r's smallest y so far."""
    tails: list[float] = []
    ranks = []
    for y in ys_sorted.tolist():
        r = bisect_right(tails, y)
        if r == len(tails):
            tails.append(y)
        else:
            tails[r] = y
        ranks.append(r)
    return np.asarray(ranks, dtype=np.int64)


def _ranks_3d(ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """Ranks of distinct points sorted lexicographically, from their second and third objectives.

    Every earlier point has a first objective <= this one's, so it dominates iff it is <= in (y, z). Each front
    keeps the 2-D staircase of its points' (y, z) (``fy`` ascending, ``fz`` strictly descending); a front holds a
    dominator iff its staircase step left of y is <= z, and that is monotone in the rank, hence the bisection.
    """
    fy: list[list[float]] = []
    fz: list[list[float]] = []
    ranks = []
    for y, z in zip(ys.tolist(), zs.tolist(), strict=True):
        lo, hi = 0, len(fy)
        while lo < hi:
            mid = (lo + hi) // 2
            i = bisect_right(fy[mid], y)
            if i and fz[mid][i - 1] <= z:
                lo = mid + 1
            else:
                hi = mid
        ranks.append(lo)
        if lo == len(fy):
            fy.append([y])
            fz.append([z])
            continue
        sy, sz = fy[lo], fz[lo]
        k = j = bisect_left(sy, y)
        while j < len(sy) and sz[j] >= z:  # steps now weakly dominated by (y, z)
            j += 1
        sy[k:j] = [y]
        sz[k:j] = [z]
    return np.asarray(ranks, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ hypervolume


def hypervolume(points: ArrayLike, reference: ArrayLike, directions: Directions = None) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by the explicit ``reference`` point.

    ``reference`` is in the same units and directions as ``points`` (e.g. for (latency min, accuracy max) a
    reference (100 ms, 0.0) bounds latency above 100 ms and accuracy below 0). Points that do not strictly
    dominate the reference contribute nothing. Algorithms: 1-D difference; 2-D sort of the front and a sum of
    rectangles (O(n log n)); 3-D the HV3D dimension sweep (Beume et al. 2009: the front sorted by the third
    objective, a 2-D staircase updated by bisection, O(f log f) plus a Python loop over the f front points);
    4 and more objectives: exact slicing along the last objective down to the 3-D sweep, O(f^(m-2) log f), only
    practical for fronts of a few hundred points.
    """
    loss = _loss(points, directions, m=_columns_if_empty(points, reference))
    ref = _vector(reference, loss.shape[1], "reference") * _signs(directions, loss.shape[1])
    return _hv(loss, ref)


def _hv(loss: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of the rows in "lower is better" form (rows outside the reference box count for nothing)."""
    front = loss[_nd_mask(loss)]  # a point inside the box is only dominated by points inside it
    front = front[np.all(front < ref, axis=1)]
    n, m = front.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - front[0, 0])
    if m == 2:
        front = front[np.argsort(front[:, 0])]
        widths = np.diff(front[:, 0], append=ref[0])
        return float(widths @ (ref[1] - front[:, 1]))
    if m == 3:
        return _hv3d(front, ref)
    front = front[np.argsort(front[:, -1], kind="stable")]
    z = np.append(front[:, -1], ref[-1])
    total = 0.0
    for i in np.flatnonzero(np.diff(z) > 0).tolist():  # slice between consecutive last-objective values
        total += (z[i + 1] - z[i]) * _hv(front[: i + 1, :-1], ref[:-1])
    return total


def _hv3d(front: np.ndarray, ref: np.ndarray) -> float:
    order = np.argsort(front[:, 2], kind="stable")
    xs, ys, zs = (front[order, c].tolist() for c in range(3))
    zs.append(float(ref[2]))
    rx, ry = float(ref[0]), float(ref[1])
    sx: list[float] = []
    sy: list[float] = []
    area = volume = 0.0
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        area += _staircase_insert(sx, sy, x, y, rx, ry)
        volume += area * (zs[i + 1] - zs[i])
    return volume


def _staircase_insert(sx: list[float], sy: list[float], x: float, y: float, rx: float, ry: float) -> float:
    """Add (x, y) to a 2-D staircase (``sx`` ascending, ``sy`` strictly descending) and return the area gained.

    The area is measured inside the box up to (rx, ry); a weakly dominated point changes nothing and gains 0.
    """
    k = bisect_left(sx, x)
    if (k > 0 and sy[k - 1] <= y) or (k < len(sx) and sx[k] == x and sy[k] <= y):
        return 0.0
    j = k
    while j < len(sx) and sy[j] >= y:  # points now dominated by (x, y): removed, each at most once
        j += 1
    u, h, gain = x, (sy[k - 1] if k else ry), 0.0
    for t in range(k, j):
        gain += (sx[t] - u) * (h - y)
        u, h = sx[t], sy[t]
    gain += ((sx[j] if j < len(sx) else rx) - u) * (h - y)
    sx[k:j] = [x]
    sy[k:j] = [y]
    return gain


def hypervolume_history(
    points_in_trial_order: ArrayLike, reference: ArrayLike, directions: Directions = None
) -> np.ndarray:
    """Hypervolume of the first k points for every k = 1..n (``out[k - 1]``), exact at every k.

    Computed incrementally as the cumulative sum of each point's exclusive contribution. Points weakly dominated
    by the front so far (most of them) are screened out a block at a time, vectorised; the others are inserted
    one by one: 2-D into a staircase (O(log f) by bisection), 3+-D by contribution = box volume minus the
    hypervolume of the front clipped to the new point (the WFG identity). Every stored value is exact; the
    running sum may differ from :func:`hypervolume` of the prefix by floating-point rounding only.
    """
    loss = _loss(
        points_in_trial_order,
        directions,
        "points_in_trial_order",
        m=_columns_if_empty(points_in_trial_order, reference),
    )
    n, m = loss.shape
    ref = _vector(reference, m, "reference") * _signs(directions, m)
    inside = np.all(loss < ref, axis=1)
    gains = np.zeros(n)
    if m == 1:
        return ref[0] - np.minimum.accumulate(np.where(inside, loss[:, 0], ref[0]))
    if m == 2:
        sx: list[float] = []
        sy: list[float] = []
        rx, ry = float(ref[0]), float(ref[1])
        for start in range(0, n, _BLOCK):
            idx = start + np.flatnonzero(inside[start : start + _BLOCK])
            if sx and idx.size:
                pred = np.searchsorted(np.asarray(sx), loss[idx, 0], side="right") - 1
                idx = idx[~((pred >= 0) & (np.asarray(sy)[np.maximum(pred, 0)] <= loss[idx, 1]))]
            for i, x, y in zip(idx.tolist(), loss[idx, 0].tolist(), loss[idx, 1].tolist(), strict=True):
                gains[i] = _staircase_insert(sx, sy, x, y, rx, ry)
        return np.cumsum(gains)
    front = loss[:0]
    for start in range(0, n, _BLOCK):
        idx = start + np.flatnonzero(inside[start : start + _BLOCK])
        idx = idx[~_dominated_by(front, loss[idx])]
        for i in idx.tolist():
            p = loss[i]
            if len(front) and np.all(front <= p, axis=1).any():
                continue
            gains[i] = float(np.prod(ref - p)) - _hv(np.maximum(front, p), ref)
            front = np.concatenate([front[~np.all(p <= front, axis=1)], p[None]])
    return np.cumsum(gains)


# ------------------------------------------------------------------------------------------- front quality


def igd_plus(
    points: ArrayLike,
    reference_front: ArrayLike,
    directions: Directions = None,
    scale: ArrayLike | Literal["reference"] | None = None,
) -> float:
    """IGD+ (Ishibuchi et al. 2015) of the approximation ``points`` against ``reference_front``; lower is better.

    Mean over reference points z of min over approximation points a of sqrt(sum_k max(a_k - z_k, 0)²) in
    "lower is better" form: only the objectives where a is worse than z count, so IGD+ is weakly Pareto
    compliant. ``scale``: per-objective normalisation ranges (differences are divided by them), or
    ``"reference"`` for the reference front's range per objective (1 where it is flat); ``None`` uses raw units.
    """
    ref = _loss(reference_front, directions, "reference_front")
    m = ref.shape[1]
    approx = _loss(points, directions, "points", m=m)
    if len(ref) == 0:
        raise InvalidValueError("reference_front", "at least one point", "an empty array")
    if len(approx) == 0:
        raise InvalidValueError("points", "at least one point", "an empty array")
    if scale is not None:
        if isinstance(scale, str):
            if scale != "reference":
                raise InvalidValueError("scale", "None, 'reference' or one positive range per objective", scale)
            ranges = np.ptp(ref, axis=0)
            ranges[ranges == 0] = 1.0
        else:
            ranges = _vector(scale, m, "scale")
            if (ranges <= 0).any():
                raise InvalidValueError("scale", "positive ranges", ranges.tolist())
        ref, approx = ref / ranges, approx / ranges
    total = 0.0
    step = max(1, _CELLS // len(approx))
    for start in range(0, len(ref), step):
        z = ref[start : start + step]
        d2 = np.zeros((len(z), len(approx)))
        for c in range(m):
            d2 += np.maximum(approx[None, :, c] - z[:, c, None], 0.0) ** 2
        total += float(np.sqrt(d2.min(axis=1)).sum())
    return total / len(ref)


def front_recall(found: ArrayLike, reference_front: ArrayLike, atol: float = 0.0) -> float:
    """Share of ``reference_front`` rows present among ``found``: some found row within ``atol`` in every column.

    ``atol=0`` matches rows exactly. Uses a k-d tree with the Chebyshev distance, O((n + r) log n). Directions do
    not matter here.
    """
    ref = _as_points(reference_front, "reference_front")
    got = _as_points(found, "found", m=ref.shape[1])
    if not (isinstance(atol, int | float | np.number) and math.isfinite(atol) and atol >= 0):
        raise InvalidValueError("atol", "a finite number >= 0", atol)
    if len(ref) == 0:
        raise InvalidValueError("reference_front", "at least one point", "an empty array")
    if len(got) == 0:
        return 0.0
    dist, _ = cKDTree(got).query(ref, k=1, p=np.inf)
    return float(np.mean(dist <= atol))


def knee_point(front: ArrayLike, directions: Directions = None) -> int:
    """Index (into ``front``) of the knee: the front point farthest from the hyperplane through the extremes.

    Objectives are scaled to [0, 1] over the non-dominated rows of ``front`` (dominated rows are never chosen);
    the extreme of objective j is the point best in j (ties: best in j + 1, j + 2, ... cyclically); the knee
    maximises the signed distance to the line (2-D) or hyperplane (m-D) through the extremes, on the ideal
    point's side. Where the extremes span no hyperplane (3+ objectives, e.g. one point extreme in two
    objectives), the plane ``sum(scaled) = 1`` is used instead. Ties, e.g. a front of two points where both lie
    on the line, go to the smallest sum of scaled objectives, then to the lowest index. A single objective gives
    the best point.
    """
    loss = _loss(front, directions, "front")
    if len(loss) == 0:
        raise InvalidValueError("front", "at least one point", "an empty array")
    nd = np.flatnonzero(_nd_mask(loss))
    pts = loss[nd]
    low = pts.min(axis=0)
    span = pts.max(axis=0) - low
    span[span == 0] = 1.0
    scaled = (pts - low) / span
    sums = scaled.sum(axis=1)
    m = pts.shape[1]
    if m == 1:
        dist = -sums
    else:  # extreme of objective j: best in j, ties to the best in j + 1, j + 2, ... (cyclically)
        extremes = scaled[[np.lexsort(scaled[:, np.roll(np.arange(m), -j)].T[::-1])[0] for j in range(m)]]
        w = np.linalg.solve(extremes, np.ones(m)) if np.linalg.matrix_rank(extremes) == m else np.ones(m)
        dist = (1.0 - scaled @ w) / np.linalg.norm(w)
    tied = np.flatnonzero(dist >= dist.max() - 1e-12)
    best = tied[np.lexsort((tied, sums[tied]))[0]]
    return int(nd[best])


# ------------------------------------------------------------------------------ operating points and budgets


def operating_points(front_points: ArrayLike, latency_column: int, k: int, directions: Directions = None) -> list[int]:
    """Indices of k points of one front spanning its latency range, sorted by latency (ties: lower index).

    For a runtime that switches SubNets as its latency target changes (SuperServe's SubNetAct): k targets evenly
    spaced between the front's smallest and largest latency, one distinct point per target in latency order,
    chosen to minimise the total |latency - target| (an O(k n) dynamic programme), so the fastest and the slowest
    point are always included. Rows dominated under ``directions`` are never chosen; with at most k front points
    all of them are returned.
    """
    pts = _as_points(front_points, "front_points")
    m = pts.shape[1]
    col = _column(latency_column, m, "latency_column")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise InvalidValueError("k", "an integer >= 2", k)
    loss = pts * _signs(directions, m)
    cand = np.flatnonzero(_nd_mask(loss))
    lat = pts[cand, col]
    order = np.lexsort((cand, lat))
    cand, lat = cand[order], lat[order]
    n = len(cand)
    if n <= k:
        return cand.tolist()
    targets = np.linspace(lat[0], lat[-1], k)
    cost = np.full(n, np.inf)
    cost[0] = 0.0  # target 0 is the fastest point itself
    back = np.empty((k, n), dtype=np.int64)
    positions = np.arange(n)
    for j in range(1, k):
        run_min = np.minimum.accumulate(cost)
        run_arg = np.maximum.accumulate(np.where(cost == run_min, positions, 0))
        prev = np.full(n, np.inf)
        prev[1:] = run_min[:-1]  # best cost of targets < j using positions strictly before this one
        back[j, 1:] = run_arg[:-1]
        cost = np.abs(lat - targets[j]) + prev
    picks = [n - 1]  # the last target is the slowest point
    for j in range(k - 1, 0, -1):
        picks.append(int(back[j, picks[-1]]))
    return cand[picks[::-1]].tolist()


def operating_point_table(rows: list[dict], latency_key: str, quality_key: str, quality_direction: Any) -> list[dict]:
    """A JSON-ready switching table: rows sorted by cost, each with ``max_<metric>`` and ``use_until_<metric>``, named
    by the cost's metric (``latency_key`` without its ``@device``: ``max_latency_ms``, ``max_decode_ms_per_token``).

    ``max_<metric>`` is the row's own cost (the smallest budget it fits) and ``use_until_<metric>`` the next row's
    (``None`` for the last row: no upper end). Row i is the best SubNet of the table for every budget b with
    ``max_<metric> <= b < use_until_<metric>``, so a runtime picks the last row whose ``max_<metric>`` is <= its
    current budget (a bisection; below the first row nothing fits). "Best" follows ``quality_direction``
    (``"maximize"``: accuracy, ``"minimize"``: e.g. perplexity; pass the study's direction of ``quality_key``).
    Rows that can never be that choice, because a cheaper or equally cheap row is at least as good, are left out.
    Every other key of a row is copied, numpy scalars and arrays as Python values.
    """
    sign = float(_signs([quality_direction], 1)[0])  # +1: lower is better, -1: higher is better
    metric = latency_key.partition("@")[0]
    lats: list[float] = []
    losses: list[float] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidValueError(f"rows[{i}]", "a mapping", row)
        for key, out, scale in ((latency_key, lats, 1.0), (quality_key, losses, sign)):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
                raise InvalidValueError(f"rows[{i}].{key}", "a finite number", value)
            out.append(scale * float(value))
    kept, best = [], math.inf
    for i in sorted(range(len(rows)), key=lambda i: (lats[i], losses[i], i)):
        if losses[i] < best:
            kept.append(i)
            best = losses[i]
    table = []
    for pos, i in enumerate(kept):
        entry = {key: _jsonable(value) for key, value in rows[i].items()}
        entry[f"max_{metric}"] = lats[i]
        entry[f"use_until_{metric}"] = lats[kept[pos + 1]] if pos + 1 < len(kept) else None
        table.append(entry)
    return table


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def front_for_budget(points: ArrayLike, directions: Directions, constraint_column: int, bound: float) -> np.ndarray:
    """Pareto mask among the feasible points, those with ``points[:, constraint_column] <= bound`` (raw values).

    Feasibility comes first: infeasible points are never on the returned front, however good otherwise. When no
    point is feasible the :class:`~hwpareto.errors.InvalidValueError` states the best reachable value of the column.
    """
    pts = _as_points(points)
    n, m = pts.shape
    col = _column(constraint_column, m, "constraint_column")
    if isinstance(bound, bool) or not isinstance(bound, int | float | np.number) or math.isnan(bound):
        raise InvalidValueError("bound", "a number", bound)
    if n == 0:
        raise InvalidValueError("points", "at least one point", "an empty array")
    feasible = np.flatnonzero(pts[:, col] <= bound)
    if not feasible.size:
        best = float(pts[:, col].min())
        raise InvalidValueError(
            "bound", f"a bound >= {best!r}, the best reachable value of column {col} (no point is feasible)", bound
        )
    mask = np.zeros(n, dtype=bool)
    mask[feasible[_nd_mask(pts[feasible] * _signs(directions, m))]] = True
    return mask
