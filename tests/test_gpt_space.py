"""The built-in ``gpt`` space: validation, sampling, cost model and the weight-shared SuperNet."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwpareto.errors import InvalidValueError
from supernet import SubNetConfig, get_space
from supernet.gpt import GPTSpace
from supernet.gpt._model import GPTSuperNet

SPACE = GPTSpace()
# Float32 logits of the SuperNet slice vs the extracted module differ only by summation order (fused qkv matmul,
# spelled-out attention core vs SDPA): observed below 1e-6, asserted at 1e-5 absolute and relative.
ATOL = RTOL = 1e-5


def _config(kept: tuple[int, ...] | None = None, **values: int) -> SubNetConfig:
    """The largest config with ``values`` overridden and, when given, only the layers ``kept`` kept."""
    base = SPACE.largest().values
    if kept is not None:
        base |= {f"layer_{i}": int(i in kept) for i in range(SPACE.n_layers)}
    return SPACE.validate(base | values)


SKIP_MIDDLE = _config(kept=(0, 3, 5), embed_dim=192, seq_len=64, heads_0=2, heads_3=4, ffn_3=512, ffn_5=256)
CONFIGS = [
    SPACE.smallest(),
    SPACE.largest(),
    SKIP_MIDDLE,
    *(SPACE.sample(np.random.default_rng(seed)) for seed in range(3)),
]


def _supernet() -> GPTSuperNet:
    """Seed-0 SuperNet in eval mode with random LayerNorm affines and biases, so that every slice matters."""
    sn = SPACE.supernet(0).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in sn.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=gen))
    return sn


def _logits(model: nn.Module, config: SubNetConfig) -> torch.Tensor:
    with torch.no_grad():
        return model(SPACE.dummy_input(config, batch=2))


# ---------------------------------------------------------------------- space definition
def test_dimensions_size_and_registry() -> None:
    names = [d.name for d in SPACE.dimensions]
    assert names[:5] == ["embed_dim", "seq_len", "layer_0", "heads_0", "ffn_0"]
    assert names[-3:] == ["layer_5", "heads_5", "ffn_5"] and len(names) == 2 + 3 * 6
    assert SPACE.dimension("heads_2").choices == (2, 4, 8)
    assert SPACE.dimension("layer_4").choices == (0, 1)
    assert SPACE.size() == 3 * 3 * (2 * 3 * 3) ** 6
    assert isinstance(get_space("gpt"), GPTSpace) and SPACE.max_seq == 256 and SPACE.description


@pytest.mark.parametrize(
    ("change", "field", "allowed", "got"),
    [
        ({"drop": "ffn_2"}, "gpt config", "ffn_2", "missing"),
        ({"dropout": 0.1}, "gpt config", "only the dimensions", "dropout"),
        ({"heads_0": 3}, "gpt.heads_0", "one of 2, 4, 8", "got 3"),
        ({f"layer_{i}": 0 for i in range(6)}, "gpt config.layer_*", "at least 1 kept layer(s)", "(0, 0, 0, 0, 0, 0)"),
    ],
)
def test_validate_rejects(change: dict[str, object], field: str, allowed: str, got: str) -> None:
    values: dict[str, object] = dict(SPACE.largest().values)
    if "drop" in change:
        del values[str(change["drop"])]
    else:
        values |= change
    with pytest.raises(InvalidValueError) as info:
        SPACE.validate(values)
    message = str(info.value)
    assert message.startswith(field + ":") and allowed in message and got in message


def test_min_layers_and_sample() -> None:
    space = GPTSpace(min_layers=3)
    with pytest.raises(InvalidValueError, match="at least 3 kept layer"):
        space.validate(_config(kept=(0, 1)).values)
    assert [space.smallest()[f"layer_{i}"] for i in range(6)] == [1, 1, 1, 0, 0, 0]
    for s in (SPACE, space):
        first = [s.sample(np.random.default_rng(7)).key for _ in range(3)]
        draws = [s.sample(rng) for rng in [np.random.default_rng(7)] for _ in range(200)]
        again = [s.sample(rng) for rng in [np.random.default_rng(7)] for _ in range(200)]
        assert len(set(first)) == 1 and [c.key for c in draws] == [c.key for c in again]
        assert all(s.validate(c) == c for c in draws)
        kept = [sum(int(c[f"layer_{i}"]) for i in range(6)) for c in draws]
        assert min(kept) >= s.min_layers and len(set(kept)) > 2 and len({c.key for c in draws}) == 200
    assert SPACE.sample(np.random.default_rng(8)) != SPACE.sample(np.random.default_rng(7))


def test_key_is_stable() -> None:
    values = SKIP_MIDDLE.values
    reordered = dict(reversed(list(values.items())))
    assert SPACE.validate(values).key == SPACE.validate(reordered).key == SKIP_MIDDLE.key
    assert re.fullmatch(r"[0-9a-f]{16}", SKIP_MIDDLE.key)
    assert SPACE.validate(values | {"ffn_5": 512}).key != SKIP_MIDDLE.key
    assert SPACE.validate(values | {"seq_len": 128}).key != SKIP_MIDDLE.key


def test_encode() -> None:
    vec = SPACE.encode(SKIP_MIDDLE)
    names = SPACE.encoding_names()
    assert len(vec) == len(names) == 20 and names[2:5] == ["layer_0", "heads_0", "ffn_0"]
    row = dict(zip(names, vec, strict=True))
    assert (row["embed_dim"], row["seq_len"]) == (192, 64)
    assert (row["layer_3"], row["heads_3"], row["ffn_3"]) == (1, 4, 512)
    assert (row["layer_1"], row["heads_1"], row["ffn_1"]) == (0, 0, 0)  # dropped layers encode as zeros


def test_layers_follow_kept_blocks() -> None:
    specs = SPACE.layers(SKIP_MIDDLE)
    assert [s.op for s in specs[:2]] == ["embedding", "embedding"] and specs[1].cin == 256
    assert [s.op for s in specs[2:11]] == [
        "layernorm", "linear", "attention", "linear", "add", "layernorm", "linear", "linear", "add"
    ]  # fmt: skip
    attention = [s for s in specs if s.op == "attention"]
    assert [(s.heads, s.hidden, s.seq) for s in attention] == [(2, 32, 64), (4, 32, 64), (8, 32, 64)]
    assert specs[-1].key == "linear:cin=192,cout=256,seq=64" and len(specs) == 2 + 3 * 9 + 2


# ---------------------------------------------------------------------- weight sharing
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.key)
def test_extracted_subnet_matches_supernet(config: SubNetConfig) -> None:
    sn = _supernet()
    sn.set_active(config)
    sub = SPACE.extract(sn, config)
    assert sub.training and all(m.training for m in sub.modules())  # the mode of a fresh module
    torch.testing.assert_close(_logits(sub.eval(), config), _logits(sn, config), atol=ATOL, rtol=RTOL)
    sn_ptrs = {p.data_ptr() for p in sn.parameters()}
    assert not any(p.data_ptr() in sn_ptrs for p in sub.parameters())  # copies, not views


def test_extracted_weights_are_the_selected_slices() -> None:
    sn = _supernet()
    sub = SPACE.extract(sn, SKIP_MIDDLE)
    assert len(sub.blocks) == 3
    src, dst = sn.blocks[3], sub.blocks[1]  # SubNet block 1 is SuperNet layer 3 (layers 1, 2 dropped)
    w = 4 * 32
    expected = torch.cat([src.q.weight[:w, :192], src.k.weight[:w, :192], src.v.weight[:w, :192]])
    assert torch.equal(dst.qkv.weight, expected)
    assert torch.equal(dst.qkv.bias, torch.cat([src.q.bias[:w], src.k.bias[:w], src.v.bias[:w]]))
    assert torch.equal(dst.proj.weight, src.proj.weight[:192, :w])
    assert torch.equal(dst.fc1.weight, src.fc1.weight[:512, :192]) and torch.equal(dst.fc2.bias, src.fc2.bias[:192])
    assert torch.equal(dst.ln2.weight, src.ln2.weight[:192])
    assert torch.equal(sub.blocks[2].fc2.weight, sn.blocks[5].fc2.weight[:192, :256])
    assert torch.equal(sub.blocks[0].qkv.weight[:64], sn.blocks[0].q.weight[:64, :192])
    assert sub.pos_emb.weight.shape == (256, 192) and torch.equal(sub.pos_emb.weight, sn.pos_emb.weight[:, :192])
    assert torch.equal(sub.head.weight, sn.head.weight[:, :192])


def test_elastic_depth_uses_the_kept_layers() -> None:
    sn = _supernet()
    sn.set_active(SKIP_MIDDLE)
    before = _logits(sn, SKIP_MIDDLE)
    with torch.no_grad():
        sn.blocks[1].fc1.weight.add_(1.0)
        sn.blocks[2].q.weight.add_(1.0)
    assert torch.equal(_logits(sn, SKIP_MIDDLE), before)
    with torch.no_grad():
        sn.blocks[3].fc1.weight[:512, :192].neg_()
    after = _logits(sn, SKIP_MIDDLE)
    assert not torch.allclose(after, before, atol=1e-3)
    torch.testing.assert_close(_logits(SPACE.extract(sn, SKIP_MIDDLE).eval(), SKIP_MIDDLE), after, atol=ATOL, rtol=RTOL)


def test_supernet_defaults_to_largest_and_is_deterministic() -> None:
    state = torch.get_rng_state()
    a, b, c = SPACE.supernet(0), SPACE.supernet(0), SPACE.supernet(1)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)
    sn = _supernet()
    fresh = _logits(sn, SPACE.largest())
    sn.set_active(SPACE.largest())
    assert torch.equal(_logits(sn, SPACE.largest()), fresh)


def test_set_active_and_extract_reject_foreign_configs() -> None:
    wide = GPTSpace(embed_choices=(512,))
    with pytest.raises(InvalidValueError, match="embed_dim"):
        SPACE.supernet(0).set_active(wide.largest())
    with pytest.raises(InvalidValueError, match="gpt config with 6 layers"):
        SPACE.supernet(0).set_active(GPTSpace(n_layers=2).largest())
    with pytest.raises(InvalidValueError, match="GPTSuperNet"):
        SPACE.extract(nn.Linear(2, 2), SPACE.largest())


# ---------------------------------------------------------------------- cost model
def test_params_match_extracted_modules() -> None:
    sn = SPACE.supernet(0)
    for config in CONFIGS:
        assert SPACE.params(config) == sum(p.numel() for p in SPACE.extract(sn, config).parameters())
    # vocab 256, max_seq 256, head_dim 32. Smallest: d=128, one layer of 2 heads (width 64) and ffn 256.
    smallest = (
        256 * 128 + 256 * 128  # token and position tables
        + 2 * 128 + (128 * 3 * 64 + 3 * 64) + (64 * 128 + 128)  # ln1, fused qkv, out proj
        + 2 * 128 + (128 * 256 + 256) + (256 * 128 + 128)  # ln2, fc1, fc2
        + 2 * 128 + 128 * 256  # final LN, lm head (no bias)
    )  # fmt: skip
    # Largest: d=256, six layers of 8 heads (width 256) and ffn 1024.
    layer = 2 * 256 + (256 * 768 + 768) + (256 * 256 + 256) + 2 * 256 + (256 * 1024 + 1024) + (1024 * 256 + 256)
    largest = 256 * 256 + 256 * 256 + 6 * layer + 2 * 256 + 256 * 256
    assert (SPACE.params(SPACE.smallest()), SPACE.params(SPACE.largest())) == (smallest, largest) == (198080, 4935680)


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: c.key)
def test_macs_match_flop_counter(config: SubNetConfig) -> None:
    sub = SPACE.extract(SPACE.supernet(0), config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sub(SPACE.dummy_input(config))
    assert counter.get_total_flops() == 2 * SPACE.macs(config)


def test_dummy_input() -> None:
    x = SPACE.dummy_input(SKIP_MIDDLE, batch=3, seed=5)
    assert x.shape == (3, 64) and x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < 256
    assert torch.equal(x, SPACE.dummy_input(SKIP_MIDDLE, batch=3, seed=5))
    assert not torch.equal(x, SPACE.dummy_input(SKIP_MIDDLE, batch=3, seed=6))


# ---------------------------------------------------------------------- standalone modules
def test_subnet_loads_extracted_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    extracted = SPACE.extract(_supernet(), SKIP_MIDDLE).eval()
    fresh = SPACE.subnet(SKIP_MIDDLE).eval()
    want = {k: v.shape for k, v in extracted.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == want
    assert not torch.equal(_logits(fresh, SKIP_MIDDLE), _logits(extracted, SKIP_MIDDLE))
    save_file(extracted.state_dict(), tmp_path / "sub.safetensors")
    fresh.load_state_dict(load_file(tmp_path / "sub.safetensors"))
    assert torch.equal(_logits(fresh, SKIP_MIDDLE), _logits(extracted, SKIP_MIDDLE))


def test_sort_channels_keeps_largest_and_orders_importance() -> None:
    sn = _supernet()
    before = _logits(sn, SPACE.largest())
    small_before = SPACE.extract(sn, SKIP_MIDDLE).state_dict()["blocks.0.fc1.weight"]
    sn.sort_channels()
    # Permutations only reorder float32 sums: ATOL = RTOL = 1e-5.
    torch.testing.assert_close(_logits(sn, SPACE.largest()), before, atol=ATOL, rtol=RTOL)
    assert not torch.equal(SPACE.extract(sn, SKIP_MIDDLE).state_dict()["blocks.0.fc1.weight"], small_before)
    for block in sn.blocks:
        heads = torch.linalg.vector_norm(block.proj.weight.reshape(256, 8, 32), dim=(0, 2))
        neurons = torch.linalg.vector_norm(block.fc2.weight, dim=0)
        assert torch.all(heads[:-1] >= heads[1:] - 1e-6) and torch.all(neurons[:-1] >= neurons[1:] - 1e-6)
    channels = torch.linalg.vector_norm(torch.cat([sn.tok_emb.weight, sn.pos_emb.weight]), dim=0)
    assert torch.all(channels[:-1] >= channels[1:] - 1e-6)  # 1e-6: norms recomputed after the row permutations


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    sub = SPACE.extract(_supernet(), SKIP_MIDDLE).eval()
    x = SPACE.dummy_input(SKIP_MIDDLE)
    path = tmp_path / "gpt.onnx"
    torch.onnx.export(sub, (x,), str(path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = sub(x).numpy()
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)


def test_space_module_does_not_import_torch() -> None:
    code = "import sys, supernet; supernet.get_space('gpt').layers(supernet.get_space('gpt').largest()); "
    code += "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
