"""The "Bring your own SuperNet" walk: examples/custom-supernet installed into a temporary folder (never into this
environment) and its walk.sh run end to end against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwpareto.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom-supernet"
UNIVERSE_LAYERS = 189


@pytest.mark.slow
def test_custom_supernet_walk(tmp_path: Path) -> None:
    hwpareto = Path(sys.executable).with_name("hwpareto")
    assert hwpareto.is_file(), f"the hwpareto command is not next to {sys.executable}"
    source, site, walk_dir = tmp_path / "src", tmp_path / "site", tmp_path / "walk"
    # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target"]
    install = subprocess.run([*pip, str(site), str(source)], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "HWPARETO": str(hwpareto),
        "PYTHON": sys.executable,
        "WALK_DIR": str(walk_dir),
    }
    env.pop("HWPARETO_STORE", None)
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
