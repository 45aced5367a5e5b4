"""Perplexity of Llama SubNets on a local text file (issue 15): the folder's tokenizer when it has one, bytes
otherwise. Tiny random Llama models and a tokenizer trained here with the ``tokenizers`` library (no downloads);
transformers' own ``model(ids, labels=ids).loss`` is the oracle. Then ``ppl@TEXT`` as a minimised objective: a
trained SuperNet's table, an accuracy predictor on it and a search whose front trades size for perplexity."""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from supernet.data import text_file
from supernet.llama import space_from_hf
from supernet.training import EVAL_WINDOWS, LM_WINDOW_TOKENS, evaluate_subnets, train_supernet

runner = CliRunner()

TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
OPTIONS: dict[str, Any] = {"prompt_len": [16], "gen_len": [8], "batch": [1], "importance": False}
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 45 KB of Python source: 11 blocks of 4 KB, so every split holds a few."""
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(
        "".join((STDLIB / f).read_text(encoding="utf-8") for f in ("textwrap.py", "shlex.py", "fnmatch.py"))
    )
    return path


def _tokenizer(text: str) -> Any:
    """A byte-level BPE of 300 tokens trained on ``text`` here, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _folder(root: Path, vocab: int, tokenizer: Any = None, **config: Any) -> Path:
    """A model folder: random (seeded) LlamaForCausalLM weights, ``tokenizer`` saved with them when given."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    doc = {k: v for k, v in (TINY | config).items() if k not in ("architectures", "model_type")}
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**doc, vocab_size=vocab)).save_pretrained(root)
    if tokenizer is not None:
        tokenizer.save_pretrained(root)
    return root


def _split_text(data: Any, split: str) -> str:
    return bytes(data.split(split).tokens.tolist()).decode("utf-8")


@pytest.mark.parametrize("tokenized", [True, False], ids=["tokenizer", "bytes"])
def test_subnet_ppl_equals_transformers_loss(tmp_path: Path, corpus: Path, tokenized: bool) -> None:
    text = corpus.read_text(encoding="utf-8")
    tok = _tokenizer(text) if tokenized else None
    vocab = len(tok) if tok is not None else 260
    sp = space_from_hf(_folder(tmp_path / "m", vocab, tok), "tiny-ppl", **OPTIONS)
    assert (sp.tokenizer() is not None) == tokenized
    data = text_file(corpus)
    net = sp.supernet()
    report = train_supernet(sp, net, data, steps=6, batch_size=4, lr=3e-3, seed=0)  # weights no longer at init
    assert all(math.isfinite(v) for v in report.final_losses.values())
    configs = [sp.largest(), sp.smallest(), sp.validate(sp.largest().values | {"hidden": 16, "layer_1": 0})]
    metrics = evaluate_subnets(sp, net, configs, data)
    # the oracle: the val text tokenized here, cut into consecutive windows of W tokens, transformers' loss
    val = _split_text(data, "val")
    ids = tok(val, add_special_tokens=False)["input_ids"] if tok is not None else list(val.encode())
    w = min(TINY["max_position_embeddings"], LM_WINDOW_TOKENS)
    n = len(ids) // w
    assert 2 <= n <= EVAL_WINDOWS  # so every window of the split is evaluated
    windows = torch.tensor(ids[: n * w]).view(n, w)
    for cfg, m in zip(configs, metrics, strict=True):
        with torch.no_grad():
            oracle = sp.extract(net, cfg)(windows, labels=windows).loss.item()
            net.set_active(sp.arch_of(cfg))
            logits = net(windows)[:, :-1]
            shared = F.cross_entropy(logits.reshape(-1, vocab), windows[:, 1:].reshape(-1)).item()
        assert m["ppl"] == pytest.approx(math.exp(oracle), rel=1e-5)
        assert m["ppl"] == pytest.approx(math.exp(shared), rel=1e-5)  # the SuperNet with the config active
        assert m["loss"] == pytest.approx(oracle, rel=1e-5) and 0 <= m["acc_pct"] <= 100
    assert len({round(m["ppl"], 4) for m in metrics}) == 3


def _cli(*args: str | Path) -> Any:
    out = runner.invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, f"{out.output}{out.exception!r}"
    return out


@pytest.mark.slow
def test_ppl_predictor_drives_a_minimising_search(tmp_path: Path, corpus: Path) -> None:
    from pareto._objectives import parse_objective
    from pareto.analysis._analysis import study_results
    from pareto.search._search import SearchSpec, run_surrogate

    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY | {"vocab_size": 256, "num_hidden_layers": 3}))
    _cli("space", "from-hf", config, "--name", "tb", "--batch", "1", "--store", url)
    trained = tmp_path / "trained"
    _cli(
        "train-supernet", "--space", "tb", "--data", f"text:{corpus}", "--steps", "40", "--batch-size", "8",
        "--lr", "3e-3", "--out", trained, "--store", url,
    )  # fmt: skip
    assert {"config.json", "model.safetensors", "hwpareto_training.json"} <= {p.name for p in trained.iterdir()}
    assert json.loads((trained / "hwpareto_training.json").read_text())["steps"] == 40
    _cli("space", "from-hf", trained, "--name", "tbt", "--no-importance", "--batch", "1", "--store", url)
    table = tmp_path / "ppl.csv"
    out = _cli(
        "eval-subnets", "--space", "tbt", "--data", f"text:{corpus}", "-n", "40", "--out", table, "--json",
        "--store", url,
    )  # fmt: skip
    info = json.loads(out.stdout)
    assert 1 < info["min_ppl"] < info["median_ppl"] < info["max_ppl"] < 256
    _cli("import", table, "--space", "tbt", "--dataset", "corpus", "--metric", "ppl", "--column", "val_ppl",
         "--source", "evaluated", "--store", url)  # fmt: skip
    _cli("train", "accuracy", "--space", "tbt", "--metric", "ppl", "--dataset", "corpus", "--store", url)
    assert parse_objective("ppl@corpus").direction == "minimize"
    with Store.open(url) as store:
        spec = SearchSpec("p1", "tbt", ("ppl@corpus", "params"), (), n_trials=120, population=20, seed=0)
        run_surrogate(store, spec)
        results = study_results(store, "p1")
        trials, front = results.trials, results.front().rows.sort_values("params")
    assert len(front) >= 3
    # minimised both: along the front, every larger SubNet has a lower predicted perplexity
    assert (np.diff(front["ppl@corpus"].to_numpy()) < 0).all()
    assert front["ppl@corpus"].min() == pytest.approx(trials["ppl@corpus"].min())
    assert front["params"].min() == trials["params"].min()


def _error(args: list[str | Path], fragment: str) -> str:
    out = runner.invoke(app, [str(a) for a in args])
    err = out.stderr.strip()
    assert out.exit_code != 0 and len(err.splitlines()) == 1 and fragment in err, (out.exit_code, err)
    return err


def test_bad_text_split_and_vocab_are_one_line_errors(tmp_path: Path, corpus: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _folder(tmp_path / "bytes", 260)
    _folder(tmp_path / "small", 97)
    _cli("space", "from-hf", tmp_path / "bytes", "--name", "tb", "--batch", "1", "--store", url)
    _cli("space", "from-hf", tmp_path / "small", "--name", "ts", "--batch", "1", "--store", url)
    empty, binary = tmp_path / "empty.txt", tmp_path / "blob.txt"
    empty.write_text("")
    binary.write_bytes(b"print('hi')\n\x00\x01\x02" * 50)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1") * 50)
    base: list[str | Path] = ["eval-subnets", "--space", "tb", "-n", "2", "--out", tmp_path / "t.csv", "--store", url]
    _error([*base, "--data", f"text:{tmp_path / 'missing.txt'}"], "cannot read")
    _error([*base, "--data", f"text:{empty}"], "0 bytes")
    assert "a NUL byte" in _error([*base, "--data", f"text:{binary}"], "expected UTF-8 text")
    assert "invalid UTF-8" in _error([*base, "--data", f"text:{latin}"], "expected UTF-8 text")
    _error([*base, "--data", f"text:{corpus}", "--split", "dev"], "expected one of train, val, test, got 'dev'")
    _error([*base, "--data", f"text:{corpus}", "--checkpoint", tmp_path / "x.safetensors"], "--checkpoint")
    train: list[str | Path] = ["train-supernet", "--space", "tb", "--data", f"text:{corpus}", "--store", url]
    _error([*train, "--steps", "1", "--out", corpus], "expected a folder")
    small: list[str | Path] = ["eval-subnets", "--space", "ts", "-n", "2", "--out", tmp_path / "t.csv", "--store", url]
    err = _error([*small, "--data", f"text:{corpus}"], "vocab_size")
    assert "at least 256" in err and "got 97" in err
    assert not (tmp_path / "t.csv").exists()
    # the library raises the same errors
    data = text_file(corpus)
    sp = space_from_hf(tmp_path / "bytes", "tb2", **OPTIONS)
    with pytest.raises(InvalidValueError, match="split"):
        evaluate_subnets(sp, sp.supernet(), [sp.largest()], data, split="dev")


@pytest.mark.parametrize("tokenized", [True, False], ids=["tokenizer", "bytes"])
def test_calibration_text_with_and_without_tokenizer_files(tmp_path: Path, corpus: Path, tokenized: bool) -> None:
    """Issue 28, wrong results 7: ``--calibration`` on a folder without tokenizer files reads the text as bytes
    (as eval-subnets does), so every command that builds the SuperNet works; with tokenizer files, through them."""
    text = corpus.read_text(encoding="utf-8")[:6000]
    tok = _tokenizer(text) if tokenized else None
    folder = _folder(tmp_path / "m", len(tok) if tok is not None else 260, tok)
    calibration = tmp_path / "calibration.txt"
    calibration.write_text(text)
    url = f"sqlite:///{tmp_path / 's.db'}"
    runtime = ["--batch", "1", "--prompt-len", "16", "--gen-len", "8"]
    _cli("space", "from-hf", folder, "--name", "cal", "--calibration", calibration, *runtime, "--store", url)
    with Store.open(url) as store:
        sp = store.spaces.get("cal")
    ids = sp.calibration_ids()
    expected = tok(text)["input_ids"] if tok is not None else list(text.encode("utf-8"))
    assert ids.shape == (8, 128) and ids.flatten().tolist() == expected[: ids.numel()]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sp.smallest().values))
    _cli("export-config", "cal", config, "--weights", "--out", tmp_path / "bundle", "--store", url)
    assert (tmp_path / "bundle" / "model" / "model.safetensors").is_file()
    _cli("eval-subnets", "--space", "cal", "--data", f"text:{corpus}", "-n", "2", "--out", tmp_path / "t.csv",
         "--store", url)  # fmt: skip
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 3


def test_calibration_that_cannot_be_read_is_refused_at_registration(tmp_path: Path, corpus: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    calibration = tmp_path / "calibration.txt"
    calibration.write_text(corpus.read_text(encoding="utf-8")[:3000])
    args: list[str | Path] = ["--calibration", calibration, "--store", url]
    # no tokenizer and a vocabulary too small for bytes
    err = _error(["space", "from-hf", _folder(tmp_path / "small", 97), "--name", "a", *args], "--calibration")
    assert "at least 256" in err and "97" in err
    # tokenizer files that do not load
    broken = _folder(tmp_path / "broken", 260)
    (broken / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NoSuchTokenizer"}))
    _error(["space", "from-hf", broken, "--name", "b", *args], "tokenizer")
    # too short a text for one calibration sequence
    calibration.write_text("x" * 100)
    err = _error(["space", "from-hf", _folder(tmp_path / "bytes", 260), "--name", "c", *args], "--calibration")
    assert "at least 128 tokens" in err and "got 100" in err
    with Store.open(url) as store:
        assert not {"a", "b", "c"} & set(store.spaces.names())
