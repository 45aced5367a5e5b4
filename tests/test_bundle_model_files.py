"""Issue 28 (security 1), found again in QA: ``verify-bundle`` accepted any file under an LLM bundle's ``model/``
that ``config.json`` listed with its hash, so a tokenizer file edited (or added to a bundle whose SuperNet has none)
and re-hashed, or a ``modeling_*.py`` beside the weights, passed as "verified": the outputs compared are the
model's on token ids, which a tokenizer never touches. Now ``model/`` holds only what an export writes: the SubNet's
files and the SuperNet's model folder's tokenizer files, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hwpareto.store import Store
from tests._cli import hw
from tests.test_llama_export import _model_folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An LLM bundle of a registered model folder with a tokenizer, and the store that knows the folder."""
    root = tmp_path_factory.mktemp("llm")
    url = f"sqlite:///{root / 's.db'}"
    folder, _ = _model_folder(root)
    hw("space", "from-hf", folder, "--name", "tf", "--uniform", "--prompt-len", "12", "--gen-len", "8",
       "--store", url)  # fmt: skip
    with Store.open(url) as store:
        sp = store.spaces.get("tf")
    (root / "c.json").write_text(json.dumps(sp.smallest().values))
    hw("export-config", "tf", root / "c.json", "--out", root / "b", "--weights", "--store", url)
    assert (root / "b" / "model" / "tokenizer.json").is_file()
    return root / "b", url


def _put(bundle: Path, name: str, data: bytes) -> None:
    """Write ``model/NAME`` and list it in ``config.json`` with its new hash (a consistent-looking bundle)."""
    (bundle / "model" / name).write_bytes(data)
    doc = json.loads((bundle / "config.json").read_text())
    doc["files"][f"model/{name}"] = hashlib.sha256(data).hexdigest()
    (bundle / "config.json").write_text(json.dumps(doc))


def _tokenizer_edited(bundle: Path) -> None:
    doc = json.loads((bundle / "model" / "tokenizer.json").read_text())
    vocab = doc["model"]["vocab"]
    first, second = list(vocab)[:2]
    vocab[first], vocab[second] = vocab[second], vocab[first]  # two words swapped: same ids, other meanings
    _put(bundle, "tokenizer.json", json.dumps(doc).encode())


def _tokenizer_edited_and_recorded(bundle: Path) -> None:
    _tokenizer_edited(bundle)
    doc = json.loads((bundle / "config.json").read_text())
    doc["supernet"]["tokenizer_files_sha256"]["tokenizer.json"] = doc["files"]["model/tokenizer.json"]
    (bundle / "config.json").write_text(json.dumps(doc))


CASES = {
    "tokenizer edited": (_tokenizer_edited, "model/tokenizer.json: not the tokenizer file of the SuperNet's"),
    "tokenizer edited, hash recorded too": (
        _tokenizer_edited_and_recorded,
        "and the tokenizer files it records (space 'tf', exported from 'hf') is not found",
    ),
    "merges.txt added": (lambda b: _put(b, "merges.txt", b"#version: 0.2\na b\n"), "model/merges.txt: expected"),
    "code added": (lambda b: _put(b, "modeling_llama.py", b"import os\n"), "model/modeling_llama.py: expected"),
    "tokenizer removed": (
        lambda b: _drop(b, "tokenizer.json"),
        "model/tokenizer.json is missing (the SuperNet's model folder has it)",
    ),
}


def _drop(bundle: Path, name: str) -> None:
    (bundle / "model" / name).unlink()
    doc = json.loads((bundle / "config.json").read_text())
    del doc["files"][f"model/{name}"]
    (bundle / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("case", list(CASES))
def test_model_folder_holds_only_what_an_export_writes(exported: tuple[Path, str], tmp_path: Path, case: str) -> None:
    good, url = exported
    bundle = tmp_path / "b"
    shutil.copytree(good, bundle)
    hw("verify-bundle", bundle, "--store", url)
    tamper, said = CASES[case]
    tamper(bundle)
    _, err = hw("verify-bundle", bundle, "--store", url, ok=False)
    assert said in err, err


def test_a_model_folder_is_found_by_its_weights_and_tokenizer(exported: tuple[Path, str], tmp_path: Path) -> None:
    """Two folders with the same weights, one without the tokenizer (a copy, the same model downloaded twice): the
    bundle verifies against the one holding its tokenizer, whichever the store lists first."""
    good, _ = exported
    source = good.parent / "hf"
    bare = tmp_path / "bare"
    shutil.copytree(source, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    other = f"sqlite:///{tmp_path / 'two.db'}"
    for folder, name in ((bare, "first"), (source, "second")):
        hw("space", "from-hf", folder, "--name", name, "--uniform", "--prompt-len", "12", "--gen-len", "8",
           "--store", other)  # fmt: skip
    hw("verify-bundle", good, "--store", other)
