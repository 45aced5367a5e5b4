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


# ---------------------------------------------------------------------------------------------------- security 4
def _parts(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path: Path, header: dict[str, Any], data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def _by_begin(header: dict[str, Any]) -> list[str]:
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _huge_header_length(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes((2**62).to_bytes(8, "little") + raw[8:])


def _header_not_json(path: Path) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    path.write_bytes(raw[:8] + b"<html>not json</html>".ljust(n) + raw[8 + n :])


def _offsets_past_end(path: Path) -> None:
    header, data = _parts(path)
    last = header[_by_begin(header)[-1]]
    last["data_offsets"] = [last["data_offsets"][0] + 64, last["data_offsets"][1] + 64]
    _write(path, header, data)


def _overlapping(path: Path) -> None:
    header, data = _parts(path)
    norms = [k for k in _by_begin(header) if k.endswith("layernorm.weight")]
    header[norms[1]]["data_offsets"] = header[norms[0]]["data_offsets"]
    _write(path, header, data)


def _wrong_dtype(path: Path) -> None:
    header, data = _parts(path)
    header["model.norm.weight"]["dtype"] = "I32"  # same element size: only the dtype is wrong
    _write(path, header, data)


def _wrong_shape(path: Path) -> None:
    config = path.parent / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"intermediate_size": 128}))


def _link_to_passwd(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def _missing_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, str(path))


def _unknown_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path)) | {"model.layers.9.mlp.up_proj.weight": torch.zeros(2)}
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("corrupt", "said"),
    [
        (_truncated, "data_offsets: expected within the file's"),
        (_huge_header_length, "header length: expected at most"),
        (_header_not_json, "header: expected a JSON object"),
        (_offsets_past_end, "data_offsets: expected within the file's"),
        (_overlapping, "overlaps the tensor before it"),
        (_wrong_dtype, "dtype: expected one of F16, BF16, F32, F64, got 'I32'"),
        (_wrong_shape, "down_proj.weight' shape: expected [64, 128] (config.json), got [64, 96]"),
        (_link_to_passwd, "a link to /etc/passwd"),
        (_missing_tensor, "m: weights: expected every parameter of config.json (21), got 'missing model.layers.1.mlp"),
        (_unknown_tensor, "'model.layers.9.mlp.up_proj.weight': expected a parameter of llama"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "",
)
def test_corrupt_weights_are_refused_at_registration(tmp_path: Path, corrupt: Any, said: str) -> None:
    folder = _folder(tmp_path / "m")
    corrupt(folder / "model.safetensors")
    url = str(tmp_path / "s.db")
    err = _register(url, folder, "m-corrupt", code=1)
    assert said in err and ("model.safetensors" in err or corrupt is _missing_tensor)
    assert _stored(url) == []


def test_sharded_weights_are_checked_against_their_index(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    url = str(tmp_path / "s.db")
    _register(url, folder, "m-shards")
    wrong = dict(weight_map) | {names[0]: "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"weight_map": wrong}))
    err = _register(url, folder, "m-shards2", code=1)
    assert f"weight_map[{names[0]!r}]" in err and "model-00001-of-00002.safetensors" in err


def test_expected_tensors_are_those_transformers_builds() -> None:
    from supernet.llama._config import expected_tensors

    for change in (
        {},
        {"tie_word_embeddings": True},
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"},
        {"attention_bias": True, "mlp_bias": True},
        {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "attention_bias": True, "mlp_bias": True},
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_bias": True, "mlp_bias": True},
    ):
        kept, arch = check_hf_config(TINY | change)
        full = Arch(arch.hidden_size, ((arch.num_kv_heads, arch.intermediate_size),) * arch.num_layers)
        model = build_model(kept, full, meta=True)
        built = {k: tuple(v.shape) for k, v in model.named_parameters(remove_duplicate=False)}
        assert expected_tensors(arch) == built, change
        assert arch.params == sum(p.numel() for p in model.parameters())


LLAMA_405B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 16384,
    "intermediate_size": 53248,
    "num_hidden_layers": 126,
    "num_attention_heads": 128,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "tie_word_embeddings": False,
}


def test_a_405b_config_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    import resource

    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_405B))
    url = str(tmp_path / "s.db")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _register(url, config, "m-405b", code=1)
    assert "space m-405b: SuperNet memory: expected at most this machine's" in err and "GB available" in err
    assert "405,853,388,800 parameters × 4 bytes" in err and "--cost-only" in err
    assert _stored(url) == []
    # --cost-only registers it for cost objectives; building its SuperNet stays refused, in one line
    out = runner.invoke(
        app, ["space", "from-hf", str(config), "--name", "m-405b", "--cost-only", *OPTIONS, "--store", url]
    )
    assert out.exit_code == 0, out.output
    with Store.open(url) as store:
        sp = store.spaces.get("m-405b")
    assert sp.params(sp.largest()) == 405_853_388_800
    subnet = tmp_path / "subnet.json"
    subnet.write_text(json.dumps(sp.smallest().values))
    for args in (
        ["export-config", "m-405b", str(subnet), "--weights", "--random-weights", "--out", str(tmp_path / "b")],
        ["measure", "--device", "cpu-local", "--space", "m-405b", "-n", "1"],
    ):
        out = runner.invoke(app, [*args, "--store", url])
        assert out.exit_code == 1 and len(out.stderr.strip().splitlines()) == 1, out.output
        assert "space m-405b: SuperNet memory: expected at most this machine's" in out.stderr
    with pytest.raises(InvalidValueError, match="SubNet memory"):
        sp.subnet(sp.largest())
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kb
    assert grown_kb < 1_000_000  # nothing near the 8.4 GB embedding was ever allocated
