"""Deployment runtimes (issue 30): the ``hwpareto.runtimes`` registry, a device naming its runtime, and a SubNet
lowered to ONNX Runtime and measured there end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from profilers import (
    LOCAL_CPUS,
    DeviceSpec,
    backend_for,
    device_from_dict,
    local_cpu_spec,
    register_runtime,
    runtime_class,
    runtime_names,
)
from profilers._runtimes import OnnxRuntime, OpenVinoRuntime
from tests._cli import hw, hw_text

# steady, short timings on a shared machine: one thread, the calling thread's CPU time
FAST = {"threads": 1, "clock": "thread", "warmup_calls": 2, "min_window_ms": 20.0, "min_samples": 5}


class OldOpsetRuntime(OnnxRuntime):
    """ONNX Runtime fed opset 6 graphs: its CPU provider has no kernel for opset 6's BatchNormalization."""

    name = "ort-opset6"
    opset = 6


class AbsentRuntime(OnnxRuntime):
    """A runtime whose package is not installed."""

    name = "absent-rt"
    package = "hwpareto_no_such_runtime_package"
    extra = "absent-rt"


def _device_file(tmp_path: Path, name: str, runtime: str | None, **params: object) -> Path:
    doc = {"name": name, "kind": "cpu", "backend": "torch-cpu", "params": {**FAST, **params}}
    if runtime is not None:
        doc["runtime"] = runtime
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_registry_lists_builtins_and_code_plugins() -> None:
    assert {"torch", "onnxruntime"} <= set(runtime_names())
    assert runtime_class("onnxruntime") is OnnxRuntime
    register_runtime("ort-opset6", OldOpsetRuntime, replace=True)
    assert "ort-opset6" in runtime_names() and runtime_class("ort-opset6") is OldOpsetRuntime
    spec = device_from_dict({"name": "cpu-old", "kind": "cpu", "backend": "torch-cpu", "runtime": "ort-opset6"})
    assert spec.runtime == "ort-opset6" and backend_for(spec).describe()["runtime"]["opset"] == 6


def test_devices_default_to_torch_and_keep_their_documents() -> None:
    eager = local_cpu_spec()
    assert eager.runtime == "torch" and "runtime" not in eager.to_dict()  # stored documents unchanged
    assert "runtime" not in backend_for(eager).describe()
    ort = local_cpu_spec(runtime="onnxruntime")
    assert ort.name == LOCAL_CPUS["onnxruntime"] == "cpu-local-ort"
    assert device_from_dict(ort.to_dict()) == ort
    with pytest.raises(InvalidValueError, match=r"params\.precision: expected one of fp32 for runtime onnxruntime"):
        backend_for(DeviceSpec("x", "cpu", "torch-cpu", {"precision": "int8"}, runtime="onnxruntime"))
    with pytest.raises(InvalidValueError, match="runtime: expected torch"):
        backend_for(DeviceSpec("x", "fake", "fake", runtime="onnxruntime"))  # a backend taking no runtime


@pytest.mark.slow
def test_measure_in_onnxruntime_end_to_end(tmp_path: Path, sqlite_url: str) -> None:
    ort_file = _device_file(tmp_path, "cpu-ort", "onnxruntime")
    eager_file = _device_file(tmp_path, "cpu-eager", None)
    for path in (ort_file, eager_file):
        hw("device", "add", path, "--store", sqlite_url)
    for device in ("cpu-ort", "cpu-eager"):
        out = hw_text(
            "measure", "--device", device, "--space", "mbv3-digits", "-n", 2, "--seed", 7, "--store", sqlite_url
        )
        assert f"stored end-to-end figures of 2 mbv3-digits SubNets on {device}" in out

    with Store.open(sqlite_url) as store:
        table = store.measurements.table(space="mbv3-digits", metric="latency_ms")
    ms = {(r.subject, r.config_key): float(r.value) for r in table.itertuples()}
    keys = {k for _, k in ms}
    assert len(keys) == 2 and len(ms) == 4
    for key in keys:
        ort, eager = ms["cpu-ort", key], ms["cpu-eager", key]
        assert 0 < ort < eager  # ORT's fused kernels: 1.8-9.4x faster than eager on mbv3 SubNets (issue 30)

    devices = {d["name"]: d for d in json.loads(hw_text("devices", "--json", "--store", sqlite_url))}
    assert devices["cpu-ort"]["runtime"] == "onnxruntime" and devices["cpu-eager"]["runtime"] == "torch"
    assert devices["cpu-ort"]["provenance"]["runtime"]["graph_optimization"] == "ORT_ENABLE_ALL"


