"""Export of Hugging Face causal-LM SubNets (issue 15), tiny random Llama configs, no downloads: a uniform SubNet's
bundle reloads with ``AutoModelForCausalLM.from_pretrained``, a mixed one with hwpareto's loader, both to the
SuperNet's logits with that active config; the ONNX prefill graph matches torch in onnxruntime; a folder's weights
and tokenizer travel into the bundle; ``hwpareto export`` of a searched study's front trial; tampered bundles are
one-line errors naming the file or tensor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto.bundles._export import _sha256, export_subnet, load_subnet, verify_bundle
from supernet.llama import HFCausalLMSpace, space_from_hf

runner = CliRunner()

TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 97,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
OPTIONS = {"prompt_len": [12, 16], "gen_len": [8]}


def _space(uniform: bool, **config: Any) -> HFCausalLMSpace:
    return HFCausalLMSpace("tiny-llama", TINY | config, options=OPTIONS | {"uniform": uniform})


def _mixed(sp: HFCausalLMSpace) -> dict[str, Any]:
    """Layer 1 dropped, layers 0 and 2 with different heads and FFN widths."""
    return sp.largest().values | {"hidden": 48, "layer_1": 0, "heads_0": 2, "ffn_0": 48, "heads_2": 4, "ffn_2": 72}


def _ids(seed: int, shape: tuple[int, int]) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], shape, generator=torch.Generator().manual_seed(seed))


def _active_logits(sp: HFCausalLMSpace, config: Any, ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The SuperNet (as the export builds it: ``seed``) running ``config`` as its active SubNet."""
    net = sp.supernet(seed=seed)
    net.set_active(sp.arch_of(config))
    with torch.no_grad():
        return net(ids)


