"""Profilers: device specs, the CPU (real timing), CUDA (GPU only) and fake backends, LUT building with resume,
LUT-sums and LUT files (including OFA's published Note10 LUT)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import Store
from profilers import (
    LOCAL_CPU,
    Cost,
    DeviceSpec,
    Lut,
    MissingLutError,
    UnmappableLayerError,
    backend_for,
    build_lut,
    device_from_dict,
    device_spec,
    export_lut_csv,
    import_lut_csv,
    local_cpu_spec,
    measure_subnets,
    register_backend,
)
from profilers._fake import FakeBackend
from profilers._modules import layer_module
from supernet import LayerSpec, get_space
from tests.test_profilers_common import SMALL_LAYERS

FAKE = DeviceSpec("fake-dev", "fake", "fake", {"gmacs_per_s": 5.0})
FAST_CPU = DeviceSpec("cpu-fast", "cpu", "torch-cpu", {"threads": 1, "min_window_ms": 5.0, "min_samples": 3})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(str(tmp_path / "store.db")) as opened:
        yield opened


def register(store: Store, spec: DeviceSpec) -> DeviceSpec:
    store.devices.add(spec.name, spec.kind, spec.to_dict(), backend_for(spec).describe())
    return spec


# ---------------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"kind": "cpu", "backend": "torch-cpu"}, "name: expected a value"),
        ({"name": "x", "kind": "gpu", "backend": "torch-cpu"}, "kind: expected one of cpu for backend torch-cpu"),
        ({"name": "x", "kind": "g p u", "backend": "torch-cpu"}, "kind: expected letters, digits"),
        ({"name": "x", "kind": "cpu", "backend": "tflite"}, "backend: expected one of .*torch-cpu.*, got 'tflite'"),
        ({"name": "x y", "kind": "cpu", "backend": "torch-cpu"}, "name: expected letters"),
        ({"name": "x", "kind": "cpu", "backend": "torch-cpu", "colour": 1}, "expected only the keys"),
        ({"name": "x", "kind": "cpu", "backend": "torch-cpu", "params": {"threads": 0}}, r"params\.threads"),
        ({"name": "x", "kind": "cpu", "backend": "torch-cpu", "params": {"threads": "4"}}, "got '4'"),
        ({"name": "x", "kind": "npu", "backend": "torch-cpu"}, "kind: expected one of cpu for backend torch-cpu"),
        ({"name": "x", "kind": "fake", "backend": "fake", "params": {"fusion_discount": 2}}, r"\[0.0, 1.0\]"),
        ("just text", "expected a mapping"),
    ],
)
def test_device_spec_errors(doc: object, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        device_from_dict(doc)


def test_device_spec_round_trip() -> None:
    spec = device_from_dict(
        {"name": "edge", "kind": "fake", "backend": "fake", "params": {"gmacs_per_s": 2}, "references": ["a paper"]}
    )
    assert device_from_dict(spec.to_dict()) == spec and spec.params["gmacs_per_s"] == 2


def test_unknown_device_lists_presets_and_cpu_local_registers(store: Store) -> None:
    with pytest.raises(InvalidValueError, match=r"device: expected a registered device or preset: cpu-local"):
        device_spec(store, "tpu-v9")
    spec = device_spec(store, LOCAL_CPU)
    stored = store.devices.get(LOCAL_CPU)
    assert spec.backend == "torch-cpu" and stored.kind == "cpu"
    assert stored.provenance["torch"] == torch.__version__ and stored.provenance["threads"] == 1
    assert stored.provenance["cpu_model"]


def test_cpu_local_from_another_machine_is_refused(store: Store) -> None:
    spec = local_cpu_spec()
    provenance = {**backend_for(spec).describe(), "cpu_model": "Imaginary CPU 9000"}
    store.devices.add(LOCAL_CPU, "cpu", spec.to_dict(), provenance)
    with pytest.raises(HwparetoError, match="register this machine under its own name"):
        device_spec(store, LOCAL_CPU)


# ---------------------------------------------------------------------------------------------------- backends
@pytest.mark.parametrize("spec", SMALL_LAYERS, ids=lambda s: s.key)
def test_layer_modules_have_the_spec_shape(spec: LayerSpec) -> None:
    module, x = layer_module(spec, batch=2)
    with torch.no_grad():
        y = module(x)
    assert y.shape[0] == 2
    if spec.op in ("conv2d", "pool", "se", "batchnorm", "gap"):
        channels = spec.cout if spec.op == "conv2d" else spec.cin
        assert tuple(y.shape[1:]) == (channels, *spec.out_hw)
    elif spec.op == "attention":
        assert tuple(y.shape) == (2, spec.heads, spec.seq, spec.hidden)
    elif spec.op in ("linear", "embedding"):
        assert tuple(y.shape) == (2, spec.seq, spec.cout)
    n_params = sum(p.numel() for p in module.parameters())
    assert n_params == spec.params


def test_cpu_backend_times_for_real() -> None:
    backend = backend_for(FAST_CPU)
    threads_before = torch.get_num_threads()
    small = backend.measure_layer(LayerSpec("conv2d", cin=4, cout=4, kernel=1, h=4, w=4))
    big = backend.measure_layer(LayerSpec("conv2d", cin=64, cout=64, kernel=3, h=56, w=56, bn=True, act="relu"))
    assert torch.get_num_threads() == threads_before
    assert 0 < small.latency_ms < big.latency_ms and big.n >= 3 and small.n >= 3
    assert big.latency_ms > 10 * small.latency_ms  # 115 M MACs vs 64 MACs
    assert small.energy_mj is None and big.latency_ms_std >= 0
    info = backend.describe()
    assert info["threads"] == 1 and info["torch"] == torch.__version__ and info["cpu_model"]


def test_a_layer_larger_than_memory_is_refused_before_it_is_allocated() -> None:
    """An embedding of 2^24 × 2^22 floats (256 TiB: more than any machine) is one error naming its memory; it was
    handed to torch, which tried to allocate it."""
    import resource

    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    huge = LayerSpec("embedding", cin=2**24, cout=2**22, seq=8)
    with pytest.raises(
        InvalidValueError, match=r"layer embedding:cin=16777216,cout=4194304,seq=8 memory: .* available"
    ):
        backend_for(FAST_CPU).measure_layer(huge)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb < 200_000


def test_cpu_backend_measures_extracted_subnets() -> None:
    space = get_space("nb201")
    backend = backend_for(FAST_CPU)
    small, large = backend.measure_subnet(space, space.smallest()), backend.measure_subnet(space, space.largest())
    assert 0 < small.latency_ms < large.latency_ms  # 0.07 M vs 1.5 M params, 4 vs 185 MMACs


GPU = DeviceSpec("gpu0", "cuda", "torch-cuda", {"energy": True, "energy_window_ms": 500.0, "idle_ms": 500.0})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the refusal path does not apply")
def test_cuda_backend_refuses_without_gpu() -> None:
    with pytest.raises(HwparetoError, match="no CUDA GPU 0 on this machine"):
        backend_for(GPU).check()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the real CUDA path runs on GPU machines only")
def test_cuda_backend_times_and_reads_energy() -> None:
    backend = backend_for(GPU)
    small = backend.measure_layer(LayerSpec("conv2d", cin=8, cout=8, kernel=1, h=8, w=8))
    big = backend.measure_layer(LayerSpec("conv2d", cin=256, cout=256, kernel=3, h=56, w=56, bn=True), batch=32)
    assert 0 < small.latency_ms < big.latency_ms and big.n >= 10
    assert big.energy_mj is not None and big.energy_mj > 0
    info = backend.describe()
    assert info["energy"]["resolution_mj"] == 1.0 and info["gpu"]


def test_fake_backend_is_deterministic_and_fuses() -> None:
    backend = FakeBackend(FAKE)
    space = get_space("gpt")
    cfg = space.sample(np.random.default_rng(0))
    a, b = backend.measure_subnet(space, cfg), backend.measure_subnet(space, cfg)
    assert a == b
    lut_sum = sum(backend.measure_layer(s).latency_ms for s in space.layers(cfg))
    assert a.latency_ms != pytest.approx(lut_sum)  # end-to-end differs from the LUT-sum, as on real devices
    assert a.energy_mj == pytest.approx(sum(backend.measure_layer(s).energy_mj for s in space.layers(cfg)))


# ---------------------------------------------------------------------------------------------------- LUT building
def test_build_lut_stores_every_distinct_layer(store: Store) -> None:
    spec = register(store, FAKE)
    space = get_space("nb201")
    report = build_lut(store, spec, space, workers=1)
    assert (report.total, report.measured, report.already, report.failed) == (22, 22, 0, ())
    lut = store.luts.get(spec.name)
    assert sorted(lut["layer_key"]) == sorted(s.key for s in space.layer_universe())
    assert set(lut["source"]) == {"simulated"}
    again = build_lut(store, spec, space, workers=1)
    assert (again.measured, again.already) == (0, 22)


def test_interrupted_build_resumes_without_duplicates(store: Store) -> None:
    spec = register(store, FAKE)
    space = get_space("mbv3")
    restrict = {"r": [160], "w": [1.0]}
    total = len(space.layer_universe(restrict))

    def stop_after_30(done: int, todo: int, key: str) -> None:
        if done == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_lut(store, spec, space, restrict=restrict, workers=1, progress=stop_after_30)
    kept = len(store.luts.get(spec.name))
    assert kept == 30  # rows measured before the interruption are flushed, none lost
    report = build_lut(store, spec, space, restrict=restrict, workers=1)
    assert (report.already, report.measured) == (30, total - 30)
    assert len(store.luts.get(spec.name)) == total


@pytest.mark.slow
def test_parallel_build_in_processes(store: Store) -> None:
    spec = register(store, FAKE)
    space = get_space("gpt")
    restrict = {"seq_len": [64]}
    report = build_lut(store, spec, space, restrict=restrict, workers=2)
    serial = {k: FakeBackend(FAKE).measure_layer(s).latency_ms for s in space.layer_universe(restrict) for k in [s.key]}
    lut = store.luts.get(spec.name)
    assert report.measured == len(serial) == len(lut)
    assert dict(zip(lut["layer_key"], lut["latency_ms_mean"], strict=True)) == pytest.approx(serial)


class _NoAttention(FakeBackend):
    name = "fake-no-attention"

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        if spec.op == "attention":
            raise UnmappableLayerError(self.name, spec, "no matmul unit for activations")
        return super().measure_layer(spec, batch)


def test_unmappable_layers_are_reported_and_the_rest_continues(store: Store) -> None:
    register_backend("fake-no-attention", _NoAttention, replace=True)
    spec = register(store, DeviceSpec("odd", "fake", "fake-no-attention"))
    space = get_space("gpt")
    restrict = {"seq_len": [64], "embed_dim": [128]}
    report = build_lut(store, spec, space, restrict=restrict, workers=1)
    attention = [s.key for s in space.layer_universe(restrict) if s.op == "attention"]
    assert sorted(k for k, _ in report.failed) == sorted(attention) and len(attention) == 3
    assert all("backend fake-no-attention cannot map layer attention:" in reason for _, reason in report.failed)
    assert report.measured == len(space.layer_universe(restrict)) - 3 == len(store.luts.get("odd"))


def test_budget_stops_and_next_run_continues(store: Store) -> None:
    spec = register(store, FAST_CPU)
    space = get_space("gpt")
    restrict = {"seq_len": [64], "embed_dim": [128]}
    first = build_lut(store, spec, space, restrict=restrict, budget_s=0.05)
    assert first.remaining > 0 and first.measured >= 1
    second = build_lut(store, spec, space, restrict=restrict)
    assert second.already == first.measured and second.remaining == 0
    assert len(store.luts.get(spec.name)) == first.total


# ---------------------------------------------------------------------------------------------------- LUT use
def test_lut_sum_and_missing_entries(store: Store) -> None:
    spec = register(store, FAKE)
    space = get_space("gpt")
    build_lut(store, spec, space, restrict={"seq_len": [64]}, workers=1)
    lut = Lut.load(store, spec.name)
    backend = FakeBackend(FAKE)
    cfg = space.validate({**space.sample(np.random.default_rng(1)).values, "seq_len": 64})
    expected = sum(backend.measure_layer(s).latency_ms for s in space.layers(cfg))
    assert lut.latency_sum_ms(space, cfg) == pytest.approx(expected)
    assert lut.energy_sum_mj(space, cfg) == pytest.approx(
        sum(backend.measure_layer(s).energy_mj for s in space.layers(cfg))
    )
    other = space.validate({**cfg.values, "seq_len": 256})
    assert lut.missing(space, other)
    with pytest.raises(MissingLutError, match=r"run hwpareto profile --device fake-dev --space gpt"):
        lut.latency_sum_ms(space, other)


def test_measure_subnets_stores_ground_truth(store: Store) -> None:
    spec = register(store, FAKE)
    space = get_space("nb201")
    configs = [space.from_index(i) for i in range(3)]
    assert measure_subnets(store, spec, space, configs) == 3
    df = store.measurements.table(space="nb201", subject="fake-dev")
    assert sorted(df["metric"].unique()) == ["energy_mj", "latency_ms"] and len(df) == 6
    backend = FakeBackend(FAKE)
    got = df[df.metric == "latency_ms"].set_index("config_key")["value"]
    assert got[configs[0].key] == pytest.approx(backend.measure_subnet(space, configs[0]).latency_ms)


def test_lut_file_round_trip_and_corrupt_files(store: Store, tmp_path: Path) -> None:
    spec = register(store, FAKE)
    build_lut(store, spec, get_space("nb201"), workers=1)
    out = tmp_path / "lut.csv"
    assert export_lut_csv(store, spec.name, out) == 22
    assert import_lut_csv(store, out, "copy") == 22
    a, b = store.luts.get(spec.name), store.luts.get("copy")
    assert list(a["layer_key"]) == list(b["layer_key"]) and list(a["latency_ms_mean"]) == list(b["latency_ms_mean"])
    assert store.devices.get("copy").kind == "imported"

    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    rows[3]["latency_ms_mean"] = "fast"
    rows[5]["layer_key"] = "conv2d:cin=1"
    rows[7]["spec_json"] = "{not json"
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(HwparetoError) as error:
        import_lut_csv(store, bad, "broken")
    message = str(error.value)
    assert "3 bad row(s), nothing imported" in message and "row 5:" in message and "row 7:" in message
    assert "row 9:" in message
    assert "broken" not in [d.name for d in store.devices.list()]
    with pytest.raises(InvalidValueError, match="got 'missing spec_json, batch, latency_ms_mean"):
        missing = tmp_path / "missing.csv"
        missing.write_text("layer_key,op\nx,conv2d\n")
        import_lut_csv(store, missing, "broken")
    with pytest.raises(InvalidValueError, match="LUT format: expected hwpareto or ofa"):
        import_lut_csv(store, out, "broken", fmt="tflite")


def test_note10_lut_reproduces_published_latency(store: Store, shared_data: Path) -> None:
    """OFA's Note10 LUT loads through the LUT import path; the LUT-sum of the published note10 30 ms SubNet
    (the only note10 one with a width-1.2 config at a LUT resolution) is within 5 % of its reported latency."""
    assert import_lut_csv(store, shared_data / "note10_lut.csv", "note10", fmt="ofa") == 480
    lut = Lut.load(store, "note10")
    assert lut.scheme == "ofa-block"
    space = get_space("mbv3")
    with (shared_data / "ofa_specialized.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["name"].startswith("note10_lat-30ms"))
    ks = [int(k) for k in row["kernel_sizes"].split("-")]
    es = [int(e) for e in row["expand_ratios"].split("-")]
    # the table lists active blocks only (first block included); try every stage-depth split of them
    sums = {}
    for depths in itertools.product((2, 3, 4), repeat=5):
        if sum(depths) != len(ks) - 1:
            continue
        values: dict[str, object] = {"r": int(row["image_size"]), "w": 1.2}
        i = 1
        for s, d in enumerate(depths):
            values[f"d_{s}"] = d
            for j in range(4):
                values[f"ks_{4 * s + j}"] = ks[i + j] if j < d else 3
                values[f"e_{4 * s + j}"] = es[i + j] if j < d else 3
            i += d
        sums[depths] = lut.latency_sum_ms(space, space.validate(values))
    matching = [d for d, v in sums.items() if abs(v - float(row["note10_lut_sum_ms"])) < 1e-3]
    assert matching == [(2, 3, 3, 3, 4)]  # our keys reproduce OFA's estimator exactly for one split
    reported = float(row["reported_value"])
    assert abs(sums[(2, 3, 3, 3, 4)] - reported) / reported < 0.05


def test_ofa_lut_errors(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "ofa.csv"
    bad.write_text(
        "resolution,op_key,count,mean_ms,std_ms\n224,Conv-input:1x1x3-output:1x1x8,10,-1,0\n224,garbage,10,1,0\n"
    )
    with pytest.raises(HwparetoError, match=r"2 bad row\(s\).*row 2: .*non-negative.*row 3: op_key"):
        import_lut_csv(store, bad, "phone", fmt="ofa")
    register(store, FAKE)
    good = tmp_path / "good.csv"
    good.write_text("resolution,op_key,count,mean_ms,std_ms\n224,Conv-input:1x1x3-output:1x1x8,10,1,0\n")
    with pytest.raises(InvalidValueError, match="LUT scheme: expected layer, got 'ofa-block'"):
        import_lut_csv(store, good, FAKE.name, fmt="ofa")


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_profile_measure_and_devices_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hwpareto.cli import app

    runner = CliRunner()
    url = str(tmp_path / "cli.db")
    device = tmp_path / "dev.yaml"
    device.write_text("name: sim\nkind: fake\nbackend: fake\nparams: {gmacs_per_s: 3}\n")

    def run(*args: object) -> str:
        result = runner.invoke(app, [str(a) for a in args] + ["--store", url])
        assert result.exit_code == 0, result.output + result.stderr
        return result.stdout

    run("device", "add", device)
    out = json.loads(
        run("profile", "--device", "sim", "--space", "gpt", "--resolution", "64", "--json", "--workers", "1")
    )
    assert out["measured"] == out["layers"] == len(get_space("gpt").layer_universe({"seq_len": [64]}))
    run("profile", "--device", "sim", "--space", "nb201", "--workers", "1")
    devices = {d["name"]: d for d in json.loads(run("devices", "--json"))}
    assert devices["sim"]["kind"] == "fake"
    per_space = devices["sim"]["lut_entries_per_space"]
    assert per_space["gpt"] == out["layers"] and per_space["nb201"] == 22
    profiled = {
        s.key for s in [*get_space("gpt").layer_universe({"seq_len": [64]}), *get_space("nb201").layer_universe()]
    }
    for name, n in per_space.items():  # spaces sharing layers with those profiled (e.g. the gpt-stdlib demo) count
        assert n == len({s.key for s in get_space(name).layer_universe()} & profiled), name
    run("measure", "--device", "sim", "--space", "nb201", "-n", "3")
    assert len(Store.open(url).measurements.table(subject="sim", metric="latency_ms")) == 3
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(get_space("nb201").largest().values))
    out = json.loads(run("lut", "sum", "nb201", cfg, "--device", "sim", "--json"))
    assert out["latency_ms"] > 0 and out["energy_mj"] > 0
    run("lut", "export", "--device", "sim", "--out", tmp_path / "sim.csv")
    run("lut", "import", tmp_path / "sim.csv", "--device", "sim-copy")
    run("device", "add", "--local-cpu", "my-laptop", "--threads", "2")
    assert json.loads(run("device", "show", "my-laptop"))["provenance"]["threads"] == 2
    bad = runner.invoke(app, ["profile", "--device", "nope", "--space", "gpt", "--store", url])
    assert bad.exit_code == 1 and "device: expected a registered device or preset" in bad.stderr
    bad = runner.invoke(app, ["profile", "--device", "sim", "--space", "nb201", "--resolution", "32", "--store", url])
    assert bad.exit_code == 1 and "fixed input size" in bad.stderr


def test_robust_stats_rejects_outliers() -> None:
    from profilers._timing import robust_stats

    samples = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.0, 25.0]  # one pre-empted call
    result = robust_stats(samples, outlier_mads=5.0)
    assert result.outliers == 1 and result.n == 10 and result.median_ms == pytest.approx(1.0)
    assert result.std_ms < 0.02
    few = robust_stats([1.0, 1.0, 9.0], outlier_mads=5.0)
    assert few.n == 3 and few.outliers == 0


@pytest.mark.slow
def test_remote_profile_into_shared_postgres(pg_url: str, tmp_path: Path) -> None:
    """A profile run as a separate process (standing in for a remote machine) writes into a shared PostgreSQL
    store; the device and its LUT then appear in the registry for every other client."""
    import subprocess
    import sys

    device = tmp_path / "board.yaml"
    device.write_text("name: board-7\nkind: fake\nbackend: fake\nparams: {gmacs_per_s: 1.5}\n")
    cli = [sys.executable, "-m", "hwpareto.cli"]
    for args in (["device", "add", str(device)], ["profile", "--device", "board-7", "--space", "nb201"]):
        done = subprocess.run([*cli, *args, "--store", pg_url], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    with Store.open(pg_url) as shared:
        devices = {d.name: d for d in shared.devices.list()}
        assert devices["board-7"].kind == "fake" and devices["board-7"].lut_entries == 22
        lut = Lut.load(shared, "board-7")
        space = get_space("nb201")
        assert lut.latency_sum_ms(space, space.largest()) > lut.latency_sum_ms(space, space.smallest())
