"""Queued searches and the workers that run them (any number of processes or machines on one store).

``hwp_searches`` is the job queue: :func:`submit` adds a row, a worker claims one atomically under the store's
write lock (the oldest queued search, or a running one whose worker stopped sending heartbeats: it resumes from
the stored trials), sends heartbeats while it runs, and marks it done or failed.

Surrogate searches run in the worker that claims them (:func:`pareto._search.run_surrogate`, resumable).
Evaluation-budgeted searches use Optuna's documented distributed mode on the shared study: the claiming worker
coordinates (chooses batches with :func:`pareto._budgeted.budgeted_search` and enqueues them as trials), and
every worker, the coordinator included, runs ``study.optimize`` on the waiting trials. Optuna's heartbeats mark
the running trial of a killed worker failed, and ``RetryFailedTrialCallback`` re-enqueues it, so it is evaluated
again; finished trials are committed one by one and never lost. A restarted coordinator replays its
(deterministic) choices and takes the stored results instead of re-evaluating.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from pareto._objectives import Evaluator
from pareto._search import SPEC_ATTR, SearchResult, SearchSpec, run_surrogate
from pareto._store import Store
from supernet import HwparetoError, InvalidValueError

__all__ = ["run_budgeted", "run_now", "run_worker", "submit", "validate_spec", "worker_id"]

HEARTBEAT_S = 2.0
STALE_AFTER_S = 15.0


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def validate_spec(store: Store, spec: SearchSpec) -> None:
    """Check a spec against the store (space, devices, LUTs, predictors, fixed dimensions) before any write."""
    space = store.space(spec.space)
    objectives, budgets = spec.parsed()
    for name, value in spec.fixed.items():
        space.dimension(name).coerce(value, space.name)
    Evaluator(store, space, [o for o in [*objectives, *(b.objective for b in budgets)]
                             if spec.mode == "surrogate" or o != objectives[0]])


def submit(store: Store, spec: SearchSpec) -> dict[str, Any]:
    """Queue ``spec`` (validated first); a name used by another search or study is refused."""
    validate_spec(store, spec)
    try:
        optuna.load_study(study_name=spec.name, storage=store.optuna_storage())
    except KeyError:
        pass
    else:
        raise InvalidValueError("search name", "a name not used by an existing study", spec.name)
    return store.submit_search(spec.name, spec.space, spec.to_dict(), spec.n_trials)


def run_now(store: Store, spec: SearchSpec, *, progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Run ``spec`` in this process, recorded in the searches table like a queued one. The same name with the
    same settings resumes (a finished search adds nothing); with other settings it is refused."""
    validate_spec(store, spec)
    me = worker_id()
    try:
        existing = store.get_search(spec.name)
    except InvalidValueError:
        existing = None
    if existing is None:
        submit(store, spec)
    elif {k: v for k, v in existing["params"].items() if k != "n_trials"} != {
            k: v for k, v in spec.to_dict().items() if k != "n_trials"}:
        raise InvalidValueError("search name", "a name not used by a search with other settings", spec.name)
    store.requeue_search(spec.name, spec.n_trials)  # a finished or failed search runs again; no-op if running
    if store.claim_search(me, spec.name, STALE_AFTER_S) is None:
        raise InvalidValueError(f"search {spec.name!r}", "not running elsewhere",
                                f"running on {store.get_search(spec.name)['worker']}")
    alive = _Beat(store, spec.name, me, HEARTBEAT_S)

    def beat(done: int) -> bool:
        if progress is not None:
            progress(done, spec.n_trials)
        return alive.progress(done)

    try:
        if spec.mode == "surrogate":
            result = run_surrogate(store, spec, heartbeat=beat)
        else:
            result = run_budgeted(store, spec, heartbeat=beat)
    except BaseException as exc:
        alive.stop()
        store.finish_search(spec.name, me, "failed", str(exc) or type(exc).__name__)
        raise
    alive.stop()
    store.finish_search(spec.name, me, "done", trials_done=result.total)
    return result


