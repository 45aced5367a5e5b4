"""Search strategies behind one ask/tell interface: the built-ins through the protocol, strategies registered in code
and discovered through the ``hwpareto.strategies`` entry points, and the typed options' one set of defaults."""

from __future__ import annotations

import inspect
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import optuna
import pytest

from hwpareto.errors import InvalidValueError
from hwpareto.options import BUDGETED, SEARCH, BudgetedOptions, SearchOptions
from hwpareto.plugins import Registry
from hwpareto.store import Store
from pareto.search import _strategies as strategies
from pareto.search._search import SearchSpec, load_trials, run_surrogate
from pareto.search._strategies import GENERATION_KEY, STRATEGIES, Problem, Strategy, register_strategy, strategy_class
from profilers import DeviceSpec, backend_for, build_lut
from supernet import SubNetConfig, get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
FIX = {"r": 224, "w": 1.0}
BUILT_INS = ["nsga2", "random", "nsga3", "tpe"]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry[type[Strategy]]:
    """A fresh strategy registry (names registered in a test do not leak into others)."""
    fresh: Registry[type[Strategy]] = Registry("hwpareto.strategies", "sampler", strategies._check)
    monkeypatch.setattr(strategies, "STRATEGIES", fresh)
    return fresh


@pytest.fixture
def edge(tmp_path: Path) -> Store:
    with Store.open(str(tmp_path / "store.db")) as store:
        spec = DeviceSpec("edge", "fake", "fake", {"gmacs_per_s": 5.0})
        store.devices.add("edge", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)
        yield store


def problem() -> Problem:
    return Problem(get_space("mbv3"), ("maximize", "minimize"), ("latency <= 1",), FIX)


