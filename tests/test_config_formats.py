"""Configs in the formats users have: ``front --csv`` with one column per space dimension, and ``--format ofa``
(OFA's dict: ``wid``, ``ks``/``e``/``d`` lists, ``r``) on ``sample``, ``front`` and ``export``, read back by
``validate --format ofa``; refused with one line on a space without an OFA form."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.store import Store
from pareto.analysis._analysis import study_results
from pareto.search._search import SearchSpec, run_surrogate
from profilers import DeviceSpec, backend_for, build_lut
from supernet import get_space
from supernet.mbv3._ofa import ofa_config

runner = CliRunner()
OFA_SPACES = "mbv3, mbv3-digits, ofa-mbv3-w1.0, ofa-mbv3-w1.2"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with study ``digits`` (mbv3-digits, params ↑ × latency on a fake board) and ``cells`` (nb201)."""
    url = str(tmp_path_factory.mktemp("formats") / "s.db")
    with Store.open(url) as store:
        board = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", board.to_dict(), backend_for(board).describe())
        build_lut(store, board, get_space("mbv3-digits"), workers=1)
        run_surrogate(store, SearchSpec("digits", "mbv3-digits", ("params:max", "latency_ms@board"), n_trials=120))
        run_surrogate(store, SearchSpec("cells", "nb201", ("params:max", "macs"), n_trials=60))
    return url


def hw(url: str, *args: object, ok: bool = True) -> str:
    result = runner.invoke(app, [*map(str, args), "--store", url])
    assert (result.exit_code == 0) == ok, result.output + result.stderr
    return result.stdout if ok else result.stderr


def test_front_csv_has_one_column_per_dimension(url: str, tmp_path: Path) -> None:
    for study, space in (("digits", "mbv3-digits"), ("cells", "nb201")):
        hw(url, "front", study, "--csv", tmp_path / f"{study}.csv")
        rows = list(csv.DictReader((tmp_path / f"{study}.csv").open()))
        with Store.open(url) as store:
            configs = study_results(store, study).configs
        dims = [d.name for d in get_space(space).dimensions]
        assert rows and set(dims) <= set(rows[0])
        for row in rows:
            config = configs[int(row["number"])]
            assert [row[d] for d in dims] == [str(config[d]) for d in dims]


def test_ofa_format_on_front_sample_and_export(url: str, tmp_path: Path) -> None:
    space = get_space("mbv3-digits")
    with Store.open(url) as store:
        configs = study_results(store, "digits").configs
    front = json.loads(hw(url, "front", "digits", "--format", "ofa", "--json"))["front"]
    for row in front:
        ofa = row["config"]
        assert list(ofa) == ["wid", "ks", "e", "d", "r"] and len(ofa["ks"]) == 15 and len(ofa["d"]) == 5
        assert ofa["r"] == [configs[row["number"]]["r"]] and ofa["wid"] == configs[row["number"]]["w"]
        assert ofa_config(space, ofa) == space.validate(configs[row["number"]])  # OFA's reader gives it back
    plain = json.loads(hw(url, "front", "digits", "--json"))["front"]
    assert [r["config"] for r in plain] == [configs[r["number"]] for r in plain]
    ops = json.loads(hw(url, "front", "digits", "--operating-points", "3", "--format", "ofa", "--json"))
    assert all(ofa_config(space, r["config"]) == space.validate(configs[r["trial"]]) for r in ops)
    hw(url, "front", "digits", "--format", "ofa", "--csv", tmp_path / "front.csv")
    rows = list(csv.DictReader((tmp_path / "front.csv").open()))
    assert {json.dumps(r["config"]) for r in front} == {
        json.dumps({k: json.loads(row[k]) for k in ("wid", "ks", "e", "d", "r")}) for row in rows
    }

    sampled = json.loads(hw(url, "sample", "mbv3-digits", "-n", "3", "--format", "ofa", "--json"))
    for entry in sampled:
        (tmp_path / "ofa.json").write_text(json.dumps(entry["config"]))
        back = json.loads(hw(url, "validate", "mbv3-digits", tmp_path / "ofa.json", "--format", "ofa", "--json"))
        assert back["key"] == entry["key"]
    assert '"wid":' in hw(url, "sample", "mbv3-digits", "-n", "1", "--format", "ofa")

    number = front[0]["number"]
    info = json.loads(
        hw(url, "export", "digits", number, "--out", tmp_path / "b", "--no-weights", "--format", "ofa", "--json")
    )
    assert ofa_config(space, info["config"]) == space.validate(configs[number])
    text = hw(url, "export", "digits", number, "--out", tmp_path / "c", "--no-weights", "--format", "ofa")
    assert "config (ofa): " + json.dumps(info["config"], separators=(",", ":")) in text


@pytest.mark.parametrize(
    "args",
    [
        ("front", "cells", "--format", "ofa"),
        ("front", "cells", "--format", "ofa", "--operating-points", "2"),
        ("sample", "nb201", "--format", "ofa"),
        ("export", "cells", "0", "--out", "{out}", "--no-weights", "--format", "ofa"),
    ],
)
def test_ofa_format_refused_on_a_space_without_one(url: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "bundle"
    err = hw(url, *(a.format(out=out) for a in args), ok=False)
    assert err == f"error: --format ofa: expected a space with an OFA form: {OFA_SPACES}, got 'nb201'\n"
    assert not out.exists()  # refused before anything is written


def test_unknown_format_is_refused(url: str) -> None:
    assert hw(url, "front", "digits", "--format", "onnx", ok=False) == (
        "error: --format: expected hwpareto or ofa, got 'onnx'\n"
    )
