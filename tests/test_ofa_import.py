"""Once-for-All's MobileNetV3 checkpoints: ``supernet import-ofa`` (restricted reader, names, width), SubNets and
their ONNX files equal to OFA's own, ``--format ofa`` configs, bundles' preprocessing, and BN recalibration as OFA's
``set_running_statistics``.

The oracle is OFA's own ``OFAMobileNetV3`` from the ``ofa`` package (random weights, BN statistics and
kernel-transform matrices, so a wrong mapping shows). ``ofa`` imports torchvision at module level for its data
transforms only; ``tests/_stubs/torchvision`` (a stub, not torchvision) stands in for those names while it imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pareto.bundles._export import load_supernet
from supernet import get_space
from supernet.mbv3 import OFAMobileNetV3Space
from tests._cli import hw

pytest.importorskip("ofa")
STUBS = Path(__file__).parent / "_stubs"
WIDTHS = (1.0, 1.2)
RESOLUTIONS = (128, 160, 176, 208, 224)


@pytest.fixture(scope="module")
def ofa() -> Any:
    """OFA's modules: ``OFAMobileNetV3`` and ``set_running_statistics`` (imported beside the torchvision stub; the
    stub leaves ``sys.modules`` after, so that later imports, e.g. ``transformers``, do not take it for torchvision)."""
    sys.path.insert(0, str(STUBS))
    try:
        from ofa.imagenet_classification.elastic_nn import utils
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    finally:
        sys.path.remove(str(STUBS))
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return type("OFA", (), {"OFAMobileNetV3": OFAMobileNetV3, "set_running_statistics": utils.set_running_statistics})


def _ofa_net(ofa: Any, width: float) -> nn.Module:
    """OFA's network of ``width`` with random weights, BN statistics and kernel-transform matrices."""
    torch.manual_seed(int(width * 10))
    net = ofa.OFAMobileNetV3(width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "matrix" in name else 0.15))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return net.eval()


