"""Surrogate search on Optuna studies in the store: objectives and budgets, samplers, bulk trial writes readable by
Optuna, resume, analytics (fronts per device, operating points), export, the job queue, and the CLI."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from pareto._objectives import parse_budget, parse_objective
from pareto.analysis._analysis import export_trial, study_results
from pareto.analysis._pareto import hypervolume
from pareto.search._search import SearchSpec, load_trials, run_surrogate
from pareto.search._worker import run_now, run_worker, submit
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
FIX = {"r": 224, "w": 1.0}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(str(tmp_path / "store.db")) as opened:
        yield opened


def fake(store: Store, name: str, **params: float) -> None:
    spec = DeviceSpec(name, "fake", "fake", params)
    store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe())
    build_lut(store, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)


@pytest.fixture
def devices(store: Store) -> Store:
    fake(store, "edge", gmacs_per_s=5.0)
    fake(store, "server", gmacs_per_s=80.0, overhead_us=30.0)
    return store


def spec(name: str = "s1", **kw: object) -> SearchSpec:
    base = {"objectives": ("params:max", "latency_ms@edge"), "n_trials": 300, "population": 50, "fixed": dict(FIX)}
    return SearchSpec(name, "mbv3", **{**base, **kw})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- parsing
def test_objective_and_budget_syntax() -> None:
    assert parse_objective("test_acc_pct@cifar10").direction == "maximize"
    assert parse_objective("latency_ms@cpu-local").direction == "minimize"
    assert parse_objective("params:max").direction == "maximize"
    b = parse_budget("latency_ms@cpu-local <= 20")
    assert b.bound == 20 and b.text == "latency_ms@cpu-local <= 20"
    np.testing.assert_array_equal(b.violation(np.array([10.0, 25.0])), [-10.0, 5.0])
    for bad, message in (
        ("latency_ms", "latency_ms@DEVICE"),
        ("params@edge", "without @"),
        ("Latency MS", "METRIC\\[@DEVICE_OR_DATASET\\]"),
    ):
        with pytest.raises(InvalidValueError, match=message):
            parse_objective(bad)
    with pytest.raises(InvalidValueError, match="OBJECTIVE <= BOUND"):
        parse_budget("latency_ms@edge < 20")
    with pytest.raises(InvalidValueError, match="'>=' for a maximized metric"):
        parse_budget("test_acc_pct@cifar10 <= 90")
    for plain, value in (("20", 20.0), ("-2.5", -2.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 1e-3), ("+2E+2", 200.0)):
        assert parse_budget(f"latency_ms@edge <= {plain}").bound == value


@pytest.mark.parametrize(
    "bound", ["1e999", "-1e999", "inf", "+inf", "-Infinity", "nan", "NaN", "20ms", "1_0", "\uff15", "0x10"]
)
def test_non_finite_budget_bounds_are_refused_alike(bound: str, tmp_path: Path) -> None:
    """``<= 1e999`` (inf once parsed) was accepted while ``<= inf`` was refused with another message."""
    with pytest.raises(InvalidValueError, match=rf"bound: expected a finite number, got '{re.escape(bound)}'$"):
        parse_budget(f"latency_ms@edge <= {bound}")
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--space",
            "nb201",
            "--objective",
            "params",
            "--budget",
            f"params <= {bound}",
            "--store",
            str(tmp_path / "s.db"),
        ],
    )
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: budget 'params <= ") and "expected a finite number" in result.stderr


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"sampler": "cmaes"}, "sampler: expected one of nsga2, nsga3, random, tpe, got 'cmaes'"),
        ({"objectives": ()}, "objectives: expected at least one"),
        ({"objectives": ("params", "params")}, "expected distinct metrics"),
        ({"n_trials": 0}, "n_trials: expected an integer >= 1"),
        ({"budgets": ("latency_ms@edge 20",)}, "budget: expected OBJECTIVE <= BOUND"),
    ],
)
def test_bad_specs(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        spec(**kw)


def test_unknown_device_metric_and_unsatisfiable_budget(devices: Store) -> None:
    with pytest.raises(InvalidValueError, match="device: expected one of edge, server"):
        run_surrogate(devices, spec(objectives=("params", "latency_ms@phone")))
    with pytest.raises(InvalidValueError, match=r"test_acc_pct:mbv3:imagenet .*stored: none"):
        run_surrogate(devices, spec(objectives=("test_acc_pct@imagenet", "latency_ms@edge")))
    with pytest.raises(InvalidValueError, match=r"best reachable value found: \d"):
        run_surrogate(devices, spec(budgets=("latency_ms@edge <= 0.5",)))
    with pytest.raises(KeyError):  # nothing was written for the refused searches
        optuna.load_study(study_name="s1", storage=devices.optuna_storage())


@pytest.fixture
def edgetpu(store: Store) -> Store:
    """The store with the npu-edgetpu preset and its shipped LUT (the demo's simulator LUT)."""
    from hwpareto.resources import data_path
    from profilers import device_spec, import_lut_csv

    device_spec(store, "npu-edgetpu")
    import_lut_csv(store, data_path() / "luts" / "npu-edgetpu.csv", "npu-edgetpu")
    return store


@pytest.mark.slow
def test_a_budget_only_the_smallest_subnets_meet_is_accepted(edgetpu: Store) -> None:
    """On mbv3-digits x npu-edgetpu no random SubNet of a 256-probe comes under 0.005 ms, yet the smallest SubNet
    (0.0039 ms) does: the budget is accepted and searched; one below the smallest SubNet is refused naming it."""
    from pareto._objectives import Evaluator
    from pareto.search._search import resolve_surrogate

    space = get_space("mbv3-digits")
    evaluator = Evaluator(edgetpu, space, [parse_objective("latency_ms@npu-edgetpu")])
    rng = np.random.default_rng(0)
    probe, _ = evaluator.evaluate([space.sample(rng) for _ in range(256)])
    smallest = float(evaluator.evaluate([space.smallest()])[0][0, 0])
    assert smallest < 0.005 < probe.min()  # what the old random probe refused
    s = SearchSpec(
        "tight",
        "mbv3-digits",
        ("params:max", "latency_ms@npu-edgetpu"),
        ("latency_ms@npu-edgetpu <= 0.005",),
        n_trials=300,
        population=50,
    )
    run_surrogate(edgetpu, resolve_surrogate(edgetpu, s))
    assert (study_results(edgetpu, "tight").trials["latency_ms@npu-edgetpu"] <= 0.005).any()
    below = SearchSpec("below", "mbv3-digits", s.objectives, (f"latency_ms@npu-edgetpu <= {smallest * 0.9:.6g}",))
    with pytest.raises(InvalidValueError, match=rf"best reachable value found: {smallest:.4g}\)"):
        resolve_surrogate(edgetpu, below)


def test_budget_local_search_reaches_the_minimum_from_anywhere(edgetpu: Store) -> None:
    """The local search a budget gets before it is refused walks from the largest SubNet down to the smallest one's
    latency (a cost monotone in the dimensions), one dimension at a time; fixed dimensions stay."""
    from pareto._objectives import Evaluator
    from pareto.search._search import _descend
    from pareto.search._strategies import Genome

    space = get_space("mbv3-digits")
    metric = parse_objective("latency_ms@npu-edgetpu")
    evaluator = Evaluator(edgetpu, space, [metric])
    smallest = float(evaluator.evaluate([space.smallest()])[0][0, 0])
    largest = space.largest()
    start = float(evaluator.evaluate([largest])[0][0, 0])
    budget = parse_budget(f"latency_ms@npu-edgetpu <= {smallest}")
    assert _descend(Genome(space, {}), evaluator, largest, start, 0, 1.0, budget) == pytest.approx(smallest)
    fixed = Genome(space, {"r": 32})  # the smallest SubNet at resolution 32 is the best there
    at_32 = float(evaluator.evaluate([space.validate(space.smallest().values | {"r": 32})])[0][0, 0])
    assert smallest < at_32 < start
    assert _descend(fixed, evaluator, largest, start, 0, 1.0, budget) == pytest.approx(at_32)


# ---------------------------------------------------------------------------------------------------- search
@pytest.mark.slow
def test_trials_are_ordinary_optuna_trials(devices: Store) -> None:
    s = spec(budgets=("latency_ms@edge <= 60",))
    result = run_surrogate(devices, s)
    assert (result.total, result.added) == (300, 300)
    study = optuna.load_study(study_name="s1", storage=devices.optuna_storage())
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(300))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    space = get_space("mbv3")
    lut = devices.luts.get("edge").set_index("layer_key")["latency_ms_mean"]
    for t in trials[::37]:
        cfg = space.validate(t.params)
        assert t.params["r"] == 224 and t.user_attrs["config_key"] == cfg.key
        latency = sum(lut[s.key] for s in space.layers(cfg))
        assert t.values == pytest.approx([space.params(cfg), latency])
        # by name (Trial.set_constraint) and by position (the list optuna-dashboard reads)
        assert t.constraints == pytest.approx({"latency_ms@edge <= 60": latency - 60, "0": latency - 60})
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert len(study.best_trials) > 0  # Optuna's own feasibility-aware Pareto front reads our trials
    stored, values, constraints = load_trials(devices, "s1")
    assert len(stored) == 300 and values.shape == (300, 2) and constraints.shape == (300, 1)


