"""Fronts page bugs of issue 12 (items 1-5): the selection follows the study, front points win the hit test,
3-objective studies drawn as the 2-D projection's own staircase, per-device panels / log axes / default ranges
around the fronts, and a budget field whose step and precision follow the device's latencies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import _data, _figures
from hwpareto.store import Store
from pareto import non_dominated_mask, study_results
from pareto.search._search import SearchSpec
from tests.dashboard_store import STUDY

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"
Q, LAT, PAR = "acc_pct@d", "latency_ms@edge", "params"


def trials3(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A 3-objective study's trials: quality (max), latency and params (min), loosely correlated."""
    rng = np.random.default_rng(seed)
    size = rng.random(n)
    return pd.DataFrame(
        {
            "number": np.arange(n),
            Q: 70 + 20 * size + rng.normal(0, 3, n),
            LAT: 1 + 4 * rng.random(n) * size + rng.random(n),
            PAR: 1e6 * (rng.random(n) + size),
            "feasible": np.ones(n, bool),
        }
    )


# ------------------------------------------------------------------------------------------------ 1. study switch
@pytest.mark.slow
def test_switching_study_resets_the_selection_to_its_knee(dash_url: str) -> None:
    from pareto.search._worker import run_now

    with Store.open(dash_url) as db:
        run_now(
            db,
            SearchSpec(
                "random",
                "nb201",
                ("test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"),
                ("latency_ms@edge <= 5",),
                sampler="random",
                n_trials=100,
                population=50,
            ),
        )
        knees = {s: study_results(db, s).front("edge") for s in (STUDY, "random")}
    at = AppTest.from_file(str(PAGES / "fronts.py"), default_timeout=90)
    at.run()
    at.selectbox(key="fronts_study").set_value(STUDY).run()
    assert at.selectbox(key="fronts_trial").value == knees[STUDY].knee_number
    other = next(int(n) for n in knees[STUDY].rows["number"] if int(n) != knees[STUDY].knee_number)
    at.selectbox(key="fronts_trial").set_value(other).run()
    assert (at.session_state["selection"]["study"], at.session_state["selection"]["trial"]) == (STUDY, other)

    at.selectbox(key="fronts_study").set_value("random").run()
    assert not at.exception
    knee = knees["random"].knee_number
    assert at.selectbox(key="fronts_trial").value == knee  # not the old study's trial number
    assert (at.session_state["selection"]["study"], at.session_state["selection"]["trial"]) == ("random", knee)
    assert at.selectbox(key="fronts_trial").format_func(knee).endswith("(knee)")

    at.selectbox(key="fronts_study").set_value(STUDY).run()  # and back: that study's knee again
    selection = at.session_state["selection"]
    assert (selection["study"], selection["trial"]) == (STUDY, knees[STUDY].knee_number)


# ------------------------------------------------------------------------------------------------ 2. hit test
def test_front_traces_are_last_and_carry_number_and_config() -> None:
    trials = trials3()
    front = trials[non_dominated_mask(trials[[Q, LAT]].to_numpy(float), ["maximize", "minimize"])].sort_values(LAT)
    hover = {int(n): f"config of {n}" for n in front["number"]}
    fig = _figures.front_figure(
        trials, Q, [LAT], {LAT: front}, {LAT: 3.0}, hover, selected=int(front["number"].iloc[0])
    )
    names = [t.name for t in fig.data]
    fronts = [i for i, n in enumerate(names) if n.startswith("front:")]
    dimmed = [i for i, n in enumerate(names) if n.startswith("trials on")]
    assert dimmed and fronts and max(dimmed) < min(fronts) and fronts[-1] == len(fig.data) - 1
    assert all(fig.data[i].hoverinfo == "skip" for i, n in enumerate(names) if not n.startswith("front"))
    assert fig.layout.hovermode == "closest"
    data = np.asarray(fig.data[fronts[0]].customdata)
    assert [int(n) for n in data[:, 0]] == [int(n) for n in front["number"]]
    assert list(data[:, 1]) == [hover[int(n)] for n in front["number"]]
    assert "customdata[1]" in fig.data[fronts[0]].hovertemplate


