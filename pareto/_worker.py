"""Queued searches and the workers that run them (any number of processes or machines on one store).

``hwp_searches`` is the job queue: :func:`submit` adds a row, a worker claims one atomically under the store's
write lock (the oldest queued search, or a running one whose worker stopped sending heartbeats: it resumes from
the stored trials), sends heartbeats while it runs, and marks it done or failed.

Surrogate searches run in the worker that claims them (:func:`pareto._search.run_surrogate`, resumable).
Evaluation-budgeted searches share one Optuna study: the claiming worker coordinates (chooses batches with
:func:`pareto._budgeted.budgeted_search` and enqueues them as trials), and every worker, the coordinator included,
claims waiting trials atomically and evaluates them; Optuna never samples (a budgeted study's sampler refuses),
so exactly the planned SubNets are evaluated, each once (:class:`_Budgeted`). Optuna's heartbeats mark the
running trial of a killed worker failed, and ``RetryHeartbeatStaleTrialCallback`` re-enqueues it, so it is
evaluated again (the one repeat, counted once); finished trials are committed one by one and never lost. A
restarted coordinator replays its (deterministic) choices and takes the stored results instead of re-evaluating.
"""

from __future__ import annotations

import contextlib
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
from optuna.trial import FrozenTrial, TrialState

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import SearchRecord
from hwpareto.store._optuna import completed_marker
from hwpareto.store._store import Store
from pareto._objectives import Evaluator
from pareto._search import SPEC_ATTR, SearchResult, SearchSpec, _Genome, run_surrogate
from pareto._search import _check_budgets as check_budgets
from supernet import SearchSpace, SubNetConfig

__all__ = ["run_budgeted", "run_now", "run_worker", "submit", "validate_spec", "worker_id"]

HEARTBEAT_S = 2.0
STALE_AFTER_S = 15.0


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def completed_trials(store: Store, name: str) -> int | None:
    """How many trials of study ``name`` are complete (what a failed search kept); None when unreadable."""
    try:
        return completed_marker(store, name)[0]
    except Exception:  # a failed search is recorded as failed whatever the count
        return None


def validate_spec(store: Store, spec: SearchSpec) -> None:
    """Check a spec against the store (space, devices, LUTs, predictors, fixed dimensions, budgets some SubNet
    meets) before any write, so a refused search leaves no row behind."""
    space = store.spaces.get(spec.space)
    objectives, budgets = spec.parsed()
    for name, value in spec.fixed.items():
        space.dimension(name).coerce(value, space.name)
    evaluator = Evaluator(
        store,
        space,
        [o for o in [*objectives, *(b.objective for b in budgets)] if spec.mode == "surrogate" or o != objectives[0]],
    )
    if spec.mode == "surrogate":
        check_budgets(_Genome(space, spec.fixed), evaluator, budgets, spec.seed)
    else:
        n_candidates = len(_budgeted_candidates(store, space, spec)[1])
        initial = int(spec.options.get("initial", 20))
        if min(spec.n_trials, n_candidates) < initial:
            raise InvalidValueError(
                "trials of a budgeted search",
                f"at least its initial design ({initial}), with as many candidates ({n_candidates} meet the budgets)",
                spec.n_trials,
            )


def submit(store: Store, spec: SearchSpec) -> SearchRecord:
    """Queue ``spec`` (validated first); a name used by another search or study is refused."""
    validate_spec(store, spec)
    try:
        optuna.load_study(study_name=spec.name, storage=store.optuna_storage())
    except KeyError:
        pass
    else:
        raise InvalidValueError("search name", "a name not used by an existing study", spec.name)
    return store.searches.submit(spec.name, spec.space, spec.to_dict(), spec.n_trials)


