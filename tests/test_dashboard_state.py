"""Dashboard bugs 6 and 7 of issue 12 under Streamlit's AppTest: uploads that crashed the Devices page, stable page
URLs, every study of the store listed (dashboard and ``hwpareto searches``), the default study, devices offered
per space, hints naming the chosen space, a failed search's log label, the registry after a profile job."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboard import _jobs, _state
from hwpareto.cli import app as cli
from hwpareto.errors import HwparetoError
from hwpareto.store import Store
from pareto.search._search import SPEC_ATTR, SearchSpec
from tests.dashboard_store import STUDY, add_failed_search, add_fake
from tests.test_dashboard import ROOT, page, texts, wait_for


def _study_only(url: str, name: str, *, empty: bool = False) -> None:
    """A hwpareto study without a searches row (as the demo writes): a copy of STUDY, or an empty one."""
    with Store.open(url) as db:
        storage = db.optuna_storage()
    if empty:
        spec = SearchSpec(name, "nb201", ("params:max", "latency_ms@edge"), n_trials=10, population=4)
        study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    else:
        optuna.copy_study(from_study_name=STUDY, from_storage=storage, to_storage=storage, to_study_name=name)


# ---------------------------------------------------------------------------------------------------- bug 6
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary\xff\xfe", "expected UTF-8 text, got binary data"),
        ("name: caf\xe9\nkind: npu\nbackend: fake\n".encode("latin-1"), "expected UTF-8 text"),
        (b"name: [unclosed\n", "dev.yaml"),
    ],
)
@pytest.mark.slow
def test_invalid_upload_says_one_line_and_the_page_stays(dash_url: str, content: bytes, said: str) -> None:
    at = page("devices")
    at.radio(key="profile_source").set_value("upload a device YAML").run()
    at.file_uploader(key="profile_upload").set_value(("dev.yaml", content, "application/x-yaml")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1 and said in at.error[0].value and "\n" not in at.error[0].value
    assert [t.value for t in at.title] == ["Devices"] and at.button(key="profile_launch")
    at.button(key="profile_launch").click().run()
    assert not at.exception and "expected an uploaded, valid device file, got an invalid one" in texts(at)


@pytest.mark.slow
def test_start_profiling_without_an_upload(dash_url: str) -> None:
    at = page("devices")
    at.radio(key="profile_source").set_value("upload a device YAML").run()
    at.button(key="profile_launch").click().run()
    assert not at.exception, [e.message for e in at.exception]  # was NameError: name 'preset' is not defined
    assert [e.value for e in at.error] == ["error: device YAML: expected an uploaded, valid device file, got nothing"]
    assert not _jobs.list_jobs(dash_url, "profile")


def test_root_goes_to_devices_and_every_page_has_a_url(dash_url: str) -> None:
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Devices"]
    source = (ROOT / "dashboard" / "app.py").read_text()
    for name in ("devices", "search", "fronts", "export"):
        assert f'url_path="{name}"' in source


# ---------------------------------------------------------------------------------------------------- bug 7
@pytest.mark.slow
def test_every_study_is_listed(dash_url: str) -> None:
    _study_only(dash_url, "demo-copy")
    at = page("search")
    table = at.dataframe[0].value.set_index("search")
    assert {STUDY, "demo-copy"} <= set(table.index)
    assert table.at["demo-copy", "status"] == _state.STUDY_ONLY and table.at["demo-copy", "trials_done"] == 300
    at.selectbox(key="search_watch").set_value("demo-copy").run()
    assert not at.exception and {m.label: m.value for m in at.metric}["trials done"] == "300"


@pytest.mark.slow
def test_cli_searches_lists_study_only_studies(dash_url: str) -> None:
    _study_only(dash_url, "demo-copy")
    result = CliRunner().invoke(cli, ["searches", "--store", dash_url, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["demo-copy"]["status"] == "study only" and rows["demo-copy"]["trials_done"] == 300
    assert rows[STUDY]["status"] != "study only"
    table = CliRunner().invoke(cli, ["searches", "--store", dash_url])
    assert table.exit_code == 0 and "demo-copy" in table.stdout and "study only" in table.stdout


def test_failed_empty_study_is_not_the_default(dash_url: str) -> None:
    _study_only(dash_url, "empty-newest", empty=True)
    with Store.open(dash_url) as db:
        spec = SearchSpec("doomed", "nb201", ("params:max", "latency_ms@edge"), n_trials=10, population=4)
        db.searches.submit(spec.name, spec.space, spec.to_dict(), spec.n_trials)
        db.searches.claim("w1", spec.name)
        db.searches.finish(spec.name, "w1", "failed", "nothing stored")
        assert _state.default_study_index(db, ["empty-newest", STUDY]) == 1
    for name, key in (("fronts", "fronts_study"), ("export", "export_study")):
        at = page(name)
        assert at.selectbox(key=key).value == STUDY, name


def test_search_offers_only_devices_that_can_cost_the_space(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        add_fake(db, "bare", lut=False)
        expected = _state.search_devices(db, "nb201")
    at = page("search")
    at.selectbox(key="search_space").set_value("nb201").run()
    options = at.multiselect(key="search_devices").options
    assert "edge" in options and "bare" not in options and sorted(options) == sorted(expected)
    with Store.open(dash_url) as db:
        assert "bare" not in _state.search_devices(db, "mbv3") and "edge" not in _state.search_devices(db, "mbv3")


def test_hints_name_the_chosen_space(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        add_fake(db, "bare", lut=False)
    at = page("devices")
    at.selectbox(key="profile_space").set_value("mbv3").run()
    at.selectbox(key="devices_device").set_value("bare").run()
    assert not at.exception
    assert "hwpareto profile --device bare --space mbv3" in texts(at)
    assert "hwpareto measure --device bare --space mbv3 -n 30" in texts(at)
    at.selectbox(key="devices_device").set_value("server").run()  # a LUT of nb201: its hint names nb201
    assert "hwpareto train latency --device server --space nb201" in texts(at)


@pytest.mark.slow
def test_failed_search_log_is_labelled_failed(empty_url: str) -> None:
    add_failed_search(empty_url, "doomed", "budget unreachable")
    job = _jobs.start_job(empty_url, "search", "doomed", ["worker", "--study", "doomed", "--idle-exit", "1"])
    wait_for(lambda: job.status != "running")
    at = page("search")
    labels = [e.label for e in at.expander]
    assert "worker log (failed)" in labels and "worker log (done)" not in labels, labels
    assert _state.log_status("done", "failed") == "failed" and _state.log_status("running", "running") == "running"


@pytest.mark.slow
def test_registry_refreshes_when_a_profile_job_ends(dash_url: str) -> None:
    job = _jobs.start_job(dash_url, "profile", "nope × nb201", ["profile", "--device", "nope", "--space", "nb201"])
    at = page("devices")
    assert at.session_state["profile_running"] == [str(job.folder)] or job.status != "running"
    at.session_state["profile_running"] = [str(job.folder)]  # seen running by this session
    wait_for(lambda: job.status != "running")
    at.run()  # the fragment sees the job ended and runs the whole page again (registry, LUTs)
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["profile_running"] == []
    assert "profiling nope × nb201 failed" in texts(at)


# ---------------------------------------------------------------------------------------------------- issue 28: names
VALID_DEVICE = b"name: npu-x\nkind: fake\nbackend: fake\nparams: {gmacs_per_s: 5}\n"
HOSTILE_NAMES = ["..", "", "x" * 300 + ".yaml", "../../etc/passwd", "a\nb\x1b[2J.yaml", "**bold** $x$ `c`.yaml", "/"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_upload_names_are_never_paths(name: str, tmp_path: Path) -> None:
    """Issue 28 (hardening): an upload named '..', '' or longer than 255 characters ended in an uncaught OSError;
    the file is written under a fixed name, and messages show the name escaped, on one line."""
    from dashboard import _data

    assert _data.validate_device_upload(name, VALID_DEVICE).name == "npu-x"
    with pytest.raises(HwparetoError) as raised:
        _data.validate_device_upload(name, b"name: [unclosed\n")
    message = str(raised.value)
    assert "\n" not in message and "\x1b" not in message and "/tmp" not in message, message
    shown = _data.shown_name(name)
    assert shown in message and len(shown) <= 80 and "/" not in shown
    assert (
        not any(c in shown.replace("\\", "") for c in "\n\x1b")
        and "**" not in shown
        and "`" not in shown.replace("\\`", "")
    )


@pytest.mark.parametrize("name", ["..", "", "y" * 300 + ".csv"])
def test_csv_upload_names_are_never_paths(name: str, dash_url: str) -> None:
    from dashboard import _data

    table = b"arch_str,edge\n|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|,1.5\n"
    with Store.open(dash_url) as db:
        report = _data.import_upload(
            db,
            name,
            table,
            space="nb201",
            subject_kind="device",
            subject="{column}",
            metric="latency_ms",
            columns=["edge"],
        )
    assert report["rows"] == 1


@pytest.mark.slow
def test_device_page_takes_hostile_upload_names(dash_url: str) -> None:
    at = page("devices")
    at.radio(key="profile_source").set_value("upload a device YAML").run()
    long = "x" * 300 + ".yaml"
    at.file_uploader(key="profile_upload").set_value((long, VALID_DEVICE, "application/x-yaml")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert [s.value for s in at.success] == [
        f"{'x' * 50}…{'x' * 15}.yaml: device 'npu-x' (fake, backend fake) is valid"
    ]
    at.file_uploader(key="profile_upload").set_value((long, b"name: [unclosed\n", "application/x-yaml")).run()
    assert not at.exception and len(at.error) == 1 and "\n" not in at.error[0].value and "/tmp" not in at.error[0].value
    at.file_uploader(key="profile_upload").set_value(("..", VALID_DEVICE, "application/x-yaml")).run()
    assert not at.exception, [e.message for e in at.exception]  # Streamlit refuses the name: one line, the page stays
    assert [e.value for e in at.error] == ["error: device YAML: expected a file named *.yaml or *.yml, got .."]
    at.button(key="profile_launch").click().run()
    assert not at.exception and "expected an uploaded, valid device file, got nothing" in texts(at)


def test_cached_tables_follow_the_store(dash_url: str) -> None:
    """Issue 28 (page speed): the Devices and Search pages cache what they derive from the store (devices offered,
    typical costs, LUT coverage) until a device, its LUT or measurement count, a space or a predictor changes."""
    at = page("search")
    at.selectbox(key="search_space").set_value("nb201").run()
    assert "third" not in at.multiselect(key="search_devices").options
    with Store.open(dash_url) as db:
        add_fake(db, "third")  # a LUT of nb201: now a device a search can use
    at.run()
    assert not at.exception and "third" in at.multiselect(key="search_devices").options