@pytest.mark.slow
def test_resume_extend_and_no_duplicates(devices: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    run_surrogate(devices, spec(n_trials=150))
    with monkeypatch.context() as m:  # a finished study loads no predictor and probes no budget
        m.setattr("pareto.search._search.Evaluator", lambda *a, **k: pytest.fail("a finished study built an Evaluator"))
        again = run_surrogate(devices, spec(n_trials=150))
        assert (again.total, again.added) == (150, 0)
        assert run_surrogate(devices, spec(n_trials=100)).total == 150
        with pytest.raises(InvalidValueError, match="other settings"):
            run_surrogate(devices, spec(objectives=("params:max", "latency_ms@server"), n_trials=150))
    more = run_surrogate(devices, spec(n_trials=250))
    assert (more.total, more.added) == (250, 100)
    numbers = [t.number for t in optuna.load_study(study_name="s1", storage=devices.optuna_storage()).trials]
    assert numbers == list(range(250))
    with pytest.raises(InvalidValueError, match="other settings"):
        run_surrogate(devices, spec(objectives=("params:max", "latency_ms@server")))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "nsga2", "nsga3", "tpe"])
def test_every_sampler_writes_trials(devices: Store, sampler: str) -> None:
    result = run_surrogate(devices, spec(sampler=sampler, n_trials=60, population=20))
    assert result.total == 60
    assert len(optuna.load_study(study_name="s1", storage=devices.optuna_storage()).trials) == 60