def run_now(store: Store, spec: SearchSpec, *, progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Run ``spec`` in this process, recorded in the searches table like a queued one. The same name with the
    same settings resumes (a finished search adds nothing); with other settings it is refused."""
    validate_spec(store, spec)
    me = worker_id()
    try:
        existing = store.searches.get(spec.name)
    except InvalidValueError:
        existing = None
    if existing is None:
        submit(store, spec)
    elif {k: v for k, v in existing.params.items() if k != "n_trials"} != {
        k: v for k, v in spec.to_dict().items() if k != "n_trials"
    }:
        raise InvalidValueError("search name", "a name not used by a search with other settings", spec.name)
    store.searches.requeue(spec.name, spec.n_trials)  # a finished or failed search runs again; no-op if running
    if store.searches.claim(me, spec.name, STALE_AFTER_S) is None:
        raise InvalidValueError(
            f"search {spec.name!r}", "not running elsewhere", f"running on {store.searches.get(spec.name).worker}"
        )
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
        store.searches.finish(
            spec.name, me, "failed", str(exc) or type(exc).__name__, trials_done=completed_trials(store, spec.name)
        )
        raise
    alive.stop()
    store.searches.finish(spec.name, me, "done", trials_done=result.total)
    return result


# ---------------------------------------------------------------------------------------------------- budgeted
MAX_RETRY = 3
"""Times the trial of a SubNet whose worker died is retried (then the search fails naming it)."""


def _heartbeat_storage(store: Store, heartbeat_s: float) -> RDBStorage:
    """Optuna storage with trial heartbeats: a running trial silent for 3 heartbeats is failed and re-enqueued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            store.optuna_storage().url,
            heartbeat_interval=max(1, round(heartbeat_s)),
            grace_period=max(2, round(3 * heartbeat_s)),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )


