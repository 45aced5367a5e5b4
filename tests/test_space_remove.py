"""Issue 28, wrong results 7: ``hwpareto space remove NAME`` removes a space registered in the store; it is refused
(one line, with how many) while studies, measurements or predictors use the space, ``--cascade`` deletes those
too after saying what, and built-in or installed spaces cannot be removed."""

from __future__ import annotations

from pathlib import Path

import optuna
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.store import MeasurementIn, Store
from pareto.search._search import SPEC_ATTR, SearchSpec
from supernet import DeclarativeSpace, Dimension, get_space

runner = CliRunner()
TOY = DeclarativeSpace("toy", [Dimension("width", choices=(8, 16, 32)), Dimension("depth", "int", low=1, high=4)])
OTHER = DeclarativeSpace("toy", [Dimension("width", choices=(8, 16))])


def _hw(url: str, *args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, [*args, "--store", url])
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def _study(store: Store, name: str, space: str) -> None:
    spec = SearchSpec(name, space, ("params:max", "acc_pct@d"), n_trials=10, population=4)
    study = optuna.create_study(storage=store.optuna_storage(), study_name=name, directions=["maximize"] * 2)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())


def _rows(space: str, configs: list[dict[str, object]]) -> list[MeasurementIn]:
    sp = TOY if space == "toy" else get_space(space)
    return [
        MeasurementIn(sp.validate(c), "dataset", "d", metric, 50.0 + i)
        for i, c in enumerate(configs)
        for metric in ("a_pct", "b_pct")
    ]


def test_space_remove_refuses_while_used_and_cascades_explicitly(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    for builtin in ("mbv3", "nb201"):
        _, err = _hw(url, "space", "remove", builtin, code=1)
        assert err.strip().splitlines() == [
            f"error: space: expected a space registered in this store (built-in and installed spaces stay), got "
            f"{builtin!r}"
        ]
    _, err = _hw(url, "space", "remove", "nope", code=1)
    assert "\n" not in err.strip() and "got 'nope'" in err
    with Store.open(url) as store:
        store.spaces.register(TOY)
        store.measurements.add(_rows("toy", [{"width": w, "depth": 2} for w in (8, 16, 32)]))
        nb201 = get_space("nb201")
        store.measurements.add(_rows("nb201", [nb201.smallest().values, nb201.largest().values]))
        _study(store, "over-toy", "toy")
        store.checkpoints.record("toy", "/x/toy.safetensors", "a" * 64, {}, recorded_by="eval-subnets", evaluated=True)
        _study(store, "over-nb201", "nb201")
    _, err = _hw(url, "space", "remove", "toy", code=1)
    line = err.strip()
    assert "\n" not in line and line.startswith("error: space 'toy' is used by 1 study (over-toy)")
    assert "6 measurements of 3 SubNets" in line and "--cascade" in line
    with Store.open(url) as store:
        assert "toy" in store.spaces.names() and len(store.measurements.table(subject="d")) == 10
        store.searches.submit("queued-toy", "toy", {"space": "toy", "objectives": ["params"]}, 10)
    _, err = _hw(url, "space", "remove", "toy", "--cascade", code=1)  # a queued search: cancel it first
    assert "queued-toy" in err and "\n" not in err.strip()
    with Store.open(url) as store:
        assert store.searches.claim("w", "queued-toy") is not None
        store.searches.finish("queued-toy", "w", "cancelled")

    out, _ = _hw(url, "space", "remove", "toy", "--cascade")
    said = out.splitlines()
    assert said[0].startswith("removing space 'toy' with 2 studies (")
    assert "over-toy" in said[0] and "queued-toy" in said[0] and "6 measurements of 3 SubNets" in said[0]
    assert "1 checkpoint record" in said[0] and "0 predictors" in said[0]
    assert said[1].startswith("removed space 'toy'")
    with Store.open(url) as store:
        assert "toy" not in store.spaces.names()
        assert store.checkpoints.trained("toy") is None  # a space registered again under the name starts afresh
        assert len(store.measurements.table(subject="d")) == 4  # nb201's rows stay
        names = {s.study_name for s in optuna.get_all_study_summaries(store.optuna_storage())}
        assert names == {"over-nb201"} and [s.name for s in store.searches.list()] == []
        store.spaces.register(OTHER)  # the name is free for another definition
    out, _ = _hw(url, "space", "remove", "toy")  # nothing uses it: removed without --cascade
    assert out.splitlines() == [f"removed space 'toy' from sqlite:///{url}"]