@pytest.mark.slow
def test_nsga2_beats_random_search(devices: Store) -> None:
    def hv(name: str, sampler: str) -> float:
        run_surrogate(devices, spec(name, sampler=sampler, n_trials=1200, population=100, seed=1))
        results = study_results(devices, name)
        points = results.trials[["params", "latency_ms@edge"]].to_numpy(float)
        return hypervolume(points, [0.0, 200.0], ["maximize", "minimize"])

    assert hv("evolved", "nsga2") > hv("random", "random")


def test_fronts_per_device_budget_and_operating_points(devices: Store, tmp_path: Path) -> None:
    s = spec(
        objectives=("params:max", "latency_ms@edge", "latency_ms@server"),
        budgets=("latency_ms@edge <= 60",),
        n_trials=400,
    )
    run_surrogate(devices, s)
    results = study_results(devices, "s1")
    assert results.trials["feasible"].sum() == (results.trials["budget:latency_ms@edge <= 60"] <= 0).sum()
    edge, server = results.device_fronts()
    assert (edge.label, server.label) == ("edge", "server")
    assert edge.objectives == ("params", "latency_ms@edge") and server.objectives == ("params", "latency_ms@server")
    assert (edge.rows["latency_ms@edge"] <= 60).all()
    for front in (edge, server):  # nothing in the feasible set dominates a front member
        cost = front.objectives[1]
        feasible = results.trials[results.trials["feasible"]]
        for _, row in front.rows.iterrows():
            better = (
                (feasible["params"] >= row["params"])
                & (feasible[cost] <= row[cost])
                & ((feasible["params"] > row["params"]) | (feasible[cost] < row[cost]))
            )
            assert not better.any()
        assert front.knee_number in set(front.rows["number"])
    table = results.operating_points("edge", 3)
    assert len(table) <= 3 and table[0]["use_until_latency_ms"] == table[1]["max_latency_ms"]
    latencies = [r["latency_ms@edge"] for r in table]
    assert latencies == sorted(latencies) and all(r["config"]["r"] == 224 for r in table)
    history, reference = results.hypervolume_history()
    assert len(reference) == len(results.objectives)
    assert len(history) == 400 and np.all(np.diff(history) >= -1e-9) and history[-1] > 0
    with pytest.raises(InvalidValueError, match="device: expected one of edge, server"):
        results.front("phone")


