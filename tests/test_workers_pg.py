"""Distributed search on PostgreSQL: three worker processes share one evaluation-budgeted study; one is killed with
SIGKILL mid-evaluation; no finished trial is lost, its running trial is retried, the search completes, and exactly
the budget is spent, each SubNet once. Also: the claim rule (one trial per SubNet runs) under racing threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from hwpareto.store import MeasurementIn, Store
from pareto.search._budgeted import enqueue_batch
from pareto.search._budgeted_study import _Budgeted, resolve_budgeted
from pareto.search._search import SearchSpec, load_trials
from pareto.search._worker import submit
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space

pytestmark = pytest.mark.slow  # end-to-end: left out of `make test-fast`

BUDGET = 22


def _prepare(url: str) -> None:
    space = get_space("nb201")
    with Store.open(url) as store:
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, workers=1)
        rng = np.random.default_rng(0)
        configs = [space.from_index(int(i)) for i in rng.choice(15625, 300, replace=False)]
        rows = [
            MeasurementIn(
                c, "dataset", "toy", "test_acc_pct", 50 + 4 * np.log(space.params(c)) / np.log(10) + rng.normal(0, 0.3)
            )
            for c in configs
        ]
        store.measurements.add(rows)
        submit(
            store,
            SearchSpec(
                "dist",
                "nb201",
                ("test_acc_pct@toy", "latency_ms@board"),
                n_trials=BUDGET,
                mode="budgeted",
                options={"batch": 4, "initial": 10, "eval_delay_s": 0.5},
            ),
        )


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    with Store.open(url) as store:
        try:
            return optuna.load_study(study_name="dist", storage=store.optuna_storage()).get_trials(deepcopy=False)
        except KeyError:  # the coordinator has not created the study yet
            return []


def _evaluations(trials: list[optuna.trial.FrozenTrial]) -> tuple[list[str], list[optuna.trial.FrozenTrial]]:
    """Config keys of the COMPLETE trials, and the failed trials that were evaluated (or being evaluated) when their
    worker was declared dead (the others were failed unevaluated as duplicates)."""
    State = optuna.trial.TrialState
    complete = [t.user_attrs["config_key"] for t in trials if t.state == State.COMPLETE]
    stale = [t for t in trials if t.state == State.FAIL and "duplicate_of" not in t.user_attrs]
    return complete, stale


@pytest.mark.slow
def test_three_workers_survive_a_sigkill(pg_url: str, tmp_path: Path) -> None:
    """Fault injection: no assumption on the machine's speed (a busy machine only makes it slower; heartbeats
    that come late look like dead workers, whose retries are the only repeats allowed and are checked as such)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _prepare(pg_url)
    cmd = [sys.executable, "-m", "hwpareto.cli", "worker", "--store", pg_url, "--idle-exit", "6", "--heartbeat", "1"]
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(3)]  # noqa: SIM115 - closed below
    workers = [subprocess.Popen(cmd, stdout=log, stderr=log) for log in logs]
    killed: int | None = None
    killed_trial: int | None = None
    try:
        deadline = time.monotonic() + 900  # generous: a slow shared machine must not fail the test
        while time.monotonic() < deadline and killed is None:
            trials = _trials(pg_url)
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs]
            pids = {w.pid for w in workers if w.poll() is None}
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
    assert "Warning" not in output, output  # Optuna's experimental heartbeat API is not the user's concern
    with Store.open(pg_url) as store:
        row = store.searches.get("dist")
    assert row.status == "done", output
    assert row.trials_done == BUDGET, output
    trials = _trials(pg_url)
    by_number = {t.number: t for t in trials}
    assert by_number[killed_trial].state == optuna.trial.TrialState.FAIL  # marked failed by Optuna's heartbeat check
    keys, stale = _evaluations(trials)
    assert len(keys) == BUDGET, output  # exactly the budget was spent: no trial Optuna invented, no overspend
    assert len(set(keys)) == BUDGET  # and never twice on one SubNet
    assert killed_trial in {t.number for t in stale}
    retries = {n: t for t in trials for n in t.system_attrs.get("retry_history", [])[-1:]}
    for t in stale:  # every evaluation not kept belonged to a worker declared dead, and was retried once
        assert t.number in retries, f"trial {t.number} failed without a retry"
    victim = by_number[killed_trial]
    chain = [t for t in trials if killed_trial in t.system_attrs.get("retry_history", [])]
    assert chain, "the killed worker's trial was not retried"
    assert [t.params for t in trials if t.state == optuna.trial.TrialState.COMPLETE].count(
        victim.system_attrs["fixed_params"]
    ) == 1  # its SubNet was evaluated again, and counted once
    assert len({t.user_attrs["worker"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}) >= 2


def _job(url: str) -> tuple[Store, _Budgeted]:
    store = Store.open(url)
    return store, _Budgeted(
        store, resolve_budgeted(store, SearchSpec.from_dict(store.searches.get("dist").params)), 1.0
    )


def test_only_the_oldest_trial_of_a_subnet_runs(store_url: str) -> None:
    """Deterministic: duplicate trials of one SubNet (as a replaying coordinator or a late retry could leave) are
    failed unevaluated, whichever is claimed first; a study with nothing waiting gets no trial Optuna invents."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _prepare(store_url)
    store, job = _job(store_url)
    with store:
        assert not job.evaluate_waiting() and job.trials() == []  # nothing waiting: nothing sampled
        enqueue_batch(job.study, job.candidates, [0, 0, 1])  # trials 0 and 1 are the same SubNet
        second = job.storage.get_trial_id_from_study_id_trial_number(job.study_id, 1)
        assert job.storage.set_trial_state_values(second, optuna.trial.TrialState.RUNNING)  # claimed first
        assert not job._run_claimed(second, 1)  # trial 0 is older: this one is not evaluated
        while job.evaluate_waiting():
            pass
        trials = job.trials()
        assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
        assert trials[1].user_attrs["duplicate_of"] == 0 and "config_key" not in trials[1].user_attrs
        assert sorted(job.results()) == sorted({job.candidates[0].key, job.candidates[1].key})
        enqueue_batch(job.study, job.candidates, [1])  # a SubNet already done
        assert not job.evaluate_waiting()
        assert job.trials()[-1].user_attrs["duplicate_of"] == 2 and len(job.results()) == 2


def test_racing_workers_evaluate_each_subnet_once(pg_url: str) -> None:
    """Six workers (threads, each with its own connections) race for waiting trials holding every SubNet three
    times: exactly one trial per SubNet completes, the rest fail unevaluated, and no trial is added."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _prepare(pg_url)
    store, job = _job(pg_url)
    with store:
        enqueue_batch(job.study, job.candidates, [i for _ in range(3) for i in range(12)])
        errors: list[BaseException] = []

        def work() -> None:
            own_store, own = _job(pg_url)
            try:
                with own_store:  # until every SubNet is done and nothing waits (retries included)
                    while len(own.results()) < 12 or own.trials(optuna.trial.TrialState.WAITING):
                        if not own.evaluate_waiting():
                            time.sleep(0.05)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not errors and not any(t.is_alive() for t in threads)
        trials = job.trials()
        keys, stale = _evaluations(trials)
        assert sorted(keys) == sorted(c.key for c in job.candidates[:12])  # each SubNet once, nothing else
        # no trial was added but the retries of trials whose (live, slow) worker looked dead on a busy machine
        assert len(trials) == 36 + len(stale)
        assert all(t.state.is_finished() for t in trials)


@pytest.mark.parametrize("mode", ["surrogate", "budgeted"])
def test_workers_reconnect_when_their_connections_are_terminated(
    mode: str, pg_server: tuple[object, object], pg_url: str, tmp_path: Path
) -> None:
    """``pg_terminate_backend`` on every connection of the workers, three times mid-search (each time once more
    trials were stored): real ``hwpareto worker`` processes reconnect and finish the search, with no traceback
    (before, a surrogate worker died at its next query and a budgeted one at its next commit)."""
    import psycopg
    from sqlalchemy import make_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if mode == "budgeted":
        _prepare(pg_url)  # 22 evaluations
        n_trials, n_workers = BUDGET, 2
    else:
        n_trials, n_workers = 3000, 1  # 300 generations of 10: seconds of search to terminate it in
        with Store.open(pg_url) as store:
            board = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
            store.devices.add("board", "fake", board.to_dict(), backend_for(board).describe())
            build_lut(store, board, get_space("nb201"), workers=1)
            submit(store, SearchSpec("surr", "nb201", ("params", "latency_ms@board"), n_trials=n_trials, population=10))
    name = "dist" if mode == "budgeted" else "surr"
    admin = pg_server[0]
    assert isinstance(admin, psycopg.Connection)
    database = make_url(pg_url).database
    cmd = [sys.executable, "-m", "hwpareto.cli", "worker", "--store", pg_url, "--idle-exit", "3", "--heartbeat", "1"]
    errs = [open(tmp_path / f"worker{i}.err", "w") for i in range(n_workers)]  # noqa: SIM115 - closed below
    workers = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err) for err in errs]
    terminated: list[int] = []
    try:
        with psycopg.connect(make_url(pg_url).set(drivername="postgresql").render_as_string(False)) as watch:
            watch.autocommit = True
            deadline, last = time.monotonic() + 600, 0
            while time.monotonic() < deadline and any(w.poll() is None for w in workers):
                try:
                    done = watch.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                except psycopg.errors.UndefinedTable:
                    done = 0
                if len(terminated) < 3 and done >= last + 3 and done < n_trials - 3:
                    ended = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                        (database, watch.info.backend_pid),
                    ).fetchall()
                    terminated.append(len(ended))
                    last = done
                time.sleep(0.2)
        codes = [w.wait(timeout=max(1.0, deadline - time.monotonic())) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for err in errs:
            err.close()
    stderr = "".join((tmp_path / f"worker{i}.err").read_text() for i in range(n_workers))
    assert len(terminated) == 3 and all(terminated), (terminated, stderr)
    assert codes == [0] * n_workers and "Traceback" not in stderr, stderr
    assert "lost the connection to the store while" in stderr and "reconnecting in" in stderr, stderr
    with Store.open(pg_url) as store:
        row = store.searches.get(name)
        assert (row.status, row.trials_done) == ("done", n_trials), stderr
    if mode == "budgeted":
        keys, _ = _evaluations(_trials(pg_url))
        assert len(keys) == len(set(keys)) == BUDGET  # each SubNet evaluated once, whatever was cut off
    else:
        with Store.open(pg_url) as store:
            assert len(load_trials(store, "surr")[0]) == n_trials


def test_a_worker_gives_up_with_one_line_when_the_store_stays_away(
    pg_server: tuple[object, object], pg_url: str, tmp_path: Path
) -> None:
    """The worker's database closed to connections and its backends terminated mid-search: the worker tries to
    reconnect a bounded number of times, announcing each, then exits 1 with one ``error:`` line and no traceback;
    the search stays running, and a worker started once the database is back finishes it."""
    import psycopg
    from sqlalchemy import make_url

    from pareto.search._reconnect import RECONNECT_TRIES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    admin = pg_server[0]
    assert isinstance(admin, psycopg.Connection)
    database = make_url(pg_url).database
    with Store.open(pg_url) as store:
        board = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", board.to_dict(), backend_for(board).describe())
        build_lut(store, board, get_space("nb201"), workers=1)
        # 300 generations of 10: still searching when the connections are cut, however fast the machine
        submit(store, SearchSpec("surr", "nb201", ("params", "latency_ms@board"), n_trials=3000, population=10))
    cmd = [sys.executable, "-m", "hwpareto.cli", "worker", "--store", pg_url, "--idle-exit", "3", "--heartbeat", "1"]
    closed = f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS '
    try:
        worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and worker.poll() is None:
            with Store.open(pg_url) as store:
                if store.searches.get("surr").trials_done > 0:
                    break
            time.sleep(0.2)
        admin.execute(closed + "false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
        err = worker.communicate(timeout=300)[1]
    finally:
        admin.execute(closed + "true")
    assert worker.returncode == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: lost the connection to store postgresql+psycopg://") and "surr" in lines[-1]
    assert f"(try {RECONNECT_TRIES} of {RECONNECT_TRIES})" in err
    assert "not currently accepting connections" in lines[-1], lines[-1]
    with Store.open(pg_url) as store:
        assert store.searches.get("surr").status == "running"  # left for another worker: nothing marked failed
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    with Store.open(pg_url) as store:
        row = store.searches.get("surr")
        assert (row.status, row.trials_done) == ("done", 3000)
        assert len(load_trials(store, "surr")[0]) == 3000
