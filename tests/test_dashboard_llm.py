"""The dashboard's search form on an LLM space: the phase cost metrics are offered (and only there), the budget
field follows the chosen phase, a launched search carries the phase objective, and comparing fronts of a
minimised quality (perplexity) ranks the lower value best."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import _data
from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from pareto import cost_metrics, parse_objective, study_results
from profilers import Lut
from supernet import get_space
from tests.test_llama_space import _board_lut, _imported_tiny

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"
PHASES = ("prefill_ms", "decode_ms_per_token", "energy_mj_per_token")


@pytest.fixture
def llm_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store holding the tiny Llama space ``tl`` and a fake device ``board`` with its LUT, set as the
    dashboard's store."""
    url = _imported_tiny(tmp_path)
    with Store.open(url) as store:
        _board_lut(store, store.spaces.get("tl"))
    monkeypatch.setenv("HWPARETO_STORE", url)
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    return url


def test_phase_metrics_only_on_llm_spaces(llm_url: str) -> None:
    with Store.open(llm_url) as store:
        sp = store.spaces.get("tl")
        assert cost_metrics(sp) == ("latency_ms", "energy_mj", *PHASES)
        assert cost_metrics(get_space("nb201")) == ("latency_ms", "energy_mj")
        spec = _data.make_spec(
            store,
            name="llm",
            space="tl",
            quality="params:max",
            metric="decode_ms_per_token",
            devices=["board"],
            budget=0.5,
            sampler="random",
            n_trials=20,
            population=10,
            seed=0,
        )
        assert spec.objectives == ("params:max", "decode_ms_per_token@board")
        assert spec.budgets == ("decode_ms_per_token@board <= 0.5",)
        with pytest.raises(InvalidValueError, match="cost metric: expected latency_ms or energy_mj or prefill_ms"):
            _data.make_spec(
                store,
                name="x",
                space="tl",
                quality="params:max",
                metric="ttft",
                devices=["board"],
                budget=None,
                sampler="random",
                n_trials=20,
                population=10,
                seed=0,
            )
        # the budget field's typical costs are the phase LUT-sums a search would use
        costs = _data.typical_costs(store, "board", "tl", "decode_ms_per_token", n=8)
        rng = np.random.default_rng(0)
        configs = [sp.sample(rng) for _ in range(8)]
        assert costs.tolist() == pytest.approx(Lut.load(store, "board").sums(sp, configs, "latency", "decode").tolist())


@pytest.mark.slow
def test_search_page_offers_and_launches_a_decode_budget(llm_url: str) -> None:
    at = AppTest.from_file(str(PAGES / "search.py"), default_timeout=90)
    at.run()
    assert not at.exception
    at.selectbox(key="search_space").set_value("tl").run()
    radio = at.radio(key="search_metric")
    assert list(radio.options) == [
        "latency (ms)",
        "energy (mJ)",
        "prefill (time to first token) (ms)",
        "decode (ms/token)",
        "energy per token (mJ/token)",
    ]
    radio.set_value("decode_ms_per_token").run()
    assert not at.exception
    field = at.number_input(key="search_budget")
    assert "ms/token" in field.label
    with Store.open(llm_url) as store:
        costs = _data.typical_costs(store, "board", "tl", "decode_ms_per_token")
    assert field.step == pytest.approx(_data.budget_input_format(costs)[0])


def test_compare_fronts_ranks_a_minimised_quality_by_its_lowest_value() -> None:
    cost, quality = "latency_ms@board", "ppl@text"
    objectives = [parse_objective(quality), parse_objective(cost)]

    def study(name: str, ppl: list[float]) -> SimpleNamespace:
        trials = pd.DataFrame({"number": range(len(ppl)), cost: [1.0, 2.0, 3.0][: len(ppl)], quality: ppl})
        front = SimpleNamespace(rows=trials, knee_number=0, objectives=objectives)
        return SimpleNamespace(
            spec=SimpleNamespace(name=name),
            trials=trials,
            objectives=objectives,
            budgets=(),
            front=lambda device=None: front,
        )

    _, table = _data.compare_fronts(study("a", [9.0, 7.0, 5.0]), study("b", [12.0, 10.0, 8.0]), cost, quality)
    table = table.set_index("study")
    assert table.loc["a", f"best {quality}"] == 5.0 and table.loc["b", f"best {quality}"] == 8.0
    assert table.loc["a", "hypervolume"] > table.loc["b", "hypervolume"]  # a's perplexities are lower everywhere


