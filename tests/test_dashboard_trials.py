"""Trials page (issue 12 bug 8): filterable trial table, parameter importance, the front in parallel coordinates,
study deletion with confirmation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import _data, _explore
from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from pareto import study_results
from pareto.search._search import SearchSpec
from tests.dashboard_store import STUDY

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"
ACC, EDGE, SERVER = "test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"


@pytest.fixture
def frame(dash_url: str) -> tuple[object, pd.DataFrame]:
    with Store.open(dash_url) as db:
        results = study_results(db, STUDY)
        return results, _explore.trial_frame(results.trials, _explore.config_frame(db, STUDY))


# ------------------------------------------------------------------------------------------------ filters
@pytest.mark.slow
def test_trial_frame_has_every_trial_and_its_config(frame: tuple[object, pd.DataFrame]) -> None:
    results, trials = frame
    assert len(trials) == len(results.trials)  # type: ignore[attr-defined]
    assert [c for c in trials if c.startswith("cfg:")] == [f"cfg:edge{i}" for i in range(6)]
    assert trials["cfg:edge0"].notna().all()


def test_filters_match_a_pandas_reference(frame: tuple[object, pd.DataFrame]) -> None:
    results, trials = frame
    lo, hi = trials[ACC].quantile([0.1, 0.95])
    op = trials.loc[trials["feasible"], "cfg:edge1"].mode()[0]
    got = _explore.filter_trials(trials, ranges={ACC: (lo, hi)}, feasible=True, config={"cfg:edge1": [op]})
    ref = trials[(trials[ACC] >= lo) & (trials[ACC] <= hi) & trials["feasible"] & (trials["cfg:edge1"] == op)]
    assert got["number"].tolist() == ref["number"].tolist() and 0 < len(got) < len(trials)
    over = _explore.filter_trials(trials, feasible=False)
    assert len(over) + len(_explore.filter_trials(trials, feasible=True)) == len(trials)
    budgets = _explore.budget_columns(results.trials, results.budgets, "server")  # type: ignore[attr-defined]
    assert budgets == []  # the budget is on edge: nothing is over budget on server
    assert len(_explore.filter_trials(trials, feasible=True, budgets=budgets)) == len(trials)
    edge = _explore.budget_columns(results.trials, results.budgets, "edge")  # type: ignore[attr-defined]
    assert (
        _explore.filter_trials(trials, feasible=True, budgets=edge)["number"].tolist()
        == trials[trials["feasible"]]["number"].tolist()
    )
    assert _explore.filter_trials(trials, config={"cfg:edge1": []}).shape == trials.shape  # empty: all allowed


def test_filters_are_fast_on_100k_trials() -> None:
    import time

    rng = np.random.default_rng(0)
    n = 100_000
    trials = pd.DataFrame(
        {
            "number": np.arange(n),
            ACC: rng.random(n),
            EDGE: rng.random(n),
            "feasible": rng.random(n) < 0.5,
            "cfg:edge0": rng.choice(["a", "b", "c"], n),
        }
    )
    start = time.perf_counter()
    got = _explore.filter_trials(trials, ranges={ACC: (0.2, 0.8)}, feasible=True, config={"cfg:edge0": ["a"]})
    assert time.perf_counter() - start < 0.5
    assert len(got) == int(
        ((trials[ACC] >= 0.2) & (trials[ACC] <= 0.8) & trials["feasible"] & (trials["cfg:edge0"] == "a")).sum()
    )


# ------------------------------------------------------------------------------------------------ importance
def test_importance_has_one_entry_per_varied_param_and_is_deterministic(frame: tuple[object, pd.DataFrame]) -> None:
    _, trials = frame
    trials = trials.assign(**{"cfg:fixed": 3})  # a dim that never varies gets no entry
    first = _explore.param_importances(trials, [ACC, EDGE], ["maximize", "minimize"], sample=150)
    assert set(first) == {ACC, EDGE}
    varied = set(_explore.varied_columns(trials.sample(150, random_state=0)))
    for found in first.values():
        assert set(found) == varied and "cfg:fixed" not in found
        assert sum(found.values()) == pytest.approx(1.0)
    assert _explore.param_importances(trials, [ACC, EDGE], ["maximize", "minimize"], sample=150) == first


# ------------------------------------------------------------------------------------------------ parallel coords
def test_parallel_coordinates_one_dimension_per_objective_and_varied_dim(frame: tuple[object, pd.DataFrame]) -> None:
    results, trials = frame
    front = results.front().rows  # type: ignore[attr-defined]
    members = trials[trials["number"].isin(front["number"])]
    objectives = [o.name for o in results.objectives]  # type: ignore[attr-defined]
    fig = _explore.front_parallel_figure(members, objectives)
    dims = fig.data[0].dimensions
    varied = _explore.varied_columns(members)
    assert [d.label for d in dims] == objectives + [c.removeprefix("cfg:") for c in varied]
    assert all(len(d.values) == len(front) for d in dims)
    assert sorted(dims[0].values) == sorted(front[objectives[0]].tolist())


# ------------------------------------------------------------------------------------------------ deletion
def _studies(url: str) -> list[str]:
    with Store.open(url) as db:
        return _data.hwpareto_studies(db)


@pytest.mark.slow
def test_delete_study_removes_study_and_search_row_only(dash_url: str) -> None:
    from pareto.search._worker import run_now

    with Store.open(dash_url) as db:
        run_now(db, SearchSpec("other", "nb201", (ACC, EDGE), n_trials=20, population=10))
        devices, predictors = len(db.devices.list()), db.predictors.list()
        assert STUDY in {s.name for s in db.searches.list()}
        _explore.delete_study(db, STUDY)
        assert STUDY not in {s.name for s in db.searches.list()}
        assert _data.hwpareto_studies(db) == ["other"]
        assert len(db.devices.list()) == devices and db.predictors.list() == predictors
        with pytest.raises(InvalidValueError):
            _explore.delete_study(db, STUDY)


def test_delete_refuses_a_queued_or_running_search(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        db.searches.requeue(STUDY)
        with pytest.raises(InvalidValueError, match="queued"):
            _explore.delete_study(db, STUDY)
        db.searches.claim("w1", STUDY)
        with pytest.raises(InvalidValueError, match="running"):
            _explore.delete_study(db, STUDY)
        with pytest.raises(InvalidValueError):
            db.searches.delete(STUDY)
        assert _data.hwpareto_studies(db) == [STUDY]
        assert db.searches.delete("no-such-search") is False


# ------------------------------------------------------------------------------------------------ the page
@pytest.mark.slow
def test_trials_page_filters_importance_parallel_and_confirmed_deletion(dash_url: str) -> None:
    at = AppTest.from_file(str(PAGES / "trials.py"), default_timeout=120)
    at.run()
    assert not at.exception
    with Store.open(dash_url) as db:
        n = len(study_results(db, STUDY).trials)
    assert any(f"of {n:,} trials match" in c.value for c in at.caption)
    at.selectbox(key="trials_feasible").set_value("feasible").run()
    with Store.open(dash_url) as db:
        feasible = int(study_results(db, STUDY).trials["feasible"].sum())
    assert any(f"{feasible:,} of {n:,} trials match" in c.value for c in at.caption)
    at.toggle(key="trials_importance").set_value(True).run()
    assert not at.exception
    # deletion: the button stays disabled until the name is typed
    button = at.button(key="trials_delete")
    assert button.disabled
    at.text_input(key=f"trials_delete_name:{STUDY}").input("wrong").run()
    assert at.button(key="trials_delete").disabled
    at.text_input(key=f"trials_delete_name:{STUDY}").input(STUDY).run()
    assert not at.button(key="trials_delete").disabled
    assert _studies(dash_url) == [STUDY]
    at.button(key="trials_delete").click().run()
    assert _studies(dash_url) == []


# ------------------------------------------------------------------------------------------------ issue 28: ranges
NPU = "latency_ms@npu"


def _npu_scale_study(url: str) -> pd.DataFrame:
    """A study of latencies of a few microseconds (an NPU's scale) on a fake device ``npu``; its trials."""
    from pareto.search._worker import run_now
    from profilers import DeviceSpec, backend_for, build_lut
    from supernet import get_space

    params = {"gmacs_per_s": 20000.0, "overhead_us": 0.0, "ns_per_element": 0.0, "subnet_overhead_ms": 0.0}
    with Store.open(url) as db:
        spec = DeviceSpec("npu", "fake", "fake", params)
        db.devices.add("npu", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(db, spec, get_space("nb201"), workers=1)
        run_now(db, SearchSpec("npu-scale", "nb201", (ACC, NPU), n_trials=60, population=20))
        return study_results(db, "npu-scale").trials


def test_range_steps_end_exactly_at_the_data_at_every_scale() -> None:
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 1e7):
        values = scale * (0.004 + 0.006 * rng.random(500))
        steps = _explore.range_steps(values)
        assert steps[0] == values.min() and steps[-1] == values.max() and len(steps) == 201  # exact ends
        assert np.all(np.diff(steps) > 0) and np.diff(steps).max() < (values.max() - values.min()) / 100
        fmt = _explore.range_label(steps)
        assert len({fmt % x for x in steps}) == len(steps)  # every step tells itself apart
        assert len(_explore.filter_trials(pd.DataFrame({"v": values}), ranges={"v": (steps[0], steps[-1])})) == 500
    assert _explore.range_steps([3.0, 1.0, 2.0, 2.0]) == [1.0, 2.0, 3.0]  # few values: each one
    assert _explore.range_steps([1.0, 1.0, np.nan]) == []


@pytest.mark.slow
def test_trials_range_filter_at_npu_scale_steps_with_the_data_and_says_what_it_hides(dash_url: str) -> None:
    """Issue 28 (wrong results 8): the range sliders stepped 0.01 in every unit, so at an NPU's scale (µs) one step
    filtered out the whole front and stepping back left trials silently filtered."""
    trials = _npu_scale_study(dash_url)
    n = len(trials)
    assert trials[NPU].max() < 0.01  # the whole study within one old step
    at = AppTest.from_file(str(PAGES / "trials.py"), default_timeout=120)
    at.run()
    at.selectbox(key="trials_study").set_value("npu-scale").run()
    assert not at.exception
    (slider,) = [s for s in at.select_slider if s.label == f"{NPU} range"]
    lo, hi = slider.value
    assert (lo, hi) == (trials[NPU].min(), trials[NPU].max())
    steps = _explore.range_steps(trials[NPU].to_numpy(float))
    slider.set_value((steps[1], hi)).run()  # one step up from the lowest
    caption = next(c.value for c in at.caption if "trials match" in c.value)
    kept = int((trials[NPU] >= steps[1]).sum())
    assert 0 < n - kept < n / 2, caption  # one step hides a few trials, not the front
    assert caption.startswith(f"{kept:,} of {n:,} trials match; {n - kept:,} hidden by the filters ({NPU} in [")
    (slider,) = [s for s in at.select_slider if s.label == f"{NPU} range"]
    slider.set_value((steps[0], hi)).run()  # and back: nothing hidden
    caption = next(c.value for c in at.caption if "trials match" in c.value)
    assert caption.startswith(f"{n:,} of {n:,} trials match; no filter"), caption
