"""``hwpareto demo`` end to end on a fresh SQLite store: the Llama SuperNet registered from its shipped Hugging Face
folder, shipped LUTs and accuracy / perplexity tables, this CPU profiled for real, predictors, a search per device
under its default budget, bundles, a second run that reuses everything, and the dashboard actually served."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.store import Store
from pareto._demo import DEMO_SPACES, DESCRIBED_COSTS, SIM_DEVICES, demo_space
from pareto.bundles._export import verify_bundle

pytestmark = pytest.mark.slow
runner = CliRunner()
DEVICES = ("cpu-local", *SIM_DEVICES)


def demo(*args: str | Path) -> list[dict]:
    result = runner.invoke(app, ["demo", "--no-dashboard", "--json", *map(str, args)])
    assert result.exit_code == 0, f"{result.stdout}{result.stderr}{result.exception!r}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("demo")
    rows = demo("--trials", "200", "--store", root / "demo.db", "--out", root / "bundles")
    return root, rows


def test_demo_chooses_a_feasible_subnet_per_space_and_device(first_run: tuple[Path, list[dict]]) -> None:
    root, rows = first_run
    assert sorted((r["space"], r["device"]) for r in rows) == sorted(
        (d.space, dev) for d in DEMO_SPACES for dev in DEVICES
    )
    quality = {d.space: d.metric for d in DEMO_SPACES}
    for r in rows:
        llm = next(d for d in DEMO_SPACES if d.space == r["space"]).hf
        # an LLM is budgeted and searched on its decode time per token, its prefill time a separate objective
        assert r["budget_metric"] == ("decode_ms_per_token" if llm else "latency_ms"), r
        assert r[r["budget_metric"]] <= r["budget_ms"], r
        assert (r["prefill_ms"] is not None and r["latency_ms"] is None) == llm, r
        assert (r["runtime"] or "").startswith("batch 1, prompt ") == llm, r
        assert r["quality_metric"] == quality[r["space"]], r
        assert 0 < r["quality"] <= 100 if r["quality_metric"].endswith("_pct") else 1 < r["quality"] < 256, r
        energy = r["energy_mj_per_token" if llm else "energy_mj"]
        assert (energy is None) == (r["device"] == "cpu-local"), r  # simulators report energy, timing not
    with Store.open(str(root / "demo.db")) as store:
        names = {p.name for p in store.predictors.list()}
        assert {f"{d.metric}:{d.space}:{d.dataset}" for d in DEMO_SPACES} <= names
        for device in DEVICES:
            keys = set(store.luts.get(device)["layer_key"])
            for d in DEMO_SPACES:
                assert {s.key for s in store.spaces.get(d.space).layer_universe()} <= keys, (device, d.space)
        assert all(len(store.measurements.table(space=d.space, subject=d.dataset)) >= 500 for d in DEMO_SPACES)
        for r in rows:  # the study's objectives are what the row reports
            study = optuna.load_study(study_name=r["study"], storage=store.optuna_storage())
            costs = [m.partition("@")[0] for m in study.metric_names[1:]]
            assert costs == [c for c in DESCRIBED_COSTS if r[c] is not None], (costs, r)


def test_demo_bundles_reload_with_the_trained_weights(first_run: tuple[Path, list[dict]]) -> None:
    _, rows = first_run
    for space in {r["space"] for r in rows}:
        row = next(r for r in rows if r["space"] == space)
        bundle = Path(row["bundle"])
        doc = json.loads((bundle / "config.json").read_text())
        assert doc["space"] == space and doc["metrics"]["trial"] == row["trial"]
        weights = "model" if next(d for d in DEMO_SPACES if d.space == space).hf else "weights.safetensors"
        assert {weights, "model.onnx"} <= {p.name for p in bundle.iterdir()}
        assert verify_bundle(bundle).ok()
        result = runner.invoke(app, ["verify-bundle", str(bundle), "--json"])  # the same check from the command line
        assert result.exit_code == 0, result.stderr
        check = json.loads(result.stdout)
        assert check["ok"] and check["weights_max_abs_diff"] <= 1e-4 and check["onnx_max_abs_diff"] <= 1e-4


def test_second_run_reuses_the_store(first_run: tuple[Path, list[dict]]) -> None:
    root, rows = first_run
    with Store.open(str(root / "demo.db")) as store:
        before = {d: len(store.luts.get(d)) for d in DEVICES}
        created = {p.name: p.created_at for p in store.predictors.list()}
    start = time.monotonic()
    again = demo("--trials", "200", "--store", root / "demo.db", "--out", root / "bundles")
    assert again == rows
    assert time.monotonic() - start < 120  # nothing profiled, trained or searched again (generous on shared CI)
    with Store.open(str(root / "demo.db")) as store:
        assert {d: len(store.luts.get(d)) for d in DEVICES} == before
        assert {p.name: p.created_at for p in store.predictors.list()} == created
        for row in rows:
            assert len(optuna.load_study(study_name=row["study"], storage=store.optuna_storage()).trials) == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serves_the_dashboard(first_run: tuple[Path, list[dict]]) -> None:
    root, _ = first_run
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "hwpareto.cli",
        "demo",
        "--trials",
        "200",
        "--store",
        str(root / "demo.db"),
        "--out",
        str(root / "bundles"),
        "--port",
        str(port),
        "--no-browser",
    ]
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        deadline, health = time.monotonic() + 180, ""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    health = response.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert health == "ok", f"dashboard did not come up (exit {process.poll()})"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200 and "<html" in response.read().decode().lower()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"dashboard on http://127.0.0.1:{port}" in output


def test_exported_demo_subnet_keeps_its_table_accuracy(tmp_path: Path) -> None:
    """A SubNet exported without naming a checkpoint gets the shipped trained weights, batch norm recalibrated on
    the training data the checkpoint names, and scores what the shipped accuracy table says."""
    import torch

    from pareto.bundles._export import export_subnet, load_subnet
    from supernet import get_space
    from supernet.data import load_data
    from supernet.training import _task, read_accuracy_table

    demo_space = DEMO_SPACES[0]
    space = get_space(demo_space.space)
    config, table_acc = read_accuracy_table(demo_space.table, space, demo_space.metric)[1]  # row 0: the largest
    export_subnet(space, config, tmp_path / "b", weights=True)
    doc = json.loads((tmp_path / "b" / "config.json").read_text())
    assert doc["supernet"]["source"] == "shipped"
    assert doc["supernet"]["checkpoint"] == f"{demo_space.space}.safetensors"  # a name: found by its hash
    assert doc["supernet"]["bn_recalibrated"] == {"data": demo_space.dataset, "seed": 0, "images": 500}
    assert verify_bundle(tmp_path / "b").ok()
    _, config, module = load_subnet(tmp_path / "b")
    task = _task(space, load_data(demo_space.dataset), torch.device("cpu"))
    correct = count = 0
    with torch.no_grad():
        for x, y in task.eval_batches("val", config):
            correct += int((module(x).argmax(-1) == y).sum())
            count += y.numel()
    assert abs(100 * correct / count - table_acc) < 0.5


def test_exported_llama_subnet_keeps_its_table_perplexity(tmp_path: Path) -> None:
    """A SubNet of the shipped Llama SuperNet, exported as a transformers model and loaded back, has the perplexity
    its row of the shipped table says, computed here with transformers' own loss on the same windows."""
    import math

    import torch

    from pareto.bundles._export import export_subnet, load_subnet
    from supernet.data import load_data
    from supernet.training import _task, read_accuracy_table

    demo = next(d for d in DEMO_SPACES if d.hf)
    with Store.open(str(tmp_path / "s.db")) as store:
        space = demo_space(store, demo)
    rows = read_accuracy_table(demo.table, space, demo.metric)
    (config, ppl), (_, smallest_ppl) = rows[2], rows[1]  # a random SubNet; row 1: the smallest
    assert rows[0][1] < ppl and rows[0][1] < smallest_ppl  # the largest SubNet models the text best
    export_subnet(space, config, tmp_path / "b", weights=True)
    assert verify_bundle(tmp_path / "b").ok()
    _, config, module = load_subnet(tmp_path / "b")
    task = _task(space, load_data(demo.dataset), torch.device("cpu"))
    nll = count = 0.0
    with torch.no_grad():
        for x, y in task.eval_batches("val", config):
            ids = torch.cat([x, y[:, -1:]], 1)
            nll += module(ids, labels=ids).loss.item() * y.numel()
            count += y.numel()
    assert math.exp(nll / count) == pytest.approx(ppl, rel=1e-3)


