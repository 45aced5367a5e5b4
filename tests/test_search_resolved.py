"""A search is resolved once (one evaluator build, one budget probe) and reused by the CLI, ``run_now``, ``submit``
and the worker; models capture what they read from the store when loaded (no store read per generation); a failing
run marks its search failed by one rule, whether ``run_now`` or a worker ran it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event
from typer.testing import CliRunner

import pareto._objectives as objectives
import pareto.search._search as search
import pareto.search._worker as worker
from hwpareto.cli import app
from hwpareto.store import Store
from pareto.search._search import SearchSpec
from pareto.search._worker import run_now, run_worker
from predictors import load_model, train_latency
from profilers import DeviceSpec, backend_for, build_lut, measure_subnets
from supernet import get_space

FIX = {"r": 224, "w": 1.0}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "store.db")) as opened:
        spec = DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 5.0})
        opened.devices.add("edge", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(opened, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)
        yield opened


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Evaluator builds and budget probes, counted wherever they happen."""
    seen = {"builds": 0, "probes": 0}
    build, probe = objectives.Evaluator.__init__, search._check_budgets

    def counted_build(self: objectives.Evaluator, *args: Any, **kw: Any) -> None:
        seen["builds"] += 1
        build(self, *args, **kw)

    def counted_probe(*args: Any, **kw: Any) -> None:
        seen["probes"] += 1
        probe(*args, **kw)

    monkeypatch.setattr(objectives.Evaluator, "__init__", counted_build)
    monkeypatch.setattr(search, "_check_budgets", counted_probe)
    return seen


SEARCH = ["search", "--space", "mbv3", "--objective", "params:max", "--objective", "latency_ms@edge"]
SEARCH += ["--budget", "latency_ms@edge <= 1000", "--fix", "r=224", "--fix", "w=1.0", "--trials", "60"]
SEARCH += ["--population", "20"]


def test_a_fresh_search_builds_one_evaluator_and_probes_its_budgets_once(store: Store, counts: dict[str, int]) -> None:
    """Before, ``hwpareto search`` built its evaluator (every predictor and LUT loaded) and probed its budgets 4
    times: in the CLI's validate_spec, again in run_now, in submit and in run_surrogate."""
    result = CliRunner().invoke(app, [*SEARCH, "--name", "now", "--store", store.url])
    assert result.exit_code == 0, result.output
    assert counts == {"builds": 1, "probes": 1}
    assert store.searches.get("now").status == "done" and store.searches.get("now").trials_done == 60


def test_a_queued_search_is_resolved_once_by_the_worker_that_claims_it(store: Store, counts: dict[str, int]) -> None:
    result = CliRunner().invoke(app, [*SEARCH, "--name", "queued", "--queue", "--store", store.url])
    assert result.exit_code == 0, result.output
    assert counts == {"builds": 1, "probes": 1}  # checked before it was queued
    assert run_worker(store, idle_exit_s=0, poll_s=0.1, log=lambda m: None) == 1
    assert counts == {"builds": 2, "probes": 2}  # and once by the worker
    assert store.searches.get("queued").status == "done"


