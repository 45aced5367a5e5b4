"""The nb201 space: NAS-Bench-201 arch strings and indices, cost model, and the weight-shared SuperNet."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwpareto.errors import InvalidValueError
from supernet import SubNetConfig, get_space
from supernet.nb201 import NB201Space
from supernet.nb201._space import OPS

EDGES = [f"edge{i}" for i in range(6)]


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


def _uniform(space: NB201Space, op: str) -> SubNetConfig:
    return space.validate(dict.fromkeys(EDGES, op))


def _sampled(space: NB201Space, n: int, seed: int = 0) -> list[SubNetConfig]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def _randomise_bn(model: torch.nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics and affine params, so a wrong copy or slice changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def supernet(space: NB201Space) -> torch.nn.Module:
    sn = space.supernet(0).eval()
    _randomise_bn(sn)
    return sn


def test_registry_space_and_lazy_torch(space: NB201Space) -> None:
    assert get_space("nb201").name == "nb201"
    assert [d.name for d in space.dimensions] == EDGES
    assert all(d.choices == OPS for d in space.dimensions)
    assert space.size() == 15625
    assert space.encode(space.sample(np.random.default_rng(0))).shape == (30,)
    assert space.record_columns() == [["arch_str"], EDGES, ["arch_index"]]
    code = "import sys, supernet; supernet.get_space('nb201').params(supernet.get_space('nb201').largest()); "
    code += "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- arch strings and indices
def test_arch_str_round_trip_all_archs(space: NB201Space) -> None:
    seen = set()
    for ops in itertools.product(OPS, repeat=6):
        config = space.validate(dict(zip(EDGES, ops, strict=True)))
        text = space.to_arch_str(config)
        assert text == "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
        assert space.from_arch_str(text) == config
        seen.add(text)
    assert len(seen) == 15625


def test_index_order_matches_nas_bench_201(space: NB201Space) -> None:
    assert space.to_arch_str(space.from_index(0)) == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    )
    assert space.to_arch_str(space.from_index(9)) == (
        "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    configs = [space.from_index(i) for i in range(15625)]
    assert len(set(configs)) == 15625
    assert all(space.index_of(c) == i for i, c in enumerate(configs))
    for bad in (-1, 15625, 1.5, True):
        with pytest.raises(InvalidValueError, match="arch_index"):
            space.from_index(bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_every_published_row_parses(space: NB201Space, shared_data: Path) -> None:
    table = pd.read_csv(shared_data / "nb201_accuracy_latency.csv", usecols=["arch_index", "arch_str", *EDGES])
    assert len(table) == 15625
    for row in table.to_dict("records"):
        config = space.from_record(row)
        assert space.index_of(config) == row["arch_index"]
        assert space.to_arch_str(config) == row["arch_str"]
        assert [config[e] for e in EDGES] == [row[e] for e in EDGES]
        assert space.from_record({"arch_str": row["arch_str"]}) == config
    assert space.to_record(config) == row


def test_from_record_column_sets_must_agree(space: NB201Space) -> None:
    config = space.from_index(123)
    record = space.to_record(config)
    assert space.from_record({"arch_index": "123"}) == config
    assert space.from_record({e: record[e] for e in EDGES}) == config
    assert space.from_record({"edge0": record["edge0"]}, defaults=config.values) == config
    with pytest.raises(InvalidValueError, match=r"columns arch_str and arch_index"):
        space.from_record({**record, "arch_index": 124})
    with pytest.raises(InvalidValueError, match=r"columns arch_str and edge0\.\.edge5"):
        space.from_record({**record, "edge5": "none" if record["edge5"] != "none" else "skip_connect"})
    with pytest.raises(InvalidValueError, match=r"arch_str, edge0\.\.edge5 or arch_index"):
        space.from_record({"accuracy": 90.0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "pattern"),
        ("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|", "pattern"),
        ("|conv_5x5~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "none, skip_connect, nor_conv_1x1"),
        ("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~3|", "edge5 to read op~2"),
    ],
)
def test_malformed_arch_str(space: NB201Space, text: str, expected: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        space.from_arch_str(text)
    message = str(info.value)
    assert message.startswith("arch_str: expected ")
    assert expected in message and repr(text) in message


# ---------------------------------------------------------------- cost model
def test_params_match_nas_bench_201(space: NB201Space) -> None:
    stem = 3 * 16 * 3 * 3 + 2 * 16
    reductions = (
        (16 * 32 * 9 + 2 * 32)
        + (32 * 32 * 9 + 2 * 32)
        + 16 * 32
        + ((32 * 64 * 9 + 2 * 64) + (64 * 64 * 9 + 2 * 64) + 32 * 64)
    )
    head = 2 * 64 + 64 * 10 + 10
    conv3x3_cells = 5 * 6 * sum(c * c * 9 + 2 * c for c in (16, 32, 64))
    assert stem + reductions + head == 73_306  # NAS-Bench-201: 0.073 M
    assert stem + reductions + head + conv3x3_cells == 1_531_546  # NAS-Bench-201: 1.53 M
    assert space.params(_uniform(space, "nor_conv_3x3")) == 1_531_546
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert space.params(_uniform(space, op)) == 73_306


@pytest.mark.slow
def test_params_and_flops_equal_extracted_module(space: NB201Space, supernet: torch.nn.Module) -> None:
    for config in [*_sampled(space, 6), _uniform(space, "nor_conv_3x3"), _uniform(space, "none")]:
        sub = space.extract(supernet, config).eval()
        assert space.params(config) == sum(p.numel() for p in sub.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            sub(space.dummy_input(config))
        assert 2 * space.macs(config) == counter.get_total_flops()


# ---------------------------------------------------------------- SuperNet and weight sharing
def test_supernet_is_deterministic_and_leaves_global_rng(space: NB201Space) -> None:
    state = torch.random.get_rng_state()
    a, b = space.supernet(3), space.supernet(3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.stem[0].weight, space.supernet(4).stem[0].weight)
    x = space.dummy_input(space.largest(), batch=2, seed=5)
    assert x.shape == (2, 3, 32, 32) and torch.equal(x, space.dummy_input(space.largest(), batch=2, seed=5))


def test_extracted_output_equals_supernet_output(space: NB201Space, supernet: torch.nn.Module) -> None:
    x = space.dummy_input(space.largest(), batch=2)
    configs = [*_sampled(space, 5, seed=1), _uniform(space, "none"), _uniform(space, "nor_conv_3x3")]
    configs.append(space.from_arch_str("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|"))
    with torch.no_grad():
        for config in configs:
            supernet.set_active(config)
            expected = supernet(x)
            got = space.extract(supernet, config).eval()(x)
            # Same weights and same op order; 1e-5 only absorbs float32 summation-order differences.
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(expected).all() and expected.abs().max() > 0


def test_extracted_weights_are_copies_of_the_active_ops(space: NB201Space, supernet: torch.nn.Module) -> None:
    config = space.from_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    )
    sub = space.extract(supernet, config)
    for i, cell in enumerate(supernet.cells):
        if not hasattr(cell, "edges"):
            continue
        assert set(sub.cells[i].edges) == {"edge0", "edge1", "edge3", "edge4", "edge5"}
        for edge in ("edge0", "edge1", "edge4"):
            for j in (1, 2):  # the conv and the BN of ReLU-Conv-BN
                got, src = sub.cells[i].edges[edge][j].weight, cell.edges[edge].ops[config[edge]][j].weight
                assert torch.equal(got, src) and got.data_ptr() != src.data_ptr()
            assert torch.equal(
                sub.cells[i].edges[edge][2].running_var, cell.edges[edge].ops[config[edge]][2].running_var
            )
    assert sub.stem[0].weight.data_ptr() != supernet.stem[0].weight.data_ptr()


def test_only_active_weights_affect_the_output(space: NB201Space) -> None:
    sn = space.supernet(0).eval()
    _randomise_bn(sn)
    config = space.from_arch_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    sn.set_active(config)
    x = space.dummy_input(config)
    with torch.no_grad():
        before = sn(x)
        for edge, inactive in (("edge0", "nor_conv_1x1"), ("edge2", "nor_conv_3x3"), ("edge5", "nor_conv_3x3")):
            sn.cells[2].edges[edge].ops[inactive][1].weight.add_(1.0)
        assert torch.equal(sn(x), before)
        sn.cells[2].edges["edge0"].ops["nor_conv_3x3"][1].weight.add_(1.0)
        assert not torch.allclose(sn(x), before)


def test_subnet_state_dict_matches_extract(space: NB201Space, supernet: torch.nn.Module) -> None:
    for config in [*_sampled(space, 4, seed=2), _uniform(space, "none")]:
        fresh = space.subnet(config).state_dict()
        extracted = space.extract(supernet, config).state_dict()
        assert {k: v.shape for k, v in fresh.items()} == {k: v.shape for k, v in extracted.items()}
        space.subnet(config).load_state_dict(extracted)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_onnx_export_matches_torch(space: NB201Space, supernet: torch.nn.Module, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    config = space.from_arch_str("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    model = space.extract(supernet, config).eval()
    x = space.dummy_input(config, batch=2)
    path = tmp_path / "nb201.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_smallest_and_largest_are_by_cost() -> None:
    space = get_space("nb201")
    assert space.params(space.largest()) == 1_531_546 and space.to_arch_str(space.largest()).count("nor_conv_3x3") == 6
    assert space.params(space.smallest()) == 73_306 and space.macs(space.smallest()) < space.macs(space.largest())
