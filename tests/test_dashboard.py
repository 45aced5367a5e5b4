"""The dashboard: every page under Streamlit's AppTest (full store, empty store, no study, failed search, device
without LUT), the background jobs it launches, upload validation (same errors as the CLI), its data and figures,
and the ``hwpareto dashboard`` command."""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboard import _data, _figures, _jobs, streamlit_command
from hwpareto.cli import app as cli
from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto import study_results
from pareto.search._search import SearchSpec
from supernet import get_space
from tests.dashboard_store import STUDY, add_failed_search, add_fake

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "dashboard" / "views"


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.info, *at.error, *at.warning, *at.success, *at.caption, *at.code])


def wait_for(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------------- pages
@pytest.mark.slow
def test_devices_page(dash_url: str) -> None:
    at = page("devices")
    assert {"edge", "server"} <= set(at.dataframe[0].value["device"])
    assert at.selectbox(key="devices_device").value == "edge"
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Kendall τ (held out)"]) > 0.5 and metrics["measured SubNets"] == "20"
    assert "MAPE (held out)" in metrics
    assert at.radio(key="devices_metric").options == ["latency (ms)", "energy (mJ)"]
    at.radio(key="devices_metric").set_value("energy_mj").run()
    assert not at.exception
    at.selectbox(key="devices_device").set_value("server").run()
    assert "No latency/energy predictor for server" in texts(at)


def test_device_without_lut_says_what_to_do(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        add_fake(db, "bare", lut=False)
    at = page("devices")
    at.selectbox(key="devices_device").set_value("bare").run()
    assert not at.exception
    chosen = at.selectbox(key="profile_space").value  # the hint names the space chosen for profiling
    assert "bare has no LUT" in texts(at) and f"hwpareto profile --device bare --space {chosen}" in texts(at)


def test_search_page_shows_progress(dash_url: str) -> None:
    at = page("search")
    assert at.selectbox(key="search_watch").value == STUDY
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["trials done"] == "300" and int(metrics["feasible"]) > 0
    at.selectbox(key="search_space").set_value("nb201").run()
    assert at.selectbox(key="search_quality").options[0] == "test_acc_pct@cifar10"


def test_fronts_page(dash_url: str) -> None:
    at = page("fronts")
    assert at.selectbox(key="fronts_study").value == STUDY
    assert {m.label: m.value for m in at.metric}["trials"] == "300"
    assert at.multiselect(key="fronts_costs").value == ["latency_ms@edge", "latency_ms@server"]
    results = study_results(Store.open(dash_url), STUDY)
    edge = results.front("edge")
    assert at.selectbox(key="fronts_trial").value == edge.knee_number  # the knee is selected first
    other = int(edge.rows["number"].iloc[0])
    at.selectbox(key="fronts_trial").set_value(other).run()
    assert (at.session_state["selection"]["study"], at.session_state["selection"]["trial"]) == (STUDY, other)
    at.toggle(key="fronts_3d").set_value(True).run()
    at.slider(key="fronts_k").set_value(3).run()
    assert not at.exception
    assert len(at.dataframe[-1].value) <= 3  # the operating-point table


@pytest.mark.slow
def test_fronts_compare_two_searches(dash_url: str) -> None:
    from pareto.search._worker import run_now

    with Store.open(dash_url) as db:
        run_now(
            db,
            SearchSpec(
                "random",
                "nb201",
                ("test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"),
                ("latency_ms@edge <= 5",),
                sampler="random",
                n_trials=100,
                population=50,
            ),
        )
    at = page("fronts")
    assert at.selectbox(key="fronts_study").options == ["random", STUDY]  # newest first
    at.selectbox(key="fronts_study").set_value(STUDY).run()
    at.selectbox(key="fronts_compare").set_value("random").run()
    assert not at.exception
    table = at.dataframe[-2].value
    assert list(table["study"]) == [STUDY, "random"] and (table["hypervolume"] > 0).all()


def test_export_page_bundle(dash_url: str) -> None:
    at = AppTest.from_file(str(PAGES / "export.py"), default_timeout=90)
    at.session_state["selection"] = {"study": STUDY, "trial": 7}
    at.run()
    assert at.number_input(key="export_trial").value == 7
    at.button(key="export_build").click().run()  # nb201: no trained weights known, none asked for
    assert not at.exception and "bundle" not in at.session_state
    assert len(at.error) == 1 and "no trained SuperNet weights known" in at.error[0].value
    assert "--random-weights" in at.checkbox(key="export_random_weights").label
    at.checkbox(key="export_weights").uncheck()
    at.button(key="export_build").click().run()
    assert not at.exception
    study, trial, data, manifest, metrics = at.session_state["bundle"]
    assert (study, trial) == (STUDY, 7) and list(manifest["file"]) == ["config.json"]
    with zipfile.ZipFile(BytesIO(data)) as archive:
        doc = json.loads(archive.read(f"{STUDY}-7/config.json"))
    assert doc["metrics"]["trial"] == 7 and metrics["objectives"] == doc["metrics"]["objectives"]
    assert get_space("nb201").validate(doc["values"]).key == doc["key"]


@pytest.mark.slow
def test_bundle_has_weights_and_onnx(dash_url: str) -> None:
    data, manifest, _ = _data.bundle_zip(Store.open(dash_url), STUDY, 3, random_weights=True)  # nb201: untrained
    assert list(manifest["file"]) == ["config.json", "model.onnx", "weights.safetensors"]
    assert (manifest["size_bytes"] > 0).all()
    with zipfile.ZipFile(BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"{STUDY}-3/{f}" for f in manifest["file"]] + [_data.MANIFEST_FILE]
        )


def test_app_navigation(dash_url: str) -> None:
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    assert [t.value for t in at.title] == ["Devices"]
    for name, title in (("search", "Search"), ("fronts", "Fronts"), ("export", "Export")):
        at.switch_page(f"views/{name}.py").run()
        assert not at.exception and [t.value for t in at.title] == [title]


# ---------------------------------------------------------------------------------------------------- empty states
@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("devices", "No devices yet"),
        ("search", "No device with a LUT"),
        ("fronts", "No search has finished trials"),
        ("export", "Nothing to export yet"),
    ],
)
def test_empty_store(empty_url: str, name: str, hint: str) -> None:
    assert hint in texts(page(name))


