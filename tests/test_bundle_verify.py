"""Issue 28 (security 1): ``verify-bundle`` checked only what the bundle's own ``config.json`` listed, so weights
×10 or another SubNet's ONNX passed as "verified" once ``config.json`` dropped the file from ``files``, emptied
``files`` or set ``"supernet": null``. Now every file in the folder must be listed with its hash, a bundle with
weights or ONNX must name its SuperNet (unless ``--hashes-only``), and outputs are compared on two inputs."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hwpareto.cli import app
from pareto.bundles._export import _sha256, export_subnet
from supernet import get_space

runner = CliRunner()
SPACE = get_space("nb201")


def verify(bundle: Path, *extra: str, ok: bool) -> str:
    """``hwpareto verify-bundle``: exit 0, or exit 1 with one ``error:`` line (returned)."""
    result = runner.invoke(app, ["verify-bundle", str(bundle), *extra])
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}{result.exception!r}"
        return result.stdout
    assert result.exit_code == 1, f"expected exit 1, got {result.exit_code}: {result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A verified nb201 bundle (weights and ONNX of an untrained SuperNet, asked for) and another SubNet's."""
    root = tmp_path_factory.mktemp("bundles")
    good = export_subnet(SPACE, SPACE.smallest(), root / "good", weights=True, onnx=True, random_weights=True)
    other = export_subnet(SPACE, SPACE.largest(), root / "other", weights=True, onnx=True, random_weights=True)
    return good.directory, other.directory


def weights_x10(bundle: Path, _other: Path) -> None:
    state = load_file(bundle / "weights.safetensors")
    scaled = {k: v * 10 if v.is_floating_point() else v for k, v in state.items()}
    save_file(scaled, str(bundle / "weights.safetensors"))


def other_onnx(bundle: Path, other: Path) -> None:
    shutil.copyfile(other / "model.onnx", bundle / "model.onnx")


def edit(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads((bundle / "config.json").read_text())
    change(doc)
    (bundle / "config.json").write_text(json.dumps(doc))


def drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["files"].pop(name)


def empty_files(doc: dict[str, Any]) -> None:
    doc["files"] = {}


def rehash_and(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Record every file's new hash (a consistent-looking bundle), then ``change``."""

    def apply(bundle: Path) -> None:
        def both(doc: dict[str, Any]) -> None:
            doc["files"] = {name: _sha256(bundle / name) for name in doc["files"]}
            change(doc)

        edit(bundle, both)

    return apply


def no_supernet(doc: dict[str, Any]) -> None:
    doc["supernet"] = None


def no_supernet_key(doc: dict[str, Any]) -> None:
    del doc["supernet"]


def claim_recalibration(doc: dict[str, Any]) -> None:
    doc["supernet"]["bn_recalibrated"] = {"data": "digits", "seed": 0, "images": 500}


VARIANTS: dict[str, tuple[list[Callable[[Path, Path], None]], Callable[[Path], None], str]] = {
    "weights x10, dropped from files": (
        [weights_x10],
        lambda b: edit(b, drop("weights.safetensors")),
        "weights.safetensors is not listed in config.json files",
    ),
    "weights x10, files emptied": ([weights_x10], lambda b: edit(b, empty_files), "is not listed in config.json"),
    "weights x10, supernet null": ([weights_x10], rehash_and(no_supernet), "names no SuperNet (supernet: null)"),
    "other ONNX, dropped from files": (
        [other_onnx],
        lambda b: edit(b, drop("model.onnx")),
        "model.onnx is not listed in config.json files",
    ),
    "other ONNX, files emptied": ([other_onnx], lambda b: edit(b, empty_files), "is not listed in config.json"),
    "other ONNX, supernet null": ([other_onnx], rehash_and(no_supernet), "names no SuperNet"),
    "both, no supernet key": ([weights_x10, other_onnx], rehash_and(no_supernet_key), "names no SuperNet"),
    # what config.json says of the weights is checked too: a batch-norm recalibration that never happened
    "claims a BN recalibration": ([], rehash_and(claim_recalibration), "supernet.bn_recalibrated: expected what"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_tampered_bundle_is_refused(bundles: tuple[Path, Path], tmp_path: Path, variant: str) -> None:
    good, other = bundles
    bundle = tmp_path / "b"
    shutil.copytree(good, bundle)
    verify(bundle, ok=True)
    tamper, edit_config, message = VARIANTS[variant]
    for change in tamper:
        change(bundle, other)
    edit_config(bundle)
    assert message in verify(bundle, ok=False)


def test_hashes_only_checks_every_file_and_nothing_else(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    good, other = bundles
    bundle = tmp_path / "b"
    shutil.copytree(good, bundle)
    weights_x10(bundle, other)
    rehash_and(no_supernet)(bundle)
    assert "hashes only (--hashes-only)" in verify(bundle, "--hashes-only", ok=True)  # asked for: no comparison
    (bundle / "notes.txt").write_text("hello")
    assert "notes.txt is not listed" in verify(bundle, "--hashes-only", ok=False)
    (bundle / "notes.txt").unlink()
    (bundle / "model.onnx").unlink()
    assert "model.onnx is missing (listed in config.json)" in verify(bundle, "--hashes-only", ok=False)
    # a config-only export (no weights, no ONNX, no supernet section) verifies without the option
    bare = export_subnet(SPACE, SPACE.smallest(), tmp_path / "bare").directory
    assert "config only" in verify(bare, ok=True)


def test_an_onnx_graph_of_one_batch_size_fails_the_second_input(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    """Compared on batch 3 alone, a graph traced without a dynamic batch axis at batch 3 matched exactly."""
    from pareto.bundles._export import load_subnet

    good, _ = bundles
    bundle = tmp_path / "b"
    shutil.copytree(good, bundle)
    _, config, module = load_subnet(bundle)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
        warnings.simplefilter("ignore")
        x = SPACE.dummy_input(config, batch=3, seed=1)
        torch.onnx.export(module, (x,), str(bundle / "model.onnx"), dynamo=False, opset_version=17)
    rehash_and(lambda doc: None)(bundle)
    err = verify(bundle, ok=False)
    assert "model.onnx: onnxruntime cannot run it" in err
