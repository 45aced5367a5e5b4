"""A small store for the dashboard tests: two fake devices with nb201 LUTs, measurements and a latency predictor on
one, an accuracy predictor on synthetic scores, and one finished search (builds in a few seconds); optionally an LLM
study (a tiny random Llama space from a lone config.json, a fake device ``board`` with its LUT)."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import optuna

from hwpareto.store import MeasurementIn, Store
from pareto.search._search import SearchSpec
from pareto.search._worker import run_now
from predictors import train_accuracy, train_latency
from profilers import DeviceSpec, backend_for, build_lut, measure_subnets
from supernet import get_space

STUDY = "nb201-edge"
LLM_STUDY = "llm-decode"
LLM_OBJECTIVES = ("params:max", "decode_ms_per_token@board", "prefill_ms@board")
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 97,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
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


def add_llm_study(url: str, folder: Path, *, n_trials: int = 24) -> None:
    """Register the tiny Llama space ``tl`` (config.json under ``folder``: random weights, batch 1, prompt 8,
    generation 4), a fake device ``board`` with its LUT, and search study :data:`LLM_STUDY` over
    :data:`LLM_OBJECTIVES`."""
    from supernet.llama import space_from_hf

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    space = space_from_hf(folder / "config.json", "tl", prompt_len=[8], gen_len=[4])
    with Store.open(url) as store:
        store.spaces.register(space)
        space = store.spaces.get("tl")
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, space, workers=1)
        run_now(store, SearchSpec(LLM_STUDY, "tl", LLM_OBJECTIVES, n_trials=n_trials, population=8))


def safe_extract(archive: Path, into: Path) -> list[Path]:
    """Extract the zip ``archive`` under ``into`` after checking every member: a relative path without ``..``, a
    plain file or folder (no symlink); returns the files written. Fails the test on any other member."""
    written = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = PurePosixPath(info.filename)
            assert not name.is_absolute() and ".." not in name.parts and "\\" not in info.filename, info.filename
            assert not stat.S_ISLNK(info.external_attr >> 16), f"symlink in zip: {info.filename}"
            target = into.joinpath(*name.parts)
            assert target.resolve().is_relative_to(into.resolve()), info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
            written.append(target)
    return written