# ------------------------------------------------------------------------------------------------ 3. projection
def test_projection_front_matches_brute_force_on_3_objectives() -> None:
    trials = trials3()
    front3 = trials[non_dominated_mask(trials[[Q, LAT, PAR]].to_numpy(float), ["maximize", "minimize", "minimize"])]
    stairs = _data.projection_front(front3, LAT, Q)
    pts = trials[[LAT, Q]].to_numpy(float)
    brute = {(x, y) for x, y in pts if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2 in pts)}
    assert {(float(x), float(y)) for x, y in stairs[[LAT, Q]].to_numpy()} == brute
    assert len(stairs) < len(front3)  # the 3-D front has members dominated in the plane
    assert (np.diff(stairs[LAT]) > 0).all() and (np.diff(stairs[Q]) > 0).all()  # a staircase, no zig-zag

    fig = _figures.front_figure(trials, Q, [LAT], {LAT: front3}, {}, {}, projected={LAT: stairs}, dims={LAT: 3})
    by_name = {t.name: t for t in fig.data}
    assert len(by_name[f"front: {LAT}"].x) == len(stairs)
    rest = by_name[f"non-dominated in 3-D only: {LAT}"]
    assert len(rest.x) == len(front3) - len(stairs) and rest.mode == "markers"
    assert rest.marker.symbol.endswith("-open")


@pytest.mark.slow
def test_front_view_projects_a_3_objective_study(dash_url: str) -> None:
    from pareto.search._worker import run_now

    with Store.open(dash_url) as db:
        run_now(
            db,
            SearchSpec(
                "three", "nb201", ("test_acc_pct@cifar10", "latency_ms@edge", "params"), (), n_trials=150, population=50
            ),
        )
        results = study_results(db, "three")
    view = _data.front_view(results)
    cost = "latency_ms@edge"
    stairs, front = view.projected[cost], view.fronts[cost]
    rows = results.trials[results.trials["feasible"]][[cost, view.quality]].to_numpy(float)
    brute = {(x, y) for x, y in rows if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2 in rows)}
    assert {(float(x), float(y)) for x, y in stairs[[cost, view.quality]].to_numpy()} == brute
    assert set(stairs["number"]) <= set(front["number"]) and view.dims[cost] == 3


# ------------------------------------------------------------------------------------------------ 4. scales
def test_panels_log_axes_and_ranges_around_the_fronts() -> None:
    rng = np.random.default_rng(1)
    n = 300
    size = rng.random(n)
    trials = pd.DataFrame(
        {
            "number": np.arange(n),
            Q: 70 + 20 * size,
            "latency_ms@gpu": 1 + 10 * size + rng.random(n),
            "latency_ms@npu": 0.004 + 0.006 * size + 0.001 * rng.random(n),
            "feasible": True,
        }
    )
    trials.loc[0, ["latency_ms@gpu", "latency_ms@npu"]] = [500.0, 2.0]  # outliers
    costs = ["latency_ms@gpu", "latency_ms@npu"]
    fronts = {c: _data.projection_front(trials, c, Q) for c in costs}
    assert _data.scales_differ(fronts, costs)
    assert not _data.scales_differ(
        {c: fronts[costs[0]].assign(**{c: fronts[costs[0]][costs[0]]}) for c in costs}, costs
    )

    fig = _figures.front_figure(trials, Q, costs, fronts, {}, {}, panels=True)
    assert fig.layout.xaxis.range is not None and fig.layout.xaxis2.range is not None  # one panel per device
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    for axis, cost in ((fig.layout.xaxis, costs[0]), (fig.layout.xaxis2, costs[1])):
        lo, hi = axis.range
        assert lo < fronts[cost][cost].min() and fronts[cost][cost].max() < hi < trials[cost].max()
        assert "(ms)" in axis.title.text
    assert fig.layout.yaxis.range[0] > trials[Q].min() - 5

    log = _figures.front_figure(trials, Q, costs, fronts, {}, {}, panels=True, log_x=True)
    assert log.layout.xaxis.type == "log" and log.layout.xaxis2.type == "log"
    lo, hi = log.layout.xaxis2.range  # log10 units
    assert lo < np.log10(fronts[costs[1]][costs[1]].min()) and np.log10(fronts[costs[1]][costs[1]].max()) < hi < 0

    overlay = _figures.front_figure(trials, Q, costs, fronts, {}, {})
    assert {t.xaxis for t in overlay.data} == {"x"}
    assert _data.axis_range([]) is None and _data.axis_range([1.0, 2.0]) == pytest.approx((0.92, 2.08))