class _EnqueuedOnly(optuna.samplers.BaseSampler):
    """The sampler of a budgeted study: it never invents a parameter (every trial was enqueued with all of them by
    the coordinator), so no trial outside the plan can be evaluated."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        raise HwparetoError(
            f"trial {trial.number} of budgeted search {study.study_name!r} was not enqueued "
            f"(no value for {param_name!r})"
        )


def _budgeted_candidates(
    store: Store, space: SearchSpace, spec: SearchSpec
) -> tuple[dict[str, float], list[SubNetConfig], np.ndarray]:
    """The oracle (config key -> stored value of the evaluated objective), the candidates every budget admits and
    their cheap objectives; a budget no candidate meets is refused (by :func:`validate_spec`, before any write)."""
    objectives, budgets = spec.parsed()
    evaluated = objectives[0]
    if evaluated.subject is None:
        raise InvalidValueError(
            "first objective of a budgeted search", "METRIC@DATASET (the evaluated one)", evaluated.name
        )
    table = store.measurements.table(
        space=space.name, subject=evaluated.subject, subject_kind="dataset", metric=evaluated.metric
    )
    if table.empty:
        raise InvalidValueError(
            f"oracle {evaluated.name}",
            "stored measurements to evaluate against (hwpareto import ... --dataset)",
            "none",
        )
    table = table.groupby("config_key", as_index=False).agg(
        config_json=("config_json", "first"), value=("value", "median")
    )
    oracle = dict(zip(table["config_key"], table["value"].astype(float), strict=True))
    candidates = [space.validate(json.loads(t)) for t in table["config_json"]]
    cheap = Evaluator(store, space, [*objectives[1:], *(b.objective for b in budgets)])
    mean, _ = cheap.evaluate(candidates)
    keep = np.ones(len(candidates), dtype=bool)
    for b in budgets:  # budgets on cheap objectives: infeasible candidates never cost an evaluation
        keep &= b.violation(mean[:, cheap.metrics.index(b.objective)]) <= 0
    if not keep.any():
        raise InvalidValueError("budgets", "bounds some candidate meets", list(spec.budgets))
    return (
        oracle,
        [c for c, k in zip(candidates, keep, strict=True) if k],
        mean[keep][:, [cheap.metrics.index(o) for o in objectives[1:]]],
    )


class _Budgeted:
    """The pieces of an evaluation-budgeted search shared by its coordinator and helpers.

    Exactly one evaluation per planned SubNet: only the coordinator enqueues trials (never twice for a SubNet that
    is done, waiting or running), workers claim waiting trials atomically (WAITING → RUNNING in one row-locked
    update) and never let Optuna sample, and a claimed trial runs only when it is the oldest unfailed trial of its
    SubNet (others are failed unevaluated, with the ``duplicate_of`` user attribute: that trial's number, or None
    for a trial without enqueued parameters): whatever the interleaving, at most one trial per SubNet completes.
    The one repeat is the retry of a trial whose worker died (failed by its stale heartbeat, re-enqueued by
    ``RetryHeartbeatStaleTrialCallback``; a late result of such a trial is refused).
    """

    def __init__(self, store: Store, spec: SearchSpec, heartbeat_s: float) -> None:
        self.spec = spec
        self.space = store.spaces.get(spec.space)
        self.objectives = spec.parsed()[0]
        self.oracle, self.candidates, self.cheap = _budgeted_candidates(store, self.space, spec)
        self.delay_s = float(spec.options.get("eval_delay_s", 0.0))
        self.storage = _heartbeat_storage(store, heartbeat_s)
        try:
            self.study = optuna.load_study(study_name=spec.name, storage=self.storage, sampler=_EnqueuedOnly())
        except KeyError:
            directions: list[Any] = [o.direction for o in self.objectives]
            self.study = optuna.create_study(
                study_name=spec.name,
                storage=self.storage,
                sampler=_EnqueuedOnly(),
                directions=directions,
                load_if_exists=True,
            )
            self.study.set_user_attr(SPEC_ATTR, spec.to_dict())
        self.study_id = self.storage.get_study_id_from_name(spec.name)
        self.position = {c.key: i for i, c in enumerate(self.candidates)}
        self._keys: dict[int, str | None] = {}

    # ------------------------------------------------------------------------------------------ trials by SubNet
    def key(self, trial: FrozenTrial) -> str | None:
        """The SubNet (config key) a trial evaluates: its enqueued parameters (None for a trial without them)."""
        if trial.number not in self._keys:
            values = trial.system_attrs.get("fixed_params") or trial.params
            try:
                self._keys[trial.number] = self.space.validate(values).key if values else None
            except HwparetoError:
                self._keys[trial.number] = None
        return self._keys[trial.number]

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def results(self) -> dict[str, float]:
        """Accuracy of each evaluated SubNet (at most one COMPLETE trial per SubNet)."""
        return {k: t.values[0] for t in self.trials(TrialState.COMPLETE) if (k := self.key(t)) is not None}

    def pending(self) -> set[str | None]:
        return {self.key(t) for t in self.trials(TrialState.WAITING, TrialState.RUNNING)}

    def given_up(self, key: str) -> str | None:
        """Why a SubNet with no waiting, running or complete trial will not be retried (None: a retry is coming)."""
        failed = [t for t in self.trials(TrialState.FAIL) if "duplicate_of" not in t.user_attrs and self.key(t) == key]
        if not failed:
            return None
        last = max(failed, key=lambda t: t.number)
        if "error" in last.user_attrs:
            return f"trial {last.number} failed: {last.user_attrs['error']}"
        if len(last.system_attrs.get("retry_history", [])) + 1 > MAX_RETRY:
            return f"its worker died {MAX_RETRY + 1} times (last in trial {last.number})"
        return None

    # ------------------------------------------------------------------------------------------ evaluation
    def objective(self, trial: optuna.Trial) -> list[float]:
        values = {
            d.name: trial.suggest_categorical(d.name, list(d.choices))
            if d.kind == "categorical"
            else trial.suggest_int(d.name, int(d.low or 0), int(d.high or 0), step=d.step)
            if d.kind == "int"
            else trial.suggest_float(d.name, float(d.low or 0), float(d.high or 0))
            for d in self.space.dimensions
        }
        config = self.space.validate(values)
        trial.set_user_attr("config_key", config.key)
        trial.set_user_attr("config", config.values)
        if self.delay_s:
            time.sleep(self.delay_s)  # stands in for an expensive evaluation (tests, benchmarks)
        i = self.position[config.key]
        return [self.oracle[config.key], *self.cheap[i].tolist()]

    def evaluate_waiting(self) -> bool:
        """Claim and evaluate the oldest waiting trial another worker has not claimed; False when none was
        evaluated here (with none waiting, trials whose worker died are failed, which re-enqueues them)."""
        waiting = self.trials(TrialState.WAITING)
        if not waiting:
            fail_stale_trials(self.study)
            return False
        for frozen in sorted(waiting, key=lambda t: t.number):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, frozen.number)
            # a heartbeat before the claim: a worker killed right after claiming leaves a trial that goes stale
            self.storage.record_heartbeat(trial_id)
            try:
                claimed = self.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:
                claimed = False
            if claimed and self._run_claimed(trial_id, frozen.number):
                return True
        return False

    def _run_claimed(self, trial_id: int, number: int) -> bool:
        trial = optuna.Trial(self.study, trial_id)
        trial.set_user_attr("worker", worker_id())
        stop = threading.Event()
        beats = threading.Thread(target=self._beat, args=(trial_id, stop), daemon=True)
        beats.start()
        try:
            everything = self.trials()
            key = next(self.key(t) for t in everything if t.number == number)
            if key is None:  # not enqueued by a coordinator (e.g. another program's study.ask): never evaluated
                trial.set_user_attr("duplicate_of", None)
                self.study.tell(trial, state=TrialState.FAIL)
                return False
            rivals = [
                t
                for t in everything
                if t.number != number
                and t.state != TrialState.FAIL
                and self.key(t) == key
                and (t.number < number or t.state == TrialState.COMPLETE)
            ]
            if rivals:  # another trial of this SubNet is older or done: this one is failed unevaluated
                trial.set_user_attr("duplicate_of", min(t.number for t in rivals))
                self.study.tell(trial, state=TrialState.FAIL)
                return False
            values = self.objective(trial)
        except Exception as exc:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # unless failed as stale
                trial.set_user_attr("error", str(exc) or type(exc).__name__)
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        # an interrupt (BaseException) leaves the trial running without heartbeats: it goes stale and is retried
        finally:
            stop.set()
            beats.join()
        try:
            told = self.study.tell(trial, values, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # failed as stale meanwhile (this worker looked dead): its retry counts instead
        return told.state == TrialState.COMPLETE

    def _beat(self, trial_id: int, stop: threading.Event) -> None:
        every = float(self.storage.get_heartbeat_interval() or 1)
        while not stop.wait(every):
            try:
                self.storage.record_heartbeat(trial_id)
            except optuna.exceptions.StorageInternalError:
                continue  # a missed beat; the next one may pass


def run_budgeted(
    store: Store, spec: SearchSpec, *, heartbeat: Callable[[int], bool] | None = None, heartbeat_s: float = HEARTBEAT_S
) -> SearchResult:
    """Coordinate an evaluation-budgeted search (helpers join with :func:`help_budgeted`): exactly
    ``min(n_trials, candidates)`` SubNets are evaluated, each once (see :class:`_Budgeted`)."""
    from pareto._budgeted import budgeted_search, enqueue_batch
    from predictors import SpaceFeatures

    start = time.monotonic()
    job = _Budgeted(store, spec, heartbeat_s)
    before = len(job.results())
    options = spec.options
    features = SpaceFeatures(space=job.space).fit_transform(job.candidates)

    def evaluate(indices: list[int]) -> np.ndarray:
        keys = [job.candidates[i].key for i in indices]
        if heartbeat is not None and not heartbeat(len(job.results())):
            raise HwparetoError(f"search {spec.name!r} was taken over by another worker")
        done, pending = job.results(), job.pending()
        enqueue_batch(
            job.study,
            job.candidates,
            [i for i, k in zip(indices, keys, strict=True) if k not in done and k not in pending],
        )
        missing_since: dict[str, float] = {}
        while True:
            done = job.results()
            if all(k in done for k in keys):
                break
            if heartbeat is not None and not heartbeat(len(done)):
                raise HwparetoError(f"search {spec.name!r} was taken over by another worker")
            if job.evaluate_waiting():
                continue
            pending = job.pending()
            for i, k in zip(indices, keys, strict=True):
                if k in done or k in pending:
                    missing_since.pop(k, None)
                    continue
                why = job.given_up(k)
                if why is not None:
                    raise HwparetoError(f"search {spec.name!r}: SubNet {k} was not evaluated: {why}")
                # a failed trial is re-enqueued by whoever failed it; should that worker die first, enqueue again
                # (safe: of two trials of one SubNet only the older runs)
                if time.monotonic() - missing_since.setdefault(k, time.monotonic()) > 10 * heartbeat_s:
                    enqueue_batch(job.study, job.candidates, [i])
                    missing_since.pop(k)
            time.sleep(0.2)  # the rest are running in other workers
        return np.array([done[k] for k in keys])

    budgeted_search(
        job.candidates,
        features,
        job.cheap,
        evaluate,
        min(spec.n_trials, len(job.candidates)),
        directions=[o.direction for o in job.objectives[1:]],
        batch_size=int(options.get("batch", 10)),
        initial=int(options.get("initial", 20)),
        seed=spec.seed,
    )
    total = len(job.results())
    return SearchResult(spec.name, total, total - before, time.monotonic() - start)


def help_budgeted(
    store: Store, spec: SearchSpec, *, keep_going: Callable[[], bool], heartbeat_s: float = HEARTBEAT_S
) -> int:
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
def run_worker(
    store: Store,
    *,
    study: str | None = None,
    idle_exit_s: float | None = None,
    poll_s: float = 1.0,
    heartbeat_s: float = HEARTBEAT_S,
    stale_after_s: float = STALE_AFTER_S,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Claim and run queued searches (only ``study`` when given) until idle for ``idle_exit_s``; helps running
    budgeted searches when there is nothing to claim. Returns the number of searches completed here.

    Idle means: nothing claimed and nothing helped for ``idle_exit_s`` since the last search or help ended; the
    worker always looks for work before it decides to exit, so queued searches never wait on a worker that quit.
    ``clock`` and ``sleep`` are injectable for tests."""
    me = worker_id()
    completed = 0
    idle_since = clock()
    while True:
        row = store.searches.claim(me, study, stale_after_s)
        if row is None:
            if _help_one(store, study, heartbeat_s, stale_after_s, log):
                idle_since = clock()  # helped until that search ended
                continue
            if idle_exit_s is not None and clock() - idle_since >= idle_exit_s:
                return completed
            sleep(poll_s)
            continue
        spec = SearchSpec.from_dict(row.params)
        log(f"{me}: running search {spec.name} ({spec.mode}, {spec.n_trials} trials)")
        alive = _Beat(store, spec.name, me, heartbeat_s)
        try:
            run = run_surrogate if spec.mode == "surrogate" else run_budgeted
            result = run(store, spec, heartbeat=alive.progress)
        except HwparetoError as exc:
            alive.stop()
            store.searches.finish(spec.name, me, "failed", str(exc), trials_done=completed_trials(store, spec.name))
            log(f"{me}: search {spec.name} failed: {exc}")
            idle_since = clock()  # the idle clock starts when a search ends, not when it was claimed
            continue
        except BaseException:
            alive.stop()
            raise
        alive.stop()
        store.searches.finish(spec.name, me, "done", trials_done=result.total)
        completed += 1
        log(f"{me}: search {spec.name} done: {result.total} trials ({result.added} new)")
        idle_since = clock()  # the idle clock starts when a search ends, not when it was claimed


def _help_one(
    store: Store, study: str | None, heartbeat_s: float, stale_after_s: float, log: Callable[[str], None]
) -> bool:
    running = [
        s
        for s in store.searches.list()
        if s.status == "running" and s.params.get("mode") == "budgeted" and (study is None or s.name == study)
    ]
    if not running:
        return False
    spec = SearchSpec.from_dict(running[0].params)

    def still_running() -> bool:
        """Running with a live coordinator; when it goes stale the worker loop claims it (takes over)."""
        row = store.searches.get(spec.name)
        if row.status != "running" or row.heartbeat_at is None:
            return False
        age = time.time() - datetime.fromisoformat(row.heartbeat_at).timestamp()
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
            self.owned = self.store.searches.heartbeat(self.name, self.worker, self.done)

    def progress(self, done: int) -> bool:
        self.done = done
        return self.owned

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
