"""Queued searches and the workers that run them (any number of processes or machines on one store).

``hwp_searches`` is the job queue: :func:`submit` adds a row, a worker claims one atomically under the store's
write lock (the oldest queued search, or a running one whose worker stopped sending heartbeats: it resumes from
the stored trials), sends heartbeats while it runs, and marks it done or failed.

A worker only claims and dispatches, by ``SearchSpec.mode``: surrogate searches run in the worker that claims them
(:func:`pareto.search._search.run_surrogate`, resumable; what proposes is the spec's strategy), evaluation-budgeted
searches share one Optuna study that every idle worker helps evaluate (:mod:`pareto.search._budgeted_study`).

A worker survives a lost store connection (:mod:`pareto.search._reconnect`): the step that failed (a claim, a search, a
help, a heartbeat) runs again after a backoff, a bounded number of times in a row, then the worker exits with one
line; its search, left running, is taken over by another worker once its heartbeats are stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import optuna

from hwpareto.errors import InvalidValueError
from hwpareto.store import SearchRecord, Store, completed_marker
from pareto.search._budgeted_study import HEARTBEAT_S, help_budgeted, resolve_budgeted, run_budgeted, worker_id
from pareto.search._reconnect import Reconnect, StoreConnectionLost, connection_lost
from pareto.search._search import ResolvedSearch, SearchResult, SearchSpec, resolve_surrogate, run_surrogate

__all__ = ["MODES", "Mode", "run_budgeted", "run_now", "run_worker", "submit", "validate_spec", "worker_id"]

STALE_AFTER_S = 15.0


class Mode(NamedTuple):
    """How the worker runs a search of one ``SearchSpec.mode``."""

    resolve: Callable[[Store, SearchSpec], ResolvedSearch]
    """Check the spec against the store before any write and resolve it (evaluator built, budgets probed)."""
    run: Callable[..., SearchResult]
    """``run(store, search, *, heartbeat)``: run (or resume) a claimed search, a spec (resolved there) or one
    ``resolve`` returned; ``heartbeat(done)`` False stops it."""


MODES = {"surrogate": Mode(resolve_surrogate, run_surrogate), "budgeted": Mode(resolve_budgeted, run_budgeted)}


def completed_trials(store: Store, name: str) -> int | None:
    """How many trials of study ``name`` are complete (what a failed search kept); None when unreadable."""
    try:
        return completed_marker(store, name)[0]
    except Exception:  # a failed search is recorded as failed whatever the count
        return None


def validate_spec(store: Store, spec: SearchSpec) -> ResolvedSearch:
    """Check a spec against the store (space, fixed dimensions, then what its mode needs: devices, LUTs,
    predictors, budgets some SubNet meets) before any write, so a refused search leaves no row behind. Returns it
    resolved (:class:`~pareto.search._search.ResolvedSearch`), for :func:`run_now` to reuse."""
    space = store.spaces.get(spec.space)
    for name, value in spec.fixed.items():
        space.dimension(name).coerce(value, space.name)
    return MODES[spec.mode].resolve(store, spec)


def submit(store: Store, spec: SearchSpec) -> SearchRecord:
    """Queue ``spec`` (validated first); a name used by another search or study is refused."""
    validate_spec(store, spec)
    return _queue(store, spec)


def _queue(store: Store, spec: SearchSpec) -> SearchRecord:
    """Add a validated ``spec`` to the queue; a name used by another search or study is refused."""
    try:
        optuna.load_study(study_name=spec.name, storage=store.optuna_storage())
    except KeyError:
        pass
    else:
        raise InvalidValueError("search name", "a name not used by an existing study", spec.name)
    return store.searches.submit(spec.name, spec.space, spec.to_dict(), spec.n_trials)


def run_now(
    store: Store, search: SearchSpec | ResolvedSearch, *, progress: Callable[[int, int], None] | None = None
) -> SearchResult:
    """Run a search in this process (a spec is validated first; one :func:`validate_spec` resolved is reused),
    recorded in the searches table like a queued one and ended by the rule of :func:`_run_claimed`. The same name
    with the same settings resumes (a finished search adds nothing); with other settings it is refused."""
    resolved = search if isinstance(search, ResolvedSearch) else validate_spec(store, search)
    spec = resolved.spec
    me = worker_id()
    try:
        existing = store.searches.get(spec.name)
    except InvalidValueError:
        existing = None
    if existing is None:
        _queue(store, spec)
    elif not spec.same_search(existing.params):
        raise InvalidValueError("search name", "a name not used by a search with other settings", spec.name)
    store.searches.requeue(spec.name, spec.n_trials)  # a finished or failed search runs again; no-op if running
    if store.searches.claim(me, spec.name, STALE_AFTER_S) is None:
        raise InvalidValueError(
            f"search {spec.name!r}", "not running elsewhere", f"running on {store.searches.get(spec.name).worker}"
        )
    return _run_claimed(store, resolved, me, Reconnect(store.url, lambda m: None), progress=progress)


def _run_claimed(
    store: Store,
    search: SearchSpec | ResolvedSearch,
    me: str,
    retry: Reconnect,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = lambda m: None,
) -> SearchResult:
    """Run a search this process claimed (:func:`run_now`, :func:`run_worker`), with heartbeats, and record how
    it ended; says so on ``log``. The one rule: done when the run returns; any exception but a lost store
    connection (an interrupt included) records it failed with the error, then is raised again. A lost connection
    that does not come back, or a run stopped because the search is no longer this process's (cancelled, taken
    over), records nothing: the search stays as it is (a worker takes a running one over once its heartbeats are
    stale)."""
    spec = search.spec if isinstance(search, ResolvedSearch) else search
    log(f"{me}: running search {spec.name} ({spec.mode}, {spec.n_trials} trials)")
    alive = _Beat(store, spec.name, me, heartbeat_s)

    def beat(done: int) -> bool:
        if progress is not None:
            progress(done, spec.n_trials)
        return alive.progress(done)

    try:
        result = retry(
            f"running search {spec.name}",
            lambda: MODES[spec.mode].run(store, search, heartbeat=beat),
            lambda: alive.done,
        )
    except StoreConnectionLost:
        raise  # the search stays running
    except BaseException as exc:
        if not alive.owned:  # the run stopped because the search is no longer this process's
            log(f"{me}: search {spec.name} stopped: cancelled or taken over by another worker")
            raise
        error = str(exc) or type(exc).__name__
        retry(
            "recording the search failed",
            lambda: store.searches.finish(
                spec.name, me, "failed", error, trials_done=completed_trials(store, spec.name)
            ),
        )
        log(f"{me}: search {spec.name} failed: {error}")
        raise
    finally:
        alive.stop()
    retry("recording the search done", lambda: store.searches.finish(spec.name, me, "done", trials_done=result.total))
    log(f"{me}: search {spec.name} done: {result.total} trials ({result.added} new)")
    return result


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
    A lost store connection is reconnected (:class:`pareto.search._reconnect.Reconnect`, announced on ``log``); when
    that fails :class:`~pareto.search._reconnect.StoreConnectionLost` is raised. ``clock`` and ``sleep`` are injectable
    for tests."""
    me = worker_id()
    retry = Reconnect(store.url, lambda m: log(f"{me}: {m}"), sleep)
    completed = 0
    idle_since = clock()
    while True:
        row = retry("claiming a search", lambda: store.searches.claim(me, study, stale_after_s))
        if row is None:
            if retry("helping a budgeted search", lambda: _help_one(store, study, heartbeat_s, stale_after_s, log)):
                idle_since = clock()  # helped until that search ended
                continue
            if idle_exit_s is not None and clock() - idle_since >= idle_exit_s:
                return completed
            sleep(poll_s)
            continue
        try:
            _run_claimed(store, SearchSpec.from_dict(row.params), me, retry, heartbeat_s=heartbeat_s, log=log)
        except StoreConnectionLost:
            raise  # the search stays running: another worker takes it over once its heartbeats are stale
        except Exception:
            pass  # recorded failed (or found no longer this worker's) and said on log: on to the next search
        else:
            completed += 1
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
            try:
                self.owned = self.store.searches.heartbeat(self.name, self.worker, self.done)
            except Exception as exc:
                if connection_lost(exc) is None:
                    raise
                # a missed beat: the search's own steps reconnect (or give up); the next beat may pass

    def progress(self, done: int) -> bool:
        self.done = done
        return self.owned

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
