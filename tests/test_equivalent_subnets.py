"""Equivalent SubNets: the effective-architecture identity (``SearchSpace.canonical`` / ``arch_key``), searches that
spend no trial on a SubNet already evaluated, and fronts that say how ties are shown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.store import Store
from hwpareto.store._optuna import TrialRow, bulk_add_trials, study_id
from pareto.analysis._analysis import study_results
from pareto.search._search import SearchSpec, load_trials, run_surrogate
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
FIX = {"r": 224, "w": 1.0}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "store.db")) as opened:
        yield opened


@pytest.fixture
def edge(store: Store) -> Store:
    spec = DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 5.0})
    store.devices.add("edge", "fake", spec.to_dict(), backend_for(spec).describe())
    build_lut(store, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)
    return store


# ---------------------------------------------------------------------------------------------------- canonical
@pytest.mark.parametrize("name", ["mbv3", "gpt"])
def test_canonical_keeps_the_network(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(60):
        config = space.sample(rng)
        canon = space.canonical(config)
        assert space.canonical(canon) == canon and space.canonical(canon.values) == canon  # idempotent
        assert space.arch_key(config) == canon.key == space.arch_key(canon)
        assert space.layers(canon) == space.layers(config)
        assert space.params(canon) == space.params(config) and space.macs(canon) == space.macs(config)
        np.testing.assert_array_equal(space.encode(canon), space.encode(config))
        changed += canon != config
    assert changed > 30  # random configs mostly carry inactive values


def test_known_equivalent_pairs_collapse() -> None:
    mbv3 = get_space("mbv3")
    a = mbv3.validate(mbv3.largest().values | {"d_0": 2, "ks_2": 7, "e_3": 6})
    b = mbv3.validate(a.values | {"ks_2": 5, "e_3": 4})  # blocks 2 and 3 of stage 0 are beyond its depth
    assert a.key != b.key and mbv3.arch_key(a) == mbv3.arch_key(b)
    assert mbv3.canonical(a)["ks_2"] == 3 and mbv3.canonical(a)["e_3"] == 3
    c = mbv3.validate(a.values | {"ks_1": 5})  # block 1 is active
    assert mbv3.arch_key(c) != mbv3.arch_key(a)

    gpt = get_space("gpt")
    x = gpt.validate(gpt.largest().values | {"layer_2": 0})
    y = gpt.validate(x.values | {"heads_2": gpt.dimension("heads_2").choices[0], "ffn_2": 256})
    assert x.key != y.key and gpt.arch_key(x) == gpt.arch_key(y) == y.key
    z = gpt.validate(x.values | {"ffn_1": 256})  # layer 1 is kept
    assert gpt.arch_key(z) != gpt.arch_key(x)


def test_nb201_is_left_alone() -> None:
    space = get_space("nb201")
    rng = np.random.default_rng(1)
    for _ in range(30):
        config = space.sample(rng)
        assert space.canonical(config) == config and space.arch_key(config) == config.key


def test_literal_keys_and_ofa_records_unchanged() -> None:
    mbv3 = get_space("mbv3")
    # pinned: stored measurements are keyed by the literal content hash
    assert mbv3.largest().key == "7218e360e5a2f0d4" and mbv3.smallest().key == "03cee32db30637a9"
    assert get_space("gpt").largest().key == "2692395a633c7960"
    assert get_space("nb201").largest().key == "7b1a506de489b028"
    rng = np.random.default_rng(2)
    for _ in range(30):
        config = mbv3.sample(rng)  # inactive blocks keep their values through OFA's encoding
        assert mbv3.from_record(mbv3.to_record(config)) == config
        assert mbv3.canonical(config).key != config.key or mbv3.canonical(config) == config


# ---------------------------------------------------------------------------------------------------- search
def _spec(name: str, free: tuple[str, ...], **kw: object) -> SearchSpec:
    fixed = {k: v for k, v in {**get_space("mbv3").largest().values, **FIX}.items() if k not in free}
    base = {"objectives": ("params:max", "latency_ms@edge"), "n_trials": 60, "population": 10, "fixed": fixed}
    return SearchSpec(name, "mbv3", **{**base, **kw})  # type: ignore[arg-type]


def _arch_keys(store: Store, spec: SearchSpec) -> list[str]:
    space = get_space("mbv3")
    trials, _, _ = load_trials(store, spec.name)
    free = [d.name for d in space.dimensions if d.name not in spec.fixed]
    for t in trials:  # stored canonical (fixed dimensions keep their given value)
        assert {k: t["config"][k] for k in free} == {k: space.canonical(t["config"])[k] for k in free}
    return [space.arch_key(t["config"]) for t in trials]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nsga2", "random", "tpe"])
def test_search_spends_no_trial_on_a_repeat(edge: Store, sampler: str) -> None:
    # last stage: depth and the last two blocks free -> 27 literal configs, 1 + 3 + 9 = 13 architectures
    spec = _spec("small", ("d_4", "ks_18", "ks_19"), n_trials=40, population=5, sampler=sampler)
    result = run_surrogate(edge, spec)
    keys = _arch_keys(edge, spec)
    assert result.total == len(keys) == len(set(keys)) == 13
    assert "every SubNet of the searched region has been evaluated" in result.note
    again = run_surrogate(edge, spec)  # resuming finds nothing new either
    assert again.added == 0 and len(_arch_keys(edge, spec)) == 13


def test_search_of_n_trials_has_n_architectures(edge: Store) -> None:
    free = ("d_3", "d_4", *(f"ks_{i}" for i in range(12, 20)), *(f"e_{i}" for i in range(12, 20)))
    spec = _spec("big", free, n_trials=120, population=20)
    result = run_surrogate(edge, spec)
    keys = _arch_keys(edge, spec)
    assert result.total == 120 and len(set(keys)) == 120 and result.note == ""
    study = optuna.load_study(study_name="big", storage=edge.optuna_storage())
    trial = study.trials[0]
    assert trial.user_attrs["arch_key"] == get_space("mbv3").arch_key(trial.user_attrs["config"])
    assert trial.params == {k: trial.user_attrs["config"][k] for k in trial.params}


# ---------------------------------------------------------------------------------------------------- fronts
def test_front_shows_ties(edge: Store) -> None:
    spec = _spec("ties", ("d_4", "ks_18", "ks_19"), n_trials=13, population=13, sampler="random")
    run_surrogate(edge, spec)
    # an imported / older study: the same SubNets again, literal configs kept as given
    study = optuna.load_study(study_name="ties", storage=edge.optuna_storage())
    copies = [
        TrialRow(
            dict(t.params),
            t.distributions,
            list(t.values),
            None,
            {"config": t.user_attrs["config"], "config_key": t.user_attrs["config_key"]},
        )
        for t in study.trials[:13]
    ]
    bulk_add_trials(edge, study_id(study), copies)
    results = study_results(edge, "ties")
    front = results.front()
    assert front.rows["ties"].min() >= 2 and not front.rows[list(front.objectives)].duplicated().any()
    best = optuna.load_study(study_name="ties", storage=edge.optuna_storage()).best_trials
    assert int(front.rows["ties"].sum()) == len(best) > len(front.rows)

    runner = CliRunner()
    text = runner.invoke(app, ["front", "ties", "--store", str(edge.url)])
    assert text.exit_code == 0, text.output
    assert "ties" in text.output and f"Optuna's best_trials lists all {len(best)}" in text.output
    doc = json.loads(runner.invoke(app, ["front", "ties", "--store", str(edge.url), "--json"]).output)
    assert sum(r["ties"] for r in doc["front"]) == len(best) and "best_trials" in doc["ties"]


def test_cli_search_says_when_the_region_is_exhausted(edge: Store) -> None:
    fixed = {k: v for k, v in {**get_space("mbv3").largest().values, **FIX}.items() if k not in ("ks_0", "e_0")}
    args = [
        "search",
        "--space",
        "mbv3",
        "--objective",
        "params:max",
        "--objective",
        "latency_ms@edge",
        "--trials",
        "30",
        "--population",
        "9",
        "--name",
        "cli",
        "--store",
        str(edge.url),
    ]
    for k, v in fixed.items():
        args += ["--fix", f"{k}={v}"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "stopped at 9 trials: every SubNet of the searched region has been evaluated" in out.output


@pytest.mark.slow
def test_a_search_that_exhausts_its_region_evaluates_every_subnet(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NB201 with two edges fixed (625 SubNets), 700 trials asked of NSGA-II in generations of 6: the search stops
    having evaluated every SubNet of the region, each once, and says so (before the fix it stopped at 624, its
    random re-proposals having missed the last ones, and claimed all were evaluated). A region too large to
    enumerate says "about" instead."""
    import itertools

    import pareto.search._search

    space = get_space("nb201")
    fixed = {"edge0": "nor_conv_3x3", "edge1": "none"}
    s = SearchSpec("all", "nb201", ("params", "macs:max"), n_trials=700, population=6, fixed=fixed)
    result = run_surrogate(store, s)
    free = [d for d in space.dimensions if d.name not in fixed]
    region = {
        space.arch_key({**fixed, **dict(zip([d.name for d in free], values, strict=True))})
        for values in itertools.product(*(d.choices for d in free))
    }
    stored = {space.arch_key(t["config"]) for t in load_trials(store, "all")[0]}
    assert result.total == len(stored) == len(region) == 625 and stored == region
    assert result.note == (
        "stopped at 625 trials: every SubNet of the searched region has been evaluated (625 distinct architectures)"
    )
    monkeypatch.setattr(pareto.search._search, "ENUMERATE_MAX", 100)  # as if the region were too large to enumerate
    short = run_surrogate(store, SearchSpec("about", "nb201", s.objectives, n_trials=700, population=6, fixed=fixed))
    assert short.total < 625 and "so about every SubNet of the searched region has been" in short.note
    assert f"({short.total} distinct architectures; the region's 625 configs are too many to enumerate)" in short.note
