"""OFA MobileNetV3 space: OFA encoding round trip, weight sharing, kernel transform, importance order."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from hwpareto.errors import InvalidValueError
from supernet import get_space
from supernet.mbv3 import MobileNetV3Space, make_divisible

# Extracted SubNets run the same kernels on the same sliced weights as the SuperNet, so outputs agree to float
# rounding; 1e-5 absolute/relative leaves room for different summation orders in conv backends.
ATOL = RTOL = 1e-5


@pytest.fixture(scope="module")
def space() -> MobileNetV3Space:
    sp = get_space("mbv3")
    assert isinstance(sp, MobileNetV3Space)
    return sp


@pytest.fixture(scope="module")
def randomised_supernet(space: MobileNetV3Space) -> torch.nn.Module:
    """SuperNet with random BN statistics/affines and non-identity kernel transforms, so slicing errors show."""
    sn = space.supernet(seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in sn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        for name, p in sn.named_parameters():
            if "ks_transform" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return sn


def test_dimensions_follow_ofa(space: MobileNetV3Space) -> None:
    names = [d.name for d in space.dimensions]
    assert names[:20] == [f"ks_{i}" for i in range(20)]
    assert names[20:40] == [f"e_{i}" for i in range(20)]
    assert names[40:45] == [f"d_{s}" for s in range(5)]
    assert names[45:] == ["r", "w"]
    assert space.dimension("r").choices == tuple(range(128, 225, 4))
    assert space.size() == 3**20 * 3**20 * 3**5 * 25 * 2
    assert len(space.encode(space.largest())) == len(space.encoding_names()) == 47


def test_widths_match_ofa_make_divisible(space: MobileNetV3Space) -> None:
    assert space.widths(1.0) == (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    assert space.widths(1.2) == (24, 24, 32, 48, 96, 136, 192, 1152, 1536)
    assert make_divisible(19.2) == 24  # 16 would be > 10 % below 19.2
    assert space.mid_channels(24, 3) == 72 and space.mid_channels(40, 6) == 240


def test_encode_zeroes_inactive_blocks(space: MobileNetV3Space) -> None:
    cfg = space.validate({**space.largest().values, "d_0": 2})
    vec = space.encode(cfg)
    assert vec[2] == vec[3] == 0.0 and vec[0] == 7.0  # ks of blocks 2, 3 (stage 0 beyond depth 2)
    assert vec[22] == vec[23] == 0.0 and vec[20] == 6.0


def test_ofa_record_round_trip_and_errors(space: MobileNetV3Space) -> None:
    record = {
        "ks": "7-5-5-5-7-7-5-7-5-7-3-7-5-3-7-3-5-3-5-3",
        "e": "6-4-4-6-6-3-4-3-3-6-3-3-3-6-3-4-6-4-3-6",
        "d": "2-2-2-2-3",
        "r": "204",
    }
    cfg = space.from_record(record)
    assert cfg["ks_0"] == 7 and cfg["e_19"] == 6 and cfg["d_4"] == 3 and cfg["r"] == 204 and cfg["w"] == 1.0
    back = space.to_record(cfg)
    assert {k: str(back[k]) for k in record} == record
    assert space.from_record({**record, "w": "1.2"})["w"] == 1.2
    assert space.from_record({"ks": [3] * 20, "e": [4] * 20, "d": [2] * 5, "r": [160]})["r"] == 160
    with pytest.raises(InvalidValueError, match=r"ks: expected 20 integers"):
        space.from_record({**record, "ks": "7-5"})
    with pytest.raises(InvalidValueError, match=r"mbv3\.ks_0: expected one of 3, 5, 7, got 9"):
        space.from_record({**record, "ks": "9" + record["ks"][1:]})
    with pytest.raises(InvalidValueError, match=r"mbv3\.r: expected one of 128, 132"):
        space.from_record({**record, "r": "130"})
    with pytest.raises(InvalidValueError, match=r"e: expected 20 integers"):
        space.from_record({**record, "e": record["e"].replace("6", "6.5", 1)})


def test_every_shared_ofa_row_parses(space: MobileNetV3Space, shared_data) -> None:
    with open(shared_data / "ofa_mbv3_latency.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5000
    keys = set()
    for row in rows:
        cfg = space.from_record(row)
        back = space.to_record(cfg)
        assert (back["ks"], back["e"], back["d"], str(back["r"])) == (row["ks"], row["e"], row["d"], row["r"])
        keys.add(cfg.key)
    assert len(keys) == len({(r["ks"], r["e"], r["d"], r["r"]) for r in rows})


def _hand_params(widths: tuple[int, ...], depth: int, expand: int, kernel: int, n_classes: int) -> int:
    """Textbook MobileNetV3 parameter count (conv weights + BN affine), independent of the library code."""

    def div8(v: float) -> int:  # OFA make_divisible for the values used here
        n = max(8, int(v + 4) // 8 * 8)
        return n + 8 if n < 0.9 * v else n

    def conv(cin: int, cout: int, k: int = 1, groups: int = 1, bn: bool = True) -> int:
        return cout * cin // groups * k * k + (2 * cout if bn else 0)

    total = conv(3, widths[0], 3) + conv(widths[0], widths[0], 3, widths[0]) + conv(widths[0], widths[1])
    cin = widths[1]
    for s, se in enumerate((False, True, False, True, True)):
        for _ in range(depth):
            mid = div8(cin * expand)
            total += conv(cin, mid) + conv(mid, mid, kernel, mid) + conv(mid, widths[2 + s])
            if se:
                hid = div8(mid // 4)
                total += mid * hid + hid + hid * mid + mid
            cin = widths[2 + s]
    total += conv(cin, widths[7]) + conv(widths[7], widths[8], bn=False) + widths[8] * n_classes + n_classes
    return total


def test_smallest_and_largest_param_counts(space: MobileNetV3Space, randomised_supernet) -> None:
    smallest = space.smallest()  # w 1.0, depth 2, expand 3, kernel 3
    largest = space.largest()  # w 1.2, depth 4, expand 6, kernel 7
    assert _hand_params(space.widths(1.0), 2, 3, 3, 1000) == space.params(smallest) == 3_410_792
    assert _hand_params(space.widths(1.2), 4, 6, 7, 1000) == space.params(largest) == 10_701_632
    largest_w10 = space.validate({**largest.values, "w": 1.0})
    assert _hand_params(space.widths(1.0), 4, 6, 7, 1000) == space.params(largest_w10) == 7_664_760
    for cfg in (smallest, largest, largest_w10):
        module = space.extract(randomised_supernet, cfg)
        assert sum(p.numel() for p in module.parameters()) == space.params(cfg)


@pytest.mark.slow
def test_extracted_subnet_matches_supernet(space: MobileNetV3Space, randomised_supernet) -> None:
    rng = np.random.default_rng(7)
    configs = [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(4))]
    for cfg in configs:
        randomised_supernet.set_active(cfg)
        x = space.dummy_input(cfg, batch=2, seed=3)
        sub = space.extract(randomised_supernet, cfg).eval()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), randomised_supernet(x), atol=ATOL, rtol=RTOL)
        assert sum(p.numel() for p in sub.parameters()) == space.params(cfg)


def test_extracted_weights_are_supernet_slices(space: MobileNetV3Space, randomised_supernet) -> None:
    cfg = space.validate({**space.smallest().values, "ks_0": 5, "e_0": 4, "w": 1.2})
    sub = space.extract(randomised_supernet, cfg)
    src = randomised_supernet.blocks[0]
    dst = sub.blocks[0]
    cin, mid = 24, space.mid_channels(24, 4)
    assert torch.equal(dst.expand.conv.weight, src.expand.conv.weight[:mid, :cin])
    assert dst.expand.conv.weight.data_ptr() != src.expand.conv.weight.data_ptr()  # a copy, not shared storage
    assert torch.equal(dst.expand.bn.running_var, src.expand.bn.running_var[:mid])
    # kernel 5 = centre 5x5 crop of the 7x7 kernel through the learned 7to5 transform (OFA)
    crop = src.dw.weight[:mid, :, 1:6, 1:6].reshape(mid, 25)
    expected = (crop @ src.ks_transform["7to5"].T).view(mid, 1, 5, 5)
    torch.testing.assert_close(dst.dw.conv.weight, expected)
    assert torch.equal(sub.classifier.weight, randomised_supernet.classifier.weight[:, :1536])


def test_identity_transform_is_plain_centre_crop(space: MobileNetV3Space) -> None:
    sn = space.supernet(seed=2)
    cfg = space.validate({**space.smallest().values, "ks_4": 3, "d_1": 2})
    sub = space.extract(sn, cfg)
    block = sn.blocks[4]
    mid = sub.blocks[2].dw.conv.weight.shape[0]
    assert torch.equal(sub.blocks[2].dw.conv.weight, block.dw.weight[:mid, :, 2:5, 2:5])


def test_depth_keeps_first_blocks(space: MobileNetV3Space) -> None:
    sn = space.supernet(seed=0).eval()
    cfg = space.validate({**space.largest().values, "d_2": 2})
    sn.set_active(cfg)
    x = space.dummy_input(cfg, seed=1)
    with torch.no_grad():
        before = sn(x)
        sn.blocks[space.block_index(2, 3)].project.conv.weight.add_(1.0)  # inactive block 3 of stage 2
        assert torch.equal(sn(x), before)
        sn.blocks[space.block_index(2, 1)].project.conv.weight.add_(1.0)  # active block 1 of stage 2
        assert not torch.allclose(sn(x), before)


@pytest.mark.slow
def test_sort_channels_keeps_largest_function_and_orders_importance(space: MobileNetV3Space) -> None:
    # float64: activations reach ~1e3 at random init, where float32 reordering noise would hide real errors
    sn = space.supernet(seed=5).eval().double()
    cfg = space.largest()
    sn.set_active(cfg)
    x = space.dummy_input(cfg, batch=2).double()
    small = space.validate({**cfg.values, "w": 1.0, "e_5": 3})
    x_small = space.dummy_input(small, batch=2).double()
    with torch.no_grad():
        before = sn(x)
        sn.set_active(small)
        small_before = sn(x_small)
        sn.sort_channels()
        sn.set_active(small)
        small_after = sn(x_small)
        sn.set_active(cfg)
        # a permutation of channels only: equal up to float64 summation-order rounding
        torch.testing.assert_close(sn(x), before, atol=1e-8, rtol=1e-9)
    assert not torch.allclose(small_before, small_after)  # smaller SubNets now keep other (important) channels

    def non_increasing(v: torch.Tensor) -> bool:
        return bool((v[:-1] >= v[1:]).all())

    for block in sn.blocks:  # middle channels: importance from the projection weights (OFA)
        assert non_increasing(block.project.conv.weight.abs().sum((0, 2, 3)))
    assert non_increasing(sn.classifier.weight.abs().sum(0))
    assert non_increasing(sn.feature_mix.conv.weight.abs().sum((0, 2, 3)))


def test_subnet_state_dict_matches_extract(space: MobileNetV3Space, randomised_supernet) -> None:
    cfg = space.sample(np.random.default_rng(11))
    extracted = space.extract(randomised_supernet, cfg).eval()
    fresh = space.subnet(cfg)
    ref = extracted.state_dict()
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in ref.items()}
    fresh.load_state_dict(ref)
    x = space.dummy_input(cfg)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), extracted(x))


def test_layers_cover_every_conv_once(space: MobileNetV3Space) -> None:
    cfg = space.sample(np.random.default_rng(3))
    specs = space.layers(cfg)
    module = space.subnet(cfg)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    se_convs = sum(2 for spec in specs if spec.op == "se")
    assert len([s for s in specs if s.op == "conv2d"]) + se_convs == len(convs)
    c0, r = (16 if cfg["w"] == 1.0 else 24), cfg["r"]
    assert specs[0].key == f"conv2d:cin=3,cout={c0},kernel=3,stride=2,h={r},w={r},act=hswish,bn=1"
    assert specs[-1].op == "linear" and specs[-1].cout == 1000