@pytest.mark.slow
def test_llm_bundle_zip_holds_every_file_and_verifies(tmp_path: Path) -> None:
    """Issue 28 (wrong results 1): the Export page's zip of an LLM trial held an empty ``model/`` folder. Every file
    of the bundle is in the zip, the manifest (in the zip and returned) lists each with its size and SHA-256, and
    ``hwpareto verify-bundle`` passes on the unzipped download."""
    import hashlib
    import json

    from typer.testing import CliRunner

    from hwpareto.cli import app as cli
    from tests.dashboard_store import LLM_STUDY, add_llm_study, safe_extract

    url = f"sqlite:///{tmp_path / 's.db'}"
    add_llm_study(url, tmp_path / "tl")
    with Store.open(url) as store:
        data, manifest, _ = _data.bundle_zip(store, LLM_STUDY, 0, random_weights=True)  # a lone config.json
    (tmp_path / "b.zip").write_bytes(data)
    files = safe_extract(tmp_path / "b.zip", tmp_path / "out")
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    bundled = {p.relative_to(folder).as_posix(): p for p in files if p.is_relative_to(folder)}
    assert "model/model.safetensors" in bundled and "model/config.json" in bundled
    assert sorted(manifest["file"]) == sorted(bundled)  # every file, nothing else (no folder rows)
    for row in manifest.itertuples():
        path = bundled[row.file]
        assert row.size_bytes == path.stat().st_size
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    written = json.loads((tmp_path / "out" / _data.MANIFEST_FILE).read_text())
    assert written["bundle"] == folder.name
    assert {f["file"]: (f["size_bytes"], f["sha256"]) for f in written["files"]} == {
        r.file: (r.size_bytes, r.sha256) for r in manifest.itertuples()
    }
    result = CliRunner().invoke(cli, ["verify-bundle", str(folder)])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------------------------ issue 28: LLM labels
@pytest.fixture
def llm_study_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store holding the LLM study of tests/dashboard_store.py, set as the dashboard's store."""
    from tests.dashboard_store import add_llm_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    add_llm_study(url, tmp_path / "tl")
    monkeypatch.setenv("HWPARETO_STORE", url)
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    return url


def test_units_come_from_the_metric_names() -> None:
    from dashboard import _figures

    assert _figures.axis_title("decode_ms_per_token@board") == "decode on board (ms/token)"  # was "(token)"
    assert _figures.axis_title("energy_mj_per_token@board") == "energy per token on board (mJ/token)"
    assert _figures.axis_title("prefill_ms@board") == "prefill (time to first token) on board (ms)"
    assert _figures.axis_title("kv_cache_mb") == "KV cache (MiB)"  # *_mb values are MiB
    assert _figures.axis_title("val_ppl@stdlib") == "val perplexity on stdlib (exp of mean token NLL)"
    assert _figures.axis_title("latency_ms@edge") == "latency on edge (ms)"
    assert _figures.metric_label("decode_ms_per_token@board:min") == ("decode", "ms/token")


def test_operating_point_table_is_named_by_its_metric(llm_study_url: str) -> None:
    from tests.dashboard_store import LLM_STUDY

    with Store.open(llm_study_url) as store:
        results = study_results(store, LLM_STUDY)
    for cost in ("decode_ms_per_token@board", "prefill_ms@board"):
        table = _data.operating_point_frame(results, cost, 4)
        metric = cost.partition("@")[0]
        assert "max_latency_ms" not in table and "use_until_ms" not in table
        assert list(table[f"max_{metric}"]) == list(table[cost])  # the chosen cost, not the device's first
        assert (np.diff(table[cost]) > 0).all()
        assert list(table[f"use_until_{metric}"])[:-1] == list(table[cost])[1:]


def test_fronts_page_says_the_llm_runtime_setting_and_units(llm_study_url: str) -> None:
    at = AppTest.from_file(str(PAGES / "fronts.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    text = "\n".join(c.value for c in at.caption)
    assert "runtime setting of space 'tl'" in text
    assert "batch (sequences)" in text and "prompt_len (prompt tokens): 8" in text and "gen_len (new tokens): 4" in text
    op = at.dataframe[-1].value
    assert "max_decode_ms_per_token" in op.columns and "max_latency_ms" not in op.columns
