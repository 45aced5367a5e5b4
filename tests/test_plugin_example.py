"""examples/custom-supernet installed into a temporary folder (never into this environment): its "Bring your own
SuperNet" walk.sh run end to end against it, and every other extension point it declares (a backend of a new device
kind, a device cost, a strategy, an analytic objective) driven through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwpareto.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom-supernet"
UNIVERSE_LAYERS = 189
HWPARETO = Path(sys.executable).with_name("hwpareto")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The example's source (a copy, so that the build leaves nothing in the checkout) and an environment whose
    Python sees it installed (in a temporary folder)."""
    assert HWPARETO.is_file(), f"the hwpareto command is not next to {sys.executable}"
    tmp = tmp_path_factory.mktemp("example")
    source, site = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target"]
    install = subprocess.run([*pip, str(site), str(source)], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("HWPARETO_STORE", None)
    return source, env


@pytest.mark.slow
def test_custom_supernet_walk(example: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    source, base = example
    walk_dir = tmp_path / "walk"
    env = {**base, "HWPARETO": str(HWPARETO), "PYTHON": sys.executable, "WALK_DIR": str(walk_dir)}
    walk = subprocess.run(
        ["bash", str(source / "walk.sh")], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    log = walk.stdout + walk.stderr
    assert walk.returncode == 0, log[-3000:]
    assert "space resnet-tiny listed" in walk.stdout
    assert f"{UNIVERSE_LAYERS} layers in the LUT ({UNIVERSE_LAYERS} measured now" in walk.stdout
    assert "max |onnx - torch|" in walk.stdout and "9 passed" in walk.stdout
    lut = Store.open(str(walk_dir / "walk.db")).luts.get("cpu-local")
    assert len(lut) == UNIVERSE_LAYERS and (lut["latency_ms_mean"] > 0).all()
    front = json.loads((walk_dir / "front.json").read_text())
    assert front["objectives"] == ["params", "latency_ms@cpu-local"] and len(front["front"]) >= 2
    bundle = walk_dir / "bundle"
    assert (bundle / "model.onnx").stat().st_size > 0
    assert json.loads((bundle / "config.json").read_text())["space"] == "resnet-tiny"


CHECK_SEARCH = """
import json, sys

from hwpareto.store import Store
from pareto import study_results
from profilers import backend_for, device_spec
from supernet import get_space

store, study = Store.open(sys.argv[1]), sys.argv[2]
space = get_space("resnet-tiny")
results = study_results(store, study)
numbers = sorted(int(n) for n in results.trials["number"])
results.configs.prefetch(numbers)
configs = [results.configs.get(n) for n in numbers]
# mutate's proposals after the first generation: one dimension away from an earlier trial
mutants = sum(
    any(sum(c[k] != earlier[k] for k in c) == 1 for earlier in configs[:i]) for i, c in enumerate(configs) if i >= 20
)
backend = backend_for(device_spec(store, "toy-fpga-board"))
simulated = [backend.measure_subnet(space, space.validate(r["config"])) for r in json.load(sys.stdin)["front"]]
print(json.dumps({
    "trials": len(configs),
    "mutants": mutants,
    "power_mw": [c.metrics["power_mw"] for c in simulated],
    "latency_ms": [c.latency_ms for c in simulated],
}))
"""


@pytest.mark.slow
def test_every_extension_point_of_the_example_through_the_cli(
    example: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A device of the backend's new kind fpga registered and profiled; SubNets simulated end to end, which stores
    the plugin's device cost power_mw; a power predictor trained; a search with the plugin strategy on the plugin's
    analytic objective, power and latency; its front."""
    source, base = example
    env = {**base, "HWPARETO_STORE": str(tmp_path / "fpga.db")}

    def hwpareto(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(HWPARETO), *args], env=env, input=stdin, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (args, (done.stdout + done.stderr)[-3000:])
        return done.stdout

    device, power, latency = "toy-fpga-board", "power_mw@toy-fpga-board", "latency_ms@toy-fpga-board"
    hwpareto("device", "add", str(source / "fpga.yaml"))
    profile = json.loads(hwpareto("profile", "--device", device, "--space", "resnet-tiny", "--json"))
    assert (profile["layers"], profile["measured"], profile["failed"]) == (UNIVERSE_LAYERS, UNIVERSE_LAYERS, [])
    hwpareto("measure", "--device", device, "--space", "resnet-tiny", "-n", "40")
    trained = json.loads(
        hwpareto("train", "latency", "--device", device, "--space", "resnet-tiny", "--metric", "power_mw", "--json")
    )
    assert trained["name"] == "power_mw:resnet-tiny:toy-fpga-board"
    objectives = ("--objective", "blocks:max", "--objective", power, "--objective", latency)
    hwpareto("search", "--space", "resnet-tiny", *objectives, "--sampler", "mutate", "--trials", "200",
             "--population", "20", "--name", "fpga")  # fmt: skip
    front = hwpareto("front", "fpga", "--json")

    with Store.open(env["HWPARETO_STORE"]) as store:
        assert store.devices.get(device).kind == "fpga"
        lut = store.luts.get(device)
        assert len(lut) == UNIVERSE_LAYERS and (lut["latency_ms_mean"] > 0).all()
        rows = store.measurements.table(space="resnet-tiny", subject=device, metric="power_mw")
        assert len(rows) == 40 and set(rows["source"]) == {"simulated"}
        assert (rows["value"] > 300.0).all()  # the board's static power plus what its MACs draw
        search = store.searches.get("fpga")
        assert (search.status, search.params["sampler"]) == ("done", "mutate")
    members = json.loads(front)
    assert members["objectives"] == ["blocks", power, latency] and len(members["front"]) >= 2
    for r in members["front"]:
        assert r["blocks"] == sum(r["config"][f"d_{s}"] for s in range(3))
    check = subprocess.run(
        [sys.executable, "-c", CHECK_SEARCH, env["HWPARETO_STORE"], "fpga"],
        env=env, input=front, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-3000:]
    truth = json.loads(check.stdout)
    assert truth["trials"] == 200 and truth["mutants"] >= 0.9 * 180, truth
    # power read through the predictor trained on the backend's rows, latency as the LUT-sum of its layers
    predicted = [r[power] for r in members["front"]]
    assert np.allclose(predicted, truth["power_mw"], rtol=0.1), (predicted, truth["power_mw"])
    assert np.allclose([r[latency] for r in members["front"]], truth["latency_ms"], rtol=1e-9)