def test_front_lists_each_subnet_once(devices: Store) -> None:
    fixed = {**get_space("mbv3").largest().values, **FIX}  # only ks_0 and e_0 free: 9 SubNets, 100 trials asked
    result = run_surrogate(
        devices, spec(n_trials=100, population=10, fixed={k: v for k, v in fixed.items() if k not in ("ks_0", "e_0")})
    )
    assert result.total == 9 and "every SubNet of the searched region has been evaluated" in result.note
    results = study_results(devices, "s1")
    front = results.front("edge")
    assert results.trials["config_key"].is_unique  # no trial spent on a SubNet already evaluated
    assert front.rows["config_key"].is_unique and not front.rows[list(front.objectives)].duplicated().any()
    firsts = results.trials.drop_duplicates("config_key").set_index("config_key")["number"]
    assert all(firsts[k] == n for k, n in zip(front.rows["config_key"], front.rows["number"], strict=True))


def test_export_trial_bundle(devices: Store, tmp_path: Path) -> None:
    import torch

    run_surrogate(devices, spec(n_trials=50))
    threads = torch.get_num_threads()
    steps: list[str] = []
    info = export_trial(devices, "s1", 7, tmp_path / "bundle", onnx=False, random_weights=True, progress=steps.append)
    doc = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert set(info["files"]) == {"config.json", "weights.safetensors"}
    assert steps[0] == "reading study s1" and "loading the SuperNet" in steps  # the CLI's status line
    assert torch.get_num_threads() == threads  # the export's single-thread section restores the setting
    assert doc["metrics"]["trial"] == 7
    assert doc["metrics"]["predicted"]["latency_ms@edge"]["source"] == "LUT-sum of edge"
    assert doc["values"] == study_results(devices, "s1").configs[7]
    with pytest.raises(InvalidValueError, match="trial: expected a completed trial number"):
        export_trial(devices, "s1", 999, tmp_path / "x")


# ---------------------------------------------------------------------------------------------------- queue
def test_queue_claims_each_search_once(devices: Store) -> None:
    submit(devices, spec("q1", n_trials=100))
    submit(devices, spec("q2", n_trials=100))
    with pytest.raises(InvalidValueError, match="search name: expected a name not used by another search"):
        submit(devices, spec("q1", n_trials=100))
    claims: list[str] = []

    def claim() -> None:
        row = devices.searches.claim(f"w{threading.get_ident()}")
        if row:
            claims.append(row.name)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims) == ["q1", "q2"]  # atomic: each claimed once, two claimers got nothing