def _onnx_logits(path: Path, ids: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids"]
    (out,) = session.run(None, {"input_ids": ids.numpy()})
    return np.asarray(out)


@pytest.mark.parametrize("tied", [False, True])
def test_uniform_bundle_reloads_with_auto_model_to_the_supernet_logits(tmp_path: Path, tied: bool) -> None:
    from transformers import AutoModelForCausalLM

    sp = _space(True, tie_word_embeddings=tied)
    config = sp.validate(sp.largest().values | {"hidden": 48, "heads": 2, "ffn": 48, "layer_0": 0})
    result = export_subnet(
        sp, config, tmp_path / "b", weights=True, onnx=True, random_weights=True, metrics={"note": "m"}
    )
    bundle = result.directory
    assert {"config.json", "model.onnx", "README.md", "model/config.json", "model/model.safetensors"} <= set(
        result.files
    )
    assert not (bundle / "weights.safetensors").exists() and not (bundle / "model/hwpareto_subnet.json").exists()
    doc = json.loads((bundle / "config.json").read_text())
    assert doc["transformers"]["plain"] and doc["transformers"]["class"] == "LlamaForCausalLM"
    assert doc["params"] == sp.params(config) and doc["metrics"] == {"note": "m"}
    model = AutoModelForCausalLM.from_pretrained(bundle / "model", local_files_only=True, trust_remote_code=False)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 48
    assert sum(p.numel() for p in model.parameters()) == sp.params(config)
    ids = _ids(1, (2, 16))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    torch.testing.assert_close(logits, _active_logits(sp, config, ids), rtol=0, atol=1e-6)
    # the ONNX prefill graph: batch and length are dynamic
    for shape in ((3, 16), (1, 5)):
        x = _ids(2, shape)
        with torch.no_grad():
            expected = model(input_ids=x).logits.numpy()
        np.testing.assert_allclose(_onnx_logits(bundle / "model.onnx", x), expected, rtol=0, atol=1e-4)
    check = verify_bundle(bundle)
    assert check.weights_max_abs_diff == 0.0 and check.pretrained_max_abs_diff == 0.0
    assert check.onnx_max_abs_diff is not None and check.onnx_max_abs_diff < 1e-4 and check.ok()
    assert "from_pretrained('model'" in (bundle / "README.md").read_text()


def test_mixed_bundle_reloads_with_hwpareto_loader_to_the_supernet_logits(tmp_path: Path) -> None:
    sp = _space(False)
    config = sp.validate(_mixed(sp))
    bundle = export_subnet(sp, config, tmp_path / "b", weights=True, onnx=True, random_weights=True, seed=3).directory
    assert (bundle / "model/hwpareto_subnet.json").is_file()
    space, back, model = load_subnet(bundle)
    assert back == config and isinstance(space, HFCausalLMSpace) and space.to_dict() == sp.to_dict()
    ids = _ids(4, (2, 12))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    torch.testing.assert_close(logits, _active_logits(sp, config, ids, seed=3), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_onnx_logits(bundle / "model.onnx", ids), logits.numpy(), rtol=0, atol=1e-4)
    check = verify_bundle(bundle)
    assert check.weights_max_abs_diff == 0.0 and check.pretrained_max_abs_diff is None and check.ok()
    assert "load_subnet" in (bundle / "README.md").read_text()
    # --force over it with a SubNet whose kept layers have equal sizes: a save_pretrained folder, no stale sizes file
    even = sp.validate(config.values | {"heads_2": 2, "ffn_2": 48})
    again = export_subnet(sp, even, bundle, weights=True, force=True, random_weights=True, seed=3)
    assert not (bundle / "model/hwpareto_subnet.json").exists() and "model.onnx" not in again.files
    assert json.loads((bundle / "config.json").read_text())["transformers"]["plain"] and verify_bundle(bundle).ok()
    # config only: no model folder, no ONNX, still a README and the space definition
    bare = export_subnet(sp, config, tmp_path / "c")
    assert set(bare.files) == {"config.json", "README.md"}
    assert load_subnet(bare.directory)[1] == config


def _model_folder(tmp_path: Path) -> tuple[Path, Any]:
    """A local folder as Hugging Face ships one: save_pretrained weights of a random tiny Llama and a tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path / "hf"
    torch.manual_seed(11)
    fields = {k: v for k, v in TINY.items() if k not in ("architectures", "model_type")}
    model = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    model.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(TINY["vocab_size"] - 1)} | {"[UNK]": TINY["vocab_size"] - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    return folder, model


def test_bundle_of_a_model_folder_holds_its_weights_and_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, original = _model_folder(tmp_path)
    sp = space_from_hf(folder, "tiny-folder", uniform=True, prompt_len=[12], gen_len=[8])
    largest = sp.largest()
    bundle = export_subnet(sp, largest, tmp_path / "b", weights=True, onnx=False).directory
    doc = json.loads((bundle / "config.json").read_text())
    assert doc["supernet"]["folder"] == "hf" and doc["supernet"]["importance_ordered"]
    assert doc["supernet"]["weights_sha256"] == sp.weights_sha256 and doc["space_definition"]["path"] is None
    tokenizer = doc["transformers"]["tokenizer"]
    assert "tokenizer.json" in tokenizer and all((bundle / "model" / f).is_file() for f in tokenizer)
    tok = AutoTokenizer.from_pretrained(bundle / "model", local_files_only=True, trust_remote_code=False)
    assert tok("w3 w5")["input_ids"] == [3, 5]
    model = AutoModelForCausalLM.from_pretrained(bundle / "model", local_files_only=True, trust_remote_code=False)
    ids = _ids(6, (2, 12))
    with torch.no_grad():  # the full SubNet is the folder's model (channels reordered by importance: same function)
        torch.testing.assert_close(model(input_ids=ids).logits, original(input_ids=ids).logits, rtol=0, atol=1e-5)
        assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)
    smaller = sp.validate(largest.values | {"ffn": sp.ffn_choices[0], "layer_2": 0})
    bundle = export_subnet(sp, smaller, tmp_path / "s", weights=True).directory
    _, _, sub = load_subnet(bundle)
    with torch.no_grad():  # the sorted SuperNet (the folder's weights, importance-ordered) sliced
        torch.testing.assert_close(sub(input_ids=ids).logits, _active_logits(sp, smaller, ids), rtol=0, atol=1e-6)
    assert verify_bundle(bundle, checkpoint=folder).ok()  # the folder is found by its weights' hash


def _cli(*args: str | Path) -> str:
    out = runner.invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    return out.stdout


def test_hwpareto_export_of_a_searched_front_trial(tmp_path: Path) -> None:
    from pareto.analysis._analysis import study_results
    from profilers import DeviceSpec, backend_for, build_lut

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    url = f"sqlite:///{tmp_path / 's.db'}"
    _cli("space", "from-hf", path, "--name", "tl", "--store", url)
    with Store.open(url) as store:  # a fake device's LUT of every layer
        spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
        store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
        build_lut(store, spec, store.spaces.get("tl"), workers=1)
    objectives = ("decode_ms_per_token@board", "kv_cache_mb", "params:max")
    args = ["search", "--space", "tl", "--name", "s1", "--trials", "24", "--population", "8", "--store", url]
    _cli(*args, *(a for o in objectives for a in ("--objective", o)))
    with Store.open(url) as store:
        results = study_results(store, "s1")
        trial = int(results.front("board").rows["number"].iloc[0])
    out = tmp_path / "b"
    info = json.loads(_cli("export", "s1", str(trial), "--out", out, "--random-weights", "--store", url, "--json"))
    bundle = tmp_path / "b"
    assert set(info["files"]) >= {"config.json", "model.onnx", "README.md", "model/model.safetensors"}
    assert set(info["objectives"]) == {"decode_ms_per_token@board", "kv_cache_mb", "params"}
    space, config, model = load_subnet(bundle)  # no store needed: the bundle carries the space definition
    assert space.name == "tl" and config.values == results.configs[trial]
    assert sum(p.numel() for p in model.parameters()) == space.params(config)
    assert verify_bundle(bundle).ok()
    assert "decode_ms_per_token@board" in (bundle / "README.md").read_text()


def _one_line_error(bundle: Path) -> str:
    with pytest.raises(HwparetoError) as err:
        load_subnet(bundle)
    text = str(err.value)
    assert "\n" not in text
    return text


def _rehash(bundle: Path, name: str) -> None:
    """Record ``name``'s new SHA-256 in the bundle's config.json (a consistent-looking but wrong bundle)."""
    doc = json.loads((bundle / "config.json").read_text())
    doc["files"][name] = _sha256(bundle / name)
    (bundle / "config.json").write_text(json.dumps(doc))


def test_tampered_bundles_are_one_line_errors_naming_the_file_or_tensor(tmp_path: Path) -> None:
    sp = _space(False)
    config = sp.validate(_mixed(sp))
    bundle = export_subnet(sp, config, tmp_path / "b", weights=True, random_weights=True).directory
    weights = bundle / "model/model.safetensors"
    state = load_file(weights)
    good = weights.read_bytes()
    # a changed tensor value: the file's hash no longer matches
    save_file(state | {"model.norm.weight": state["model.norm.weight"] + 1}, str(weights), metadata={"format": "pt"})
    assert "model/model.safetensors: its SHA-256 differs" in _one_line_error(bundle)
    # a tensor of the wrong shape, hash updated
    q = "model.layers.0.self_attn.q_proj.weight"
    save_file(state | {q: torch.zeros(4, 48)}, str(weights), metadata={"format": "pt"})
    _rehash(bundle, "model/model.safetensors")
    assert q in _one_line_error(bundle) and "(4, 48)" in _one_line_error(bundle)
    # a missing tensor, hash updated
    down = "model.layers.1.mlp.down_proj.weight"
    save_file({k: v for k, v in state.items() if k != down}, str(weights), metadata={"format": "pt"})
    _rehash(bundle, "model/model.safetensors")
    assert down in _one_line_error(bundle)
    # a model folder of another SubNet (values edited, so the folder no longer fits them)
    weights.write_bytes(good)
    _rehash(bundle, "model/model.safetensors")
    doc = json.loads((bundle / "config.json").read_text())
    doc["values"]["ffn_0"] = 96
    doc["key"] = sp.validate(doc["values"]).key
    (bundle / "config.json").write_text(json.dumps(doc))
    assert "model.layers.0.mlp.gate_proj.weight shape" in _one_line_error(bundle)
    # a missing file
    weights.unlink()
    assert "model/model.safetensors is missing" in _one_line_error(bundle)


@pytest.mark.parametrize(("arch", "extra"), [("MistralForCausalLM", {"sliding_window": 6}), ("Qwen2ForCausalLM", {})])
def test_mistral_and_qwen2_bundles_verify(tmp_path: Path, arch: str, extra: dict[str, Any]) -> None:
    model_type = {"MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}[arch]
    sp = _space(False, architectures=[arch], model_type=model_type, **extra)
    bundle = export_subnet(
        sp, sp.validate(_mixed(sp)), tmp_path / "b", weights=True, onnx=True, random_weights=True
    ).directory
    check = verify_bundle(bundle)  # prompt of 12 tokens: past Mistral's window of 6
    assert check.weights_max_abs_diff == 0.0 and check.ok(), check


def test_onnx_weights_torch_writes_per_tensor_are_gathered_in_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past protobuf's 2 GB, torch writes every weight as a file of its own beside model.onnx; too big for a test,
    so the exporter is made to do that for a tiny SubNet (as torch does: one file per tensor, next to the graph)."""
    import onnx

    import pareto.bundles._export as export

    real = export._export_onnx

    def per_tensor(*args: Any) -> None:
        real(*args)
        path = str(args[2])
        onnx.save_model(onnx.load(path), path, save_as_external_data=True, all_tensors_to_one_file=False)

    monkeypatch.setattr(export, "_export_onnx", per_tensor)
    sp = _space(False)
    bundle = export_subnet(
        sp, sp.validate(_mixed(sp)), tmp_path / "b", weights=True, onnx=True, random_weights=True
    ).directory
    onnx_files = sorted(p.name for p in bundle.iterdir() if p.name.startswith("model.onnx"))
    assert onnx_files == ["model.onnx", "model.onnx.data"] and not list(bundle.glob(".onnx-*"))
    doc = json.loads((bundle / "config.json").read_text())
    assert {"model.onnx", "model.onnx.data"} <= set(doc["files"])
    assert "weights in model.onnx.data" in (bundle / "README.md").read_text()
    check = verify_bundle(bundle)
    assert check.onnx_max_abs_diff is not None and check.ok()


def test_bundle_from_a_supernet_checkpoint(tmp_path: Path) -> None:
    """``--checkpoint``: a trained SuperNet's safetensors (as train-supernet writes them) is what the SubNet slices."""
    sp = _space(False)
    net = sp.supernet(seed=0)
    with torch.no_grad():  # weights unlike any fresh init
        for p in net.parameters():
            p.mul_(0.5).add_(0.01)
    ckpt = tmp_path / "supernet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    config = sp.validate(_mixed(sp))
    bundle = export_subnet(sp, config, tmp_path / "b", weights=True, onnx=True, checkpoint=ckpt).directory
    _, _, model = load_subnet(bundle)
    net.set_active(sp.arch_of(config))
    ids = _ids(7, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, net(ids), rtol=0, atol=1e-6)
    doc = json.loads((bundle / "config.json").read_text())
    assert doc["supernet"]["checkpoint_sha256"] == _sha256(ckpt) and doc["supernet"]["checkpoint"] == ckpt.name
    assert verify_bundle(bundle, checkpoint=ckpt).ok()
