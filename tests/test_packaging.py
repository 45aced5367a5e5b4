"""The distribution installs: the wheel holds every module and every shipped data file, declares the built-in
plugins and the console script, and an installed copy finds its data without the checkout."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwpareto", "supernet", "profilers", "predictors", "pareto", "dashboard")


def _source_files(folder: Path, suffixes: tuple[str, ...]) -> set[Path]:
    return {
        p.relative_to(ROOT)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (no build/ or egg-info left in the tree)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", ".*", "*.egg-info")
    for name in (*PACKAGES, "data"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (built,) = out.glob("hwpareto-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = set().union(*(_source_files(ROOT / p, (".py", ".mako")) for p in PACKAGES))
    missing = sorted(str(m) for m in modules if str(m) not in names)
    assert not missing, f"modules missing from the wheel: {missing}"
    shipped = _source_files(ROOT / "data", (".py", ".md", ".csv", ".yaml", ".safetensors"))
    assert len(shipped) > 20
    missing = sorted(str(f) for f in shipped if "hwpareto/" + str(f) not in names)
    assert not missing, f"data files missing from the wheel (as hwpareto/data/...): {missing}"


def test_wheel_declares_plugins_and_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (ep_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(archive.read(ep_name).decode())
    assert parser["console_scripts"]["hwpareto"].strip() == "hwpareto.cli:main"
    assert {"nb201", "mbv3", "gpt", "mbv3-digits", "gpt-stdlib"} <= set(parser["hwpareto.spaces"])
    assert {"torch-cpu", "torch-cuda", "zigzag", "reram"} <= set(parser["hwpareto.backends"])
    assert {"torch", "onnxruntime"} <= set(parser["hwpareto.runtimes"])
    assert {"nsga2", "random", "nsga3", "tpe"} <= set(parser["hwpareto.strategies"])


@pytest.mark.slow
def test_installed_copy_reads_its_own_data(wheel: Path, tmp_path: Path) -> None:
    """Installed into a bare folder and run from elsewhere, the package reads presets, LUTs and the demo
    checkpoint from the installed copy, not from the checkout."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import json, hwpareto.resources as r, profilers, pareto.bundles._export as e\nfrom supernet import get_space\n"
        "print(json.dumps({'data': str(r.data_path()), 'presets': sorted(profilers.presets()),\n"
        "  'lut': r.data_path('luts', 'npu-tpu.csv').is_file(),\n"
        "  'ckpt': str(e.shipped_checkpoint(get_space('mbv3-digits')))}))"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["data"].startswith(str(site))
    assert out["ckpt"].startswith(str(site))
    assert out["lut"] is True
    assert {"npu-tpu", "cim-reram"} <= set(out["presets"])