def evaluate(configs: Sequence[SubNetConfig]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stand-in objectives and one constraint per config."""
    space = get_space("mbv3")
    params = np.array([space.params(c) for c in configs], dtype=float)
    return np.column_stack([params, params / 1e6 + 1]), (params / 1e6 - 5)[:, None]


def distinct(strategy: Strategy, configs: list[SubNetConfig]) -> list[SubNetConfig]:
    """What the search tells: canonical configs, each once."""
    out = {}
    for c in configs:
        canon = strategy.genome.canonical(c)
        out.setdefault(canon.key, canon)
    return list(out.values())


@pytest.mark.parametrize("name", BUILT_INS)
def test_built_in_asks_valid_configs_with_fixed_dims_deterministically(name: str) -> None:
    cls = strategy_class(name)
    options = SearchOptions(sampler=name, population=8, seed=3)
    first, again = cls(problem(), options), cls(problem(), options)
    asked = first.ask(8)
    space = get_space("mbv3")
    assert len(asked) == 8 and all(space.validate(c.values) == c for c in asked)
    assert all(c["r"] == 224 and c["w"] == 1.0 for c in asked)
    assert [c.key for c in again.ask(8)] == [c.key for c in asked]  # same seed, same proposals
    other = cls(problem(), SearchOptions(sampler=name, population=8, seed=4)).ask(8)
    assert [c.key for c in other] != [c.key for c in asked]


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_INS)
def test_tell_then_ask_continues_and_history_resumes(name: str) -> None:
    cls = strategy_class(name)
    options = SearchOptions(sampler=name, population=8, seed=0)

    def run(strategy: Strategy, generations: int) -> list[list[str]]:
        keys = []
        for _ in range(generations):
            batch = distinct(strategy, strategy.ask(8))
            values, constraints = evaluate(batch)
            strategy.tell(batch, values, constraints)
            keys.append([c.key for c in batch])
        return keys

    a, b = cls(problem(), options), cls(problem(), options)
    assert run(a, 3) == run(b, 3)  # tell then ask: deterministic generation after generation
    told = distinct(a, a.ask(16))
    values, constraints = evaluate(told)
    resumed = cls(problem(), options, told, values, constraints)  # a resumed search: the stored trials
    nxt = resumed.ask(8)
    assert len(nxt) == 8 and all(c["r"] == 224 for c in nxt)
    assert [c.key for c in cls(problem(), options, told, values, constraints).ask(8)] == [c.key for c in nxt]


def test_history_of_the_wrong_shape_is_one_line_error() -> None:
    with pytest.raises(InvalidValueError, match=r"history values shape: expected \(1, 2\)"):
        strategy_class("nsga2")(problem(), SEARCH, [get_space("mbv3").sample(np.random.default_rng(0))], np.zeros(3))


class Cheapest(Strategy):
    """A test strategy: the uniform draw with the fewest parameters of four, keeping what it was told."""

    told: ClassVar[list[str]] = []

    def ask(self, n: int) -> list[SubNetConfig]:
        draws = self.uniform(4 * n)
        space = self.problem.space
        return sorted(draws, key=lambda c: (space.params(c), c.key))[:n]

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        assert values.shape == (len(configs), len(self.problem.directions))
        Cheapest.told.extend(c.key for c in configs)


def test_strategy_registered_in_code_runs_a_search(registry: Registry[type[Strategy]], edge: Store) -> None:
    register_strategy("mine", Cheapest)
    assert "mine" in registry.names()
    Cheapest.told = []
    spec = SearchSpec(
        "m1", "mbv3", ("params:max", "latency_ms@edge"), sampler="mine", n_trials=30, population=10, fixed=FIX
    )
    result = run_surrogate(edge, SearchSpec.from_dict(spec.to_dict()))
    assert result.total == 30
    trials, _, _ = load_trials(edge, "m1")
    assert [t["config_key"] for t in trials] == Cheapest.told  # every evaluated trial told, in order
    study = optuna.load_study(study_name="m1", storage=edge.optuna_storage())
    assert sorted({t.system_attrs[GENERATION_KEY] for t in study.trials}) == [0, 1, 2]
    with pytest.raises(InvalidValueError, match="sampler name: expected a name not yet registered"):
        register_strategy("mine", Cheapest)
    with pytest.raises(InvalidValueError, match="sampler name: expected a name not yet registered"):
        register_strategy("nsga2", Cheapest)  # a built-in is taken too (replace=True shadows it)


def test_strategy_discovered_through_an_entry_point(
    registry: Registry[type[Strategy]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edge: Store
) -> None:
    (tmp_path / "thirdparty_strategies.py").write_text(
        textwrap.dedent(
            """
            from pareto import Strategy

            class Sweep(Strategy):
                generation_key = "Sweep:generation"
                parent_prefix = None

                def ask(self, n):
                    return self.uniform(n)

                def tell(self, configs, values, constraints):
                    pass
            """
        )
    )
    dist = tmp_path / "thirdparty_strategies-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-strategies\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hwpareto.strategies]\nsweep = thirdparty_strategies:Sweep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_strategies", raising=False)
    assert "sweep" in registry.names() and set(BUILT_INS) <= set(registry.names())
    run_surrogate(
        edge,
        SearchSpec(
            "s1", "mbv3", ("params:max", "latency_ms@edge"), sampler="sweep", n_trials=12, population=4, fixed=FIX
        ),
    )
    study = optuna.load_study(study_name="s1", storage=edge.optuna_storage())
    assert [t.system_attrs["Sweep:generation"] for t in study.trials] == [0] * 4 + [1] * 4 + [2] * 4
    storage = edge.optuna_storage()
    assert not any(k.startswith("NSGAIISampler") for k in storage.get_study_system_attrs(study._study_id))


def test_unknown_or_broken_sampler_is_one_line_error(
    registry: Registry[type[Strategy]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidValueError) as info:
        SearchSpec("s", "mbv3", ("params",), sampler="cmaes")
    assert str(info.value) == "sampler: expected one of nsga2, nsga3, random, tpe, got 'cmaes'"
    with pytest.raises(InvalidValueError, match="expected one of nsga2, nsga3, random, tpe, got 'cmaes'"):
        strategy_class("cmaes")
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hwpareto.strategies]\nbad = json:dumps\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(strategies.PluginError, match=r"plugin 'bad': expected a concrete pareto\.Strategy") as err:
        SearchSpec("s", "mbv3", ("params",), sampler="bad")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_one_set_of_defaults_for_spec_cli_and_dashboard(dash_url: str) -> None:
    from streamlit.testing.v1 import AppTest

    from hwpareto.cli.search import search

    cli = inspect.signature(search).parameters
    for flag, value in (
        ("sampler", SEARCH.sampler),
        ("trials", SEARCH.n_trials),
        ("population", SEARCH.population),
        ("seed", SEARCH.seed),
        ("batch", BUDGETED.batch),
    ):
        assert cli[flag].default is value, flag
    fields = SearchSpec.__dataclass_fields__
    for name in ("sampler", "n_trials", "population", "seed"):
        assert fields[name].default is getattr(SEARCH, name)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "dashboard" / "views" / "search.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="search_sampler").value == SEARCH.sampler
    assert at.selectbox(key="search_sampler").options == STRATEGIES.names()
    assert at.number_input(key="search_trials").value == SEARCH.n_trials
    assert at.number_input(key="search_population").value == SEARCH.population
    assert at.number_input(key="search_seed").value == SEARCH.seed


def test_budgeted_options_are_canonical_and_shared(edge: Store) -> None:
    from dashboard._data import make_spec

    assert BUDGETED.to_dict() == {"batch": 10, "initial": 20, "eval_delay_s": 0.0}
    assert BudgetedOptions(batch=32).design == 32 and BudgetedOptions(batch=4, initial=10).design == 10
    dash = make_spec(
        edge,
        name="d",
        space="nb201",
        quality="test_acc_pct@cifar10",
        metric="latency_ms",
        devices=["edge"],
        budget=None,
        sampler=SEARCH.sampler,
        n_trials=25,
        population=SEARCH.population,
        seed=SEARCH.seed,
        mode="budgeted",
    )
    assert dash.options == BUDGETED.to_dict() == dash.budgeted_options.to_dict()
    old = SearchSpec(
        "b", "nb201", ("test_acc_pct@toy", "params"), mode="budgeted", options={"batch": 10, "initial": 20}
    )
    assert old.options == BUDGETED.to_dict()  # specs stored before eval_delay_s existed read the same
    assert old.same_search({**old.to_dict(), "options": {"batch": 10, "initial": 20}, "n_trials": 5})
    for bad, match in (
        ({"batch": 0}, "batch: expected an integer >= 1"),
        ({"bach": 3}, "budgeted options: expected the keys batch, eval_delay_s, initial"),
        ({"eval_delay_s": -1}, "eval_delay_s: expected a finite number >= 0"),
    ):
        with pytest.raises(InvalidValueError, match=match):
            SearchSpec("b", "nb201", ("test_acc_pct@toy", "params"), mode="budgeted", options=bad)
    with pytest.raises(InvalidValueError, match="options: expected none for a surrogate search"):
        SearchSpec("s", "mbv3", ("params",), options={"batch": 3})


def test_decode_remembers_valid_rows_and_redraws_invalid_ones() -> None:
    """A gene row decoded before gives its config again without drawing; a row breaking a cross rule is redrawn
    at random every time, as when it was first met."""
    from supernet import DeclarativeSpace, Dimension

    class Ordered(DeclarativeSpace):
        def _check(self, values: dict[str, object]) -> None:
            if values["a"] > values["b"]:  # type: ignore[operator]
                raise InvalidValueError("ordered.a", "at most b", values["a"])

    genome = strategies.Genome(
        Ordered("ordered", [Dimension("a", choices=(1, 2, 3)), Dimension("b", choices=(1, 2, 3))]), {}
    )
    rows = np.array([[0.0, 2.0], [2.0, 0.0]])  # a=1 b=3 (valid); a=3 b=1 (breaks the rule)
    first = genome.decode(rows.copy(), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    again = genome.decode(rows[:1].copy(), rng)
    assert again[0] is first[0] and rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    redrawn = [genome.decode(rows[1:].copy(), np.random.default_rng(seed))[0] for seed in range(20)]
    assert all(c["a"] <= c["b"] for c in redrawn) and len({c.key for c in redrawn}) > 1
