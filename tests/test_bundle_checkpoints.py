"""Issue 28 (wrong results 3): the SuperNet checkpoint a space's quality came from is kept in the store
(``hwp_checkpoints``, migration 0003) and used by every export that names none; with no trained weights known an
export is refused unless ``--random-weights``; a recorded checkpoint that moved or changed is refused; the bundle
and the output say where the weights came from and whether batch norm was recalibrated (on what data)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import create_engine, inspect, text

from hwpareto.errors import InvalidValueError
from hwpareto.store import SchemaError, Store
from pareto.bundles._export import _sha256, record_checkpoint
from pareto.search._search import SearchSpec
from pareto.search._worker import run_now
from supernet import get_space
from supernet.training import save_checkpoint
from tests._cli import hw
from tests.test_store import schema_diffs

HEAD = "0004_device_kinds"


def checkpoint(path: Path, space: str, seed: int, data: str | None = "digits") -> Path:
    """A SuperNet checkpoint as train-supernet writes it (weights of a seeded init, unlike seed 0's)."""
    meta = {"space": space, "seed": 0} | ({"data": data} if data else {})
    save_checkpoint(get_space(space).supernet(seed=seed), path, meta)
    return path


def config_file(path: Path, space: str) -> Path:
    path.write_text(json.dumps(get_space(space).smallest().values))
    return path


# ---------------------------------------------------------------------------------------------------- store
def test_migration_0003_adds_checkpoints_to_a_0002_store(store_url: str) -> None:
    assert Store.upgrade(store_url, "0002_predictors_searches") == (None, "0002_predictors_searches")
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO hwp_devices (name, kind, spec_json, provenance_json) VALUES ('old', 'npu', '{}', '{}')")
        )
    engine.dispose()
    with pytest.raises(SchemaError, match="revision 0002_predictors_searches"):
        Store.open(store_url)
    assert Store.upgrade(store_url) == ("0002_predictors_searches", HEAD)
    with Store.open(store_url) as store:
        assert "hwp_checkpoints" in inspect(store.engine).get_table_names()
        assert store.devices.get("old").kind == "npu"  # nothing stored is lost
        assert store.checkpoints.trained("nb201") is None
    assert schema_diffs(store_url) == []


def test_checkpoint_repository_keeps_the_newest_evaluated_one(store: Store) -> None:
    a, b = "a" * 64, "b" * 64
    store.checkpoints.record("nb201", "/x/a.safetensors", a, {"data": "digits"}, recorded_by="export")
    assert store.checkpoints.trained("nb201") is None  # read by an export only: not what the quality came from
    store.checkpoints.record("nb201", "/x/a.safetensors", a, {"data": "digits"}, recorded_by="eval", evaluated=True)
    store.checkpoints.record("nb201", "/x/b.safetensors", b, {}, recorded_by="eval", evaluated=True)
    assert store.checkpoints.trained("nb201").sha256 == b  # type: ignore[union-attr]
    store.checkpoints.record("nb201", "/y/a.safetensors", a, {"data": "digits"}, recorded_by="export")
    trained = store.checkpoints.trained("nb201")
    assert trained is not None and trained.sha256 == b and trained.evaluated_at is not None
    (found,) = store.checkpoints.with_sha256(a)
    assert found.path == "/y/a.safetensors" and found.evaluated_at is not None  # moved, still evaluated
    assert found.meta == {"data": "digits"} and store.checkpoints.trained("mbv3") is None
    with pytest.raises(InvalidValueError, match=r"checkpoint\.sha256: expected 64 lower-case hex digits"):
        store.checkpoints.record("nb201", "/x", "not-a-hash", {}, recorded_by="export")


# ---------------------------------------------------------------------------------------------------- export
def test_no_trained_weights_known_is_refused_unless_random_weights(tmp_path: Path, sqlite_url: str) -> None:
    cfg = config_file(tmp_path / "c.json", "nb201")
    out = tmp_path / "b"
    _, err = hw("export-config", "nb201", cfg, "--out", out, "--weights", "--store", sqlite_url, ok=False)
    assert "space 'nb201': no trained SuperNet weights known" in err and "--random-weights" in err
    assert not out.exists()  # refused before anything is written
    stdout, _ = hw("export-config", "nb201", cfg, "--out", out, "--weights", "--random-weights", "--store", sqlite_url)
    assert "weights: an untrained SuperNet (random init, seed 0), as asked (--random-weights)" in stdout
    doc = json.loads((out / "config.json").read_text())
    assert doc["supernet"]["source"] == "random" and doc["supernet"]["checkpoint"] is None
    hw("export-config", "nb201", cfg, "--out", tmp_path / "c", "--store", sqlite_url)  # config only: no weights
    both = ["--checkpoint", tmp_path / "x.safetensors", "--random-weights"]
    _, err = hw(
        "export-config", "nb201", cfg, "--out", tmp_path / "d", "--weights", *both, "--store", sqlite_url, ok=False
    )
    assert "--random-weights: expected no trained weights named besides it, got '--checkpoint" in err