def test_store_without_studies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'devices.db'}"
    monkeypatch.setenv("HWPARETO_STORE", url)
    with Store.open(url) as db:
        add_fake(db, "edge")
    search = page("search")
    assert "No search yet" in texts(search)
    assert search.selectbox(key="search_space").value == "nb201"  # the space the device has a LUT for
    assert "No search has finished trials" in texts(page("fronts"))
    assert "Nothing to export yet" in texts(page("export"))


def test_failed_search_is_explained(empty_url: str) -> None:
    add_failed_search(
        empty_url, "doomed", "budget 'latency_ms@edge <= 0.01': expected a bound some SubNet meets, got 0.01"
    )
    search = page("search")
    assert "search 'doomed' failed: budget 'latency_ms@edge <= 0.01'" in texts(search)
    assert "launch it again" in texts(search)
    assert "search 'doomed' failed" in texts(page("fronts"))


def test_unopenable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWPARETO_STORE", "mysql://nobody@nowhere/db")
    at = page("fronts")
    assert at.error and "error:" in at.error[0].value and "hwpareto dashboard --store" in texts(at)


# ---------------------------------------------------------------------------------------------------- background jobs
@pytest.mark.slow
def test_launch_search_runs_in_a_worker(dash_url: str) -> None:
    at = page("search")
    at.selectbox(key="search_space").set_value("nb201").run()
    at.selectbox(key="search_quality").set_value("test_acc_pct@cifar10")
    at.text_input(key="search_name").set_value("from-ui")
    at.multiselect(key="search_devices").set_value(["edge", "server"])
    at.number_input(key="search_budget").set_value(6.0)
    at.number_input(key="search_trials").set_value(120)
    at.number_input(key="search_population").set_value(40)
    at.button(key="search_launch").click().run()
    assert not at.exception and not at.error, texts(at)
    assert "queued 'from-ui'" in texts(at)
    db = Store.open(dash_url)
    wait_for(lambda: db.searches.get("from-ui").status in ("done", "failed"))
    assert db.searches.get("from-ui").status == "done", _jobs.list_jobs(dash_url)[0].log_tail()
    results = study_results(db, "from-ui")
    assert [o.name for o in results.objectives] == ["test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"]
    assert [b.text for b in results.budgets] == ["latency_ms@edge <= 6"] and len(results.trials) == 120
    at.run()
    assert at.selectbox(key="search_watch").value == "from-ui"
    assert {m.label: m.value for m in at.metric}["trials done"] == "120"
    again = page("search")  # the same name again: refused with the store's own message
    again.selectbox(key="search_space").set_value("nb201").run()
    again.text_input(key="search_name").set_value("from-ui")
    again.button(key="search_launch").click().run()
    assert "search name: expected a name not used by" in again.error[0].value