class Queries:
    """Store reads and writes on ``store``'s engine: connections opened and statements run."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.count = 0
        event.listen(self.engine, "engine_connect", self._seen)
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any, **kw: Any) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "engine_connect", self._seen)
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.mark.slow
def test_a_lut_corrected_predictor_reads_nothing_from_the_store_after_it_is_loaded(tmp_path: Path) -> None:
    """Before, a LUT-corrected predictor read its device's whole LUT from the store at every prediction (every
    generation of a search)."""
    space = get_space("mbv3")
    rng = np.random.default_rng(0)
    configs = [space.validate({**space.sample(rng).values, "r": 160, "w": 1.0}) for _ in range(160)]
    with Store.open(str(tmp_path / "s.db")) as store:
        spec = DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 4.0})
        store.devices.add("edge", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, restrict={"r": [160], "w": [1.0]}, workers=1)
        measure_subnets(store, spec, space, configs[:40])
        name = train_latency(store, "edge", space).name
        model = load_model(store, name)
        assert model.use_lut
        evaluator = objectives.Evaluator(store, space, [objectives.parse_objective("latency_ms@edge")])
        assert evaluator.sources[objectives.parse_objective("latency_ms@edge")] == f"predictor {name}"
        queries = Queries(store)
        try:
            for generation in range(4):
                evaluator.evaluate(configs[40 + 30 * generation : 70 + 30 * generation])
            mean, std = model.predict(configs[:5])
        finally:
            queries.close()
        assert queries.count == 0
        assert mean.shape == std.shape == (5,)
        probe = Queries(store)  # the counter sees a store read
        try:
            store.luts.get("edge")
        finally:
            probe.close()
        assert probe.count > 0


# ---------------------------------------------------------------------------------------------------- one rule
def _failing(*args: object, **kw: object) -> object:
    raise RuntimeError("the evaluation crashed")


def test_a_failing_run_marks_the_search_failed_on_both_paths(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, run_now recorded any exception as failed while a worker recorded only HwparetoError (anything else
    ended the worker and left the search running, to be taken over and crash the next worker)."""
    monkeypatch.setitem(worker.MODES, "surrogate", worker.MODES["surrogate"]._replace(run=_failing))
    spec = SearchSpec("now", "mbv3", ("params:max", "latency_ms@edge"), n_trials=40, population=20, fixed=FIX)
    with pytest.raises(RuntimeError, match="the evaluation crashed"):
        run_now(store, spec)
    worker.submit(store, SearchSpec("queued", spec.space, spec.objectives, n_trials=40, population=20, fixed=FIX))
    logs: list[str] = []
    assert run_worker(store, idle_exit_s=0, poll_s=0.1, log=logs.append) == 0
    for name in ("now", "queued"):
        row = store.searches.get(name)
        assert (row.status, row.error) == ("failed", "the evaluation crashed"), name
    assert logs[-1].endswith("search queued failed: the evaluation crashed"), logs


def test_the_search_spec_takes_its_settings_by_keyword() -> None:
    with pytest.raises(TypeError):
        SearchSpec("s", "mbv3", ("params",), (), "nsga2")  # type: ignore[misc]
    assert SearchSpec("s", "mbv3", ("params",), (), sampler="random").sampler == "random"


@pytest.mark.slow
def test_a_budgeted_search_builds_one_evaluator(tmp_path: Path, counts: dict[str, int]) -> None:
    """Before, a budgeted ``hwpareto search`` built its cheap evaluator 7 times (twice per validation, three
    validations, then once more to run)."""
    from hwpareto.store import MeasurementIn

    space = get_space("nb201")
    configs = [space.from_index(i) for i in range(0, 15625, 390)]
    with Store.open(str(tmp_path / "s.db")) as store:
        store.measurements.add(
            [MeasurementIn(c, "dataset", "toy", "test_acc_pct", 50.0 + i % 7) for i, c in enumerate(configs)]
        )
        args = ["search", "--space", "nb201", "--objective", "test_acc_pct@toy", "--objective", "params"]
        args += ["--mode", "budgeted", "--trials", "25", "--name", "b", "--store", store.url]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert counts["builds"] == 1
        assert store.searches.get("b").status == "done" and store.searches.get("b").trials_done == 25


@pytest.mark.slow
def test_a_few_shot_predictor_reads_nothing_from_the_store_after_it_is_loaded(tmp_path: Path) -> None:
    """Its known devices' measured values and, for the SubNets they have not measured, their own predictors are
    read when it is loaded (before, at every prediction)."""
    space = get_space("nb201")
    cells = [space.from_index(i) for i in range(0, 15625, 125)]
    with Store.open(str(tmp_path / "s.db")) as store:
        for name, speed in (("gpu-a", 40.0), ("cpu-b", 2.0), ("new-x", 6.0)):
            spec = DeviceSpec(name, "fake", "fake", {"gmacs_per_s": speed})
            store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe())
            measure_subnets(store, spec, space, cells if name != "new-x" else cells[:10])
        report = train_latency(store, "new-x", space, few_shot=10)
        assert report.known is not None and report.known.predicted == ("cpu-b", "gpu-a")
        model = load_model(store, report.name)
        queries = Queries(store)
        try:
            for start in (1, 2, 3):
                mean, _ = model.predict([space.from_index(i) for i in range(start, 15625, 500)])  # none measured
        finally:
            queries.close()
        assert queries.count == 0 and np.all(mean > 0)
