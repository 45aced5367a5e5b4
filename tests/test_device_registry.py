"""Issue 28, wrong results 6: a device file that reuses a registered name with other parameters is refused with the
difference (one line: the device, each differing field old → new, what ``--replace`` would drop), from the CLI,
the store and the dashboard's upload alike; the same file again is a no-op; ``--replace`` drops the old device's
LUT entries, measurements and predictors after saying how many, and is refused while a study uses the device."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from hwpareto.cli import app
from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto.search._search import SPEC_ATTR, SearchSpec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
OLD = "name: sim\nkind: fake\nbackend: fake\nparams: {gmacs_per_s: 3}\n"
NEW = "name: sim\nkind: fake\nbackend: fake\nparams: {gmacs_per_s: 5, overhead_us: 1}\n"


def _hw(url: str, *args: object, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, [*(str(a) for a in args), "--store", url])
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def _lut(url: str, device: str) -> dict[str, float]:
    with Store.open(url) as s:
        table = s.luts.get(device)
    return dict(zip(table["layer_key"], table["latency_ms_mean"], strict=True))


def test_store_refuses_other_parameters_and_keeps_the_same_ones(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.db")) as store:
        first = store.devices.add("dev0", "cuda", {"gpu": "H100", "clock": {"mhz": 1980}}, {"tool": "nvidia-smi"})
        assert store.devices.add("dev0", "cuda", {"clock": {"mhz": 1980}, "gpu": "H100"}, {"other": 1}) == first
        with pytest.raises(HwparetoError) as refused:
            store.devices.add("dev0", "cpu", {"gpu": "H100", "clock": {"mhz": 1410}, "new": True})
        message = str(refused.value)
        assert "\n" not in message and message.startswith("device 'dev0'")
        for part in ('kind: "cuda" → "cpu"', "clock.mhz: 1980 → 1410", "new: (absent) → true"):
            assert part in message
        assert "--replace" in message and "0 LUT entries, 0 measurements, 0 predictors" in message
        assert store.devices.get("dev0") == first  # nothing changed


def test_cli_refuses_an_edited_device_file_and_replace_starts_afresh(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    device = tmp_path / "dev.yaml"
    device.write_text(OLD)
    out, _ = _hw(url, "device", "add", device)
    assert "registered device 'sim'" in out
    _hw(url, "profile", "--device", "sim", "--space", "nb201", "--workers", "1")
    _hw(url, "measure", "--device", "sim", "--space", "nb201", "-n", "3")
    before = _lut(url, "sim")
    assert len(before) == 22

    out, _ = _hw(url, "device", "add", device)  # the same file again: a no-op
    assert "already registered" in out and "unchanged" in out

    device.write_text(NEW)
    _, err = _hw(url, "device", "add", device, code=1)
    line = err.strip()
    assert "\n" not in line and line.startswith("error: device 'sim'")
    assert "params.gmacs_per_s: 3 → 5" in line and "params.overhead_us: (absent) → 1" in line
    assert "22 LUT entries, 6 measurements, 0 predictors" in line
    with Store.open(url) as s:
        assert s.devices.get("sim").spec["params"] == {"gmacs_per_s": 3}
    # the old parameters are what profile measured: nothing new is measured, the LUT keeps the old values
    out, _ = _hw(url, "profile", "--device", "sim", "--space", "nb201", "--workers", "1", "--json")
    assert json.loads(out)["measured"] == 0 and _lut(url, "sim") == before

    # a study using the device: --replace is refused, naming it; nothing dropped
    with Store.open(url) as s:
        storage = s.optuna_storage()
    spec = SearchSpec("uses-sim", "nb201", ("params:max", "latency_ms@sim"), n_trials=10, population=4)
    study = optuna.create_study(storage=storage, study_name="uses-sim", directions=["maximize", "minimize"])
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    _, err = _hw(url, "device", "add", device, "--replace", code=1)
    assert "\n" not in err.strip() and "1 study uses it (uses-sim)" in err and _lut(url, "sim") == before
    optuna.delete_study(study_name="uses-sim", storage=storage)

    out, _ = _hw(url, "device", "add", device, "--replace")
    assert "replaced device 'sim'" in out and "dropped 22 LUT entries, 6 measurements, 0 predictors" in out
    with Store.open(url) as s:
        record = s.devices.get("sim")
        assert record.spec["params"] == {"gmacs_per_s": 5, "overhead_us": 1}
        assert (record.lut_entries, record.measurements) == (0, 0)
    out, _ = _hw(url, "profile", "--device", "sim", "--space", "nb201", "--workers", "1", "--json")
    after = _lut(url, "sim")
    assert json.loads(out)["measured"] == 22 and after.keys() == before.keys()
    assert all(after[k] < before[k] for k in before)  # measured with the new, faster parameters


@pytest.mark.slow
def test_dashboard_upload_shows_the_same_refusal(empty_url: str, tmp_path: Path) -> None:
    device = tmp_path / "dev.yaml"
    device.write_text(OLD)
    _hw(empty_url, "device", "add", device)
    device.write_text(NEW)
    _, err = _hw(empty_url, "device", "add", device, code=1)
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "devices.py"), default_timeout=90)
    at.run()
    at.radio(key="profile_source").set_value("upload a device YAML").run()
    at.file_uploader(key="profile_upload").set_value(("dev.yaml", NEW.encode(), "application/x-yaml")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [e.value for e in at.error] == [err.strip()]
    assert not at.success  # not called valid
    at.button(key="profile_launch").click().run()
    assert not at.exception and "expected an uploaded, valid device file" in "\n".join(e.value for e in at.error)
    with Store.open(empty_url) as s:
        assert s.devices.get("sim").spec["params"] == {"gmacs_per_s": 3}
    # the same file as registered is valid
    at.file_uploader(key="profile_upload").set_value(("dev.yaml", OLD.encode(), "application/x-yaml")).run()
    assert not at.error and "device 'sim'" in at.success[0].value


def test_a_hardware_file_edited_in_place_is_another_device(tmp_path: Path) -> None:
    """A ZigZag device whose file names are unchanged but whose hardware file's contents changed is refused too
    (the backend's provenance records the files' SHA-256)."""
    import shutil

    hardware = tmp_path / "hw.yaml"
    shutil.copy(ROOT / "data" / "devices" / "zigzag" / "hardware" / "edge_tpu_like.yaml", hardware)
    doc = yaml.safe_load((ROOT / "data" / "devices" / "npu-edgetpu.yaml").read_text())
    doc["name"], doc["params"]["hardware"] = "my-npu", "./hw.yaml"
    device = tmp_path / "npu.yaml"
    device.write_text(yaml.safe_dump(doc))
    url = str(tmp_path / "s.db")
    _hw(url, "device", "add", device)
    out, _ = _hw(url, "device", "add", device)
    assert "unchanged" in out
    hardware.write_text(hardware.read_text() + "# edited\n")
    _, err = _hw(url, "device", "add", device, code=1)
    assert "\n" not in err.strip() and "provenance.hardware_sha256: " in err and "error: device 'my-npu'" in err
    # profiling the stored device reads the edited file: refused too (it profiled the edit under the old name)
    _, err = _hw(url, "profile", "--device", "my-npu", "--space", "nb201", code=1)
    assert err.count("\n") == 1 and "error: device 'my-npu': hardware file hw.yaml: expected the contents" in err
    assert "--replace" in err and _lut(url, "my-npu") == {}