def _nb201_study(url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with Store.open(url) as store:
        run_now(store, SearchSpec("s", "nb201", ("params:max", "macs"), n_trials=8, population=4))


def test_export_uses_the_checkpoint_the_quality_was_evaluated_with(tmp_path: Path, sqlite_url: str) -> None:
    """Before: ``export`` without --checkpoint silently wrote an untrained SuperNet's weights."""
    _nb201_study(sqlite_url)
    _, err = hw("export", "s", "3", "--out", tmp_path / "r", "--store", sqlite_url, ok=False)
    assert "no trained SuperNet weights known" in err
    ckpt = checkpoint(tmp_path / "trained.safetensors", "nb201", seed=7)
    with Store.open(sqlite_url) as store:  # what eval-subnets --checkpoint records
        record_checkpoint(store, get_space("nb201"), ckpt, recorded_by="eval-subnets", evaluated=True)
    stdout, _ = hw("export", "s", "3", "--out", tmp_path / "b", "--no-weights", "--store", sqlite_url)
    stdout, _ = hw("export", "s", "3", "--out", tmp_path / "b", "--force", "--store", sqlite_url)
    assert "weights: the checkpoint the space's quality was evaluated with (recorded in the store)" in stdout
    assert "batch norm recalibrated on 500 training images of digits (seed 0)" in stdout
    doc = json.loads((tmp_path / "b" / "config.json").read_text())
    sn = doc["supernet"]
    assert sn["source"] == "recorded" and sn["checkpoint_sha256"] == _sha256(ckpt)
    assert sn["bn_recalibrated"] == {"data": "digits", "seed": 0, "images": 500}
    from supernet.data import load_data
    from supernet.training import extract_calibrated

    space = get_space("nb201")
    config = space.validate(doc["values"])
    net = space.supernet()
    net.load_state_dict(load_file(ckpt))
    expected = extract_calibrated(space, net, config, load_data("digits", preprocessing=space.preprocessing))
    got = load_file(tmp_path / "b" / "weights.safetensors")
    assert all(torch.equal(got[k], v) for k, v in expected.state_dict().items())


def test_a_recorded_checkpoint_that_moved_or_changed_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    ckpt = checkpoint(tmp_path / "trained.safetensors", "nb201", seed=7, data=None)
    recorded = _sha256(ckpt)
    with Store.open(sqlite_url) as store:
        record_checkpoint(store, get_space("nb201"), ckpt, recorded_by="eval-subnets", evaluated=True)
    cfg = config_file(tmp_path / "c.json", "nb201")
    stdout, _ = hw("export-config", "nb201", cfg, "--out", tmp_path / "ok", "--weights", "--store", sqlite_url)
    assert "batch norm not recalibrated (the checkpoint names no training data)" in stdout
    checkpoint(ckpt, "nb201", seed=8, data=None)  # retrained in place
    _, err = hw("export-config", "nb201", cfg, "--out", tmp_path / "b", "--weights", "--store", sqlite_url, ok=False)
    assert str(ckpt) in err and f"expected SHA-256 {recorded}" in err and f"got {_sha256(ckpt)}" in err
    ckpt.unlink()
    _, err = hw("export-config", "nb201", cfg, "--out", tmp_path / "b", "--weights", "--store", sqlite_url, ok=False)
    assert f"{ckpt} (SHA-256 {recorded}), is missing" in err and not (tmp_path / "b").exists()
    # an explicit --checkpoint still works, and is recorded (by hash) for verify-bundle
    other = checkpoint(tmp_path / "other.safetensors", "nb201", seed=9, data=None)
    hw(
        "export-config",
        "nb201",
        cfg,
        "--out",
        tmp_path / "b",
        "--weights",
        "--checkpoint",
        other,
        "--store",
        sqlite_url,
    )
    with Store.open(sqlite_url) as store:
        assert [r.path for r in store.checkpoints.with_sha256(_sha256(other))] == [str(other.resolve())]
        assert store.checkpoints.trained("nb201").sha256 == recorded  # type: ignore[union-attr]


@pytest.mark.slow
def test_eval_subnets_records_its_checkpoint_and_export_config_uses_it(tmp_path: Path, sqlite_url: str) -> None:
    """mbv3-digits ships a trained SuperNet; the user's own checkpoint, the one eval-subnets scored, wins."""
    ckpt = checkpoint(tmp_path / "mine.safetensors", "mbv3-digits", seed=5)
    args = ["--space", "mbv3-digits", "--data", "digits", "--checkpoint", ckpt, "-n", "2", "--store", sqlite_url]
    hw("eval-subnets", *args, "--out", tmp_path / "acc.csv")
    with Store.open(sqlite_url) as store:
        trained = store.checkpoints.trained("mbv3-digits")
    assert trained is not None and trained.sha256 == _sha256(ckpt) and trained.recorded_by == "eval-subnets"
    assert trained.meta["data"] == "digits" and trained.path == str(ckpt.resolve())
    cfg = config_file(tmp_path / "c.json", "mbv3-digits")
    stdout, _ = hw("export-config", "mbv3-digits", cfg, "--out", tmp_path / "b", "--weights", "--store", sqlite_url)
    assert "recorded in the store" in stdout and "batch norm recalibrated on 500 training images of digits" in stdout
    sn = json.loads((tmp_path / "b" / "config.json").read_text())["supernet"]
    assert sn["source"] == "recorded" and sn["checkpoint_sha256"] == _sha256(ckpt)