@pytest.mark.parametrize("device", ["cim-reram", "npu-edgetpu"])
def test_shipped_luts_are_what_the_profilers_produce(device: str, tmp_path: Path) -> None:
    """The shipped LUT rows are reproduced by the project's own simulators (all of the analytical ReRAM LUT over the
    Makefile's spaces, the gpt-stdlib layers at context 64 of a ZigZag one)."""
    import csv

    from profilers import build_lut, device_spec, export_lut_csv

    shipped = {
        r["layer_key"]: r
        for r in csv.DictReader((Path(__file__).resolve().parents[1] / "data" / "luts" / f"{device}.csv").open())
    }
    with Store.open(str(tmp_path / "s.db")) as store:
        spaces = [demo_space(store, d) for d in DEMO_SPACES]
        spaces = (
            [*spaces, store.spaces.get("gpt-stdlib")] if device == "cim-reram" else [store.spaces.get("gpt-stdlib")]
        )
        restrict = None if device == "cim-reram" else {"seq_len": [64]}
        for sp in spaces:
            build_lut(store, device_spec(store, device), sp, restrict=restrict, workers=1)
        export_lut_csv(store, device, tmp_path / "lut.csv")
    fresh = list(csv.DictReader((tmp_path / "lut.csv").open()))
    assert len(fresh) >= 20 and (device != "cim-reram" or len(fresh) == len(shipped))
    for row in fresh:
        want = shipped[row["layer_key"]]
        for column in ("latency_ms_mean", "energy_mj_mean"):
            assert float(row[column]) == pytest.approx(float(want[column]), rel=1e-9), (row["layer_key"], column)


def test_a_demo_study_of_an_earlier_release_is_searched_again(tmp_path: Path) -> None:
    """The demo owns its study names: one holding another search (an earlier release's objectives) is deleted and
    searched again; the demo refused the name ('exists with other settings') and stopped."""
    from pareto._demo import _replace_stale_study
    from pareto.search._search import SearchSpec, run_surrogate

    old = SearchSpec("demo-nb201-x", "nb201", ("params:max", "macs"), n_trials=20, population=10)
    new = SearchSpec("demo-nb201-x", "nb201", ("params:max", "flops"), n_trials=20, population=10)
    with Store.open(str(tmp_path / "s.db")) as store:
        run_surrogate(store, old)
        assert not _replace_stale_study(store, old)  # the same search is kept (a second run reuses it)
        assert optuna.get_all_study_names(store.optuna_storage()) == ["demo-nb201-x"]
        assert _replace_stale_study(store, new)
        assert optuna.get_all_study_names(store.optuna_storage()) == []
        run_surrogate(store, new)  # the name is free again
        assert not _replace_stale_study(store, new)
