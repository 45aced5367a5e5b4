"""Issue 28 (hardening, bundles): what ended in a traceback, a whole-file read or a silent pass is one ``error:``
line naming the file or field, the limit and the value, with exit code 1: a 300 MB ``config.json`` (refused before it
is read), one nested 100,000 deep or holding a 5,000-digit integer, a 5,000-character name in ``files``, a
symlinked ``weights.safetensors`` or ``config.json``, ONNX external data outside the bundle, and a full disk while
``export`` / ``export-config`` write (simulated with ``RLIMIT_FSIZE`` in a child process: writes past the limit fail
with EFBIG, as they fail with ENOSPC on a full disk; the folder is then removed and the store unchanged)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.store import Store
from pareto.bundles._export import _sha256, export_subnet
from supernet import get_space

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
SPACE = get_space("nb201")


def refused(*args: object) -> str:
    """``hwpareto ARGS`` must exit 1 with one ``error:`` line on stderr (returned), no traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, f"expected exit 1, got {result.exit_code}: {result.output}{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified nb201 bundle (weights and ONNX of an untrained SuperNet, asked for)."""
    root = tmp_path_factory.mktemp("good")
    return export_subnet(SPACE, SPACE.smallest(), root / "b", weights=True, onnx=True, random_weights=True).directory


@pytest.fixture
def bundle(good: Path, tmp_path: Path) -> Path:
    shutil.copytree(good, tmp_path / "b")
    return tmp_path / "b"


def rewrite(bundle: Path, **changes: Any) -> None:
    doc = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps(doc | changes))


CHILD = """
import json, sys
from typer.testing import CliRunner
from hwpareto.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
# this process's own peak (VmHWM): ru_maxrss also counts the parent's peak, which the kernel carries over exec
status = open("/proc/self/status").read()
peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"rc": result.exit_code, "stderr": result.stderr, "mb": peak_mb}))
"""


def in_a_child(*args: object) -> dict[str, Any]:
    """``hwpareto ARGS`` in a fresh Python: exit code, stderr and peak resident memory (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_300_mb_config_json_is_refused_before_it_is_read(bundle: Path) -> None:
    (bundle / "config.json").write_text("{}")
    baseline = in_a_child("verify-bundle", bundle)
    assert baseline["rc"] == 1
    os.truncate(bundle / "config.json", 300 * 1024 * 1024)  # sparse: 300 MB of NULs, no disk used
    result = in_a_child("verify-bundle", bundle)
    assert result["rc"] == 1 and "config.json: expected at most 1,048,576 bytes, got '314,572,800 bytes'" in str(
        result["stderr"]
    )
    assert result["mb"] < baseline["mb"] + 100  # read whole (and decoded), it cost 600 MB more


def test_deep_nesting_and_huge_integers_in_config_json(bundle: Path) -> None:
    (bundle / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "expected at most 64 levels of nesting, got more" in refused("verify-bundle", bundle)
    (bundle / "config.json").write_text('{"space": "nb201", "n": 1' + "0" * 4_999 + "}")
    assert "expected integers of at most 100 digits, got 5,000 digits" in refused("verify-bundle", bundle)


def test_a_5000_character_name_in_files(bundle: Path) -> None:
    doc = json.loads((bundle / "config.json").read_text())
    rewrite(bundle, files=doc["files"] | {"a" * 5_000: "0" * 64})
    line = refused("verify-bundle", bundle)
    assert "config.json files name: expected weights.safetensors, model.onnx" in line and "(5,000 characters)" in line
    assert len(line) < 400


def test_symlinks_in_a_bundle_are_refused(bundle: Path, tmp_path: Path) -> None:
    shutil.move(bundle / "weights.safetensors", tmp_path / "elsewhere.safetensors")
    (bundle / "weights.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")  # same bytes, same hash
    assert "weights.safetensors is a symbolic link" in refused("verify-bundle", bundle)
    (bundle / "weights.safetensors").unlink()
    shutil.move(tmp_path / "elsewhere.safetensors", bundle / "weights.safetensors")
    shutil.move(bundle / "config.json", tmp_path / "config.json")
    (bundle / "config.json").symlink_to(tmp_path / "config.json")
    assert "config.json is a symbolic link" in refused("verify-bundle", bundle)


@pytest.mark.parametrize("location", ["/etc/passwd", "../outside.data", "model.onnx.data"])
def test_onnx_external_data_outside_the_bundle_is_refused_before_onnxruntime(bundle: Path, location: str) -> None:
    import onnx

    model = onnx.load(str(bundle / "model.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        tensor.external_data.add(key=key, value=value)
    onnx.save_model(model, str(bundle / "model.onnx"))
    files = json.loads((bundle / "config.json").read_text())["files"]
    rewrite(bundle, files=files | {"model.onnx": _sha256(bundle / "model.onnx")})
    line = refused("verify-bundle", bundle)
    assert f"model.onnx tensor {tensor.name!r} external data location: expected none" in line
    assert repr(location) in line


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from hwpareto.cli import main
sys.argv = ["hwpareto", *sys.argv[2:]]
main()
"""


def full_disk(limit_bytes: int, *args: object) -> str:
    """``hwpareto ARGS`` in a child whose files may not grow past ``limit_bytes``: exit 1, one line (returned)."""
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(limit_bytes), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_a_full_disk_while_exporting_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    from pareto.search._search import SearchSpec
    from pareto.search._worker import run_now

    with Store.open(sqlite_url) as store:  # created (and its study run) before the limit
        run_now(store, SearchSpec("s", "nb201", ("params:max", "macs"), n_trials=4, population=4))
    (tmp_path / "c.json").write_text(json.dumps(SPACE.largest().values))  # 6 MB of weights, 6 MB of ONNX
    common = ["--random-weights", "--store", sqlite_url]
    line = full_disk(1_500_000, "export-config", "nb201", tmp_path / "c.json", "--out", tmp_path / "w", "--weights",
                     *common)  # fmt: skip
    assert line == f"error: {tmp_path / 'w' / 'weights.safetensors'}: cannot write (File too large)"
    line = full_disk(1_500_000, "export-config", "nb201", tmp_path / "c.json", "--out", tmp_path / "o", "--onnx",
                     *common)  # fmt: skip
    assert line == f"error: {tmp_path / 'o' / 'model.onnx'}: cannot write (File too large)"
    line = full_disk(300_000, "export", "s", "0", "--out", tmp_path / "e", *common)
    assert "weights.safetensors: cannot write (File too large)" in line
    assert not any((tmp_path / name).exists() for name in ("w", "o", "e"))  # no half-written bundle left
    with Store.open(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM hwp_exports").scalar() == 0