def test_unknown_runtime_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    err = hw_text("device", "add", _device_file(tmp_path, "cpu-x", "tflite"), "--store", sqlite_url, ok=False)
    assert "runtime: expected one of" in err and "onnxruntime" in err and "torch" in err and "'tflite'" in err
    err = hw_text("device", "add", "--local-cpu", "cpu-y", "--runtime", "tflite", "--store", sqlite_url, ok=False)
    assert "runtime: expected one of" in err and "onnxruntime" in err


def test_missing_runtime_package_names_the_extra(tmp_path: Path, sqlite_url: str) -> None:
    register_runtime("absent-rt", AbsentRuntime, replace=True)
    err = hw_text("device", "add", _device_file(tmp_path, "cpu-absent", "absent-rt"), "--store", sqlite_url, ok=False)
    assert "hwpareto_no_such_runtime_package" in err and "pip install 'hwpareto[absent-rt]'" in err


def test_a_subnet_the_runtime_cannot_lower_is_refused_with_its_reason(tmp_path: Path, sqlite_url: str) -> None:
    register_runtime("ort-opset6", OldOpsetRuntime, replace=True)
    hw("device", "add", _device_file(tmp_path, "cpu-old", "ort-opset6"), "--store", sqlite_url)
    err = hw_text("measure", "--device", "cpu-old", "--space", "mbv3-digits", "-n", 1, "--store", sqlite_url, ok=False)
    assert "device 'cpu-old': SubNet " in err and "runtime ort-opset6 cannot lower it" in err
    assert "BatchNormalization(6)" in err  # ONNX Runtime's own reason
    with Store.open(sqlite_url) as store:
        assert store.measurements.table(subject="cpu-old").empty


def test_profile_in_a_runtime_keeps_the_layers_it_can_lower(tmp_path: Path, sqlite_url: str) -> None:
    """Each layer lowered alone: those ONNX Runtime has no kernel for at opset 6 (batch norm, add, average pool) are
    recorded as failed with its reason, the others timed in it and kept."""
    register_runtime("ort-opset6", OldOpsetRuntime, replace=True)
    hw("device", "add", _device_file(tmp_path, "cpu-old", "ort-opset6", min_window_ms=2.0), "--store", sqlite_url)
    report = json.loads(hw_text("profile", "--device", "cpu-old", "--space", "nb201", "--json", "--store", sqlite_url))
    assert report["layers"] == 22 and report["failed"] and report["measured"] == 22 - len(report["failed"]) > 0
    assert all("runtime ort-opset6 cannot lower it" in f["reason"] for f in report["failed"])
    assert any("Could not find an implementation for BatchNormalization(6)" in f["reason"] for f in report["failed"])
    with Store.open(sqlite_url) as store:
        lut = store.luts.get("cpu-old", 1)
    assert len(lut) == report["measured"] and (lut["latency_ms_mean"] > 0).all()


def test_openvino_runs_a_subnet_as_pytorch_does_in_fp32() -> None:
    """The SubNet lowered to OpenVINO's CPU plugin computes what PyTorch computes, to fp32 rounding (OpenVINO's own
    default on CPUs with AMX is bf16, about 4e-2 away), and is timed there."""
    import numpy as np
    import torch

    from profilers._timing import TimingPolicy
    from supernet import get_space

    assert runtime_class("openvino") is OpenVinoRuntime
    space = get_space("mbv3-digits")
    config = space.sample(np.random.default_rng(3))
    module = space.extract(space.supernet(seed=0), config).eval()
    x = space.dummy_input(config, 1)
    runtime = OpenVinoRuntime(threads=1)
    request = runtime.lower(module, x)
    with torch.inference_mode():
        expected = module(x).numpy()
    got = np.asarray(request.infer({0: x.numpy()})[0])
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    timing = runtime.time(request, x, TimingPolicy(warmup_calls=2, min_window_ms=10.0, min_samples=5))
    assert timing.median_ms > 0 and timing.n >= 5
    assert runtime.describe()["inference_precision"] == "f32"


@pytest.mark.slow
def test_measure_in_openvino_through_the_cli(sqlite_url: str) -> None:
    hw("device", "add", "--local-cpu", "cpu-ov", "--runtime", "openvino", "--store", sqlite_url)
    out = hw_text(
        "measure", "--device", "cpu-ov", "--space", "mbv3-digits", "-n", 2, "--seed", 7, "--store", sqlite_url
    )
    assert "stored end-to-end figures of 2 mbv3-digits SubNets on cpu-ov" in out
    with Store.open(sqlite_url) as store:
        table = store.measurements.table(subject="cpu-ov", metric="latency_ms")
    assert len(table) == 2 and (table["value"].astype(float) > 0).all()
    devices = {d["name"]: d for d in json.loads(hw_text("devices", "--json", "--store", sqlite_url))}
    assert devices["cpu-ov"]["runtime"] == "openvino"
    assert devices["cpu-ov"]["provenance"]["runtime"]["inference_precision"] == "f32"
