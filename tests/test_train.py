"""SuperNet training (sandwich rule, in-place distillation), dataset loaders and the shipped demo SuperNets/tables."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError, InvalidValueError
from pareto import Store
from pareto._export import load_supernet
from pareto._importer import ColumnMap, import_table
from supernet import get_space
from supernet.data import (
    SPLITS,
    ImageData,
    TextData,
    cifar10_batches,
    image_folder,
    load_data,
    sklearn_digits,
    stdlib_corpus,
    text_file,
)
from supernet.training import (
    _task,
    evaluate_subnet,
    evaluate_subnets,
    extract_calibrated,
    read_accuracy_table,
    save_checkpoint,
    train_supernet,
)

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
DEMOS = [("mbv3-digits", "digits-affine", 396), ("gpt-stdlib", "stdlib", 104)]


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return sklearn_digits()


@pytest.fixture(scope="module")
def stdlib() -> TextData:
    return stdlib_corpus()


def _keys(data: ImageData | TextData) -> list[set[str]]:
    return [set(data.split(s).keys) for s in SPLITS]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
@pytest.mark.parametrize(("space_name", "steps", "batch"), [("mbv3-digits", 25, 32), ("gpt-stdlib", 12, 8)])
def test_sandwich_steps_reduce_loss(
    space_name: str, steps: int, batch: int, digits: ImageData, stdlib: TextData
) -> None:
    space = get_space(space_name)
    data = digits if space_name == "mbv3-digits" else stdlib
    net = space.supernet(seed=0)
    configs = [space.largest(), space.smallest()]
    before = evaluate_subnets(space, net, configs, data, split="train")
    seen: list[int] = []
    report = train_supernet(
        space,
        net,
        data,
        steps=steps,
        batch_size=batch,
        lr=3e-3,
        n_random=1,
        seed=0,
        progress=lambda done, total, info: seen.append(done),
    )
    after = evaluate_subnets(space, net, configs, data, split="train")
    assert seen == list(range(1, steps + 1)) and report.steps == steps
    assert after[0]["loss"] < before[0]["loss"] - 0.2  # the largest SubNet learns from the labels
    assert after[1]["loss"] < before[1]["loss"]  # the smallest one from the largest's soft targets


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
def test_checkpoint_round_trip_and_config_errors(digits: ImageData, tmp_path: Path) -> None:
    space = get_space("mbv3-digits")
    net, again = space.supernet(seed=1), space.supernet(seed=1)
    for model in (net, again):
        train_supernet(space, model, digits, steps=3, batch_size=16, n_random=1, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    # the SuperNet's own BN statistics end up those of the largest SubNet; any SubNet extracted with extract_calibrated
    # scores what the tables say
    task = _task(space, digits, torch.device("cpu"))
    for cfg, module in (
        (space.largest(), space.extract(net, space.largest()).eval()),
        (space.smallest(), extract_calibrated(space, net, space.smallest(), digits)),
    ):
        with torch.no_grad():
            hits = sum(int((module(x).argmax(-1) == y).sum()) for x, y in task.eval_batches("val", cfg))
        assert 100 * hits / len(digits.val) == pytest.approx(evaluate_subnet(space, net, cfg, digits)["acc_pct"])
    save_checkpoint(net, tmp_path / "ckpt.safetensors", {"steps": 3})
    loaded = load_supernet(space, tmp_path / "ckpt.safetensors")
    configs = [space.smallest(), space.sample(np.random.default_rng(0))]
    assert evaluate_subnets(space, loaded, configs, digits) == evaluate_subnets(space, net, configs, digits)
    with pytest.raises(InvalidValueError, match=r"mbv3-digits\.r: expected one of 24, 28, 32, got 64"):
        evaluate_subnet(space, net, space.largest().values | {"r": 64}, digits)
    with pytest.raises(InvalidValueError, match="text corpus"):
        evaluate_subnet(
            get_space("gpt-stdlib"), get_space("gpt-stdlib").supernet(), get_space("gpt-stdlib").largest(), digits
        )
    with pytest.raises(InvalidValueError, match="steps"):
        train_supernet(space, net, digits, steps=0)
    with pytest.raises(InvalidValueError, match=r"largest_only: expected an integer in \[0, steps = 2\)"):
        train_supernet(space, net, digits, steps=2, largest_only=2)


def test_digits_and_stdlib_splits_are_deterministic_and_disjoint(digits: ImageData, stdlib: TextData) -> None:
    for data, other in ((digits, sklearn_digits()), (stdlib, stdlib_corpus())):
        train, val, test = _keys(data)
        assert not (train & val or train & test or val & test)
        assert _keys(data) == _keys(other)
        assert all(len(data.split(s)) > 0 for s in SPLITS)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert digits.train.images.shape[1:] == (3, 8, 8) and digits.train.images.abs().max() <= 1.0
    assert sklearn_digits(seed=1).val.keys != digits.val.keys
    hard = sklearn_digits(affine=True, copies=2, resolution=16)
    assert hard.val.images.shape == (2 * len(digits.val), 3, 16, 16) and hard.train.keys == digits.train.keys
    assert {k.split("@")[0] for k in hard.test.keys} == set(digits.test.keys)
    assert torch.equal(hard.val.images, sklearn_digits(affine=True, copies=2, resolution=16).val.images)
    assert stdlib.train.tokens.dtype == torch.int64 and int(stdlib.train.tokens.max()) < 256
    with pytest.raises(InvalidValueError, match="--data: expected digits, digits-affine, stdlib"):
        load_data("mnist")


def test_text_file_and_image_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(bytes(range(32, 127)) * 2000)
    text = text_file([tmp_path / "a.txt"])
    assert sum(len(text.split(s)) for s in SPLITS) == 95 * 2000
    assert not set(text.train.keys) & set(text.val.keys)
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / cls / f"{i}.png")
    data = image_folder(tmp_path / "img", resolution=16)
    assert data.classes == ("cat", "dog") and data.train.images.shape[1:] == (3, 16, 16)
    assert sum(len(data.split(s)) for s in SPLITS) == 24
    assert _keys(data) == _keys(image_folder(tmp_path / "img", resolution=16))
    assert not set(data.train.keys) & set(data.test.keys)


def _cifar_dir(root: Path, payload: object | None = None) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "test_batch"):
        batch = {
            b"batch_label": b"x",
            b"labels": [int(v) for v in rng.integers(0, 10, 40)],
            b"data": rng.integers(0, 255, (40, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(40)],
        }
        (root / name).write_bytes(pickle.dumps(payload if payload is not None else batch, protocol=2))
    return root


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_cifar_batches_load_without_executing_pickles(tmp_path: Path) -> None:
    data = cifar10_batches(_cifar_dir(tmp_path / "ok"))
    assert len(data.test) == 40 and len(data.train) + len(data.val) == 40
    assert data.train.images.shape[1:] == (3, 32, 32) and data.classes[0] == "airplane"
    marker = tmp_path / "pwned"
    bad = _cifar_dir(tmp_path / "bad", {b"data": _Exploit(marker)})
    with pytest.raises(HwparetoError, match=r"refers to (posix|os|nt)\.system: only numpy arrays.*nothing executed"):
        cifar10_batches(bad)
    assert not marker.exists()
    with pytest.raises(InvalidValueError, match="CIFAR-10 folder"):
        cifar10_batches(tmp_path)


@pytest.mark.parametrize(("space_name", "dataset", "n_layers"), DEMOS)
def test_demo_spaces_have_small_layer_universes(space_name: str, dataset: str, n_layers: int) -> None:
    space = get_space(space_name)
    assert len(space.layer_universe()) == n_layers
    net = space.supernet()
    for cfg in (space.largest(), space.smallest(), space.sample(np.random.default_rng(0))):
        sub = space.extract(net, cfg)
        assert sum(p.numel() for p in sub.parameters()) == space.params(cfg)


@pytest.mark.parametrize(("space_name", "dataset", "n_layers"), DEMOS)
def test_shipped_accuracy_table_imports_and_spreads(
    space_name: str, dataset: str, n_layers: int, sqlite_url: str
) -> None:
    space = get_space(space_name)
    table, ckpt = DEMO / f"{space_name}_accuracy.csv", DEMO / f"{space_name}.safetensors"
    assert ckpt.stat().st_size < 5 * 2**20
    load_supernet(space, ckpt)  # strict: every tensor of the space's SuperNet, nothing else
    report = import_table(
        Store.open(sqlite_url),
        table,
        space=space,
        columns=[ColumnMap("val_acc_pct", dataset)],
        subject_kind="dataset",
        metric="val_acc_pct",
        source="evaluated",
    )
    assert report.subnets >= 500 and report.written.inserted == report.rows
    acc = np.array([v for _, v in read_accuracy_table(table, space, "val_acc_pct")])
    assert acc.max() - acc.min() > 10 and np.median(acc) < acc.max()


@pytest.mark.slow
@pytest.mark.parametrize(("space_name", "dataset", "n_layers"), DEMOS)
def test_eval_command_reproduces_the_shipped_table(
    space_name: str, dataset: str, n_layers: int, tmp_path: Path
) -> None:
    space = get_space(space_name)
    out = tmp_path / "table.csv"
    result = CliRunner().invoke(
        app,
        [
            "eval-subnets",
            "--space",
            space_name,
            "--checkpoint",
            str(DEMO / f"{space_name}.safetensors"),
            "--data",
            dataset,
            "-n",
            "3",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    fresh = read_accuracy_table(out, space, "val_acc_pct")
    shipped = read_accuracy_table(DEMO / f"{space_name}_accuracy.csv", space, "val_acc_pct")[:3]
    assert [c.key for c, _ in fresh] == [c.key for c, _ in shipped]
    assert np.allclose([v for _, v in fresh], [v for _, v in shipped], atol=0.5)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
def test_other_image_spaces_train_and_heads_must_match(digits: ImageData) -> None:
    nb201 = get_space("nb201")  # no resolution dimension: images go in at its fixed 32 px
    net = nb201.supernet(seed=0)
    assert train_supernet(nb201, net, digits, steps=1, batch_size=8, n_random=1).steps == 1
    assert 0 <= evaluate_subnet(nb201, net, nb201.smallest(), digits)["acc_pct"] <= 100
    mbv3 = get_space("mbv3")
    with pytest.raises(InvalidValueError, match=r"dataset digits classes: expected 1000 .*got 10"):
        train_supernet(mbv3, mbv3.supernet(), digits, steps=1, batch_size=2)
