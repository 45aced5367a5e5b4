"""Issue 28, security 2 and 4 (registration side): ``space from-hf`` refuses what it could not use safely. Files of
the folder that hwpareto reads or copies into bundles may not be links out of it (``/etc/passwd`` as
``merges.txt``); the SHA-256 of every file an export copies is recorded in the space document
(``tokenizer_files_sha256``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from supernet import space_document, space_from_document
from supernet.llama import space_from_hf
from supernet.llama._config import check_hf_config
from supernet.llama._model import Arch, build_model

runner = CliRunner()
TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 97,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
OPTIONS = ["--batch", "1", "--prompt-len", "16", "--gen-len", "8"]


def _folder(root: Path, **config: Any) -> Path:
    """A model folder: save_pretrained weights of a tiny random Llama, a merges.txt and a chat template."""
    cfg = TINY | config
    full = Arch(
        cfg["hidden_size"], ((cfg["num_key_value_heads"], cfg["intermediate_size"]),) * cfg["num_hidden_layers"]
    )
    torch.manual_seed(0)
    build_model(check_hf_config(cfg)[0], full).save_pretrained(root, safe_serialization=True)
    (root / "merges.txt").write_text("#version: 0.2\na b\n")
    (root / "chat_template.jinja").write_text("{{ messages }}\n")
    return root


def _register(url: str, folder: Path, name: str, code: int = 0) -> str:
    out = runner.invoke(app, ["space", "from-hf", str(folder), "--name", name, *OPTIONS, "--store", url])
    assert out.exit_code == code, out.output
    if code:
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: "), out.stderr
    return out.stderr.strip()


def _stored(url: str) -> list[str]:
    with Store.open(url) as store:
        return [n for n in store.spaces.names() if n.startswith("m-")]


# ---------------------------------------------------------------------------------------------------- security 2
@pytest.mark.parametrize("name", ["merges.txt", "chat_template.jinja", "tokenizer.json", "config.json"])
def test_a_file_linked_out_of_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    folder = _folder(tmp_path / "m")
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to("/etc/passwd")
    url = str(tmp_path / "s.db")
    err = _register(url, folder, "m-link", code=1)
    assert name in err and "/etc/passwd" in err and "inside the model folder" in err
    assert _stored(url) == []


def test_links_inside_the_folder_and_a_hub_snapshot_are_followed(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    # the Hugging Face cache's layout: snapshots/REV/FILE -> ../../blobs/HASH
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            blob = blobs / hashlib.sha256(f.read_bytes()).hexdigest()
            shutil.copy(f, blob)
            (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "sub").mkdir()
    shutil.move(folder / "merges.txt", folder / "sub" / "merges.txt")
    (folder / "merges.txt").symlink_to("sub/merges.txt")
    url = str(tmp_path / "s.db")
    _register(url, folder, "m-inside")
    _register(url, snapshot, "m-hub")
    with Store.open(url) as store:
        sp = store.spaces.get("m-hub")
    assert sp.supernet() is not None  # the weights load through the links
    # a link out of the snapshot that is not into the repository's blobs/ is refused
    (snapshot / "merges.txt").unlink()
    (snapshot / "merges.txt").symlink_to(tmp_path / "hub" / "elsewhere.txt")
    (tmp_path / "hub" / "elsewhere.txt").write_text("secret\n")
    assert "merges.txt" in _register(url, snapshot, "m-hub2", code=1)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    (folder / "merges.txt").unlink()
    os.mkfifo(folder / "merges.txt")  # reading it would block forever
    url = str(tmp_path / "s.db")
    err = _register(url, folder, "m-fifo", code=1)
    assert "merges.txt" in err and "a regular file" in err
    (folder / "merges.txt").unlink()
    (folder / "merges.txt").symlink_to(folder / "missing.txt")
    assert "dangling" in _register(url, folder, "m-dangling", code=1)


def test_copied_files_are_hashed_into_the_space_document(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    url = str(tmp_path / "s.db")
    _register(url, folder, "m-hashed")
    with Store.open(url) as store:
        sp = store.spaces.get("m-hashed")
        doc = space_document(sp)
        store.spaces.register(space_from_hf(folder, "m-hashed", batch=[1], prompt_len=[16], gen_len=[8]))  # no-op
    assert doc["tokenizer_files_sha256"] == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("chat_template.jinja", "merges.txt")
    }
    assert space_from_document(doc).tokenizer_files_sha256 == doc["tokenizer_files_sha256"]
    config_only = space_from_hf(folder / "config.json", "m-cfg")
    assert "tokenizer_files_sha256" not in space_document(config_only)
    for bad in ({"../etc/passwd": "0" * 64}, {"merges.txt": "xyz"}, ["merges.txt"]):
        with pytest.raises(InvalidValueError, match="tokenizer_files_sha256"):
            space_from_document(doc | {"tokenizer_files_sha256": bad})


def test_a_document_stored_before_the_hashes_is_completed(tmp_path: Path) -> None:
    """A space stored by an older hwpareto (no tokenizer_files_sha256) registers again from the same folder (the
    demo does so on every run): the stored document gains the hashes instead of refusing the name."""
    folder = _folder(tmp_path / "m")
    sp = space_from_hf(folder, "m-old", batch=[1], prompt_len=[16], gen_len=[8])
    url = str(tmp_path / "s.db")
    with Store.open(url) as store:
        from hwpareto.store._models import Space

        old = {k: v for k, v in space_document(sp).items() if k != "tokenizer_files_sha256"}
        with store.transaction() as conn:
            conn.execute(Space.__table__.insert().values(name="m-old", definition_json=json.dumps(old)))
        store.spaces.register(sp)
        assert store.spaces.get("m-old").tokenizer_files_sha256 == sp.tokenizer_files_sha256
        other = space_from_hf(folder, "m-old", batch=[4], prompt_len=[16], gen_len=[8])
        with pytest.raises(InvalidValueError, match="another definition"):
            store.spaces.register(other)
