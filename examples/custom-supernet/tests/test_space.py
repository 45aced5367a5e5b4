"""The ``resnet-tiny`` plugin honours hwpareto's space contract (run with the package installed)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hwpareto.errors import InvalidValueError
from supernet import BUILTIN_SPACES, SearchSpace, SubNetConfig, get_space, list_spaces
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwpareto_resnet_example import ResNetTinySpace


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return get_space("resnet-tiny")


def configs(space: SearchSpace, n: int, seed: int = 0) -> Iterator[SubNetConfig]:
    """The smallest and largest configs, then ``n`` sampled ones."""
    rng = np.random.default_rng(seed)
    yield space.smallest()
    yield space.largest()
    for _ in range(n):
        yield space.sample(rng)


def test_entry_point_resolves(space: SearchSpace) -> None:
    assert isinstance(space, ResNetTinySpace) and space.name == "resnet-tiny"
    assert "resnet-tiny" in list_spaces() and "resnet-tiny" not in BUILTIN_SPACES
    assert space.size() == 3**3 * 3**3 * 2**9 * 2


def test_extracted_subnet_computes_what_the_supernet_runs(space: SearchSpace) -> None:
    supernet = space.supernet(seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics and affines, so that a wrong slice shows
        for bn in (m for m in supernet.modules() if isinstance(m, nn.BatchNorm2d)):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.weight.copy_(torch.randn(bn.num_features, generator=generator))
            bn.bias.copy_(torch.randn(bn.num_features, generator=generator))
    supernet.eval()
    for cfg in configs(space, 6):
        supernet.set_active(cfg)  # type: ignore[operator]
        sub = space.extract(supernet, cfg)
        assert not sub.training
        x = space.dummy_input(cfg, batch=2)
        with torch.no_grad():
            expected, got = supernet(x), sub(x)
        assert got.shape == (2, 10)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert list(space.subnet(cfg).state_dict()) == list(sub.state_dict())


def test_cost_model_matches_the_extracted_module(space: SearchSpace) -> None:
    supernet = space.supernet(seed=0).eval()
    for cfg in configs(space, 4, seed=1):
        module = space.extract(supernet, cfg)
        assert sum(p.numel() for p in module.parameters()) == space.params(cfg)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(space.dummy_input(cfg))
        assert counter.get_total_flops() == 2 * space.macs(cfg)


def test_layer_universe_covers_every_config(space: SearchSpace) -> None:
    universe = space.layer_universe()
    assert len(universe) == len(set(universe)) == 189
    for cfg in configs(space, 300, seed=2):
        missing = set(space.layers(cfg)) - set(universe)
        assert not missing, sorted(s.key for s in missing)[:3]
    at_32 = space.layer_universe({"r": [32]})
    assert len(at_32) == 96 and set(at_32) < set(universe)
    with pytest.raises(InvalidValueError, match=r"^resnet-tiny\.r: expected one of 24, 32, got 28$"):
        space.layer_universe({"r": [28]})
    with pytest.raises(InvalidValueError, match="layer restriction"):
        space.layer_universe({"w_0": [0.5]})


def test_layer_terms_match_layers(space: SearchSpace) -> None:
    sample = list(configs(space, 200, seed=3))
    counts = space.layer_counts(sample)
    dense = counts.matrix.toarray()
    for row, cfg in zip(dense, sample, strict=True):
        assert Counter({counts.specs[j]: int(row[j]) for j in np.flatnonzero(row)}) == Counter(space.layers(cfg))


def test_blocks_beyond_the_depth_are_inactive(space: SearchSpace) -> None:
    shallow = space.validate(space.smallest().values | {"e_1": 1.0, "e_2": 1.0})  # stage 0 keeps block 0 only
    assert shallow != space.smallest() and space.canonical(shallow) == space.smallest()
    assert space.arch_key(shallow) == space.arch_key(space.smallest())
    assert space.layers(shallow) == space.layers(space.smallest())
    wider = space.validate(space.smallest().values | {"e_0": 1.0})
    assert space.arch_key(wider) != space.arch_key(space.smallest())
    assert space.params(wider) > space.params(space.smallest())


def test_supernet_is_seeded_and_leaves_the_global_rng(space: SearchSpace) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = space.supernet(seed=7).state_dict(), space.supernet(seed=7).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = space.supernet(seed=8).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_bad_input_is_one_line(space: SearchSpace) -> None:
    with pytest.raises(InvalidValueError, match=r"^resnet-tiny\.d_0: expected one of 1, 2, 3, got 4$"):
        space.validate(space.largest().values | {"d_0": 4})
    with pytest.raises(InvalidValueError, match=r"^supernet: expected a SuperNet of space 'resnet-tiny', got 'Linear'"):
        space.extract(nn.Linear(2, 2), space.largest())


def test_the_layer_model_does_not_import_torch() -> None:
    code = (
        "import sys, supernet; s = supernet.get_space('resnet-tiny'); s.layer_universe(); "
        "s.layer_counts([s.largest()]); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
