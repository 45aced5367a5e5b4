"""Issue 28 (security 2, export side): an LLM bundle copies the model folder's tokenizer files into ``model/``.
A file replaced after registration by a symlink leading out of the folder (``/etc/passwd``, a private 0600 file) or
by a FIFO, or whose contents changed since registration, is refused in one line before anything is written; what is
copied is the registered contents, 0644 (0600 where the folder's file is private)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hwpareto.store import Store
from tests._cli import hw_text as hw
from tests.test_llama_export import _model_folder


@pytest.fixture
def registered(tmp_path: Path, sqlite_url: str) -> tuple[Path, Path, str]:
    """A model folder with a tokenizer and a chat template, registered as space ``tf``; the folder, a config of
    the space and the store."""
    folder, _ = _model_folder(tmp_path)
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    hw("space", "from-hf", folder, "--name", "tf", "--uniform", "--prompt-len", "12", "--gen-len", "8",
       "--store", sqlite_url)  # fmt: skip
    with Store.open(sqlite_url) as store:
        values = store.spaces.get("tf").smallest().values
    (tmp_path / "c.json").write_text(json.dumps(values))
    return folder, tmp_path / "c.json", sqlite_url


def export(config: Path, out: Path, url: str, ok: bool = True) -> str:
    return hw("export-config", "tf", config, "--out", out, "--weights", "--store", url, ok=ok)


def test_tokenizer_files_are_copied_as_registered_0644(registered: tuple[Path, Path, str], tmp_path: Path) -> None:
    """Copies are 0644, but a file others may not read stays private (0600): a hard link to a private file outside
    the folder (no symlink to refuse) was published world-readable."""
    folder, config, url = registered
    secret = tmp_path / "secret.txt"
    secret.write_text((folder / "chat_template.jinja").read_text())  # the registered contents, a private file
    secret.chmod(0o600)
    (folder / "chat_template.jinja").unlink()
    os.link(secret, folder / "chat_template.jinja")
    export(config, tmp_path / "b", url)
    model = tmp_path / "b" / "model"
    doc = json.loads((tmp_path / "b" / "config.json").read_text())
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(doc["transformers"]["tokenizer"])
    for name in doc["transformers"]["tokenizer"]:
        assert (model / name).read_bytes() == (folder / name).read_bytes()
        mode = 0o600 if name == "chat_template.jinja" else 0o644
        assert stat.S_IMODE((model / name).stat().st_mode) == mode and not (model / name).is_symlink()


@pytest.mark.parametrize("target", ["/etc/passwd", "private"])
def test_a_symlink_out_of_the_folder_is_refused(
    registered: tuple[Path, Path, str], tmp_path: Path, target: str
) -> None:
    folder, config, url = registered
    if target == "private":
        secret = tmp_path / "secret.txt"
        secret.write_text("api key")
        secret.chmod(0o600)
        target = str(secret)
    (folder / "chat_template.jinja").unlink()
    (folder / "chat_template.jinja").symlink_to(target)
    err = export(config, tmp_path / "b", url, ok=False)
    assert "chat_template.jinja" in err and "may not lead out of it" in err and target in err
    assert not (tmp_path / "b").exists()  # refused before anything is written


def test_a_fifo_or_a_changed_file_is_refused(registered: tuple[Path, Path, str], tmp_path: Path) -> None:
    folder, config, url = registered
    (folder / "chat_template.jinja").unlink()
    os.mkfifo(folder / "chat_template.jinja")  # reading it would block the export forever
    assert "chat_template.jinja: expected a regular file" in export(config, tmp_path / "b", url, ok=False)
    (folder / "chat_template.jinja").unlink()
    (folder / "chat_template.jinja").write_text("{{ other }}")
    err = export(config, tmp_path / "b", url, ok=False)
    assert "chat_template.jinja: expected SHA-256" in err and "(as registered)" in err and "register it again" in err
    (folder / "chat_template.jinja").unlink()
    assert "chat_template.jinja is missing" in export(config, tmp_path / "b", url, ok=False)
    assert not (tmp_path / "b").exists()
