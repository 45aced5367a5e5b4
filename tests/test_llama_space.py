"""Spaces of local Hugging Face decoder-only models (``hwpareto space from-hf``): tiny random Llama configs, no
downloads. SubNets equal the SuperNet's active config, round-trip through save_pretrained / hwpareto's loader, the
importance ordering keeps the full model's function, and bad config.json files are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store
from supernet import space_document, space_from_document
from supernet.llama import HFCausalLMSpace, check_hf_config, space_from_hf
from supernet.llama._model import build_model, load_subnet, save_subnet

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
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "auto_map_note": "ignored extra key",
}
OPTIONS = {"prompt_len": [16, 32], "gen_len": [8]}


def _space(uniform: bool = False, **config: Any) -> HFCausalLMSpace:
    return HFCausalLMSpace("tiny-llama", TINY | config, options=OPTIONS | {"uniform": uniform})


def _ids(seed: int = 0, shape: tuple[int, int] = (2, 12)) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], shape, generator=torch.Generator().manual_seed(seed))


def _mixed(sp: HFCausalLMSpace) -> dict[str, Any]:
    """A non-uniform config: layer 1 dropped, layers 0 and 2 with different heads and FFN widths."""
    values = sp.largest().values | {"hidden": 48, "layer_1": 0, "heads_0": 2, "ffn_0": 48, "heads_2": 4, "ffn_2": 72}
    return values


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("uniform", [False, True])
def test_extracted_subnet_equals_active_supernet(uniform: bool, tied: bool) -> None:
    sp = _space(uniform, tie_word_embeddings=tied)
    net = sp.supernet(seed=1)
    rng = np.random.default_rng(0)
    configs = [sp.smallest(), sp.largest(), *(sp.sample(rng) for _ in range(4))]
    if not uniform:
        configs.append(sp.validate(_mixed(sp)))
    ids = _ids()
    for config in configs:
        net.set_active(sp.arch_of(config))
        with torch.no_grad():
            shared = net(ids)
            sub = sp.extract(net, config)
            alone = sub(input_ids=ids).logits
        assert type(sub).__name__ == "LlamaForCausalLM"
        torch.testing.assert_close(alone, shared, rtol=0, atol=1e-6)
        # analytic params equal the extracted model's
        assert sum(p.numel() for p in sub.parameters()) == sp.params(config)
        assert sp.macs(config) > 0
        # the untrained SubNet has the extracted layout
        assert {k: v.shape for k, v in sp.subnet(config).state_dict().items()} == {
            k: v.shape for k, v in sub.state_dict().items()
        }


def test_supernet_forward_trains_shared_weights() -> None:
    sp = _space()
    net = sp.supernet(seed=0)
    net.set_active(sp.arch_of(sp.validate(_mixed(sp))))
    net(_ids()).sum().backward()
    grad = net.model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and grad[:, :48].abs().sum() > 0 and grad[:, 48:].abs().sum() == 0
    assert net.model.model.layers[1].mlp.up_proj.weight.grad is None  # dropped layer


def test_uniform_subnet_save_pretrained_round_trip(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    sp = _space(uniform=True)
    config = sp.validate(sp.largest().values | {"hidden": 48, "heads": 2, "ffn": 48, "layer_0": 0})
    sub = sp.extract(sp.supernet(seed=2), config)
    save_subnet(sub, tmp_path)
    assert not (tmp_path / "hwpareto_subnet.json").exists()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True, trust_remote_code=False)
    assert back.config.num_hidden_layers == 2 and back.config.hidden_size == 48
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=_ids()).logits, sub(input_ids=_ids()).logits, rtol=0, atol=0)


def test_mixed_subnet_round_trip_through_hwpareto_loader(tmp_path: Path) -> None:
    sp = _space()
    config = sp.validate(_mixed(sp))
    sub = sp.extract(sp.supernet(seed=3), config)
    save_subnet(sub, tmp_path)
    assert (tmp_path / "hwpareto_subnet.json").is_file()
    back = load_subnet(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=_ids()).logits, sub(input_ids=_ids()).logits, rtol=0, atol=0)


@pytest.mark.parametrize("tied", [False, True])
def test_importance_reordering_keeps_full_model(tied: bool) -> None:
    sp = _space(tie_word_embeddings=tied)
    net = sp.supernet(seed=4).double()
    ids = _ids(5)
    with torch.no_grad():
        before = net(ids)
        q_before = net.model.model.layers[0].self_attn.q_proj.weight.clone()
        net.sort_channels(_ids(6, (4, 16)))
        after = net(ids)
    assert not torch.equal(q_before, net.model.model.layers[0].self_attn.q_proj.weight)  # it did reorder
    # RMSNorm runs in float32 inside transformers: the permuted sums differ in the last float32 bits only
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_importance_keeps_important_channels_first() -> None:
    sp = _space()
    net = sp.supernet(seed=0)
    with torch.no_grad():  # make FFN neuron 90 of layer 0 dominant: it must move to the front
        net.model.model.layers[0].mlp.down_proj.weight[:, 90] *= 1.0
        net.model.model.layers[0].mlp.up_proj.weight[90] *= 50.0
        marker = net.model.model.layers[0].mlp.up_proj.weight[90].clone()
        net.sort_channels(_ids(7, (4, 16)))
    # the hidden channels were permuted too: compare as sets of values
    first = net.model.model.layers[0].mlp.up_proj.weight[0]
    assert torch.equal(first.sort().values, marker.sort().values)


def _model_folder(tmp_path: Path, **config: Any) -> tuple[Path, torch.nn.Module]:
    from supernet.llama._model import Arch

    cfg = TINY | config
    full = Arch(cfg["hidden_size"], ((cfg["num_key_value_heads"], cfg["intermediate_size"]),) * 3)
    torch.manual_seed(11)
    model = build_model(check_hf_config(cfg)[0], full)
    folder = tmp_path / "model"
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


def test_from_hf_folder_stored_and_rebuilt(tmp_path: Path) -> None:
    folder, model = _model_folder(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = runner.invoke(app, ["space", "from-hf", str(folder), "--name", "tiny-llama", "--store", url])
    assert out.exit_code == 0, out.output
    with Store.open(url) as store:
        sp = store.spaces.get("tiny-llama")
        store.spaces.register(sp)  # the same definition again: a no-op
    assert isinstance(sp, HFCausalLMSpace) and sp.path == str(folder.resolve()) and sp.weights_sha256
    assert space_from_document(space_document(sp)).describe() == sp.describe()
    net = sp.supernet()  # weights loaded, then reordered by importance
    ids = _ids(8)
    with torch.no_grad():
        torch.testing.assert_close(net(ids), model(input_ids=ids).logits, rtol=0, atol=1e-5)
    # a changed folder is detected
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    model.save_pretrained(folder, safe_serialization=True)
    with pytest.raises(InvalidValueError, match="folder changed"):
        sp.supernet()


def test_from_hf_config_only_and_uniform(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    sp = space_from_hf(path, "cfg-only", uniform=True)
    assert sp.path is None and sp.uniform
    assert {d.name for d in sp.dimensions} >= {"hidden", "heads", "ffn", "layer_0", "batch", "prompt_len", "gen_len"}
    config = sp.sample(np.random.default_rng(1))
    assert sp.params(config) > 0 and int(config["hidden"]) % int(config["heads"]) == 0


def test_qwen2_and_mistral_extract() -> None:
    for arch, model_type in (("Qwen2ForCausalLM", "qwen2"), ("MistralForCausalLM", "mistral")):
        sp = HFCausalLMSpace("other", TINY | {"architectures": [arch], "model_type": model_type}, options=OPTIONS)
        net = sp.supernet(0)
        config = sp.validate(_mixed(sp))
        net.set_active(sp.arch_of(config))
        with torch.no_grad():
            sub = sp.extract(net, config)
            torch.testing.assert_close(sub(input_ids=_ids()).logits, net(_ids()), rtol=0, atol=1e-6)
        assert type(sub).__name__ == arch
        assert sum(p.numel() for p in sub.parameters()) == sp.params(config)


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "architectures", "LlamaForCausalLM"),
        ({"model_type": "gpt2"}, "model_type", "'llama'"),
        ({"hidden_size": None}, "hidden_size", "an integer in"),
        ({"hidden_size": 10**12}, "hidden_size", "an integer in"),
        ({"num_hidden_layers": 0}, "num_hidden_layers", "an integer in"),
        ({"num_key_value_heads": 3}, "num_key_value_heads", "divisor"),
        ({"hidden_act": "gelu"}, "hidden_act", "silu"),
        ({"auto_map": {"AutoModelForCausalLM": "x.Y"}}, "auto_map", "never runs"),
        ({"trust_remote_code": True}, "trust_remote_code", "never runs"),
        ({"rms_norm_eps": "tiny"}, "rms_norm_eps", "a number"),
        ({"rope_scaling": {"rope_type": "evil"}}, "rope_scaling.rope_type", "llama3"),
        (
            {"vocab_size": 1_000_000, "hidden_size": 65_536, "num_attention_heads": 512, "num_hidden_layers": 512},
            "config.json",
            "at most 1,000,000,000,000 parameters",
        ),
    ],
)
def test_bad_config_is_one_line_error(tmp_path: Path, change: dict[str, Any], field: str, allowed: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in (TINY | change).items() if v is not None}))
    with pytest.raises(InvalidValueError) as err:
        space_from_hf(path, "bad")
    message = str(err.value)
    assert "\n" not in message and field in message and allowed in message and "got" in message
    out = runner.invoke(app, ["space", "from-hf", str(path), "--name", "bad", "--store", f"sqlite:///{tmp_path}/s.db"])
    assert out.exit_code == 1 and field in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bad_folders_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(HwparetoError, match="pickle checkpoints"):
        space_from_hf(folder, "x")
    with pytest.raises(InvalidValueError, match="PATH"):
        space_from_hf(tmp_path / "missing", "x")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(InvalidValueError, match="--name"):
        space_from_hf(tmp_path / "config.json", "Bad Name")
    (tmp_path / "broken.json").write_text("{" * 100)
    with pytest.raises(HwparetoError, match=r"nesting|JSON"):
        space_from_hf(tmp_path / "broken.json", "x")
    with pytest.raises(InvalidValueError, match=r"options\.batch"):
        HFCausalLMSpace("x", TINY, options={"batch": [0]})
    with pytest.raises(InvalidValueError, match="kind"):
        space_from_document({"kind": "pickle", "name": "x"})


@pytest.mark.parametrize(
    ("context", "prompts", "gens"),
    [(256, (128,), (32, 128)), (128, (32, 64), (32,)), (8192, (128, 512, 2048), (32, 128, 512))],
)
def test_default_runtime_lengths_fit_the_context(tmp_path: Path, context: int, prompts: tuple, gens: tuple) -> None:
    """Without runtime options the prompt and generated lengths are the defaults that fit the model's context (a
    small model's context is split instead), so every sampled SubNet is valid."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY | {"max_position_embeddings": context}))
    sp = space_from_hf(path, "ctx")
    assert sp.dimension("prompt_len").choices == prompts
    assert sp.dimension("gen_len").choices == gens
    rng = np.random.default_rng(0)
    for _ in range(20):
        config = sp.sample(rng)
        assert int(config["prompt_len"]) + int(config["gen_len"]) <= context
