"""Issue 11 items 2, 5, 6: metric ranges on every write path, one name validator everywhere (stored names printed
escaped), and no state left behind (refused budgets, killed profiles, failed searches, exports, device files, CSV)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from sqlalchemy import insert

from hwpareto.errors import InvalidValueError
from hwpareto.store import Store
from hwpareto.store._models import Device
from hwpareto.store._tables import csv_safe, write_wide_csv
from pareto.search._search import SearchSpec, load_trials
from pareto.search._worker import run_now
from profilers import DeviceSpec, backend_for, build_lut, load_device_file
from profilers._zigzag import ZIGZAG_DIR
from supernet import check_metric_value, check_name, get_space, show_name
from tests._cli import hw_text as hw

optuna.logging.set_verbosity(optuna.logging.WARNING)
HOSTILE = ["x'; DROP TABLE devices; --", "../../etc", "red\x1b[31mname", "two\nlines", "trailing\n", "a b", "-x"]


def counts(url: str) -> tuple[int, int, int, int]:
    """(measurements, devices, LUT entries, searches) in the store."""
    with Store.open(url) as s:
        return (
            sum(r.count for r in s.measurements.summary()),
            len(s.devices.list()),
            sum(d.lut_entries for d in s.devices.list()),
            len(s.searches.list()),
        )


def nb201_csv(path: Path, values: list[object], column: str = "v") -> Path:
    sp = get_space("nb201")
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arch_str", column])
        for value in values:
            writer.writerow([sp.to_record(sp.sample(rng))["arch_str"], value])
    return path


def fake(store: Store, name: str, **params: float) -> DeviceSpec:
    spec = DeviceSpec(name, "fake", "fake", params)
    store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe())
    build_lut(store, spec, get_space("mbv3"), restrict={"r": [224], "w": [1.0]}, workers=1)
    return spec


# ---------------------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize(
    ("metric", "value", "ok"),
    [
        ("latency_ms", 3.5, True),
        ("latency_ms", 0.0, False),
        ("latency_ms", -5, False),
        ("latency_ms", 1e308, False),
        ("energy_mj", 1e9, True),
        ("energy_mj", 2e9, False),
        ("test_acc_pct", 100, True),
        ("test_acc_pct", -250, False),
        ("cifar10_test_acc", 1e300, False),
        ("params", 0, True),
        ("macs", -1, False),
        ("score", -5.2, True),
        ("score", math.nan, False),
        ("score", math.inf, False),
        ("latency_ms", True, False),
    ],
)
def test_metric_range_rule(metric: str, value: float, ok: bool) -> None:
    if ok:
        assert check_metric_value("v", metric, value) == float(value)
    else:
        with pytest.raises(InvalidValueError, match=r"^v: expected (a finite number|\S+ in [\[(])"):
            check_metric_value("v", metric, value)
    assert check_metric_value("v", "latency_ms", 0.0, per_layer=True) == 0.0  # one layer may cost nothing
    with pytest.raises(InvalidValueError):
        check_metric_value("v", "latency_ms", -1.0, std=True)


@pytest.mark.parametrize(
    ("metric", "subject", "bad"),
    [
        ("latency_ms", "--device", "-5"),
        ("latency_ms", "--device", "1e308"),
        ("latency_ms", "--device", "0"),
        ("test_acc_pct", "--dataset", "-250"),
        ("test_acc_pct", "--dataset", "1e300"),
        ("energy_mj", "--device", "nan"),
    ],
)
def test_import_of_out_of_range_values_writes_nothing(
    store_url: str, tmp_path: Path, metric: str, subject: str, bad: str
) -> None:
    good = nb201_csv(tmp_path / "good.csv", [1.5, 2.5, 3.5])
    base = ["--space", "nb201", "--metric", metric, "--column", "v", subject, "board", "--store", store_url]
    hw("import", good, *base)
    before = counts(store_url)
    with Store.open(store_url) as s:
        values = sorted(s.measurements.table(space="nb201")["value"])
    worse = nb201_csv(tmp_path / "bad.csv", [1.5, bad, 3.5])  # row 3 (the header is row 1); row 2 is unchanged
    err = hw("import", worse, *base, ok=False)
    assert "row 3" in err and "nothing imported" in err and repr(bad) in err
    assert counts(store_url) == before
    with Store.open(store_url) as s:
        assert sorted(s.measurements.table(space="nb201")["value"]) == values


def test_lut_import_of_out_of_range_values_writes_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    with Store.open(url) as s:
        fake(s, "edge")
    hw("lut", "export", "--device", "edge", "--out", tmp_path / "lut.csv", "--store", url)
    table = pd.read_csv(tmp_path / "lut.csv")
    hw("lut", "import", tmp_path / "lut.csv", "--device", "copy", "--store", url)
    before = counts(url)
    for column, value in (("latency_ms_mean", 1e308), ("latency_ms_std", -1.0), ("energy_mj_mean", 1e300)):
        bad = table.copy()
        bad.loc[1, column] = value
        bad.to_csv(tmp_path / "bad.csv", index=False)
        err = hw("lut", "import", tmp_path / "bad.csv", "--device", "copy", "--store", url, ok=False)
        assert "row 3" in err and column in err
        assert counts(url) == before
    with Store.open(url) as s:  # the store's own check (every write path) names the row too
        row = s.luts.get("edge").iloc[0].to_dict()
        with pytest.raises(InvalidValueError, match=r"lut\[0\]\.latency_ms_mean: expected"):
            s.luts.add("edge", [{**row, "latency_ms_mean": 1e308}])


def test_import_refuses_two_rows_for_one_subnet(store_url: str, tmp_path: Path) -> None:
    """The store kept the last of two values for one SubNet, silently: now the rows are named, nothing imported."""
    table = nb201_csv(tmp_path / "t.csv", [1.5, 2.5, 3.5])
    rows = table.read_text().splitlines()
    table.write_text("\n".join([*rows, rows[1].rsplit(",", 1)[0] + ",9.5", rows[2]]) + "\n")  # rows 5 and 6
    base = ["--space", "nb201", "--metric", "latency_ms", "--column", "v", "--device", "board", "--store", store_url]
    before = counts(store_url)
    err = hw("import", table, *base, ok=False)
    assert "2 bad row(s), nothing imported: rows 2 and 5: the same SubNet in column 'v' (one row per SubNet)" in err
    assert "rows 3 and 6" in err
    assert counts(store_url) == before
    hw("import", table, *base, "--where", "v=1.5")  # one row per SubNet among those selected
    assert counts(store_url)[0] == before[0] + 1


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("spec_json", "[" * 10_000 + "]" * 10_000, "column 'spec_json': expected at most 64 levels of nesting"),
        ("spec_json", '{"op": ' + "9" * 5000 + "}", "column 'spec_json': expected integers of at most 100 digits"),
        ("spec_json", "{not json", "column 'spec_json': not valid JSON"),
        ("n", "9" * 5000, "column 'n': expected an integer in [1, 2147483647], got '99999"),
        ("n", "0", "column 'n': expected an integer in [1, 2147483647], got '0'"),
        ("batch", "1.5", "column 'batch': expected an integer in [1, 65536], got '1.5'"),
    ],
    ids=["deep spec_json", "5,000-digit spec_json", "broken spec_json", "5,000-digit n", "zero n", "float batch"],
)
def test_lut_import_of_hostile_cells_names_row_and_column(
    tmp_path: Path, column: str, value: str, fragment: str
) -> None:
    """Each was a RecursionError traceback or a message without the column (\"Exceeds the limit (4300 digits)\")."""
    url = str(tmp_path / "s.db")
    with Store.open(url) as s:
        fake(s, "edge")
    hw("lut", "export", "--device", "edge", "--out", tmp_path / "lut.csv", "--store", url)
    table = pd.read_csv(tmp_path / "lut.csv", dtype=str, keep_default_na=False)
    before = counts(url)
    table.loc[2, column] = value
    table.to_csv(tmp_path / "bad.csv", index=False)
    err = hw("lut", "import", tmp_path / "bad.csv", "--device", "copy", "--store", url, ok=False)
    assert "row 4: " + fragment in err and len(err) < 600
    assert counts(url) == before


# ---------------------------------------------------------------------------------------------------- item 5
@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_everywhere(tmp_path: Path, name: str) -> None:
    url = str(tmp_path / "s.db")
    with Store.open(url) as s:
        fake(s, "edge")
    hw("lut", "export", "--device", "edge", "--out", tmp_path / "lut.csv", "--store", url)
    good = nb201_csv(tmp_path / "good.csv", [1.5, 2.5])
    before = counts(url)
    hw("device", "add", "--local-cpu", name, "--store", url, ok=False)
    hw("lut", "import", tmp_path / "lut.csv", "--device", name, "--store", url, ok=False)
    hw(
        "import",
        good,
        "--space",
        "nb201",
        "--metric",
        "latency_ms",
        "--column",
        "v",
        "--device",
        name,
        "--store",
        url,
        ok=False,
    )
    hw(
        "import",
        good,
        "--space",
        "nb201",
        "--metric",
        "acc_pct",
        "--column",
        "v",
        "--dataset",
        name,
        "--store",
        url,
        ok=False,
    )
    hw(
        "search",
        "--space",
        "mbv3",
        "--objective",
        "params:max",
        "--objective",
        "latency_ms@edge",
        "--fix",
        "r=224",
        "--fix",
        "w=1.0",
        "--trials",
        "20",
        "--population",
        "10",
        "--name",
        name,
        "--store",
        url,
        ok=False,
    )
    hw("train", "latency", "--device", "edge", "--space", "mbv3", "--name", name, "--store", url, ok=False)
    hw("train", "accuracy", "--space", "nb201", "--metric", "acc_pct", "--name", name, "--store", url, ok=False)
    device_file = tmp_path / "dev.yaml"
    device_file.write_text(json.dumps({"name": name, "kind": "fake", "backend": "fake"}))
    hw("device", "add", device_file, "--store", url, ok=False)
    assert counts(url) == before
    with Store.open(url) as s:
        for call in (
            lambda: s.devices.add(name, "fake", {}),
            lambda: s.predictors.save(name, kind="latency", space="mbv3", metric="latency_ms", blob=b"x", meta={}),
            lambda: s.searches.submit(name, "mbv3", {}, 10),
        ):
            with pytest.raises(InvalidValueError, match="letters, digits"):
                call()
    with pytest.raises(InvalidValueError):
        check_name("space", name)
    with pytest.raises(InvalidValueError):
        check_name("search name", "")


def test_stored_names_predating_the_check_are_printed_escaped(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    evil = "evil\x1b[2J\x1b]0;pwned\x07\nname"
    with Store.open(url) as s, s.transaction() as conn:
        conn.execute(insert(Device).values(name=evil, kind="imported", spec_json="{}", provenance_json="{}"))
    out = hw("devices", "--store", url)
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b[2J" in out
    err = hw("device", "show", "nope", "--store", url, ok=False)  # the error lists the stored names
    assert "\x1b" not in err and "evil\\x1b" in err
    assert show_name("cpu-local") == "cpu-local" and show_name("a\nb") == "a\\nb"


# ---------------------------------------------------------------------------------------------------- item 6
def test_unreachable_budget_leaves_no_search_and_the_corrected_rerun_works(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    with Store.open(url) as s:
        fake(s, "edge", gmacs_per_s=5.0)
    base = [
        "search",
        "--space",
        "mbv3",
        "--objective",
        "params:max",
        "--objective",
        "latency_ms@edge",
        "--fix",
        "r=224",
        "--fix",
        "w=1.0",
        "--trials",
        "40",
        "--population",
        "20",
        "--store",
        url,
    ]
    before = counts(url)
    for extra in ([], ["--queue"]):
        err = hw(*base, "--budget", "latency_ms@edge <= 0.5", *extra, ok=False)
        assert "best reachable value found" in err
        assert counts(url) == before
        with Store.open(url) as s, pytest.raises(KeyError):
            optuna.load_study(study_name="mbv3-params:max-latency_ms-0", storage=s.optuna_storage())
    out = json.loads(hw(*base, "--budget", "latency_ms@edge <= 60", "--json"))
    assert out["study"] == "mbv3-params:max-latency_ms-0" and out["trials"] == 40


@pytest.mark.slow
def test_unreachable_budget_of_a_budgeted_search_leaves_no_search(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    hw(
        "import",
        nb201_csv(tmp_path / "acc.csv", [50.0 + i for i in range(30)]),
        "--space",
        "nb201",
        "--metric",
        "test_acc_pct",
        "--column",
        "v",
        "--dataset",
        "cifar10",
        "--store",
        url,
    )
    base = [
        "search",
        "--space",
        "nb201",
        "--objective",
        "test_acc_pct@cifar10",
        "--objective",
        "params:min",
        "--mode",
        "budgeted",
        "--trials",
        "20",
        "--batch",
        "5",
        "--name",
        "b1",
        "--store",
        url,
    ]
    before = counts(url)
    assert "bounds some candidate meets" in hw(*base, "--budget", "params <= 1", ok=False)
    assert counts(url) == before
    few = [a if a != "20" else "3" for a in base]  # fewer trials than the initial design: refused up front too
    assert "at least its initial design (20)" in hw(*few, "--budget", "params <= 1e9", ok=False)
    assert counts(url) == before
    hw(*base, "--budget", "params <= 1e9")
    with Store.open(url) as s:
        assert s.searches.get("b1").status == "done"


def test_failed_search_reports_the_trials_it_kept(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.db")) as s:
        fake(s, "edge", gmacs_per_s=5.0)
        spec = SearchSpec(
            "f1", "mbv3", ("params:max", "latency_ms@edge"), n_trials=200, population=50, fixed={"r": 224, "w": 1.0}
        )

        def progress(done: int, _total: int) -> None:
            if done >= 100:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_now(s, spec, progress=progress)
        row = s.searches.get("f1")
        kept = len(load_trials(s, "f1")[0])
        assert row.status == "failed" and kept >= 100 and row.trials_done == kept


def _children(pid: int) -> set[int]:
    """Live descendants of ``pid`` (from /proc)."""
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        parents, frontier = frontier, set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[1]) in parents and fields[0] != "Z" and int(entry.name) not in found:
                    found.add(int(entry.name))
                    frontier.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_profile_leaves_no_pool_processes(tmp_path: Path) -> None:
    hwpareto = Path(sys.executable).with_name("hwpareto")
    proc = subprocess.Popen(
        [
            str(hwpareto),
            "profile",
            "--device",
            "npu-tpu",
            "--space",
            "mbv3",
            "--workers",
            "2",
            "--store",
            str(tmp_path / "s.db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        children: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if len(children) >= 3:  # 2 pool workers and the resource tracker
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(children) >= 3, (children, proc.communicate()[1] if proc.poll() else "")
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], "pool processes outlived the killed profile"
    finally:
        for pid in [proc.pid, *_children(proc.pid)]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def test_export_into_a_non_empty_folder_needs_force(tmp_path: Path) -> None:
    sp = get_space("nb201")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(sp.validate(sp.sample(np.random.default_rng(0))).values))
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "config.json").write_text("mine")
    url = str(tmp_path / "s.db")
    err = hw("export-config", "nb201", config, "--out", out, "--store", url, ok=False)
    assert str(out) in err and "--force" in err
    assert (out / "config.json").read_text() == "mine"
    hw("export-config", "nb201", config, "--out", out, "--force", "--store", url)
    assert json.loads((out / "config.json").read_text())["space"] == "nb201"
    hw("export-config", "nb201", config, "--out", tmp_path / "new", "--store", url)  # a new folder needs nothing


def test_device_file_may_only_name_shipped_or_neighbouring_hardware(tmp_path: Path) -> None:
    shipped = ZIGZAG_DIR / "hardware" / "tpu_like_128.yaml"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(shipped, outside / "hw.yaml")
    own = tmp_path / "upload"
    own.mkdir()
    shutil.copy(shipped, own / "hw.yaml")
    doc: dict[str, Any] = {
        "name": "npu-x",
        "kind": "npu",
        "backend": "zigzag",
        "params": {
            "hardware": "tpu_like_128",
            "mapping": "tpu_like",
            "clock_ghz": 0.7,
            "vector_lanes": 8,
            "vector_pj_per_op": 0.5,
            "dram_pj_per_byte": 20.0,
        },
    }
    device = own / "dev.yaml"
    cases = (
        ("tpu_like_128", True),
        ("hw.yaml", True),
        (str(own / "hw.yaml"), True),
        (str(shipped), True),
        ("../elsewhere/hw.yaml", False),
        (str(outside / "hw.yaml"), False),
        ("/etc/passwd.yaml", False),
    )
    for hardware, ok in cases:
        device.write_text(json.dumps({**doc, "params": {**doc["params"], "hardware": hardware}}))
        if ok:
            assert load_device_file(device).name == "npu-x"
        else:
            with pytest.raises(InvalidValueError, match=r"params\.hardware: expected a preset name, or a \.yaml file"):
                load_device_file(device)


def test_csv_cells_that_look_like_formulas_are_escaped(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"name": ["=HYPERLINK(1)", "+1", "-cmd", "@SUM", "plain", "\tx"], "value": [-5.2, 1, 2, 3, 4, 5]}
    )
    safe = csv_safe(table)
    assert list(safe["name"]) == ["'=HYPERLINK(1)", "'+1", "'-cmd", "'@SUM", "plain", "'\tx"]
    assert list(safe["value"]) == [-5.2, 1, 2, 3, 4, 5] and table["name"].iloc[0] == "=HYPERLINK(1)"
    url = str(tmp_path / "s.db")
    hw(
        "import",
        nb201_csv(tmp_path / "t.csv", [-5.2, 3.0]),
        "--space",
        "nb201",
        "--metric",
        "score",
        "--column",
        "v",
        "--dataset",
        "d1",
        "--store",
        url,
    )
    with Store.open(url) as s:
        write_wide_csv(s, get_space("nb201"), tmp_path / "out.csv")
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert sorted(float(r["d1"]) for r in rows) == [-5.2, 3.0]  # numbers stay numbers