def test_worker_runs_queued_searches(devices: Store) -> None:
    submit(devices, spec("q1", n_trials=100))
    submit(devices, spec("q2", n_trials=120, sampler="random"))
    # the worker looks for work before it decides it is idle: even a zero idle time runs every queued search
    assert run_worker(devices, idle_exit_s=0, poll_s=0.1, log=lambda m: None) == 2
    rows = {r.name: r for r in devices.searches.list()}
    assert rows["q1"].status == rows["q2"].status == "done" and rows["q2"].trials_done == 120
    assert len(load_trials(devices, "q2")[0]) == 120


def test_a_cancelled_search_stops_its_worker(devices: Store, tmp_path: Path) -> None:
    """``hwpareto searches --cancel`` while a worker runs the search: the worker stops at its next beat and leaves
    it cancelled with the trials so far (before, nothing could cancel a search: the refusals that said 'cancel it
    first' named no command)."""
    import pareto.search._worker as worker

    submit(devices, spec("long", n_trials=3000, population=50))
    cancelled: list[str] = []
    real = worker._Beat.progress

    def progress(beat: worker._Beat, done: int) -> bool:
        if done >= 100 and not cancelled:  # mid-search: cancel through the real command
            out = CliRunner().invoke(app, ["searches", "--cancel", "long", "--store", devices.url])
            assert out.exit_code == 0, out.output
            cancelled.append(out.stderr)
            beat.owned = devices.searches.heartbeat(beat.name, beat.worker, done)  # the beat the thread would send
        return real(beat, done)

    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(worker._Beat, "progress", progress)
        assert run_worker(devices, idle_exit_s=0, poll_s=0.1, log=logs.append) == 0
    row = devices.searches.get("long")
    assert cancelled and cancelled[0].startswith("cancelled search long (")
    assert row.status == "cancelled" and 100 <= len(load_trials(devices, "long")[0]) < 3000
    assert logs[-1].endswith("search long stopped: cancelled or taken over by another worker"), logs