def _old_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The older spelling: ``.mobile_inverted_conv.``, single ``bn.``/``conv.`` levels, no BN counters."""
    return {
        k.replace(".conv.", ".mobile_inverted_conv.", 1).replace(".bn.bn.", ".bn.").replace(".conv.conv.", ".conv."): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


@pytest.fixture(scope="module")
def imported(ofa: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[float, tuple[nn.Module, Path]]:
    """Per width: OFA's network and its checkpoint imported through the CLI (from the three file layouts, which
    must give the same tensors)."""
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("ofa")
    out: dict[float, tuple[nn.Module, Path]] = {}
    for width in WIDTHS:
        net = _ofa_net(ofa, width)
        state = net.state_dict()
        files = {
            "wrapped": ({"state_dict": state}, folder / f"ofa_mbv3_d234_e346_k357_w{width}.pth"),
            "bare": (state, folder / f"bare_w{width}.pth"),
            "old": ({"state_dict": _old_names(state)}, folder / f"old_w{width}.pth"),
        }
        tensors = []
        for doc, path in files.values():
            torch.save(doc, path)
            ckpt = path.with_suffix(".safetensors")
            stdout, _ = hw("supernet", "import-ofa", path, "--out", ckpt, "--json")
            info = json.loads(stdout)
            assert info == {"space": f"ofa-mbv3-w{width}", "checkpoint": str(ckpt), "width": width, "tensors": 475}
            tensors.append(load_file(ckpt))
        for other in tensors[1:]:
            assert other.keys() == tensors[0].keys()
            assert all(torch.equal(other[k], v) for k, v in tensors[0].items() if not k.endswith("batches_tracked"))
        out[width] = (net, files["wrapped"][1].with_suffix(".safetensors"))
    return out


def test_export_defaults_to_the_imported_checkpoint(
    imported: dict[float, tuple[nn.Module, Path]], tmp_path: Path
) -> None:
    """import-ofa records its output as the space's trained SuperNet: an export without --checkpoint uses OFA's
    weights (it was refused, or wrote a random SuperNet's), and names that checkpoint by hash."""
    import hashlib

    source = imported[1.0][1].with_suffix(".pth")
    ckpt, store = tmp_path / "ofa.safetensors", f"sqlite:///{tmp_path / 'store.db'}"
    hw("supernet", "import-ofa", source, "--out", ckpt, "--store", store)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(get_space("ofa-mbv3-w1.0").smallest().values))
    hw("export-config", "ofa-mbv3-w1.0", config, "--out", tmp_path / "b", "--weights", "--store", store)
    doc = json.loads((tmp_path / "b" / "config.json").read_text())
    assert doc["supernet"]["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    hw("verify-bundle", tmp_path / "b", "--store", store)
    _, err = hw("export-config", "ofa-mbv3-w1.0", config, "--out", tmp_path / "c", "--weights", "--store",
                f"sqlite:///{tmp_path / 'other.db'}", ok=False)  # fmt: skip
    assert "--random-weights" in err


def _ofa_lists(space: OFAMobileNetV3Space, cfg: Any) -> dict[str, list[int]]:
    record = space.to_record(cfg)
    return {k: [int(v) for v in record[k].split("-")] for k in ("ks", "e", "d")}


def _ofa_subnet(net: Any, space: OFAMobileNetV3Space, cfg: Any) -> nn.Module:
    net.set_active_subnet(**_ofa_lists(space, cfg))
    return net.get_active_subnet(preserve_weight=True).eval()


def _configs(space: OFAMobileNetV3Space, n: int, seed: int) -> Iterator[Any]:
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield space.validate(space.sample(rng).values | {"r": RESOLUTIONS[i % len(RESOLUTIONS)]})


def test_the_torchvision_stub_does_not_outlive_ofas_import(ofa: Any) -> None:
    """Later imports in the same process (``transformers`` checks for torchvision) must not find the stub."""
    spec = importlib.util.find_spec("torchvision")
    assert spec is None or spec.origin is None or STUBS not in Path(spec.origin).parents, spec


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_imported_subnets_and_onnx_equal_ofa(
    width: float, imported: dict[float, tuple[Any, Path]], tmp_path: Path
) -> None:
    import onnxruntime as ort

    net, ckpt = imported[width]
    space = get_space(f"ofa-mbv3-w{width}")
    assert isinstance(space, OFAMobileNetV3Space) and space.width_choices == (width,)
    supernet = load_supernet(space, ckpt)
    worst_torch = worst_onnx = 0.0
    for i, cfg in enumerate(_configs(space, 5, seed=int(width * 10))):
        x = torch.randn(2, 3, int(cfg["r"]), int(cfg["r"]), generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            expected = _ofa_subnet(net, space, cfg)(x)
            got = space.extract(supernet, cfg).eval()(x)
        assert space.params(cfg) == sum(p.numel() for p in _ofa_subnet(net, space, cfg).parameters())
        worst_torch = max(worst_torch, float((got - expected).abs().max()))
        # the same SubNet through --format ofa (OFA's own dict: wid None is the checkpoint's width) and ONNX
        ofa_doc: dict[str, Any] = {"wid": None, **_ofa_lists(space, cfg)}
        ofa_doc["r" if i % 2 else "image_size"] = [int(cfg["r"])] if i % 3 else int(cfg["r"])
        (tmp_path / f"c{i}.json").write_text(json.dumps(ofa_doc))
        bundle = tmp_path / f"b{i}"
        stdout, _ = hw(
            "export-config", space.name, tmp_path / f"c{i}.json", "--format", "ofa", "--checkpoint", ckpt,
            "--onnx", "--out", bundle, "--json", "--store", f"sqlite:///{tmp_path / 's.db'}",
        )  # fmt: skip
        assert json.loads(stdout)["key"] == cfg.key
        session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(None, {"input": x.numpy()})
        worst_onnx = max(worst_onnx, float(np.abs(onnx_out - expected.numpy()).max()))
        doc = json.loads((bundle / "config.json").read_text())
        assert doc["preprocessing"] | {"center_crop_px": 0} == {
            "convention": "ofa-imagenet",
            "input_name": "input",
            "layout": "NCHW",
            "channels": "RGB",
            "dtype": "float32",
            "resize_shorter_side_px": -(-int(cfg["r"]) * 8 // 7),  # ceil(r / 0.875), OFA's validation resize
            "interpolation": "bilinear",
            "center_crop_px": 0,
            "pixel_scale": "1/255 (pixels in [0, 1] before normalisation)",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "normalize": "(x - mean) / std per channel",
        }
        assert doc["preprocessing"]["center_crop_px"] == cfg["r"]
    print(f"w{width}: max |hwpareto - OFA| torch {worst_torch:.2e}, onnx {worst_onnx:.2e}")
    assert worst_torch <= 1e-5 and worst_onnx <= 1e-5


class Payload:
    """A class a checkpoint may not hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)


class Exploit:
    """Unpickling this would run ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_pickles_with_other_objects_are_refused_unexecuted(zipfile: bool, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    cases = {
        "posix.system": {"state_dict": {"first_conv.conv.weight": torch.zeros(1), "x": Exploit(marker)}},
        f"{__name__}.Payload": {"state_dict": {"x": Payload(marker)}},
    }
    for name, doc in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(doc, path, _use_new_zipfile_serialization=zipfile)
        _, err = hw("supernet", "import-ofa", path, "--out", tmp_path / "x.safetensors", ok=False)
        assert f"the pickle refers to {name}: only tensors and plain containers" in err and "nothing executed" in err
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04not a checkpoint")
    _, err = hw("supernet", "import-ofa", tmp_path / "junk.pth", "--out", tmp_path / "x.safetensors", ok=False)
    assert "junk.pth: not a pickle of tensors and plain containers only (Unsupported operand" in err
    torch.save({"state_dict": {"classifier.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    _, err = hw("supernet", "import-ofa", tmp_path / "other.pth", "--out", tmp_path / "x.safetensors", ok=False)
    assert "tensor names: expected those of OFA's MobileNetV3 (OFAMobileNetV3), got 'classifier.weight'" in err


def test_data_parallel_prefix_is_stripped(ofa: Any, imported: dict[float, tuple[Any, Path]], tmp_path: Path) -> None:
    """A checkpoint saved from ``nn.DataParallel`` (every name under ``module.``) imports as the plain one."""
    from safetensors.torch import load_file

    net, plain = imported[1.0]
    wrapped = nn.DataParallel(net)
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    torch.save({"state_dict": wrapped.state_dict()}, tmp_path / "dp.pth")
    hw("supernet", "import-ofa", tmp_path / "dp.pth", "--out", tmp_path / "dp.safetensors")
    got, want = load_file(tmp_path / "dp.safetensors"), load_file(plain)
    assert got.keys() == want.keys() and all(torch.equal(got[k], v) for k, v in want.items())
    half = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(net.state_dict().items())}
    torch.save(half, tmp_path / "half.pth")  # a prefix on some names only is no DataParallel checkpoint
    _, err = hw("supernet", "import-ofa", tmp_path / "half.pth", "--out", tmp_path / "x.safetensors", ok=False)
    assert "tensor names: expected those of OFA's MobileNetV3 (OFAMobileNetV3), got 'module." in err


def test_non_finite_checkpoints_are_refused(ofa: Any, imported: dict[float, tuple[Any, Path]], tmp_path: Path) -> None:
    """An all-NaN checkpoint imported with rc 0; now the first tensor that is not finite is named."""
    net, _ = imported[1.0]
    state = net.state_dict()
    cases = {
        "all NaN": {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()},
        "one inf": {k: v.clone() for k, v in state.items()},
    }
    cases["one inf"]["blocks.7.conv.point_linear.bn.bn.running_var"][3] = float("inf")
    for case, doc in cases.items():
        torch.save({"state_dict": doc}, tmp_path / "bad.pth")
        _, err = hw("supernet", "import-ofa", tmp_path / "bad.pth", "--out", tmp_path / "x.safetensors", ok=False)
        name, count = (
            ("first_conv.conv.weight", "'432 NaN or infinite of 432'")
            if case == "all NaN"
            else ("blocks.7.conv.point_linear.bn.bn.running_var", "'1 NaN or infinite of 40'")
        )
        assert f"bad.pth tensor {name!r}: expected finite values, got {count}" in err, (case, err)
    assert not (tmp_path / "x.safetensors").exists()


def test_output_is_written_whole_or_not_at_all(imported: dict[float, tuple[Any, Path]], tmp_path: Path) -> None:
    """A folder, /proc or a pipe as --out, and a full disk (simulated with RLIMIT_FSIZE: writes past 1 MiB fail
    with EFBIG, as ENOSPC would on a full disk) are one line each and leave nothing behind; before, a full disk was a
    50-line SafetensorError traceback and left a truncated file."""
    import subprocess
    import textwrap

    source = imported[1.0][1].with_suffix(".pth")
    (tmp_path / "folder").mkdir()
    _, err = hw("supernet", "import-ofa", source, "--out", tmp_path / "folder", ok=False)
    assert (
        f"--out: expected a new file or an existing regular file, got '{tmp_path / 'folder'} (an existing folder)'"
        in err
    )
    os.mkfifo(tmp_path / "pipe")  # a special file of our own (as root, a rename over /dev/full would replace it)
    _, err = hw("supernet", "import-ofa", source, "--out", tmp_path / "pipe", ok=False)
    assert "--out: expected a new file or an existing regular file, got " in err and "pipe (an existing special" in err
    assert (tmp_path / "pipe").is_fifo()
    _, err = hw("supernet", "import-ofa", source, "--out", "/proc/x.safetensors", ok=False)
    assert err.startswith("error: --out /proc/x.safetensors: cannot write (")
    assert not Path("/proc/x.safetensors").exists()
    out = tmp_path / "full" / "w10.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"the previous checkpoint")
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        from hwpareto.cli import app
        sys.argv = ["hwpareto", "supernet", "import-ofa", {str(source)!r}, "--out", {str(out)!r}]
        app()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip() == f"error: --out {out}: cannot write (File too large)"
    assert [p.name for p in out.parent.iterdir()] == [out.name] and out.read_bytes() == b"the previous checkpoint"


def test_widths_the_checkpoint_lacks_are_refused(imported: dict[float, tuple[Any, Path]], tmp_path: Path) -> None:
    _, ckpt10 = imported[1.0]
    _, ckpt12 = imported[1.2]
    store = f"sqlite:///{tmp_path / 's.db'}"
    space = get_space("ofa-mbv3-w1.0")
    lists = _ofa_lists(space, space.smallest())  # type: ignore[arg-type]
    cfg = tmp_path / "c.json"

    def write(**doc: Any) -> Path:
        cfg.write_text(json.dumps({**lists, **doc}))
        return cfg

    _, err = hw("validate", "mbv3", write(wid=None, r=[224]), "--format", "ofa", ok=False)
    assert "error: wid: expected one of 1.0, 1.2 (the widths of space 'mbv3'; OFA's None means the" in err
    assert err.strip().endswith("give --checkpoint), got None")
    _, err = hw("validate", "ofa-mbv3-w1.2", write(r=160), "--format", "ofa", ok=False)
    assert "wid: expected one of 1.2" in err
    _, err = hw("validate", "mbv3", write(wid=1.2, r=[224]), "--format", "ofa", "--checkpoint", ckpt10, ok=False)
    assert f"wid: expected 1.0 (the width checkpoint {ckpt10} holds), got 1.2" in err
    _, err = hw("validate", "ofa-mbv3-w1.0", write(r=224, image_size=[192]), "--format", "ofa", ok=False)
    assert "image_size: expected the same resolution as r (224), got 192" in err
    _, err = hw("validate", "ofa-mbv3-w1.0", write(r=224, wid=1.0, flops=1), "--format", "ofa", ok=False)
    assert "OFA config: expected only the keys ks, e, d, r, image_size, wid, got 'extra flops'" in err
    _, err = hw("validate", "ofa-mbv3-w1.0", write(r=224), "--format", "onnx", ok=False)
    assert "--format: expected hwpareto or ofa, got 'onnx'" in err
    stdout, _ = hw("validate", "ofa-mbv3-w1.2", write(wid=None, image_size=192), "--format", "ofa",
                   "--checkpoint", ckpt12, "--json")  # fmt: skip
    assert json.loads(stdout)["values"]["w"] == 1.2 and json.loads(stdout)["values"]["r"] == 192
    # a config of another width (hwpareto's format) and a checkpoint bound to another space
    values = get_space("ofa-mbv3-w1.2").smallest().values
    (tmp_path / "w12.json").write_text(json.dumps(values))
    _, err = hw("export-config", "ofa-mbv3-w1.0", tmp_path / "w12.json", "--out", tmp_path / "o", "--weights",
                "--checkpoint", ckpt10, "--store", store, ok=False)  # fmt: skip
    assert "error: ofa-mbv3-w1.0.w: expected one of 1.0, got 1.2" in err
    (tmp_path / "w10.json").write_text(json.dumps(get_space("mbv3").smallest().values))
    _, err = hw("export-config", "mbv3", tmp_path / "w10.json", "--out", tmp_path / "o", "--weights",
                "--checkpoint", ckpt12, "--store", store, ok=False)  # fmt: skip
    assert f"{ckpt12}: expected a SuperNet of space 'mbv3', got one of space 'ofa-mbv3-w1.2' (width 1.2 only)" in err
    _, err = hw("validate", "gpt", write(r=224), "--format", "ofa", ok=False)
    assert "--format ofa: expected a MobileNetV3 space" in err


def _image_folder(root: Path, n_classes: int = 1000, filled: int = 3) -> Path:
    """An ImageNet-style folder: ``train/`` holds all ``n_classes`` class folders (the head's 1000 labels), images
    in the first ``filled``; ``val/`` and ``test/`` hold a few images of those."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("val", 2), ("test", 1)):
        for c in range(n_classes if split == "train" else filled):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class if c < filled else 0):
                pixels = rng.integers(0, 256, size=(40 + 8 * c, 52, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.slow
def test_bn_recalibration_and_accuracy_as_ofa(
    ofa: Any, imported: dict[float, tuple[Any, Path]], tmp_path: Path
) -> None:
    from supernet.data import ImageData, load_data
    from supernet.training import _task, extract_calibrated

    net, ckpt = imported[1.0]
    space = get_space("ofa-mbv3-w1.0")
    assert isinstance(space, OFAMobileNetV3Space)
    root = _image_folder(tmp_path / "imagenet")
    data = load_data(f"folder:{root}", resolution=224, preprocessing=space.preprocessing)
    assert isinstance(data, ImageData)
    supernet = load_supernet(space, ckpt)
    cfg = space.validate(next(_configs(space, 1, seed=3)).values | {"r": 160})
    batches = list(_task(space, data, torch.device("cpu")).calibration(cfg))
    assert [tuple(b.shape) for b in batches] == [(18, 3, 160, 160)]  # all 18 training images (< OFA's 2,000)
    ours = extract_calibrated(space, supernet, cfg, data)
    reference = _ofa_subnet(net, space, cfg)
    before = [torch.as_tensor(bn.running_var).clone() for bn in _norms(reference)]
    ofa.set_running_statistics(reference, [(x, torch.zeros(len(x))) for x in batches])
    assert len(_norms(ours)) == len(_norms(reference)) == len(before)
    for mine, theirs, old in zip(_norms(ours), _norms(reference), before, strict=True):
        assert not torch.allclose(torch.as_tensor(theirs.running_var), old)  # recalibration changed the statistics ...
        torch.testing.assert_close(mine.running_mean, theirs.running_mean, rtol=1e-4, atol=1e-5)  # ... as OFA's
        torch.testing.assert_close(mine.running_var, theirs.running_var, rtol=1e-4, atol=1e-5)
    x = data.val.images[:4, :, 32:192, 32:192]
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x), rtol=1e-4, atol=1e-4)
    # eval-subnets on the imported checkpoint: deterministic
    tables = []
    for run in range(2):
        out = tmp_path / f"acc{run}.csv"
        stdout, _ = hw("eval-subnets", "--space", space.name, "--checkpoint", ckpt, "--data", f"folder:{root}",
                       "-n", "2", "--out", out, "--json")  # fmt: skip
        assert json.loads(stdout)["subnets"] == 2
        tables.append(out.read_text())
    assert tables[0] == tables[1]


def test_hwpareto_bundles_record_their_preprocessing(tmp_path: Path) -> None:
    from pareto.bundles._export import export_subnet

    for name in ("mbv3-digits", "nb201"):
        space = get_space(name)
        export_subnet(space, space.smallest(), tmp_path / name)
        prep = json.loads((tmp_path / name / "config.json").read_text())["preprocessing"]
        side = 24 if name == "mbv3-digits" else 32
        assert prep["mean"] == prep["std"] == [0.5, 0.5, 0.5]
        assert prep["resize_shorter_side_px"] == prep["center_crop_px"] == side
    export_subnet(get_space("gpt-stdlib"), get_space("gpt-stdlib").smallest(), tmp_path / "gpt")
    assert "preprocessing" not in json.loads((tmp_path / "gpt" / "config.json").read_text())