# ---------------------------------------------------------------------------------------------------- budgeted
def _heartbeat_storage(store: Store, heartbeat_s: float) -> RDBStorage:
    """Optuna storage with trial heartbeats: a running trial silent for 3 heartbeats is failed and re-enqueued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(store.optuna_storage().url, heartbeat_interval=max(1, round(heartbeat_s)),
                          grace_period=max(2, round(3 * heartbeat_s)),
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))


class _Budgeted:
    """The pieces of an evaluation-budgeted search shared by its coordinator and helpers."""

    def __init__(self, store: Store, spec: SearchSpec, heartbeat_s: float) -> None:
        self.spec = spec
        self.space = store.space(spec.space)
        objectives, budgets = spec.parsed()
        self.objectives = objectives
        evaluated = objectives[0]
        if evaluated.subject is None:
            raise InvalidValueError("first objective of a budgeted search", "METRIC@DATASET (the evaluated one)",
                                    evaluated.name)
        table = store.measurements(space=self.space.name, subject=evaluated.subject, subject_kind="dataset",
                                   metric=evaluated.metric)
        if table.empty:
            raise InvalidValueError(f"oracle {evaluated.name}", "stored measurements to evaluate against "
                                    "(hwpareto import ... --dataset)", "none")
        table = table.groupby("config_key", as_index=False).agg(config_json=("config_json", "first"),
                                                                value=("value", "median"))
        self.oracle = dict(zip(table["config_key"], table["value"].astype(float), strict=True))
        candidates = [self.space.validate(json.loads(t)) for t in table["config_json"]]
        cheap = Evaluator(store, self.space, [*objectives[1:], *(b.objective for b in budgets)])
        mean, _ = cheap.evaluate(candidates)
        keep = np.ones(len(candidates), dtype=bool)
        for b in budgets:  # budgets on cheap objectives: infeasible candidates never cost an evaluation
            keep &= b.violation(mean[:, cheap.metrics.index(b.objective)]) <= 0
        if not keep.any():
            raise InvalidValueError("budgets", "bounds some candidate meets", list(spec.budgets))
        self.candidates = [c for c, k in zip(candidates, keep, strict=True) if k]
        self.cheap = mean[keep][:, [cheap.metrics.index(o) for o in objectives[1:]]]
        self.delay_s = float(spec.options.get("eval_delay_s", 0.0))
        self.storage = _heartbeat_storage(store, heartbeat_s)
        try:
            self.study = optuna.load_study(study_name=spec.name, storage=self.storage)
        except KeyError:
            self.study = optuna.create_study(study_name=spec.name, storage=self.storage,
                                             directions=[o.direction for o in objectives], load_if_exists=True)
            self.study.set_user_attr(SPEC_ATTR, spec.to_dict())
        self.position = {c.key: i for i, c in enumerate(self.candidates)}

    def objective(self, trial: optuna.Trial) -> list[float]:
        values = {d.name: trial.suggest_categorical(d.name, list(d.choices)) if d.kind == "categorical" else
                  trial.suggest_int(d.name, int(d.low or 0), int(d.high or 0), step=d.step) if d.kind == "int" else
                  trial.suggest_float(d.name, float(d.low or 0), float(d.high or 0)) for d in self.space.dimensions}
        config = self.space.validate(values)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("config_key", config.key)
        trial.set_user_attr("config", config.values)
        if self.delay_s:
            time.sleep(self.delay_s)  # stands in for an expensive evaluation (tests, benchmarks)
        i = self.position[config.key]
        return [self.oracle[config.key], *self.cheap[i].tolist()]

    def waiting(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def evaluate_waiting(self) -> bool:
        """Evaluate one waiting trial here; False when there is none (then fail trials whose worker died, which
        re-enqueues them: ``optimize`` only checks that when it starts a trial)."""
        if not self.waiting():
            fail_stale_trials(self.study)
            return False
        self.study.optimize(self.objective, n_trials=1, gc_after_trial=False)
        return True

    def results(self) -> dict[str, float]:
        return {t.user_attrs["config_key"]: t.values[0] for t in
                self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "config_key" in t.user_attrs}


def run_budgeted(store: Store, spec: SearchSpec, *, heartbeat: Callable[[int], bool] | None = None,
                 heartbeat_s: float = HEARTBEAT_S) -> SearchResult:
    """Coordinate an evaluation-budgeted search (helpers join with :func:`help_budgeted`)."""
    from pareto._budgeted import budgeted_search, enqueue_batch
    from predictors import SpaceFeatures

    start = time.monotonic()
    job = _Budgeted(store, spec, heartbeat_s)
    before = len(job.results())
    options = spec.options
    features = SpaceFeatures(space=job.space).fit_transform(job.candidates)

    def evaluate(indices: list[int]) -> np.ndarray:
        done = job.results()
        todo = [i for i in indices if job.candidates[i].key not in done]
        pending = {t.user_attrs.get("candidate_index") for t in job.study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))}
        enqueue_batch(job.study, job.candidates, [i for i in todo if i not in pending])
        while True:
            done = job.results()
            if all(job.candidates[i].key in done for i in indices):
                break
            if heartbeat is not None and not heartbeat(len(done)):
                raise HwparetoError(f"search {spec.name!r} was taken over by another worker")
            if not job.evaluate_waiting():
                time.sleep(0.2)  # the rest are running in other workers
        return np.array([done[job.candidates[i].key] for i in indices])

    budgeted_search(job.candidates, features, job.cheap, evaluate, min(spec.n_trials, len(job.candidates)),
                    directions=[o.direction for o in job.objectives[1:]], batch_size=int(options.get("batch", 10)),
                    initial=int(options.get("initial", 20)), seed=spec.seed)
    total = len(job.results())
    return SearchResult(spec.name, total, total - before, time.monotonic() - start)


def help_budgeted(store: Store, spec: SearchSpec, *, keep_going: Callable[[], bool],
                  heartbeat_s: float = HEARTBEAT_S) -> int:
    """Evaluate waiting trials of a running budgeted search while ``keep_going()``; returns trials evaluated."""
    job = _Budgeted(store, spec, heartbeat_s)
    n = 0
    while keep_going():
        if job.evaluate_waiting():
            n += 1
        else:
            time.sleep(0.2)
    return n


# ---------------------------------------------------------------------------------------------------- worker
def run_worker(store: Store, *, study: str | None = None, idle_exit_s: float | None = None,
               poll_s: float = 1.0, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
               log: Callable[[str], None] = print) -> int:
    """Claim and run queued searches (only ``study`` when given) until idle for ``idle_exit_s``; helps running
    budgeted searches when there is nothing to claim. Returns the number of searches completed here."""
    me = worker_id()
    completed = 0
    idle_since = time.monotonic()
    while idle_exit_s is None or time.monotonic() - idle_since < idle_exit_s:
        row = store.claim_search(me, study, stale_after_s)
        if row is None:
            if _help_one(store, study, heartbeat_s, stale_after_s, log):
                idle_since = time.monotonic()
            else:
                time.sleep(poll_s)
            continue
        idle_since = time.monotonic()
        spec = SearchSpec.from_dict(row["params"])
        log(f"{me}: running search {spec.name} ({spec.mode}, {spec.n_trials} trials)")
        alive = _Beat(store, spec.name, me, heartbeat_s)
        try:
            run = run_surrogate if spec.mode == "surrogate" else run_budgeted
            result = run(store, spec, heartbeat=alive.progress)
        except HwparetoError as exc:
            alive.stop()
            store.finish_search(spec.name, me, "failed", str(exc))
            log(f"{me}: search {spec.name} failed: {exc}")
            continue
        except BaseException:
            alive.stop()
            raise
        alive.stop()
        store.finish_search(spec.name, me, "done", trials_done=result.total)
        completed += 1
        log(f"{me}: search {spec.name} done: {result.total} trials ({result.added} new)")
    return completed


def _help_one(store: Store, study: str | None, heartbeat_s: float, stale_after_s: float,
              log: Callable[[str], None]) -> bool:
    running = [s for s in store.list_searches() if s["status"] == "running" and s["params"].get("mode") == "budgeted"
               and (study is None or s["name"] == study)]
    if not running:
        return False
    spec = SearchSpec.from_dict(running[0]["params"])

    def still_running() -> bool:
        """Running with a live coordinator; when it goes stale the worker loop claims it (takes over)."""
        row = store.get_search(spec.name)
        if row["status"] != "running" or row["heartbeat_at"] is None:
            return False
        age = time.time() - datetime.fromisoformat(row["heartbeat_at"]).timestamp()
        return age < stale_after_s

    log(f"{worker_id()}: helping budgeted search {spec.name}")
    help_budgeted(store, spec, keep_going=still_running, heartbeat_s=heartbeat_s)
    return True


class _Beat:
    """Heartbeats for a claimed search, from a thread (evaluations may be long) and on progress."""

    def __init__(self, store: Store, name: str, worker: str, every_s: float) -> None:
        self.store, self.name, self.worker, self.every_s = store, name, worker, every_s
        self.done = 0
        self.owned = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.owned = self.store.heartbeat_search(self.name, self.worker, self.done)

    def progress(self, done: int) -> bool:
        self.done = done
        return self.owned

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