def test_worker_idle_clock_restarts_when_a_search_ends(devices: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock (no dependence on the machine's speed): q1 runs for 1000 s, far beyond the idle time; q2 is
    queued while the worker waits after it. The worker must still be there to run q2 (its idle clock restarted
    when q1 ended, not when it was claimed), then exit after ``idle_exit_s`` of idle (fake) time."""
    import pareto.search._worker as worker

    now = [0.0]
    naps: list[float] = []
    real = worker.run_surrogate

    def long_search(*args: object, **kw: object) -> object:
        result = real(*args, **kw)  # type: ignore[arg-type]
        now[0] += 1000.0
        return result

    def nap(seconds: float) -> None:
        naps.append(now[0])
        now[0] += seconds
        if len(naps) == 1:
            submit(devices, spec("q2", n_trials=60))

    monkeypatch.setitem(worker.MODES, "surrogate", worker.MODES["surrogate"]._replace(run=long_search))
    submit(devices, spec("q1", n_trials=60))
    done = run_worker(devices, idle_exit_s=5, poll_s=1, log=lambda m: None, clock=lambda: now[0], sleep=nap)
    assert done == 2
    assert naps[0] == 1000.0  # waited after q1 (1000 s long) instead of quitting
    assert now[0] == 1001.0 + 1000.0 + 5  # q2 claimed after one 1 s poll, 1000 s long, then 5 idle seconds
    assert {r.name: r.status for r in devices.searches.list()} == {"q1": "done", "q2": "done"}


def test_run_now_records_and_resumes(devices: Store) -> None:
    assert run_now(devices, spec("n1", n_trials=80)).added == 80
    assert devices.searches.get("n1").status == "done"
    assert run_now(devices, spec("n1", n_trials=120)).added == 40
    row = devices.searches.get("n1")
    assert row.n_trials == row.params["n_trials"] == 120 and row.trials_done == 120


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_search_cli(devices: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    url = devices.url

    def run(*args: object, ok: bool = True) -> str:
        result = runner.invoke(app, [str(a) for a in args] + ["--store", url])
        assert (result.exit_code == 0) == ok, result.output + result.stderr
        return result.stdout if ok else result.stderr

    base = [
        "search",
        "--space",
        "mbv3",
        "--objective",
        "params:max",
        "--objective",
        "latency_ms@edge",
        "--fix",
        "r=224",
        "--fix",
        "w=1.0",
        "--trials",
        "200",
        "--population",
        "50",
    ]
    out = json.loads(run(*base, "--name", "c1", "--budget", "latency_ms@edge <= 60", "--json"))
    assert out["trials"] == 200 and out["added"] == 200
    front = json.loads(run("front", "c1", "--json"))
    assert front["objectives"] == ["params", "latency_ms@edge"] and front["front"]
    run("front", "c1", "--csv", tmp_path / "front.csv")
    assert (tmp_path / "front.csv").read_text().startswith("number,config_key")
    ops = json.loads(run("front", "c1", "--operating-points", "3", "--json"))
    assert 2 <= len(ops) <= 3 and "use_until_latency_ms" in ops[0]
    run("export", "c1", "3", "--out", tmp_path / "b", "--no-weights")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["metrics"]["trial"] == 3
    assert "c1" in run("searches")
    assert "got 'nope'" in run("front", "nope", ok=False)
    assert "best reachable value found" in run(*base, "--name", "c2", "--budget", "latency_ms@edge <= 0.1", ok=False)
    assert "other settings" in run(*base[:-2], "--population", "20", "--name", "c1", ok=False)
    assert "trial: expected a completed trial" in run("export", "c1", "5000", "--out", tmp_path / "z", ok=False)


# ---------------------------------------------------------------------------------------------------- perplexity
@pytest.fixture(scope="module")
def ppl_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store whose study ``ppl`` searched gpt-stdlib for perplexity (minimised) × latency on a fake board, from
    60 rows of the shipped perplexity table, all through the CLI; its URL."""
    root = tmp_path_factory.mktemp("ppl")
    url = str(root / "s.db")
    with Store.open(url) as store:
        fake_spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", fake_spec.to_dict(), backend_for(fake_spec).describe())
        build_lut(store, fake_spec, get_space("gpt-stdlib"), workers=1)
    table = Path(__file__).resolve().parents[1] / "data" / "demo" / "gpt-stdlib_accuracy.csv"
    (root / "ppl.csv").write_text("".join(table.read_text().splitlines(keepends=True)[:61]))
    imported = ["import", str(root / "ppl.csv"), "--space", "gpt-stdlib", "--metric", "val_ppl", "--column", "val_ppl"]
    result = CliRunner().invoke(app, [*imported, "--dataset", "stdlib", "--store", url])
    assert result.exit_code == 0, result.output + result.stderr
    for args in (
        ["train", "accuracy", "--space", "gpt-stdlib", "--metric", "val_ppl"],
        ["search", "--space", "gpt-stdlib", "--objective", "val_ppl@stdlib", "--objective", "latency_ms@board"],
    ):
        extra = ["--trials", "200", "--population", "50", "--name", "ppl"] if args[0] == "search" else []
        result = CliRunner().invoke(app, [*args, *extra, "--store", url])
        assert result.exit_code == 0, result.output + result.stderr
    return url


@pytest.mark.slow
def test_operating_points_of_a_perplexity_study(ppl_study: str) -> None:
    """Perplexity is minimised: the switching table holds K rows, each slower one with a lower perplexity (before
    the fix, one row whatever K: the table took higher as better)."""
    for k in (3, 4):
        result = CliRunner().invoke(app, ["front", "ppl", "--operating-points", str(k), "--json", "--store", ppl_study])
        assert result.exit_code == 0, result.output + result.stderr
        table = json.loads(result.stdout)
        assert len(table) == k
        latencies = [r["latency_ms@board"] for r in table]
        ppl = [r["val_ppl@stdlib"] for r in table]
        assert latencies == sorted(latencies) and all(np.diff(ppl) < 0), (latencies, ppl)
        assert [r["use_until_latency_ms"] for r in table] == [*latencies[1:], None]
        assert [r["max_latency_ms"] for r in table] == latencies  # bounds named by the cost's metric
