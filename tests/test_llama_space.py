"""Spaces of local Hugging Face decoder-only models (``hwpareto space from-hf``): tiny random Llama configs, no
downloads. SubNets equal the SuperNet's active config, round-trip through save_pretrained / hwpareto's loader, the
importance ordering keeps the full model's function, and bad config.json files are one-line errors."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store
from supernet import LayerSpec, SuperNet, get_space, space_document, space_from_document
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
    assert isinstance(net, SuperNet)  # set_active takes the space's configs, as every SuperNet's does
    for config in configs:
        net.set_active(config)
        assert net.active == sp.arch_of(config)
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


@pytest.mark.parametrize("tied", [False, True])
def test_from_hf_folder_stored_and_rebuilt(tmp_path: Path, tied: bool) -> None:
    folder, model = _model_folder(tmp_path, tie_word_embeddings=tied)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = runner.invoke(app, ["space", "from-hf", str(folder), "--name", "tiny-llama", "--store", url])
    assert out.exit_code == 0, out.output
    with Store.open(url) as store:
        sp = store.spaces.get("tiny-llama")
        store.spaces.register(sp)  # the same definition again: a no-op
    assert isinstance(sp, HFCausalLMSpace) and sp.path == str(folder.resolve()) and sp.weights_sha256
    assert space_from_document(space_document(sp)).describe() == sp.describe()
    net = sp.supernet()  # built uninitialised, every parameter loaded from the folder, then reordered by importance
    assert (net.model.lm_head.weight is net.model.model.embed_tokens.weight) == tied
    ids = _ids(8)
    with torch.no_grad():
        torch.testing.assert_close(net(ids), model(input_ids=ids).logits, rtol=0, atol=1e-5)
        for seed in (1, 2):  # the same function whatever the RNG (nothing random is left in a loaded SuperNet)
            torch.testing.assert_close(sp.supernet(seed=seed)(ids), net(ids), rtol=0, atol=0)
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


def test_from_hf_cli_runtime_lengths(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY | {"max_position_embeddings": 64}))
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["space", "from-hf", str(path), "--store", url]
    lengths = ["--prompt-len", "16", "--prompt-len", "40", "--gen-len", "8", "--gen-len", "0", "--batch", "2"]
    out = runner.invoke(app, [*args, "--name", "rt", *lengths])
    assert out.exit_code == 0, out.output
    with Store.open(url) as store:
        dims = {d.name: d.choices for d in store.spaces.get("rt").dimensions}
    assert dims["prompt_len"] == (16, 40) and dims["gen_len"] == (0, 8) and dims["batch"] == (2,)
    # lengths that do not fit the context: one line naming the option and the limit; nothing stored
    out = runner.invoke(app, [*args, "--name", "rt2", "--prompt-len", "64"])
    assert out.exit_code == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "options.prompt_len" in out.stderr and "max_position_embeddings = 64" in out.stderr
    with Store.open(url) as store:
        assert "rt2" not in store.spaces.names()


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


# ---------------------------------------------------------------------------------------------------- LUT keys
def _enumerated(sp: HFCausalLMSpace) -> list[Any]:
    """Every valid config with all layers kept and one heads / FFN width for all (all the reachable LUT keys)."""
    out = []
    runtime = [sp.dimension(k).choices for k in ("batch", "prompt_len", "gen_len")]
    for d, h, f, b, p, g in itertools.product(sp.hidden_choices, sp.head_choices, sp.ffn_choices, *runtime):
        per: dict[str, Any] = {"heads": h, "ffn": f}
        if not sp.uniform:
            per = {f"{k}_{i}": v for i in range(sp.arch.num_layers) for k, v in per.items()}
        values = sp.largest().values | per | {"hidden": d, "batch": b, "prompt_len": p, "gen_len": g}
        with contextlib.suppress(InvalidValueError):
            out.append(sp.validate(values))
    return out


@pytest.mark.parametrize("uniform", [False, True])
def test_layer_universe_is_exact_and_terms_match_layers(uniform: bool) -> None:
    sp = _space(uniform)
    universe = sp.layer_universe()
    assert len(set(universe)) == len(universe)
    reached = {spec for c in _enumerated(sp) for spec in sp.layers(c)}
    assert reached == set(universe)
    configs = [sp.sample(np.random.default_rng(i)) for i in range(25)]
    counts = sp.layer_counts(configs)  # built from layer_terms
    column = {spec: j for j, spec in enumerate(counts.specs)}
    for row, config in enumerate(configs):
        layers = Counter(sp.layers(config))
        assert set(layers) <= set(universe)
        dense = {counts.specs[j]: n for j, n in enumerate(counts.matrix[[row]].toarray()[0]) if n}
        assert dense == {spec: float(n) for spec, n in layers.items()}, sp.summary(config)
        assert all(column[s] >= 0 for s in layers)
    restricted = sp.layer_universe({"prompt_len": [16], "batch": [1]})
    assert restricted and set(restricted) < set(universe)
    assert {s.seq for s in restricted if s.phase == "prefill" and s.op == "linear"} == {16}


def test_prefill_and_decode_specs_never_share_a_key() -> None:
    sp = _space()
    config = sp.validate(_mixed(sp) | {"batch": 4, "prompt_len": 32, "gen_len": 8})
    specs = sp.layers(config)
    assert {s.phase for s in specs} == {"prefill", "decode"}
    prefill = {s.key for s in specs if s.phase == "prefill"}
    decode = {s.key for s in specs if s.phase == "decode"}
    assert prefill and decode and not prefill & decode
    assert len({s.key for s in specs}) == len(set(specs))
    attn = [s for s in specs if s.op == "attention"]
    # 2 kept layers: prefill 32×32 causal over batch × heads, decode 1 query against 32 + 8 // 2 cached keys
    assert [(s.phase, s.seq, s.context or s.seq) for s in attn] == [("prefill", 32, 32), ("decode", 1, 36)] * 2
    assert [(s.heads, s.kv_heads) for s in attn] == [(4 * 2, 4 * 1)] * 2 + [(4 * 4, 4 * 2)] * 2
    ops = Counter(s.op for s in specs)
    assert {"embedding", "rmsnorm", "rope", "swiglu", "attention", "linear", "add"} == set(ops)
    assert ops["linear"] == 2 * (2 * 7 + 1)  # both phases: 7 projections per layer, LM head
    assert all(s.seq == 4 * 32 for s in specs if s.phase == "prefill" and s.op != "attention")
    assert all(s.seq == 4 for s in specs if s.phase == "decode" and s.op != "attention")
    no_gen = HFCausalLMSpace("g0", TINY, options={"prompt_len": [16], "gen_len": [0, 8]})
    zero = no_gen.validate(no_gen.largest().values | {"gen_len": 0})
    assert {s.phase for s in no_gen.layers(zero)} == {"prefill"}
    assert set(no_gen.layers(zero)) <= set(no_gen.layer_universe())


@pytest.mark.parametrize("qwen", [False, True])
def test_layer_macs_relate_to_the_analytic_macs(qwen: bool) -> None:
    """(prefill + gen_len × decode step) / batch = analytic MACs, but for the decode attention's representative
    cache length P + G // 2 standing for the exact P + j of step j."""
    extra = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"} if qwen else {}
    sp = HFCausalLMSpace("m", TINY | extra, options={"prompt_len": [16, 32], "gen_len": [7, 8]})
    rng = np.random.default_rng(0)
    for _ in range(20):
        config = sp.sample(rng)
        b, p, g = (int(config[k]) for k in ("batch", "prompt_len", "gen_len"))
        specs = sp.layers(config)
        prefill = sum(s.macs for s in specs if s.phase == "prefill")
        decode = sum(s.macs for s in specs if s.phase == "decode")
        assert (prefill + g * decode) % b == 0
        exact_minus_rep = g * (g + 1) // 2 - g * (g // 2)
        correction = sum(2 * h * sp.arch.head_dim * exact_minus_rep for _, h, _ in sp.kept_layers(config))
        assert (prefill + g * decode) // b + correction == sp.macs(config), sp.summary(config)
        linear = sum(s.macs for s in specs if s.op == "linear" and s.phase == "prefill")
        assert linear == b * p * sum(s.macs for s in specs if s.op == "linear" and s.phase == "decode") // b
    # params stay analytic (decode specs repeat the prefill weights)
    config = sp.largest()
    prefill_params = sum(s.params for s in sp.layers(config) if s.phase == "prefill")
    assert sp.params(config) == prefill_params