@pytest.mark.slow
def test_launch_budgeted_search_evaluates_the_stored_table(dash_url: str) -> None:
    at = page("search")
    at.selectbox(key="search_space").set_value("nb201").run()
    at.selectbox(key="search_quality").set_value("test_acc_pct@cifar10")
    at.radio(key="search_mode").set_value("budgeted").run()
    assert at.selectbox(key="search_sampler").disabled
    at.text_input(key="search_name").set_value("budgeted-ui")
    at.number_input(key="search_trials").set_value(25)
    at.button(key="search_launch").click().run()
    assert not at.exception and not at.error, texts(at)
    db = Store.open(dash_url)
    assert db.searches.get("budgeted-ui").params["mode"] == "budgeted"
    wait_for(lambda: db.searches.get("budgeted-ui").status in ("done", "failed"))
    assert db.searches.get("budgeted-ui").status == "done", _jobs.list_jobs(dash_url)[0].log_tail()
    results = study_results(db, "budgeted-ui")
    oracle = db.measurements.table(space="nb201", subject="cifar10", metric="test_acc_pct").set_index("config_key")[
        "value"
    ]
    assert len(results.trials) == 25 and results.trials["config_key"].is_unique
    assert all(
        oracle[k] == v
        for k, v in zip(results.trials["config_key"], results.trials["test_acc_pct@cifar10"], strict=True)
    )  # evaluated against the table, not predicted
    fronts = page("fronts")
    fronts.selectbox(key="fronts_study").set_value("budgeted-ui").run()
    assert not fronts.exception and not fronts.error, texts(fronts)


