"""Issue 28 (wrong results 4): bundles are relocatable. ``config.json`` names the SuperNet by content hash (the file
or folder name only as a hint) and holds no path of the exporting machine; ``verify-bundle`` finds the SuperNet by
that hash (``--checkpoint``, the shipped checkpoints and model folders, the store's recorded checkpoints and stored
spaces) from any folder, and says which hash it could not find; every file of a bundle is 0644."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from pareto.bundles._export import _sha256
from supernet import get_space
from supernet.training import save_checkpoint
from tests._cli import hw
from tests.test_llama_export import _model_folder


def modes(bundle: Path) -> dict[str, int]:
    return {p.relative_to(bundle).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in bundle.rglob("*")}


def no_machine_paths(bundle: Path, *paths: Path) -> None:
    text = (bundle / "config.json").read_text()
    for path in paths:
        assert str(path.resolve()) not in text and str(path) not in text


def test_bundle_verifies_moved_and_from_another_folder(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = get_space("nb201")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    save_checkpoint(space.supernet(seed=7), work / "trained.safetensors", {"space": "nb201"})
    (work / "c.json").write_text(json.dumps(space.smallest().values))
    monkeypatch.chdir(work)  # relative paths, as a user types them
    hw("export-config", "nb201", "c.json", "--out", "b", "--weights", "--onnx", "--checkpoint", "trained.safetensors",
       "--store", sqlite_url)  # fmt: skip
    no_machine_paths(work / "b", work)
    doc = json.loads((work / "b" / "config.json").read_text())
    digest = _sha256(work / "trained.safetensors")
    assert doc["supernet"]["checkpoint"] == "trained.safetensors" and doc["supernet"]["checkpoint_sha256"] == digest
    assert modes(work / "b") == dict.fromkeys(["config.json", "weights.safetensors", "model.onnx"], 0o644)
    shutil.move(work / "b", elsewhere / "moved")
    monkeypatch.chdir(tmp_path)
    out, _ = hw("verify-bundle", elsewhere / "moved", "--store", sqlite_url)  # found by hash in the store
    assert "verified" in out
    # the checkpoint moved too: the store's path is stale, so it is named by hand
    shutil.move(work / "trained.safetensors", elsewhere / "renamed.safetensors")
    _, err = hw("verify-bundle", elsewhere / "moved", "--store", sqlite_url, ok=False)
    assert f"checkpoint with SHA-256 {digest}" in err and "'trained.safetensors'" in err and "--checkpoint" in err
    hw("verify-bundle", elsewhere / "moved", "--checkpoint", elsewhere / "renamed.safetensors", "--store", sqlite_url)
    save_checkpoint(space.supernet(seed=8), tmp_path / "other.safetensors", {"space": "nb201"})
    _, err = hw("verify-bundle", elsewhere / "moved", "--checkpoint", tmp_path / "other.safetensors", ok=False)
    assert f"SHA-256 {digest}" in err and _sha256(tmp_path / "other.safetensors") in err
    _, err = hw("verify-bundle", elsewhere / "moved", "--checkpoint", tmp_path / "absent.safetensors", ok=False)
    assert "got 'no readable checkpoint'" in err


@pytest.mark.slow
def test_a_shipped_checkpoints_bundle_names_no_path(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwpareto.resources import data_path

    space = get_space("mbv3-digits")
    (tmp_path / "c.json").write_text(json.dumps(space.smallest().values))
    hw("export-config", "mbv3-digits", tmp_path / "c.json", "--out", tmp_path / "b", "--weights", "--store", sqlite_url)
    no_machine_paths(tmp_path / "b", data_path("demo"), tmp_path)
    sn = json.loads((tmp_path / "b" / "config.json").read_text())["supernet"]
    assert sn["source"] == "shipped" and sn["checkpoint"] == "mbv3-digits.safetensors"
    assert sn["bn_recalibrated"]["data"] == "digits-affine"
    shutil.move(tmp_path / "b", tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    hw("verify-bundle", ".", "--store", f"sqlite:///{tmp_path / 'empty.db'}")  # a store that knows nothing


def test_an_llm_bundle_finds_its_model_folder_by_hash(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = _model_folder(tmp_path)
    hw("space", "from-hf", folder, "--name", "tf", "--uniform", "--prompt-len", "12", "--gen-len", "8",
       "--store", sqlite_url)  # fmt: skip
    from hwpareto.store import Store

    with Store.open(sqlite_url) as store:
        sp = store.spaces.get("tf")
    (tmp_path / "c.json").write_text(json.dumps(sp.smallest().values))
    hw("export-config", "tf", tmp_path / "c.json", "--out", tmp_path / "b", "--weights", "--store", sqlite_url)
    no_machine_paths(tmp_path / "b", folder, tmp_path)
    doc = json.loads((tmp_path / "b" / "config.json").read_text())
    assert doc["supernet"]["folder"] == "hf" and doc["supernet"]["weights_sha256"] == sp.weights_sha256  # type: ignore[attr-defined]
    assert doc["space_definition"]["path"] is None and doc["space_definition"]["weights_sha256"] is None
    assert set(modes(tmp_path / "b").values()) == {0o644, 0o755} and modes(tmp_path / "b")["model"] == 0o755
    shutil.move(tmp_path / "b", tmp_path / "moved")
    monkeypatch.chdir(folder)
    hw("verify-bundle", tmp_path / "moved", "--store", sqlite_url)  # the stored space's folder, hash checked
    _, err = hw("verify-bundle", tmp_path / "moved", "--store", f"sqlite:///{tmp_path / 'empty.db'}", ok=False)
    assert f"model folder with SHA-256 {sp.weights_sha256}" in err and "--checkpoint FOLDER" in err  # type: ignore[attr-defined]
    shutil.move(folder, tmp_path / "copied")
    hw("verify-bundle", tmp_path / "moved", "--checkpoint", tmp_path / "copied", "--store", sqlite_url)