def _one_per_kind(sp: HFCausalLMSpace) -> list[Any]:
    """The first spec of each (op, phase) of the space's universe."""
    seen: dict[tuple[str, str], Any] = {}
    for spec in sp.layer_universe({"batch": [4], "prompt_len": [16]}):
        seen.setdefault((spec.op, spec.phase), spec)
    return list(seen.values())


def test_new_ops_run_as_modules_and_attention_matches_sdpa() -> None:
    import torch.nn.functional as F

    from profilers._modules import layer_module

    sp = _space()
    kinds = _one_per_kind(sp)
    assert len(kinds) == 14  # 7 ops × 2 phases
    for spec in kinds:
        module, x = layer_module(spec, batch=2)
        with torch.no_grad():
            out = module(x)
        assert all(torch.isfinite(t).all() for t in (out if isinstance(out, tuple) else (out,))), spec.key
    for seq, context in ((8, 0), (1, 12), (3, 12)):
        spec = LayerSpec("attention", cin=64, heads=4, kv_heads=2, hidden=16, seq=seq, context=context)
        module, q = layer_module(spec, batch=2)
        k, v = (t.repeat_interleave(2, dim=1) for t in (module.k, module.v))
        ctx = context or seq
        mask = torch.ones(seq, ctx, dtype=torch.bool).tril(ctx - seq)
        with torch.no_grad():
            torch.testing.assert_close(module(q), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    with pytest.raises(InvalidValueError, match="kv_heads"):
        LayerSpec("attention", cin=64, heads=4, kv_heads=3, hidden=16, seq=8)
    with pytest.raises(InvalidValueError, match="context"):
        LayerSpec("attention", cin=64, heads=4, hidden=16, seq=8, context=4)
    with pytest.raises(InvalidValueError, match="phase"):
        LayerSpec("linear", cin=4, cout=4, phase="train")
    # keys of the pre-existing ops do not change
    assert LayerSpec("attention", cin=64, heads=4, hidden=16, seq=8).key == "attention:cin=64,seq=8,heads=4,hidden=16"


def test_simulators_cost_every_llama_op() -> None:
    from profilers import backend_for
    from profilers._devices import PRESETS_DIR, load_device_file

    sp = _space()
    kinds = _one_per_kind(sp)
    reram = backend_for(load_device_file(PRESETS_DIR / "cim-reram.yaml"))
    for spec in kinds:
        cost = reram.measure_layer(spec)
        assert cost.latency_ms > 0 and (cost.energy_mj or 0) > 0, spec.key
    decode = next(s for s in kinds if s.op == "attention" and s.phase == "decode")
    assert reram.measure_layer(decode).details["macs"] == decode.macs == 2 * decode.heads * decode.context * 16
    pytest.importorskip("zigzag", reason="the zigzag backend needs the zigzag-dse package")
    cim = backend_for(load_device_file(PRESETS_DIR / "cim-sram-digital.yaml"))
    for spec in kinds:
        if spec.op != "linear":  # vector unit or digital attention fallback: no ZigZag run
            cost = cim.measure_layer(spec)
            assert cost.latency_ms > 0, spec.key


def _imported_tiny(tmp_path: Path) -> str:
    """A store under ``tmp_path`` holding a 2-layer tiny config.json imported as space ``tl``; its URL."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY | {"max_position_embeddings": 32, "num_hidden_layers": 2}))
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = runner.invoke(app, ["space", "from-hf", str(path), "--name", "tl", "--store", url])
    assert out.exit_code == 0, out.output
    return url


def test_profile_cli_stores_lut_rows_for_a_from_hf_space(tmp_path: Path) -> None:
    url = _imported_tiny(tmp_path)
    args = ["profile", "--device", "cpu-local", "--space", "tl", "--store", url, "--json"]
    out = runner.invoke(app, [*args, "--resolution", "8", "--budget-s", "1"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["layers"] > 100 and info["measured"] > 0 and not info["failed"]
    with Store.open(url) as store:
        sp = store.spaces.get("tl")
        lut = store.luts.get("cpu-local", 1)
        universe = {s.key for s in sp.layer_universe({"prompt_len": [8]})}
        assert len(lut) == info["measured"] and set(lut["layer_key"]) <= universe
        assert {"prefill", "decode"} >= {k.rsplit("phase=", 1)[1] for k in lut["layer_key"]}


def _board_lut(store: Store, space: HFCausalLMSpace) -> None:
    """A fake device ``board`` with a LUT of every layer of ``space``."""
    from profilers import DeviceSpec, backend_for, build_lut

    spec = DeviceSpec("board", "fake", "fake", {"gmacs_per_s": 3.0})
    store.devices.add("board", "fake", spec.to_dict(), backend_for(spec).describe())
    build_lut(store, spec, space, workers=1)


def test_analytic_objectives_use_the_space_counts_and_lut_sums_work(tmp_path: Path) -> None:
    from pareto._objectives import Evaluator, parse_objective
    from profilers import Lut

    sp = _space()
    configs = [sp.sample(np.random.default_rng(i)) for i in range(12)]
    with Store.open(str(tmp_path / "s.db")) as store:
        _board_lut(store, sp)
        names = ("params", "macs", "flops", "peak_memory_mb", "latency_ms@board", "weights_mb", "kv_cache_mb")
        metrics = [parse_objective(m) for m in names]
        mean, _ = Evaluator(store, sp, metrics).evaluate(configs)
        lut = Lut.load(store, "board")
        assert mean[:, 0].tolist() == [float(sp.params(c)) for c in configs]
        assert mean[:, 1].tolist() == [float(sp.macs(c)) for c in configs]
        assert mean[:, 2].tolist() == [2.0 * sp.macs(c) for c in configs]
        assert all(mean[:, 3] > 4.0 * mean[:, 0] / 2**20)
        np.testing.assert_allclose(mean[:, 4], lut.sums(sp, configs, "latency"))
        assert all(mean[:, 4] > 0)
        np.testing.assert_allclose(mean[:, 5], 4.0 * mean[:, 0] / 2**20)
        # the KV cache, counted from the transformers model itself: a real generate-time cache of the extracted SubNet
        for c, kv_mb, peak_mb in zip(configs[:3], mean[:3, 6], mean[:3, 3], strict=True):
            shape = (int(c["batch"]), int(c["prompt_len"]) + int(c["gen_len"]))
            ids = torch.randint(0, sp.arch.vocab_size, shape, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                cache = sp.subnet(c)(ids, use_cache=True).past_key_values
            cached = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
            assert kv_mb == pytest.approx(cached / 2**20)
            assert peak_mb > 4.0 * sp.params(c) / 2**20 + kv_mb


def test_prefill_and_decode_objectives_split_the_lut_sum(tmp_path: Path) -> None:
    from pareto._objectives import Evaluator, parse_objective
    from profilers import Lut

    sp = _space()
    configs = [sp.sample(np.random.default_rng(i)) for i in range(12)]
    with Store.open(str(tmp_path / "s.db")) as store:
        _board_lut(store, sp)
        names = ("latency_ms@board", "prefill_ms@board", "decode_ms_per_token@board", "energy_mj_per_token@board")
        mean, _ = Evaluator(store, sp, [parse_objective(m) for m in names]).evaluate(configs)
        lut = Lut.load(store, "board")
        np.testing.assert_allclose(mean[:, 1] + mean[:, 2], mean[:, 0])
        for c, prefill_ms, decode_ms, energy_mj in zip(configs, mean[:, 1], mean[:, 2], mean[:, 3], strict=True):
            phased = [(s.phase, s.key) for s in sp.layers(c)]
            assert prefill_ms == pytest.approx(sum(lut.latency_ms[k] for p, k in phased if p == "prefill"))
            assert decode_ms == pytest.approx(sum(lut.latency_ms[k] for p, k in phased if p == "decode"))
            decode_mj = sum(lut.energy_mj[k] for p, k in phased if p == "decode")
            assert energy_mj == pytest.approx(decode_mj / int(c["batch"]))
        assert (mean[:, 1] > 0).all() and (mean[:, 2] >= 0).all()
        with pytest.raises(InvalidValueError, match="LLM space"):
            Evaluator(store, get_space("nb201"), [parse_objective("prefill_ms@board")])


def test_search_under_a_decode_budget(tmp_path: Path) -> None:
    from pareto.analysis._analysis import study_results
    from pareto.search._search import SearchSpec, load_trials, run_surrogate
    from profilers import Lut

    url = _imported_tiny(tmp_path)
    with Store.open(url) as store:
        sp = store.spaces.get("tl")
        _board_lut(store, sp)
        lut = Lut.load(store, "board")

        def decode_ms(config: Any) -> float:
            return sum(lut.latency_ms[s.key] for s in sp.layers(config) if s.phase == "decode")

        sample = [decode_ms(sp.sample(np.random.default_rng(i))) for i in range(40)]
        bound = float(np.median(sample))
        objectives = ("params:max", "decode_ms_per_token@board", "kv_cache_mb")
        search = SearchSpec(
            "d1", "tl", objectives, (f"decode_ms_per_token@board <= {bound}",), n_trials=60, population=20
        )
        assert run_surrogate(store, search).total == 60
        trials, values, constraints = load_trials(store, "d1")
        configs = [sp.validate(t["config"]) for t in trials]
        np.testing.assert_allclose(values[:, 1], [decode_ms(c) for c in configs])
        np.testing.assert_allclose(values[:, 2], [sp.kv_cache_mb(c) for c in configs])
        np.testing.assert_allclose(constraints[:, 0], values[:, 1] - bound)
        front = study_results(store, "d1").front("board").rows
        assert len(front) and (front["decode_ms_per_token@board"] <= bound).all()  # the front is feasible only
        feasible = constraints[:, 0] <= 0
        assert feasible[20:].mean() > feasible[:20].mean()  # later generations move into the budget


def test_public_loader_reads_an_exported_per_layer_bundle(tmp_path: Path) -> None:
    """Issue 28: the README's ``supernet.llama.load_subnet`` exists and reads a per-layer SubNet's ``model/`` folder
    (which transformers alone cannot load) to the same function as the SuperNet's extraction."""
    import supernet.llama
    from pareto.bundles._export import export_subnet

    assert "load_subnet" in supernet.llama.__all__
    sp = _space()
    config = sp.validate(_mixed(sp))
    export_subnet(sp, config, tmp_path / "bundle", weights=True, random_weights=True, seed=5)
    folder = tmp_path / "bundle" / "model"
    assert (folder / "hwpareto_subnet.json").is_file()  # per-layer sizes: not a save_pretrained folder
    model = supernet.llama.load_subnet(folder)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert [layer.mlp.gate_proj.out_features for layer in model.model.layers] == [48, 72]
    with torch.no_grad():
        expected = sp.extract(sp.supernet(seed=5), config)(input_ids=_ids()).logits
        torch.testing.assert_close(model(input_ids=_ids()).logits, expected, rtol=0, atol=1e-6)
