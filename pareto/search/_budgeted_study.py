"""An evaluation-budgeted search run on one shared Optuna study by any number of workers.

The claiming worker coordinates: it asks :class:`pareto.BudgetedAcquisition` for batches, enqueues them as
trials and tells it the accuracies once they are stored; every worker, the coordinator included, claims waiting
trials atomically and evaluates them; Optuna never samples (a budgeted study's sampler refuses), so exactly the
planned SubNets are evaluated, each once (:class:`_Budgeted`). Optuna's heartbeats mark the running trial of a
killed worker failed, and ``RetryHeartbeatStaleTrialCallback`` re-enqueues it, so it is evaluated again (the one
repeat, counted once); finished trials are committed one by one and never lost. A restarted coordinator replays its
(deterministic) asks and tells it the stored results instead of re-evaluating.
Options: :class:`hwpareto.options.BudgetedOptions`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store
from pareto._objectives import Evaluator
from pareto.search._reconnect import connection_lost
from pareto.search._search import SPEC_ATTR, ResolvedSearch, SearchResult, SearchSpec
from supernet import SearchSpace, SubNetConfig

__all__ = ["ResolvedBudgeted", "help_budgeted", "resolve_budgeted", "run_budgeted"]

HEARTBEAT_S = 2.0

MAX_RETRY = 3
"""Times the trial of a SubNet whose worker died is retried (then the search fails naming it)."""

# Optuna's heartbeat API is experimental and says so at each call site; the calls are attributed to this module.
# One process-wide filter for this module only: ``catch_warnings`` around them does not hold across worker threads.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=re.escape(__name__) + "$")


def worker_id() -> str:
    """``host:pid`` of this process (what a search's claim and its trials record)."""
    return f"{socket.gethostname()}:{os.getpid()}"


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


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedBudgeted(ResolvedSearch):
    """A budgeted search resolved (:func:`resolve_budgeted`): ``evaluator`` holds the cheap objectives (all but the
    first, and the budgets'), evaluated once on the candidates."""

    oracle: dict[str, float]
    """Config key -> stored value of the evaluated (first) objective."""
    candidates: tuple[SubNetConfig, ...]
    """The oracle's SubNets every budget admits."""
    cheap: np.ndarray
    """The candidates' cheap objectives, (len(candidates), len(objectives) - 1)."""


def _budgeted_candidates(
    store: Store, space: SearchSpace, spec: SearchSpec, cheap: Evaluator
) -> tuple[dict[str, float], list[SubNetConfig], np.ndarray]:
    """The oracle (config key -> stored value of the evaluated objective), the candidates every budget admits and
    their cheap objectives (on ``cheap``); a budget no candidate meets is refused (before any write)."""
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


def resolve_budgeted(store: Store, spec: SearchSpec) -> ResolvedBudgeted:
    """Check a budgeted spec against the store (devices, the oracle's table, budgets some candidate meets, enough
    candidates and trials for the initial design) before any write; its cheap objectives are evaluated on the
    candidates here, once."""
    space = store.spaces.get(spec.space)
    objectives, budgets = spec.parsed()
    cheap = Evaluator(store, space, [*objectives[1:], *(b.objective for b in budgets)])
    oracle, candidates, values = _budgeted_candidates(store, space, spec, cheap)
    n_candidates = len(candidates)
    initial = spec.budgeted_options.design
    if min(spec.n_trials, n_candidates) < initial:
        raise InvalidValueError(
            "trials of a budgeted search",
            f"at least its initial design ({initial}), with as many candidates ({n_candidates} meet the budgets)",
            spec.n_trials,
        )
    return ResolvedBudgeted(
        spec, space, tuple(objectives), tuple(budgets), spec.strategy(), cheap, oracle, tuple(candidates), values
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

    def __init__(self, store: Store, resolved: ResolvedBudgeted, heartbeat_s: float) -> None:
        spec = self.spec = resolved.spec
        self.space = resolved.space
        self.objectives = list(resolved.objectives)
        self.oracle, self.candidates, self.cheap = resolved.oracle, list(resolved.candidates), resolved.cheap
        self.delay_s = spec.budgeted_options.eval_delay_s
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
            if connection_lost(exc) is None:  # a lost connection is not the SubNet's fault: it goes stale, retried
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
    store: Store,
    search: SearchSpec | ResolvedSearch,
    *,
    heartbeat: Callable[[int], bool] | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> SearchResult:
    """Coordinate an evaluation-budgeted search (helpers join with :func:`help_budgeted`): exactly
    ``min(n_trials, candidates)`` SubNets are evaluated, each once (see :class:`_Budgeted`). A spec is resolved
    here (:func:`resolve_budgeted`)."""
    from pareto.search._budgeted import BudgetedAcquisition, enqueue_batch
    from predictors import SpaceFeatures

    start = time.monotonic()
    spec = search.spec if isinstance(search, ResolvedSearch) else search
    resolved = search if isinstance(search, ResolvedBudgeted) else resolve_budgeted(store, spec)
    job = _Budgeted(store, resolved, heartbeat_s)
    before = len(job.results())
    options = spec.budgeted_options
    features = SpaceFeatures(space=job.space).fit_transform(job.candidates)

    def evaluate(indices: list[int]) -> np.ndarray:
        """The accuracies of the candidates at ``indices``: enqueued unless done or pending, then evaluated here
        and by the helpers; stored results are taken as they are (a restarted coordinator's replay)."""
        keys = [job.candidates[i].key for i in indices]
        if heartbeat is not None and not heartbeat(len(job.results())):
            raise HwparetoError(
                f"search {spec.name!r} is no longer this worker's (cancelled, or taken over by another)"
            )
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
                raise HwparetoError(
                    f"search {spec.name!r} is no longer this worker's (cancelled, or taken over by another)"
                )
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

    acquisition = BudgetedAcquisition(
        job.candidates,
        features,
        job.cheap,
        min(spec.n_trials, len(job.candidates)),
        directions=[o.direction for o in job.objectives[1:]],
        batch_size=options.batch,
        initial=options.design,
        seed=spec.seed,
    )
    while batch := acquisition.ask(acquisition.budget):
        accuracies = evaluate(list(acquisition.pending))
        acquisition.tell(batch, accuracies[:, None], np.empty((len(batch), 0)))
    total = len(job.results())
    return SearchResult(spec.name, total, total - before, time.monotonic() - start)


def help_budgeted(
    store: Store, spec: SearchSpec, *, keep_going: Callable[[], bool], heartbeat_s: float = HEARTBEAT_S
) -> int:
    """Evaluate waiting trials of a running budgeted search while ``keep_going()``; returns trials evaluated."""
    job = _Budgeted(store, resolve_budgeted(store, spec), heartbeat_s)
    n = 0
    while keep_going():
        if job.evaluate_waiting():
            n += 1
        else:
            time.sleep(0.2)
    return n
