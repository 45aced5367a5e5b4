"""SuperNet training (sandwich rule, in-place distillation), dataset loaders and the shipped demo SuperNets/tables."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store
from pareto._importer import ColumnMap, import_table
from pareto.bundles._export import load_supernet
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
    Checkpointing,
    TrainingStopped,
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


# ---------------------------------------------------------------------------------------------------- resumable
def _stop_at(step: int) -> Callable[[int, int, dict[str, float]], None]:
    """A progress callback that sends this process SIGTERM once ``step`` steps are done (as a scheduler's timeout
    would, but at a known step)."""

    def progress(done: int, total: int, info: dict[str, float]) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return progress


def _tiny_llama(root: Path) -> Any:
    """A Llama space from a random two-layer model (64 positions, byte vocabulary, tied embeddings: shared tensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from supernet.llama import space_from_hf

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        vocab_size=260,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(root)
    return space_from_hf(root, "tiny-resume", prompt_len=[16], gen_len=[8], batch=[1], importance=False)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["mbv3-digits", "gpt-stdlib", "llama"])
def test_stopped_and_resumed_training_equals_uninterrupted(
    space_name: str, digits: ImageData, stdlib: TextData, tmp_path: Path
) -> None:
    """K steps straight and K/2 + SIGTERM + K/2 resumed give the same weights bit for bit (CPU, one thread); a
    580 s run stopped by a timeout saved nothing before."""
    if space_name == "llama":
        space, data, seq_len = _tiny_llama(tmp_path / "m"), stdlib, 16
    else:
        space, data, seq_len = get_space(space_name), digits if space_name == "mbv3-digits" else stdlib, None
    options: dict[str, Any] = {"steps": 6, "batch_size": 8, "n_random": 1, "seed": 3, "seq_len": seq_len}
    straight = space.supernet(seed=3)
    expected = train_supernet(space, straight, data, **options)
    folder, handler = tmp_path / "out.resume", signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM after step 3 of 6: state saved in .*step-000000003"):
        train_supernet(
            space, space.supernet(seed=3), data, **options, checkpoints=Checkpointing(folder), progress=_stop_at(3)
        )
    assert [p.name for p in folder.iterdir()] == ["step-000000003"]
    assert signal.getsignal(signal.SIGTERM) == handler  # the run's own handler is gone with it
    resumed = space.supernet(seed=3)
    report = train_supernet(space, resumed, data, **options, checkpoints=Checkpointing(folder, every_steps=2))
    assert report.resumed_from == 3 and report.final_losses == expected.final_losses
    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []
    assert [p.name for p in folder.iterdir()] == ["step-000000006"]  # older states removed
    with pytest.raises(HwparetoError, match="was saved by a run with steps 6, this run has 7: rerun with the same"):
        train_supernet(
            space, space.supernet(seed=3), data, **(options | {"steps": 7}), checkpoints=Checkpointing(folder)
        )


def test_seq_len_is_bounded_by_the_model_context(digits: ImageData, stdlib: TextData, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    gpt = get_space("gpt-stdlib")
    assert _task(gpt, stdlib, torch.device("cpu")).sample(gen, 2)[0].shape == (2, 128)
    assert _task(gpt, stdlib, torch.device("cpu"), 32).sample(gen, 2)[0].shape == (2, 32)
    with pytest.raises(InvalidValueError, match=r"seq_len: expected an integer in \[2, 128\] \(the context of space "
                       r"'gpt-stdlib': its largest seq_len\), got 129"):  # fmt: skip
        _task(gpt, stdlib, torch.device("cpu"), 129)
    llama = _tiny_llama(tmp_path / "m")
    assert _task(llama, stdlib, torch.device("cpu"), 64).sample(gen, 2)[0].shape == (2, 64)
    with pytest.raises(InvalidValueError, match=r"\[2, 64\] \(the context of space 'tiny-resume': max_position_emb"):
        _task(llama, stdlib, torch.device("cpu"), 65)
    with pytest.raises(InvalidValueError, match=r"seq_len: expected none for image data \(digits\), got 16"):
        _task(get_space("mbv3-digits"), digits, torch.device("cpu"), 16)
    result = CliRunner().invoke(
        app, ["train-supernet", "--space", "gpt-stdlib", "--data", "stdlib", "--seq-len", "500", "--steps", "1",
              "--out", str(tmp_path / "g.safetensors")]
    )  # fmt: skip
    assert result.exit_code == 1 and result.stderr.strip().endswith(
        "(the context of space 'gpt-stdlib': its largest seq_len), got 500"
    ), result.output
    assert not (tmp_path / "g.safetensors").exists()


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
def test_train_supernet_stopped_by_sigterm_continues_where_it_stopped(tmp_path: Path) -> None:
    """``train-supernet`` killed by SIGTERM mid-run saves its state and exits 143; the same command continues from
    it (saying so), writes --out equal bit for bit to an uninterrupted run's and removes the state."""
    from safetensors.torch import load_file

    def args(out: Path) -> list[str]:
        return ["train-supernet", "--space", "gpt-stdlib", "--data", "stdlib", "--steps", "8", "--batch-size", "4",
                "--n-random", "1", "--seq-len", "64", "--checkpoint-every", "100", "--out", str(out)]  # fmt: skip

    straight = CliRunner().invoke(app, args(tmp_path / "straight.safetensors"))
    assert straight.exit_code == 0, straight.output
    out = tmp_path / "stopped.safetensors"
    child = subprocess.Popen(
        [sys.executable, "-c", "from hwpareto.cli import app; app()", *args(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout is not None
    for line in child.stdout:
        if "step 2/8" in line:
            child.send_signal(signal.SIGTERM)
            break
    _, err = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("stopped by SIGTERM after step ")
    states = [p.name for p in out.with_name(out.name + ".resume").iterdir()]
    assert len(states) == 1 and states[0].startswith("step-00000000") and not out.exists()
    step = int(states[0].removeprefix("step-"))
    assert 2 <= step < 8
    resumed = CliRunner().invoke(app, args(out))
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from step {step} of 8: state in {out}.resume (--no-resume starts over)" in resumed.stdout
    want, got = load_file(tmp_path / "straight.safetensors"), load_file(out)
    assert want.keys() == got.keys() and [k for k in want if not torch.equal(want[k], got[k])] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.safetensors", "straight.safetensors"]
