"""A small store for the dashboard tests: two fake devices with nb201 LUTs, measurements and a latency predictor on
one, an accuracy predictor on synthetic scores, and one finished search (builds in a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna

from pareto import MeasurementIn, Store
from pareto._search import SearchSpec
from pareto._worker import run_now
from predictors import train_accuracy, train_latency
from profilers import DeviceSpec, backend_for, build_lut, measure_subnets
from supernet import get_space

STUDY = "nb201-edge"
DEVICES = {"edge": {"gmacs_per_s": 5.0}, "server": {"gmacs_per_s": 80.0, "overhead_us": 30.0}}


def add_fake(store: Store, name: str, *, lut: bool = True) -> DeviceSpec:
    """Register fake device ``name`` (and build its nb201 LUT)."""
    spec = DeviceSpec(name, "fake", "fake", DEVICES.get(name, {"gmacs_per_s": 10.0}))
    store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe())
    if lut:
        build_lut(store, spec, get_space("nb201"), workers=1)
    return spec


def build_store(path: Path, *, study: bool = True, n_trials: int = 300) -> str:
    """Create the store at ``path``; returns its URL."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    space = get_space("nb201")
    with Store.open(url) as store:
        specs = [add_fake(store, name) for name in DEVICES]
        rng = np.random.default_rng(0)
        configs = list({c.key: c for c in (space.sample(rng) for _ in range(40))}.values())
        measure_subnets(store, specs[0], space, configs[:20])
        train_latency(store, "edge", space)
        macs = np.array([space.macs(c) for c in configs], float)
        scores = 80 + 12 * macs / macs.max() + rng.normal(0, 0.5, len(configs))  # synthetic accuracy (%)
        store.measurements.add(
            [
                MeasurementIn(
                    c, "dataset", "cifar10", "test_acc_pct", float(a), None, 1, 1, "evaluated", "dashboard tests"
                )
                for c, a in zip(configs, scores, strict=True)
            ]
        )
        train_accuracy(store, space, metric="test_acc_pct", dataset="cifar10")
        if study:
            run_now(
                store,
                SearchSpec(
                    STUDY,
                    "nb201",
                    ("test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"),
                    ("latency_ms@edge <= 5",),
                    n_trials=n_trials,
                    population=50,
                ),
            )
    return url


def add_failed_search(url: str, name: str, error: str) -> None:
    """A search of ``name`` on a fake device ``edge`` that a worker claimed and marked failed with ``error``."""
    with Store.open(url) as db:
        add_fake(db, "edge")
        spec = SearchSpec(name, "nb201", ("params:max", "latency_ms@edge"), n_trials=10, population=4)
        db.searches.submit(spec.name, spec.space, spec.to_dict(), spec.n_trials)
        db.searches.claim("w1", spec.name)
        db.searches.finish(spec.name, "w1", "failed", error)
