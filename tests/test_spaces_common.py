"""The contract every search space honours (run for each built-in space), plus declarative spaces."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwpareto.errors import CapabilityError, InvalidValueError
from supernet import (
    Dimension,
    LayerSpec,
    SearchSpace,
    SubNetConfig,
    get_space,
    list_spaces,
    load_space_file,
    register_space,
    space_from_dict,
)

BUILTIN = ["mbv3", "gpt", "nb201"]


@pytest.fixture(params=BUILTIN)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return get_space(request.param)


def test_builtins_registered() -> None:
    assert set(BUILTIN) <= set(list_spaces())
    with pytest.raises(
        InvalidValueError,
        match=r"^space: expected one of (.*, )?gpt, gpt-stdlib, mbv3, mbv3-digits, nb201, .*got 'resnet'$",
    ):
        get_space("resnet")


def test_sampling_is_seeded_and_valid(space: SearchSpace) -> None:
    a = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    assert a == b and [c.key for c in a] == [c.key for c in b]
    many = [space.sample(np.random.default_rng(i)) for i in range(20)]
    assert len({c.key for c in many}) > 15  # not stuck on one config
    for cfg in many:
        assert space.validate(cfg.values) == cfg


def test_keys_are_stable_content_hashes(space: SearchSpace) -> None:
    cfg = space.largest()
    assert len(cfg.key) == 16 and int(cfg.key, 16) >= 0
    # stored measurements are keyed by this hash: it must not change between versions or processes
    code = f"import supernet; print(supernet.get_space({space.name!r}).largest().key)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == cfg.key
    assert space.smallest().key != cfg.key


def test_validate_errors_name_field_allowed_and_got(space: SearchSpace) -> None:
    good = space.largest().values
    first = space.dimensions[0]
    missing = {k: v for k, v in good.items() if k != first.name}
    with pytest.raises(InvalidValueError, match=rf"{space.name} config: expected values for {first.name}, got"):
        space.validate(missing)
    with pytest.raises(InvalidValueError, match=r"expected only the dimensions .*got 'extra bogus'"):
        space.validate({**good, "bogus": 1})
    bad = 999 if first.numeric else "conv_9x9"
    with pytest.raises(InvalidValueError) as info:
        space.validate({**good, first.name: bad})
    msg = str(info.value)
    assert f"{space.name}.{first.name}" in msg and first.allowed in msg and str(bad) in msg
    with pytest.raises(InvalidValueError, match=r"config.space: expected"):
        space.validate({"space": "other", "values": good})
    assert space.validate({"space": space.name, "values": good}) == space.largest()


def test_encoding_is_fixed_length(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    lengths = {len(space.encode(space.sample(rng))) for _ in range(10)}
    assert lengths == {len(space.encoding_names())}
    assert not np.array_equal(space.encode(space.smallest()), space.encode(space.largest()))


def test_record_round_trip(space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        cfg = space.sample(rng)
        text_record = {k: str(v) for k, v in space.to_record(cfg).items()}  # as a CSV reader sees it
        assert space.from_record(text_record) == cfg


def test_optuna_distributions_cover_the_space(space: SearchSpace) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    valid = 0
    for _ in range(10):
        trial = study.ask({d.name: d.distribution() for d in space.dimensions})
        try:
            space.validate(trial.params)
            valid += 1
        except InvalidValueError:  # cross-dimension rule (e.g. gpt: at least one layer kept)
            pass
        study.tell(trial, 0.0)
    assert valid >= 8


def test_layer_specs_are_well_formed(space: SearchSpace) -> None:
    specs = space.layers(space.sample(np.random.default_rng(2)))
    assert specs and all(isinstance(s, LayerSpec) for s in specs)
    for spec in specs:
        assert LayerSpec.from_dict(spec.to_dict()) == spec
        assert spec.key.startswith(spec.op + ":")
    assert len({s.key for s in specs}) == len(set(specs))  # key identifies a spec


@pytest.mark.slow
def test_cost_model_matches_extracted_module(space: SearchSpace) -> None:
    sn = space.supernet(seed=0).eval()
    rng = np.random.default_rng(4)
    for cfg in (space.smallest(), space.sample(rng)):
        module = space.extract(sn, cfg).eval()
        assert sum(p.numel() for p in module.parameters()) == space.params(cfg)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(space.dummy_input(cfg))
        assert counter.get_total_flops() == 2 * space.macs(cfg)


def test_supernet_init_is_deterministic_and_leaves_global_rng(space: SearchSpace) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = space.supernet(seed=7).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = space.supernet(seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = space.supernet(seed=8).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_importing_supernet_does_not_import_torch() -> None:
    code = (
        "import sys, supernet; [supernet.get_space(n).layers(supernet.get_space(n).largest()) "
        "for n in ('mbv3', 'gpt', 'nb201')]; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


HAT_YAML = """
name: hat-wmt14ende
description: HAT SubTransformer features (WMT'14 En-De), no PyTorch model
dimensions:
  - {name: encoder_embed_dim, choices: [512, 640]}
  - {name: encoder_layer_num, type: int, low: 6, high: 6}
  - {name: encoder_ffn_embed_dim_avg, type: float, low: 1024, high: 3072}
  - {name: decoder_layer_num, type: int, low: 1, high: 6}
  - {name: arch_family, choices: [transformer, evolved]}
"""


def test_declarative_space_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "hat.yaml"
    path.write_text(HAT_YAML)
    sp = load_space_file(path)
    assert sp.name == "hat-wmt14ende" and not sp.has_model and sp.size() == float("inf")
    cfg = sp.from_record(
        {
            "encoder_embed_dim": "640",
            "encoder_layer_num": "6",
            "encoder_ffn_embed_dim_avg": "1877.33",
            "decoder_layer_num": "3",
            "arch_family": "evolved",
            "ignored": "x",
        }
    )
    assert cfg["encoder_ffn_embed_dim_avg"] == pytest.approx(1877.33) and cfg["decoder_layer_num"] == 3
    assert len(sp.encode(cfg)) == len(sp.encoding_names()) == 6  # 4 numeric + one-hot of 2
    assert sp.validate(sp.sample(np.random.default_rng(0))).space == "hat-wmt14ende"
    assert space_from_dict(sp.to_dict()).describe() == sp.describe()
    with pytest.raises(CapabilityError, match="declarative"):
        sp.layers(cfg)
    with pytest.raises(CapabilityError, match="no PyTorch SuperNet"):
        sp.supernet()
    with pytest.raises(InvalidValueError, match=r"decoder_layer_num: expected an integer in \[1, 6\], got 7"):
        sp.validate({**cfg.values, "decoder_layer_num": 7})
    register_space(sp)
    assert get_space("hat-wmt14ende") is sp
    with pytest.raises(InvalidValueError, match=r"space.name: expected a name other than the installed spaces .*mbv3"):
        register_space(space_from_dict({**sp.to_dict(), "name": "mbv3"}))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({"name": "Bad Name", "dimensions": [{"name": "a", "choices": [1]}]}, "name: expected lower-case"),
        ({"name": "x", "dimensions": []}, "dimensions: expected a non-empty list"),
        ({"name": "x", "dimensions": [{"name": "a"}]}, r"dimensions\[0\].type: expected categorical, int or float"),
        ({"name": "x", "dimensions": [{"name": "a", "type": "int", "low": 5, "high": 1}]}, "expected low <= high"),
        ({"name": "x", "dimensions": [{"name": "a", "type": "int", "low": "1", "high": 4}]}, "expected low <= high"),
        ({"name": "x", "dimensions": [{"name": "a", "choices": [1, "b"]}]}, "all numbers or all strings"),
        ({"name": "x", "dimensions": [{"name": "a", "choices": [1], "color": "red"}]}, "expected only the keys"),
        (
            {"name": "x", "dimensions": [{"name": "a", "choices": [1]}, {"name": "a", "choices": [2]}]},
            "expected unique names",
        ),
    ],
)
def test_declarative_space_errors(doc: object, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        space_from_dict(doc)


def test_space_file_errors(tmp_path: Path) -> None:
    from hwpareto.errors import HwparetoError

    with pytest.raises(HwparetoError, match="cannot read"):
        load_space_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(HwparetoError, match="not valid YAML"):
        load_space_file(bad)


def test_dimension_coercion() -> None:
    w = Dimension("w", choices=(1.0, 1.2))
    assert w.coerce(1) == 1.0 and w.coerce(1.2000000000001) == 1.2
    with pytest.raises(InvalidValueError, match=r"w: expected one of 1.0, 1.2, got '1.2'"):
        w.coerce("1.2")
    with pytest.raises(InvalidValueError, match="got True"):
        Dimension("k", choices=(0, 1)).coerce(True)
    steps = Dimension("n", "int", low=2, high=10, step=4)
    assert steps.bounds() == (2, 10) and steps.coerce(6) == 6
    with pytest.raises(InvalidValueError, match="in steps of 4"):
        steps.coerce(4)
    with pytest.raises(InvalidValueError, match="got nan"):
        Dimension("x", "float", low=0, high=1).coerce(float("nan"))


def test_layer_universe_covers_every_config(space: SearchSpace) -> None:
    universe = space.layer_universe()
    assert len(universe) == len(set(universe))
    covered = set(universe)
    rng = np.random.default_rng(9)
    for cfg in [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(200))]:
        missing = set(space.layers(cfg)) - covered
        assert not missing, sorted(s.key for s in missing)[:3]
    if space.input_dimension is not None:
        dim = space.dimension(space.input_dimension)
        one = space.layer_universe({dim.name: [dim.choices[-1]]})
        assert 0 < len(one) < len(universe) and set(one) <= covered
        with pytest.raises(InvalidValueError, match=rf"{space.name}\.{dim.name}: expected one of"):
            space.layer_universe({dim.name: [3]})
    with pytest.raises(InvalidValueError, match="layer restriction"):
        space.layer_universe({"bogus": [1]})


@pytest.mark.parametrize("name", [*BUILTIN, "mbv3-digits", "gpt-stdlib"])
def test_layer_counts_match_layers(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(4)
    configs = [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(150))]
    configs += configs[:5]  # repeats count like any other config
    counts = space.layer_counts(configs)
    assert counts.matrix.shape == (len(configs), len(counts.specs)) and len(set(counts.specs)) == len(counts.specs)
    dense = counts.matrix.toarray()
    for row, cfg in zip(dense, configs, strict=True):
        assert Counter({counts.specs[j]: int(row[j]) for j in np.flatnonzero(row)}) == Counter(space.layers(cfg))
    params = counts.total(np.array([s.params for s in counts.specs]))
    np.testing.assert_array_equal(params, [space.params(c) for c in configs])
    assert space.layer_counts([]).matrix.shape[0] == 0


def test_layer_counts_need_a_layer_model() -> None:
    space = space_from_dict({"name": "no-model", "dimensions": [{"name": "a", "choices": [1, 2]}]})
    with pytest.raises(CapabilityError, match="no layer model"):
        space.layer_counts([space.smallest()])


def test_numpy_choices_hash_like_python_ones() -> None:
    from supernet import DeclarativeSpace

    with_numpy = DeclarativeSpace("t", [Dimension("a", choices=tuple(np.arange(3)))])
    plain = DeclarativeSpace("t", [Dimension("a", choices=(0, 1, 2))])
    assert with_numpy.validate({"a": np.int64(2)}).key == plain.validate({"a": 2}).key


@pytest.mark.parametrize("name", BUILTIN)
def test_layer_count_totals_do_not_depend_on_the_batch(name: str) -> None:
    """A config's per-layer sums are added in one order (its layers' keys), whichever configs share its batch: the
    same float bits alone, in a batch and in a shuffled one."""
    space = get_space(name)
    rng = np.random.default_rng(7)
    configs = [space.sample(rng) for _ in range(120)]
    weight = {spec: float(rng.lognormal()) for spec in space.layer_universe()}

    def totals(batch: list[SubNetConfig]) -> np.ndarray:
        counts = space.layer_counts(batch)
        assert list(counts.specs) == sorted(counts.specs, key=lambda s: s.key)
        return counts.total(np.array([weight[s] for s in counts.specs]))

    together = totals(configs)
    order = rng.permutation(len(configs))
    np.testing.assert_array_equal(totals([configs[i] for i in order]), together[order])
    np.testing.assert_array_equal([totals([c])[0] for c in configs[:30]], together[:30])


def test_counting_the_same_configs_again_reuses_the_counts() -> None:
    """An evaluation counts its batch's layers for the costs, then its accuracy features count them again."""
    space = get_space("mbv3")
    rng = np.random.default_rng(8)
    configs = [space.sample(rng) for _ in range(20)]
    counts = space.layer_counts(configs)
    assert space.layer_counts(list(configs)) is counts
    other = space.layer_counts(configs[1:])
    assert other is not counts and other.matrix.shape[0] == 19
    np.testing.assert_array_equal(space.layer_counts(configs).matrix.toarray(), counts.matrix.toarray())
