"""The ``hwpareto`` command end to end: store, spaces, configs, export, import; bad input is a one-line error."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from hwpareto.store import SchemaError, Store
from pareto.bundles._export import load_subnet, verify_bundle
from supernet import get_space
from tests._cli import hw

NB201_DEVICES = [
    "1080ti_1",
    "1080ti_256",
    "1080ti_32",
    "essential_ph_1",
    "gold_6240",
    "pixel3",
    "samsung_a50",
    "samsung_s7",
    "silver_4114",
    "silver_4210r",
    "titanx_1",
    "titanx_256",
    "titanx_32",
]
NB201_ACC = {
    "cifar10_test_acc": "cifar10",
    "cifar100_test_acc": "cifar100",
    "imagenet16_120_test_acc": "imagenet16-120",
}
OFA_DEVICES = [
    "2080ti_1",
    "2080ti_32",
    "2080ti_64",
    "titan_xp_1",
    "titan_xp_32",
    "titan_xp_64",
    "v100_1",
    "v100_32",
    "v100_64",
]


def measurement_count(url: str) -> int:
    with Store.open(url) as store:
        return sum(r.count for r in store.measurements.summary())


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------------- store
def test_init_creates_both_schemas(store_url: str) -> None:
    out, _ = hw("init", "--store", store_url, "--json")
    info = json.loads(out)
    assert info["revision"] == "0004_device_kinds" and info["devices"] == 0
    tables = set(inspect(create_engine(store_url)).get_table_names())
    assert {"hwp_devices", "hwp_measurements", "hwp_subnets", "hwp_searches", "hwp_alembic_version"} <= tables
    assert {"studies", "trials", "trial_params", "trial_values", "alembic_version"} <= tables  # Optuna's own
    hw("init", "--store", store_url)  # idempotent


def test_store_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env" / "store.db"
    monkeypatch.setenv("HWPARETO_STORE", str(path))
    out, _ = hw("init")
    assert str(path) in out and path.is_file()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://x", "store URL 'foo://x'"),
        ("postgresql+nodriver://h/db", "store URL 'postgresql+nodriver://h/db'"),
        ("/proc/hwpareto-no/such/dir/store.db", "store path '/proc/hwpareto-no/such/dir/store.db'"),
    ],
)
def test_bad_store_is_one_line_error(url: str, expected: str) -> None:
    _, err = hw("devices", "--store", url, ok=False)
    assert expected in err


def test_unreachable_server_fails_fast() -> None:
    start = time.monotonic()
    _, err = hw("init", "--store", "postgresql://postgres:secret@127.0.0.1:1/test", ok=False)
    assert time.monotonic() - start < 15
    assert "127.0.0.1:1" in err and "secret" not in err


def test_older_schema_prints_upgrade_command(sqlite_url: str) -> None:
    Store.upgrade(sqlite_url, revision="0001_registry")
    with pytest.raises(SchemaError):
        Store.open(sqlite_url)
    _, err = hw("devices", "--store", sqlite_url, ok=False)
    assert f"run 'hwpareto db upgrade --store {sqlite_url}'" in err
    out, _ = hw("db", "upgrade", "--store", sqlite_url)
    assert "0001_registry -> 0004_device_kinds" in out
    hw("devices", "--store", sqlite_url)


# ---------------------------------------------------------------------------------------------------- spaces
def test_spaces_and_space_show(sqlite_url: str) -> None:
    out, _ = hw("spaces", "--store", sqlite_url, "--json")
    spaces = {s["name"]: s for s in json.loads(out)}
    assert {"mbv3", "gpt", "nb201"} <= set(spaces)
    assert spaces["nb201"]["size"] == 15625 and len(spaces["mbv3"]["dimensions"]) == 47
    out, _ = hw("space", "show", "mbv3", "--store", sqlite_url)
    assert "ks_19" in out and "one of 128, 132" in out
    _, err = hw("space", "show", "resnet", "--store", sqlite_url, ok=False)
    assert "expected one of " in err and "gpt, gpt-stdlib, mbv3, mbv3-digits, nb201, " in err and "got 'resnet'" in err


def test_register_declarative_space_and_import(tmp_path: Path, sqlite_url: str) -> None:
    spec = tmp_path / "toy.yaml"
    spec.write_text(
        "name: toy\ndimensions:\n  - {name: depth, type: int, low: 1, high: 8}\n"
        "  - {name: act, choices: [relu, gelu]}\n"
    )
    out, _ = hw("space", "register", spec, "--store", sqlite_url)
    assert "registered space 'toy'" in out
    out, _ = hw("spaces", "--store", sqlite_url)
    assert "toy" in out and "declarative" in out
    table = write_csv(tmp_path / "toy.csv", ["depth", "act", "lat"], [[1, "relu", 1.5], [8, "gelu", 9.0]])
    hw(
        "import",
        table,
        "--space",
        "toy",
        "--device",
        "board",
        "--metric",
        "latency_ms",
        "--column",
        "lat",
        "--store",
        sqlite_url,
    )
    assert measurement_count(sqlite_url) == 2
    _, err = hw(
        "export-config",
        "toy",
        _json(tmp_path / "c.json", {"depth": 2, "act": "relu"}),
        "--out",
        tmp_path / "b",
        "--weights",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "declarative" in err


def _json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------------- configs
def test_sample_is_seeded_and_valid(sqlite_url: str) -> None:
    first, _ = hw("sample", "mbv3", "-n", "4", "--seed", "3", "--json", "--store", sqlite_url)
    again, _ = hw("sample", "mbv3", "-n", "4", "--seed", "3", "--json", "--store", sqlite_url)
    assert first == again
    space = get_space("mbv3")
    for item in json.loads(first):
        cfg = space.validate(item["values"])
        assert cfg.key == item["key"] and item["params"] == space.params(cfg)
    out, _ = hw("sample", "nb201", "-n", "2", "--store", sqlite_url)
    assert out.count("~0|") >= 2  # human table shows arch strings


def test_validate(tmp_path: Path, sqlite_url: str) -> None:
    space = get_space("nb201")
    good = space.largest().values
    out, _ = hw("validate", "nb201", _json(tmp_path / "ok.json", good), "--store", sqlite_url)
    assert space.largest().key in out and "1.532 M params" in out
    doc = {"space": "nb201", "values": good}
    out, _ = hw("validate", "nb201", _json(tmp_path / "doc.json", doc), "--json", "--store", sqlite_url)
    assert json.loads(out)["params"] == 1_531_546
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "edge5"}, "expected values for edge5"),
        "extra": ({**good, "edge6": "none"}, "got 'extra edge6'"),
        "range": ({**good, "edge2": "conv_5x5"}, "nb201.edge2: expected one of none, skip_connect"),
        "type": ([1, 2], "expected a mapping"),
    }
    for name, (data, message) in cases.items():
        _, err = hw("validate", "nb201", _json(tmp_path / f"{name}.json", data), "--store", sqlite_url, ok=False)
        assert message in err
    (tmp_path / "broken.json").write_text("{not json")
    _, err = hw("validate", "nb201", tmp_path / "broken.json", "--store", sqlite_url, ok=False)
    assert "not valid JSON (line 1" in err
    _, err = hw("validate", "nb201", tmp_path / "absent.json", "--store", sqlite_url, ok=False)
    assert "cannot read" in err


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["mbv3", "gpt", "nb201"])
def test_export_config_round_trip(space_name: str, tmp_path: Path, sqlite_url: str) -> None:
    space = get_space(space_name)
    cfg = space.sample(np.random.default_rng(5))
    out_dir = tmp_path / "bundle"
    out, _ = hw(
        "export-config",
        space_name,
        _json(tmp_path / "c.json", cfg.values),
        "--out",
        out_dir,
        "--weights",
        "--onnx",
        "--random-weights",
        "--json",
        "--store",
        sqlite_url,
    )
    files = json.loads(out)["files"]
    assert set(files) == {"config.json", "weights.safetensors", "model.onnx"}
    doc = json.loads((out_dir / "config.json").read_text())
    assert doc["key"] == cfg.key and doc["params"] == space.params(cfg) and doc["supernet"]["seed"] == 0
    check = verify_bundle(out_dir)  # reloaded weights and ONNX (onnxruntime) vs a fresh extraction
    assert check.weights_max_abs_diff == 0.0
    assert check.onnx_max_abs_diff is not None and check.onnx_max_abs_diff < 1e-4
    _, reloaded_cfg, _ = load_subnet(out_dir)
    assert reloaded_cfg == cfg
    out, _ = hw("validate", space_name, out_dir / "config.json", "--store", sqlite_url)  # bundle config validates
    assert cfg.key in out
    with Store.open(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT config_key FROM hwp_exports").scalars().all() == [cfg.key]


@pytest.mark.slow
def test_export_with_checkpoint_and_tampering(tmp_path: Path, sqlite_url: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    space = get_space("nb201")
    supernet = space.supernet(seed=3)
    cfg = space.largest()
    noise = torch.Generator().manual_seed(4)
    with torch.no_grad():  # weights unlike any fresh init, so the export must really read the checkpoint
        for p in supernet.parameters():
            p.mul_(0.9).add_(torch.randn(p.shape, generator=noise), alpha=0.01)
        norms = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in norms:  # statistics of real activations (a fresh net's unit variances let the signal vanish)
            m.reset_running_stats()
            m.momentum = None
        supernet.set_active(cfg)
        supernet.train()
        for i in range(4):
            supernet(space.dummy_input(cfg, batch=16, seed=i))
        supernet.eval()
    ckpt = tmp_path / "supernet.safetensors"
    save_file({k: v.contiguous() for k, v in supernet.state_dict().items()}, str(ckpt))
    out_dir = tmp_path / "b"
    hw(
        "export-config",
        "nb201",
        _json(tmp_path / "c.json", cfg.values),
        "--out",
        out_dir,
        "--weights",
        "--checkpoint",
        ckpt,
        "--store",
        sqlite_url,
    )
    _, _, module = load_subnet(out_dir)
    expected = space.extract(supernet, cfg).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in module.state_dict().items())
    assert verify_bundle(out_dir, checkpoint=ckpt).weights_max_abs_diff == 0.0
    out, _ = hw("verify-bundle", out_dir, "--json", "--store", sqlite_url)  # the store knows the checkpoint's hash
    assert json.loads(out) | {"directory": None} == {
        "directory": None,
        "ok": True,
        "weights_max_abs_diff": 0.0,
        "onnx_max_abs_diff": None,
        "pretrained_max_abs_diff": None,
    }
    edited = tmp_path / "edited"  # weights changed and the hash updated to match: only re-extraction can tell
    shutil.copytree(out_dir, edited)
    state = load_file(edited / "weights.safetensors")
    first = next(k for k, v in state.items() if k.endswith("weight") and v.ndim > 1)
    state[first] = state[first] * 1.01
    save_file(state, str(edited / "weights.safetensors"))
    doc = json.loads((edited / "config.json").read_text())
    doc["files"]["weights.safetensors"] = hashlib.sha256((edited / "weights.safetensors").read_bytes()).hexdigest()
    (edited / "config.json").write_text(json.dumps(doc))
    _, err = hw("verify-bundle", edited, "--checkpoint", ckpt, ok=False)
    assert "weights_max_abs_diff: expected at most --atol 0.0001, got" in err
    hw("verify-bundle", out_dir, "--atol", "0", "--checkpoint", ckpt)  # the untouched bundle: exactly the extraction
    _, err = hw("verify-bundle", tmp_path / "absent", ok=False)
    assert "cannot read config.json" in err
    save_file({"x": torch.zeros(1)}, str(tmp_path / "wrong.safetensors"))
    _, err = hw(
        "export-config",
        "nb201",
        tmp_path / "c.json",
        "--out",
        tmp_path / "w",
        "--weights",
        "--checkpoint",
        tmp_path / "wrong.safetensors",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "does not fit space 'nb201'" in err
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04not safetensors")
    _, err = hw(
        "export-config",
        "nb201",
        tmp_path / "c.json",
        "--out",
        tmp_path / "p",
        "--weights",
        "--checkpoint",
        tmp_path / "pickle.pt",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "not a readable safetensors file" in err
    with (out_dir / "weights.safetensors").open("r+b") as fh:  # corrupt the bundle
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    from hwpareto.errors import HwparetoError

    with pytest.raises(HwparetoError, match="SHA-256 differs"):
        load_subnet(out_dir)
    _, err = hw("verify-bundle", out_dir, ok=False)
    assert "weights.safetensors: its SHA-256 differs from config.json" in err


# ---------------------------------------------------------------------------------------------------- import
def test_import_is_idempotent_and_all_or_nothing(tmp_path: Path, store_url: str) -> None:
    space = get_space("nb201")
    rows = [[space.to_arch_str(space.from_index(i)), 10 + i, 90 - i] for i in range(5)]
    table = write_csv(tmp_path / "t.csv", ["arch_str", "dev_a", "dev_b"], rows)
    args = [
        "import",
        table,
        "--space",
        "nb201",
        "--device",
        "{column}",
        "--metric",
        "latency_ms",
        "--column",
        "dev_a",
        "--column",
        "dev_b",
        "--store",
        store_url,
        "--json",
    ]
    first = json.loads(hw(*args)[0])
    assert (first["inserted"], first["unchanged"], first["new_devices"]) == (10, 0, ["dev_a", "dev_b"])
    again = json.loads(hw(*args)[0])
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 10)
    devices = {d["name"]: d for d in json.loads(hw("devices", "--json", "--store", store_url)[0])}
    assert devices["dev_a"]["kind"] == "imported" and devices["dev_a"]["measurements"] == 5

    before = measurement_count(store_url)
    bad_rows = [*rows, ["|none~0|+|none~0|none~1|", 1, 2], [rows[0][0], "fast", 3], [rows[1][0], "nan", 3]]
    bad = write_csv(tmp_path / "bad.csv", ["arch_str", "dev_a", "dev_b"], bad_rows)
    _, err = hw(*[bad if a == table else a for a in args], ok=False)
    assert "5 bad row(s), nothing imported" in err  # rows 8 and 9 also repeat the SubNets of rows 2 and 3
    assert "rows 2 and 8: the same SubNet in column 'dev_b'" in err
    assert "row 7: arch_str: expected the pattern" in err  # header is row 1
    assert "row 8: column 'dev_a': expected a finite number, got 'fast'" in err
    assert "row 9: column 'dev_a': expected a finite number, got 'nan'" in err
    assert measurement_count(store_url) == before

    missing = write_csv(tmp_path / "missing.csv", ["arch_str", "dev_a"], rows[:1])
    _, err = hw(*[missing if a == table else a for a in args], ok=False)
    assert "missing dev_b" in err
    no_config = write_csv(tmp_path / "noconf.csv", ["name", "dev_a", "dev_b"], [["x", 1, 2]])
    _, err = hw(*[no_config if a == table else a for a in args], ok=False)
    assert "config columns (arch_str) or (edge0" in err
    assert measurement_count(store_url) == before


def test_import_option_errors(tmp_path: Path, sqlite_url: str) -> None:
    table = write_csv(tmp_path / "t.csv", ["arch_index", "a", "b"], [[0, 1.0, 2.0]])
    base = ["import", table, "--space", "nb201", "--metric", "latency_ms", "--store", sqlite_url]
    _, err = hw(*base, "--column", "a", ok=False)
    assert "--device/--dataset: expected exactly one of them, got 'neither'" in err
    _, err = hw(*base, "--device", "d", "--dataset", "x", "--column", "a", ok=False)
    assert "got 'both'" in err
    _, err = hw(*base, "--device", "fixed", "--column", "a", "--column", "b", ok=False)
    assert "containing {column}" in err
    _, err = hw(*base, "--device", "has space", "--column", "a", ok=False)
    assert "got 'has space'" in err
    _, err = hw(*base, "--space", "mbv3", "--device", "d", "--column", "a", "--set", "w=1.3", ok=False)
    assert "mbv3.w: expected one of 1.0, 1.2, got 1.3" in err
    _, err = hw(
        "import",
        tmp_path / "none.csv",
        "--space",
        "nb201",
        "--metric",
        "m",
        "--device",
        "d",
        "--column",
        "a",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "cannot read" in err
    (tmp_path / "empty.csv").write_text("")
    _, err = hw(
        "import",
        tmp_path / "empty.csv",
        "--space",
        "nb201",
        "--metric",
        "m",
        "--device",
        "d",
        "--column",
        "a",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "empty file" in err
    _, err = hw(*base, "--device", "d", "--column", "a", "--metric", "Latency MS", ok=False)
    assert "Latency MS" in err
    assert measurement_count(sqlite_url) == 0


@pytest.mark.slow
def test_shared_tables_import_and_round_trip(shared_data: Path, store_url: str, tmp_path: Path) -> None:
    nb201 = shared_data / "nb201_accuracy_latency.csv"
    hw(
        "import",
        nb201,
        "--space",
        "nb201",
        "--device",
        "{column}",
        "--metric",
        "latency_ms",
        *[a for d in NB201_DEVICES for a in ("--column", d)],
        "--store",
        store_url,
    )
    hw(
        "import",
        nb201,
        "--space",
        "nb201",
        "--dataset",
        "{column}",
        "--metric",
        "test_acc_pct",
        *[a for c, d in NB201_ACC.items() for a in ("--column", f"{c}={d}")],
        "--store",
        store_url,
    )
    ofa = shared_data / "ofa_mbv3_latency.csv"
    hw(
        "import",
        ofa,
        "--space",
        "mbv3",
        "--device",
        "{column}",
        "--metric",
        "latency_ms",
        *[a for d in OFA_DEVICES for a in ("--column", d)],
        "--store",
        store_url,
    )
    summary = json.loads(hw("measurements", "--json", "--store", store_url)[0])
    counts = {(r["space"], r["subject"]): r["count"] for r in summary}
    assert all(counts[("nb201", d)] == 15625 for d in [*NB201_DEVICES, *NB201_ACC.values()])
    assert all(counts[("mbv3", d)] == 5000 for d in OFA_DEVICES)

    for space, source, metric, columns in (
        ("nb201", nb201, "latency_ms", {d: d for d in NB201_DEVICES}),
        ("nb201", nb201, "test_acc_pct", NB201_ACC),
        ("mbv3", ofa, "latency_ms", {d: d for d in OFA_DEVICES}),
    ):
        out = tmp_path / f"{space}-{metric}.csv"
        hw("measurements", "--space", space, "--metric", metric, "--out", out, "--store", store_url)
        with source.open() as fh:
            original = list(csv.DictReader(fh))
        with out.open() as fh:
            exported = list(csv.DictReader(fh))
        assert len(exported) == len(original)
        key = ("arch_str",) if space == "nb201" else ("ks", "e", "d", "r")
        by_config = {tuple(r[k] for k in key): r for r in exported}
        for row in original:
            back = by_config[tuple(row[k] for k in key)]
            for column, subject in columns.items():
                assert float(back[subject]) == float(row[column]), (space, column)


@pytest.mark.slow
def test_hat_table_into_declarative_space(shared_data: Path, sqlite_url: str) -> None:
    spec = Path(__file__).resolve().parents[1] / "data" / "spaces" / "hat_wmt14ende.yaml"
    hw("space", "register", spec, "--store", sqlite_url)
    table = shared_data / "hat_latency_wmt14ende.csv"
    for device in ("raspberrypi", "xeon", "titanxp"):
        out, _ = hw(
            "import",
            table,
            "--space",
            "hat-wmt14ende",
            "--where",
            f"device={device}",
            "--device",
            f"hat_{device}",
            "--metric",
            "latency_ms",
            "--column",
            "latency_total_ms",
            "--store",
            sqlite_url,
            "--json",
        )
        assert json.loads(out)["inserted"] == 2000
    summary = json.loads(hw("measurements", "--space", "hat-wmt14ende", "--json", "--store", sqlite_url)[0])
    assert sorted((r["subject"], r["count"]) for r in summary) == [
        ("hat_raspberrypi", 2000),
        ("hat_titanxp", 2000),
        ("hat_xeon", 2000),
    ]
    with table.open() as fh:
        first = next(r for r in csv.DictReader(fh) if r["device"] == "xeon")
    with Store.open(sqlite_url) as store:
        df = store.measurements.table(space="hat-wmt14ende", subject="hat_xeon")
        cfg = store.spaces.get("hat-wmt14ende").from_record(first)
    assert float(df.set_index("config_key").loc[cfg.key, "value"]) == float(first["latency_total_ms"])
    _, err = hw(
        "import",
        table,
        "--space",
        "hat-wmt14ende",
        "--where",
        "gpu=yes",
        "--device",
        "x",
        "--metric",
        "latency_ms",
        "--column",
        "latency_total_ms",
        "--store",
        sqlite_url,
        ok=False,
    )
    assert "--where columns" in err and "got 'gpu'" in err
