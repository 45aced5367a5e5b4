"""Distributed search on PostgreSQL: three worker processes share one evaluation-budgeted study; one is killed with
SIGKILL mid-evaluation; no finished trial is lost, its running trial is retried, and the search completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from pareto import MeasurementIn, Store
from pareto._search import SearchSpec
from pareto._worker import submit
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space

BUDGET = 22


def _prepare(url: str) -> None:
    space = get_space("nb201")
    with Store.open(url) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.add_device("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, workers=1)
        rng = np.random.default_rng(0)
        configs = [space.from_index(int(i)) for i in rng.choice(15625, 300, replace=False)]
        rows = [MeasurementIn(c, "dataset", "toy", "test_acc_pct",
                              50 + 4 * np.log(space.params(c)) / np.log(10) + rng.normal(0, 0.3)) for c in configs]
        store.add_measurements(rows)
        submit(store, SearchSpec("dist", "nb201", ("test_acc_pct@toy", "latency_ms@board"), n_trials=BUDGET,
                                 mode="budgeted", options={"batch": 4, "initial": 10, "eval_delay_s": 0.5}))


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    with Store.open(url) as store:
        try:
            return optuna.load_study(study_name="dist", storage=store.optuna_storage()).get_trials(deepcopy=False)
        except KeyError:  # the coordinator has not created the study yet
            return []


@pytest.mark.slow
def test_three_workers_survive_a_sigkill(pg_url: str, tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _prepare(pg_url)
    cmd = [sys.executable, "-m", "pareto.cli", "worker", "--store", pg_url, "--idle-exit", "6", "--heartbeat", "1"]
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(3)]  # noqa: SIM115 - closed below
    workers = [subprocess.Popen(cmd, stdout=log, stderr=log) for log in logs]
    killed: int | None = None
    killed_trial: int | None = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and killed is None:
            trials = _trials(pg_url)
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs]
            pids = {w.pid for w in workers}
            victims = [t for t in running if int(t.user_attrs["worker"].rsplit(":", 1)[1]) in pids]
            if len(complete) >= 6 and victims:
                killed_trial = victims[0].number
                killed = int(victims[0].user_attrs["worker"].rsplit(":", 1)[1])
                os.kill(killed, signal.SIGKILL)  # mid-evaluation: its trial is RUNNING
            time.sleep(0.1)
        assert killed is not None, "no worker was ever caught mid-evaluation"
        for w in workers:
            w.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for log in logs:
            log.close()
    output = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(3))
    with Store.open(pg_url) as store:
        row = store.get_search("dist")
    assert row["status"] == "done", output
    trials = _trials(pg_url)
    states = {t.number: t.state for t in trials}
    assert states[killed_trial] == optuna.trial.TrialState.FAIL  # marked failed by Optuna's heartbeat check
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [t.user_attrs["config_key"] for t in complete]
    assert len(set(keys)) == BUDGET  # every evaluation the search paid for finished once
    victim = next(t for t in trials if t.number == killed_trial)
    retried = [t for t in complete if t.params == victim.params]
    assert retried, "the killed worker's trial was not evaluated again"
    assert len({t.user_attrs["worker"] for t in complete}) >= 2  # the work was shared
