"""Optuna's own tools read hwpareto's bulk-written studies as if Optuna had run them: optuna-dashboard's app
(metric names, constraints, a feasible-only Pareto front), ``optuna.load_study`` + ``NSGAIISampler`` (resumes at
the next generation from hwpareto's parents) and the trials' evaluation windows. Both store backends (the bulk
path writes with COPY on PostgreSQL, executemany on SQLite)."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from hwpareto.store import Store
from hwpareto.store._optuna import study_id
from pareto.analysis._analysis import study_results
from pareto.search._search import GENERATION_KEY, PARENT_CACHE_PREFIX, SearchSpec, run_surrogate
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space

optuna_dashboard = pytest.importorskip("optuna_dashboard")
from optuna_dashboard._app import create_app  # noqa: E402
from optuna_dashboard._pareto_front import get_pareto_front_trials  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = "latency_ms@edge <= 50"
POP = 20


@pytest.fixture
def searched(store_url: str) -> Iterator[tuple[Store, SearchSpec]]:
    """A store holding a real hwpareto NSGA-II search (3 generations of 20) with a latency budget."""
    with Store.open(store_url) as store:
        spec = DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 5.0})
        store.devices.add("edge", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)
        search = SearchSpec(
            "compat",
            "mbv3",
            ("params:max", "latency_ms@edge"),
            (BUDGET,),
            n_trials=3 * POP,
            population=POP,
            fixed={"r": 224, "w": 1.0},
        )
        run_surrogate(store, search)
        yield store, search


def _get(app: Any, path: str) -> Any:
    """GET ``path`` from a WSGI app; the decoded JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.mark.slow
def test_optuna_dashboard_sees_metric_names_constraints_and_a_feasible_front(
    searched: tuple[Store, SearchSpec],
) -> None:
    store, spec = searched
    storage = store.optuna_storage()
    results = study_results(store, spec.name)
    frame = results.trials.set_index("number")
    assert 0 < frame["feasible"].sum() < len(frame)  # the budget cuts: some trials are infeasible
    app = create_app(storage)
    listed = {s["study_name"]: s for s in _get(app, "/api/studies")["study_summaries"]}
    study_id = listed[spec.name]["study_id"]
    detail = _get(app, f"/api/studies/{study_id}")
    assert detail["objective_names"] == ["params", "latency_ms@edge"]  # not "Objective 0/1"
    trials = detail["trials"]
    assert len(trials) == 3 * POP
    for t in trials:  # the list the dashboard's plots and trial pages read, in budget order
        assert t["constraints"] == pytest.approx([frame.loc[t["number"], f"budget:{BUDGET}"]])
    # the dashboard's browser-side rule (bundle.js: constraints.every(c => c <= 0)) on the app's own JSON
    feasible = {t["number"] for t in trials if all(c <= 0 for c in t["constraints"])}
    assert feasible == set(frame.index[frame["feasible"]])
    # its Pareto-front code over the trials it counts feasible is Optuna's feasibility-aware front
    study = optuna.load_study(study_name=spec.name, storage=storage)
    front = get_pareto_front_trials([t for t in study.trials if t.number in feasible], study.directions)
    assert {t.number for t in front} == {t.number for t in study.best_trials}
    assert {t.number for t in front} <= feasible
    # the app's server-side Pareto-front plot: best trials feasible only, infeasible ones in their own trace
    figure = _get(app, f"/api/studies/{study_id}/plot/pareto_front")
    names = [trace.get("hovertemplate", "") for trace in figure["data"]]
    best = [tr for tr, n in zip(figure["data"], names, strict=True) if "Best Trial" in n]
    infeasible = [tr for tr, n in zip(figure["data"], names, strict=True) if "Infeasible" in n]
    assert best and infeasible
    assert len(best[0]["x"]) == len(study.best_trials)
    assert len(infeasible[0]["x"]) == int((~frame["feasible"]).sum())
    # Optuna's own trial view names each budget
    assert all(t.constraints[BUDGET] == t.constraints["0"] for t in study.trials)


def test_evaluated_trials_record_their_evaluation_window(searched: tuple[Store, SearchSpec]) -> None:
    store, spec = searched
    trials = optuna.load_study(study_name=spec.name, storage=store.optuna_storage()).trials
    windows: dict[int, list[tuple[datetime, datetime]]] = {}
    for t in trials:
        assert t.datetime_start is not None and t.datetime_complete is not None
        assert t.datetime_start < t.datetime_complete
        windows.setdefault(t.system_attrs[GENERATION_KEY], []).append((t.datetime_start, t.datetime_complete))
    assert sorted(windows) == [0, 1, 2] and all(len(w) == POP for w in windows.values())
    for g in (0, 1):  # a generation is evaluated after the previous one was written
        assert max(end for _, end in windows[g]) <= min(start for start, _ in windows[g + 1])


def test_optuna_nsga2_resumes_a_hwpareto_study_at_the_next_generation(searched: tuple[Store, SearchSpec]) -> None:
    store, spec = searched
    assert optuna.samplers.NSGAIISampler._get_generation_key() == GENERATION_KEY
    assert optuna.samplers.NSGAIISampler._get_parent_cache_key_prefix() == PARENT_CACHE_PREFIX
    storage = store.optuna_storage()
    system = storage.get_study_system_attrs(storage.get_study_id_from_name(spec.name))
    parents = system[PARENT_CACHE_PREFIX + "2"]  # generation 2 was bred from hwpareto's elite of 0 and 1
    assert len(parents) == POP
    sampler = optuna.samplers.NSGAIISampler(population_size=POP, seed=0)
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
    by_id = {t._trial_id: t for t in study.trials}
    assert {by_id[i].system_attrs[GENERATION_KEY] for i in parents} <= {0, 1}
    dists = {d.name: d.distribution() for d in get_space("mbv3").dimensions}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask(dists)
    study.tell(trial, [1.0, 1.0])
    resumed = study.trials[-1]
    assert resumed.number == 3 * POP
    assert resumed.system_attrs[GENERATION_KEY] == 3  # not 0: Optuna continues hwpareto's generations
    # its parents are hwpareto's elite: Optuna cached generation 3's parents from stored generations 2 and its parents
    cached = storage.get_study_system_attrs(study_id(study))[PARENT_CACHE_PREFIX + "3"]
    assert len(cached) == POP and all(by_id[i].system_attrs[GENERATION_KEY] <= 2 for i in cached)


def test_resume_by_hwpareto_continues_generations_and_names(searched: tuple[Store, SearchSpec]) -> None:
    store, spec = searched
    extended = SearchSpec.from_dict({**spec.to_dict(), "n_trials": 4 * POP})
    run_surrogate(store, extended)
    study = optuna.load_study(study_name=spec.name, storage=store.optuna_storage())
    assert study.metric_names == ["params", "latency_ms@edge"]
    assert [t.system_attrs[GENERATION_KEY] for t in study.trials[-POP:]] == [3] * POP