# ------------------------------------------------------------------------------------------------ 5. budget field
def test_budget_step_and_format_follow_the_device() -> None:
    step, fmt = _data.budget_input_format(np.linspace(0.004, 0.01, 20))
    assert step == pytest.approx(1e-4) and fmt % 0.008 != "0.01" and float(fmt % 0.0083) == pytest.approx(0.0083)
    assert _data.budget_input_format([3.0, 5.0, 8.0]) == (pytest.approx(0.1), "%.2f")
    assert _data.budget_input_format([]) == (1.0, "%.2f")


def test_search_page_budget_field_uses_the_device_step(dash_url: str) -> None:
    at = AppTest.from_file(str(PAGES / "search.py"), default_timeout=90)
    at.run()
    assert not at.exception
    field = at.number_input(key="search_budget")
    device = at.multiselect(key="search_devices").value[0]
    with Store.open(dash_url) as db:
        costs = _data.typical_costs(db, device, at.selectbox(key="search_space").value)
    assert len(costs) and field.step == pytest.approx(_data.budget_input_format(costs)[0])
    assert field.format == _data.budget_input_format(costs)[1]


# ------------------------------------------------------------------------------------------- issue 28: compare, 3-D
def _front3(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[non_dominated_mask(trials[[Q, LAT, PAR]].to_numpy(float), ["maximize", "minimize", "minimize"])]


def test_compare_draws_3_objective_fronts_as_staircases() -> None:
    """Compare drew each 3-objective front (sorted by cost) as one line: it zig-zagged through rows dominated in
    the plane."""
    fronts = {"a": _front3(trials3(seed=0)), "b": _front3(trials3(seed=1))}
    fig = _figures.compare_figure(fronts, LAT, Q)
    by_name = {t.name: t for t in fig.data}
    for label, front in fronts.items():
        line = by_name[label]
        stairs = _data.projection_front(front, LAT, Q)
        assert line.mode == "lines+markers" and line.line.shape == "hv"
        assert list(line.customdata) == list(stairs["number"])
        assert (np.diff(line.x) > 0).all() and (np.diff(line.y) > 0).all()  # a staircase, no zig-zag
        rest = by_name[f"{label}: non-dominated over more objectives only"]
        assert rest.mode == "markers" and len(rest.x) == len(front) - len(stairs) > 0
    ppl = _figures.compare_figure({"a": fronts["a"].assign(**{Q: -fronts["a"][Q]})}, LAT, Q, "minimize")
    assert (np.diff(ppl.data[0].y) < 0).all()  # a minimised quality: the staircase falls


def test_3d_view_is_ranged_on_the_front_log_scalable_and_marks_the_selected() -> None:
    trials = trials3()
    trials.loc[0, [LAT, PAR]] = [500.0, 1e9]  # outliers
    front = _front3(trials)
    selected = int(front["number"].iloc[3])
    fig = _figures.front3d_figure(trials, front, [Q, LAT, PAR], selected=selected, log_axes=[LAT, PAR])
    scene = fig.layout.scene
    assert scene.yaxis.type == "log" and scene.zaxis.type == "log" and scene.xaxis.type != "log"
    lo, hi = scene.yaxis.range  # log10 units, around the front, not the 500 ms outlier
    assert lo < np.log10(front[LAT].min()) and np.log10(front[LAT].max()) < hi < np.log10(500.0)
    lo, hi = scene.xaxis.range
    assert lo < front[Q].min() and front[Q].max() < hi
    (ring,) = [t for t in fig.data if t.name == f"selected: trial {selected}"]
    row = trials.set_index("number").loc[selected]
    assert (ring.x[0], ring.y[0], ring.z[0]) == (row[Q], row[LAT], row[PAR])
    assert "(ms)" in scene.yaxis.title.text


def test_budget_line_is_always_in_view() -> None:
    """The x axis was ranged on the front alone, so a budget beyond the front's costs was drawn off the chart."""
    trials = trials3()
    front = _data.projection_front(trials, LAT, Q)
    bound = float(trials[LAT].max()) * 3
    for log in (False, True):
        fig = _figures.front_figure(trials, Q, [LAT], {LAT: front}, {LAT: bound}, {}, log_x=log)
        lo, hi = fig.layout.xaxis.range
        assert lo < (np.log10(bound) if log else bound) < hi
        assert lo < (np.log10(front[LAT].min()) if log else front[LAT].min())