@pytest.mark.slow
def test_launch_profile_in_the_background(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        add_fake(db, "fresh", lut=False)
    at = page("devices")
    at.selectbox(key="profile_preset").set_value("fresh")
    at.selectbox(key="profile_space").set_value("nb201")
    at.button(key="profile_launch").click().run()
    assert not at.exception and "profiling fresh on nb201" in texts(at)
    job = _jobs.list_jobs(dash_url, "profile")[0]
    wait_for(lambda: job.status != "running")
    assert job.status == "done", job.log_tail()
    done, total = _data.profile_progress(Store.open(dash_url), "fresh", "nb201")
    assert done == total == len(get_space("nb201").layer_universe())
    at.run()
    assert f"fresh × nb201: done, {total} of {total} layers" in "\n".join(p.proto.text for p in at.get("progress"))


@pytest.mark.slow
def test_unreachable_budget_is_refused_at_launch_and_says_why(dash_url: str) -> None:
    at = page("search")
    at.selectbox(key="search_space").set_value("nb201").run()
    at.text_input(key="search_name").set_value("too-tight")
    at.number_input(key="search_budget").set_value(0.001)
    at.number_input(key="search_trials").set_value(50)
    at.button(key="search_launch").click().run()
    assert "budget 'latency_ms@edge <= 0.001': expected a bound some SubNet meets" in texts(at)
    assert all(s.name != "too-tight" for s in Store.open(dash_url).searches.list())  # nothing left behind


@pytest.mark.slow
def test_failed_profile_job_shows_its_error(dash_url: str) -> None:
    job = _jobs.start_job(dash_url, "profile", "nope × nb201", ["profile", "--device", "nope", "--space", "nb201"])
    wait_for(lambda: job.status != "running")
    assert job.status == "failed" and job.exit_code == 1
    assert "error: device: expected a registered device or preset" in job.log_tail()
    assert "profiling nope × nb201 failed: error: device: expected a registered device or preset" in texts(
        page("devices")
    )


# ---------------------------------------------------------------------------------------------------- uploads
BAD_DEVICES = [
    b"name: npu-x\nkind: gpu\nbackend: zigzag\n",
    b"name: npu-x\nkind: npu\nbackend: fake\nparams: {gmacs_per_s: -1}\n",
    b"name: npu-x\nkind: npu\n",
    b"!!python/object/apply:os.system ['echo hacked']\n",
    b"name: [unclosed\n",
]


@pytest.mark.parametrize("content", BAD_DEVICES)
def test_device_upload_errors_match_the_cli(content: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dev.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["device", "add", "dev.yaml", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    with pytest.raises(HwparetoError) as raised:
        _data.validate_device_upload("dev.yaml", content)
    assert result.stderr.strip() == f"error: {raised.value}"


def test_device_upload_accepts_a_preset() -> None:
    text = (ROOT / "data" / "devices" / "npu-edgetpu.yaml").read_bytes()
    assert _data.validate_device_upload("npu-edgetpu.yaml", text).name == "npu-edgetpu"


def test_csv_upload_errors_match_the_cli(dash_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = b"arch_str,edge\n|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|,1.5\nbad,2\n"
    (tmp_path / "t.csv").write_bytes(table)
    monkeypatch.chdir(tmp_path)
    args = ["import", "t.csv", "--space", "nb201", "--device", "{column}", "--metric", "latency_ms", "--column", "edge"]
    result = CliRunner().invoke(cli, [*args, "--store", dash_url])
    assert result.exit_code == 1 and "row 3" in result.stderr
    with pytest.raises(HwparetoError) as raised:
        _data.import_upload(
            Store.open(dash_url),
            "t.csv",
            table,
            space="nb201",
            subject_kind="device",
            subject="{column}",
            metric="latency_ms",
            columns=["edge"],
        )
    assert result.stderr.strip() == f"error: {raised.value}"
    good = table.split(b"bad")[0]
    report = _data.import_upload(
        Store.open(dash_url),
        "t.csv",
        good,
        space="nb201",
        subject_kind="device",
        subject="{column}",
        metric="latency_ms",
        columns=["edge"],
    )
    assert report["inserted"] == 1


# ---------------------------------------------------------------------------------------------------- data and figures
def test_study_list_and_marker(dash_url: str) -> None:
    db = Store.open(dash_url)
    assert _data.hwpareto_studies(db) == [STUDY] and _data.study_marker(db, STUDY)[0] == 300


def test_config_document_validates(dash_url: str, tmp_path: Path) -> None:
    db = Store.open(dash_url)
    doc = _data.config_document(db, study_results(db, STUDY), 5)
    assert set(doc) == {"space", "key", "values"} and get_space(doc["space"]).validate(doc["values"]).key == doc["key"]
    (tmp_path / "c.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["validate", "nb201", str(tmp_path / "c.json"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["key"] == doc["key"]  # what hwpareto validate reads


def test_front_figure_is_webgl_for_large_studies() -> None:
    rng = np.random.default_rng(0)
    n = _figures.WEBGL_FROM + 1
    trials = pd.DataFrame(
        {
            "number": np.arange(n),
            "acc_pct@d": rng.random(n),
            "latency_ms@edge": rng.random(n),
            "feasible": rng.random(n) > 0.2,
        }
    )
    front = trials.nsmallest(5, "latency_ms@edge")
    fig = _figures.front_figure(
        trials,
        "acc_pct@d",
        ["latency_ms@edge"],
        {"latency_ms@edge": front},
        {"latency_ms@edge": 0.5},
        {},
        selected=int(front["number"].iloc[0]),
    )
    kinds = [t.type for t in fig.data]
    assert kinds[:2] == ["scattergl", "scattergl"] and "scatter" in kinds
    assert fig.layout.xaxis.title.text == "latency on edge (ms)" and fig.layout.yaxis.title.text == "acc on d (%)"
    small = _figures.front_figure(trials.head(50), "acc_pct@d", ["latency_ms@edge"], {"latency_ms@edge": front}, {}, {})
    assert {t.type for t in small.data} == {"scatter"}


def test_every_axis_has_a_unit() -> None:
    assert _figures.axis_title("energy_mj@npu") == "energy on npu (mJ)"
    assert _figures.axis_title("params:max") == "params (count)"
    history = _figures.hypervolume_figure(np.linspace(0, 1, 10))
    points = pd.DataFrame({"config_key": ["a", "b"], "measured": [1.0, 2.0], "predicted": [1.1, 1.9]})
    by_op = pd.DataFrame({"op": ["conv"], "layers": [3], "latency_ms_mean": [1.0], "latency_ms_max": [2.0]})
    for fig in (history, _figures.predictor_figure(points, "latency_ms", "t"), _figures.lut_op_figure(by_op)):
        assert "(" in fig.layout.xaxis.title.text and "(" in fig.layout.yaxis.title.text


def test_parse_fixed_names_field_and_allowed_values() -> None:
    space = get_space("mbv3")
    assert _data.parse_fixed("r=224, w=1.0", space) == {"r": 224, "w": 1.0}
    with pytest.raises(HwparetoError, match="fixed dimensions: expected DIM=VALUE"):
        _data.parse_fixed("r224", space)
    with pytest.raises(HwparetoError, match="r: expected"):
        _data.parse_fixed("r=225", space)


# ---------------------------------------------------------------------------------------------------- command
def test_dashboard_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        "dashboard.serve", lambda url, host, port, open_browser: calls.append((url, host, port, open_browser)) or 0
    )
    url = str(tmp_path / "s.db")
    result = CliRunner().invoke(cli, ["dashboard", "--store", url, "--port", "8600", "--no-browser"])
    assert result.exit_code == 0, result.output
    assert calls == [(url, "127.0.0.1", 8600, False)]
    command = streamlit_command("127.0.0.1", 8600, open_browser=False)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("dashboard/app.py")
    assert command[command.index("--server.headless") + 1] == "true"
    assert command[command.index("--server.address") + 1] == "127.0.0.1"


# ------------------------------------------------------------------------------------------------- the store's password
SECRET = "s3cret-pw-28"


def _process_tree(root: int) -> list[int]:
    """``root`` and its live descendants (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(tree)


@pytest.mark.slow
def test_store_password_never_in_job_files_or_command_lines(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 28 (security 6): the store URL with its password was written into the job files (mode 0644) and the
    worker's argv; it goes by the child's environment now, job folders are 0700 and files 0600."""
    from sqlalchemy import make_url

    url = make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("HWPARETO_STORE", url)
    with Store.open(url) as db:  # the test server trusts: any password connects
        add_fake(db, "edge", lut=False)
    job = _jobs.start_job(url, "profile", "edge × nb201", ["profile", "--device", "edge", "--space", "nb201"])
    seen: dict[int, bytes] = {}
    while job.status == "running":
        for pid in _process_tree(job.pid):
            with contextlib.suppress(OSError):  # it may have ended in between
                seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        time.sleep(0.1)
    assert job.status == "done", job.log_tail()
    assert any(b"hwpareto.cli\0profile" in c for c in seen.values()), seen  # the worker itself was looked at
    assert all(SECRET.encode() not in c and b"--store" not in c for c in seen.values()), seen
    with Store.open(url) as db:  # it worked on the store named by its environment
        assert len(db.luts.get("edge")) == len(get_space("nb201").layer_universe())
    paths = [tmp_path / "jobs", *(tmp_path / "jobs").rglob("*")]
    assert {p.name for p in paths if p.is_file()} == {"job.json", "log", "rc"}
    for path in paths[1:]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
        assert path.is_dir() or SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in str(_jobs.jobs_dir(url))
    at = page("devices")  # nor on the page
    shown = "\n".join(c.value for c in at.caption)
    assert "Store: `postgresql+psycopg://postgres:***@" in shown and SECRET not in shown


def test_dashboard_command_warns_beyond_loopback_and_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr("dashboard.serve", lambda url, host, port, open_browser: calls.append((url, host)) or 0)
    url = f"postgresql+psycopg://user:{SECRET}@db.example:5432/x"
    for host, warned in (
        ("0.0.0.0", True),
        ("192.168.1.5", True),
        ("myhost", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
    ):
        result = CliRunner().invoke(cli, ["dashboard", "--store", url, "--host", host, "--no-browser"])
        assert result.exit_code == 0, result.output
        lines = result.stderr.splitlines()
        assert lines[0].startswith(f"warning: --host {host} ") == warned, lines
        assert not warned or "no authentication" in lines[0]
        assert SECRET not in result.output and calls[-1] == (url, host)  # the server itself gets the password
