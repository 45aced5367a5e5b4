"""End to end in a real headless Chromium (Debian's ``chromium`` driven by Playwright's Python client): serve the
dashboard on a store with a finished study, open Fronts, select a SubNet, download its config and validate it
against the space; screenshots of every page go to ``$HWPARETO_ARTIFACTS`` (default ``test-artifacts/dashboard``).

The test installs what it lacks (``apt-get install chromium`` as root, ``pip install playwright``) and skips, with
the reason, only where Chromium still cannot start."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard import streamlit_command
from hwpareto.store import Store
from pareto import study_results
from supernet import get_space
from tests.dashboard_store import LLM_STUDY, STUDY, add_llm_study, build_store, safe_extract

pytestmark = pytest.mark.slow  # end-to-end: left out of `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _install_chromium() -> str | None:
    """Path of Chromium, installed with apt-get when missing and allowed (root); None when unavailable."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=600, check=False
        )
        found = shutil.which("chromium")
    return found


def _playwright() -> Any:
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "playwright"], capture_output=True, timeout=300, check=False
        )
        importlib.invalidate_caches()
        try:
            return importlib.import_module("playwright.sync_api")
        except ImportError:
            return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium page factory (skips with the reason when Chromium cannot start)."""
    executable = _install_chromium()
    if executable is None:
        pytest.skip(
            "Chromium is not installed and could not be installed (needs root and apt-get): apt-get install chromium"
        )
    api = _playwright()
    if api is None:
        pytest.skip("the Playwright Python client is not installed and pip could not install it")
    runner = api.sync_playwright().start()
    try:
        chromium = runner.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
    except Exception as exc:  # any launch failure means: no browser here
        runner.stop()
        pytest.skip(f"Chromium at {executable} cannot start: {str(exc).splitlines()[0]}")
    yield chromium
    chromium.close()
    runner.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The dashboard served headless on a free port over a store with finished studies (nb201, a tiny Llama):
    (base URL, store URL)."""
    folder = tmp_path_factory.mktemp("e2e")
    url = build_store(folder / "store.db")
    add_llm_study(url, folder / "tl")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HWPARETO_STORE": url, "HWPARETO_JOBS_DIR": str(folder / "jobs"), "OMP_NUM_THREADS": "1"}
    log = open(folder / "streamlit.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen(
        streamlit_command("127.0.0.1", port, open_browser=False), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the dashboard did not start: " + (folder / "streamlit.log").read_text()[-2000:])
        time.sleep(0.3)
    yield base, url
    process.terminate()
    process.wait(timeout=20)
    log.close()


def artifacts() -> Path:
    folder = Path(os.environ.get("HWPARETO_ARTIFACTS") or ROOT / "test-artifacts") / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page: Any, title: str) -> None:
    """Wait for the page's title, for Streamlit to finish running the script and for the fonts."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=60_000)
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(800)  # data grids and charts draw after the script's last message


def test_fronts_select_and_download_config(browser: Any, server: tuple[str, str]) -> None:
    base, url = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    shots = artifacts()
    for path, title in (("", "Devices"), ("search", "Search"), (f"fronts?study={STUDY}", "Fronts")):
        page.goto(f"{base}/{path}")  # Devices is the default page; the LLM study is the newest
        settle(page, title)
        if title == "Fronts":
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / f"{title.lower()}.png"), full_page=True)

    results = study_results(Store.open(url), STUDY)
    front = results.front("edge")
    wanted = (
        int(front.rows["number"].iloc[0])
        if int(front.rows["number"].iloc[0]) != front.knee_number
        else int(front.rows["number"].iloc[-1])
    )
    picker = page.get_by_label("SubNet (trial number)")  # a labelled control
    picker.click()
    page.keyboard.type(f"trial {wanted}")
    page.keyboard.press("Enter")
    settle(page, "Fronts")
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download config JSON").first.click()
    saved = shots / "config.json"
    download.value.save_as(str(saved))
    doc = json.loads(saved.read_text())
    config = get_space(doc["space"]).validate(doc["values"])
    assert (doc["space"], config.key) == ("nb201", doc["key"])
    assert doc["values"] == results.configs[wanted]
    page.screenshot(path=str(shots / "fronts-selected.png"), full_page=True)

    page.get_by_role("link", name="Export").click()  # the selection goes with the session
    settle(page, "Export")
    page.get_by_role("heading", name=f"Trial {wanted} ({doc['key']})").wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "export.png"), full_page=True)
    context.close()


def test_every_page_opens_by_url(browser: Any, server: tuple[str, str]) -> None:
    """Issue 12 bug 6: /devices, /search, /fronts and /export open directly (bookmarks, shared links); / goes to
    /devices."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    for path, title in (("devices", "Devices"), ("search", "Search"), ("fronts", "Fronts"), ("export", "Export")):
        page.goto(f"{base}/{path}")
        settle(page, title)
        assert page.get_by_text("Page not found").count() == 0, path
        assert urllib.parse.urlsplit(page.url).path.rstrip("/").endswith(f"/{path}"), page.url
    page.goto(f"{base}/")
    settle(page, "Devices")
    page.wait_for_url(f"{base}/devices", timeout=30_000)
    context.close()


def _picker_text(page: Any) -> str:
    """What the SubNet picker shows (e.g. ``trial 12 (knee)``)."""
    return str(page.get_by_label("SubNet (trial number)", exact=True).first.input_value())


def _wait_picker(page: Any, shown: str) -> None:
    """Wait until the SubNet picker shows ``shown`` exactly (the script reruns after a change)."""
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('input[aria-label=\"SubNet (trial number)\"]')].some(i => i.value === t)",
        arg=shown,
        timeout=30_000,
    )


def _choose(page: Any, label: str, text: str) -> None:
    """Type ``text`` into the labelled select box and take it; wait for the rerun."""
    page.get_by_label(label, exact=True).click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    settle(page, "Fronts")


# the pixel of the front point (of the first device's front trace) farthest from every other front point, in page
# coordinates, with its trial number; plotly_click events are recorded in window.__clicked
_FRONT_POINT_JS = """(skip) => {
  const gd = document.querySelector('.js-plotly-plot');
  gd.scrollIntoView({block: 'center'});
  window.__clicked = null;
  gd.on('plotly_click', e => { window.__clicked = e.points.map(p => ({name: p.data.name, custom: p.customdata})); });
  const px = (t, j) => {
    const xa = gd._fullLayout['xaxis' + (t.xaxis === 'x' ? '' : t.xaxis.slice(1))];
    const ya = gd._fullLayout['yaxis' + (t.yaxis === 'y' ? '' : t.yaxis.slice(1))];
    return [xa._offset + xa.c2p(t.x[j]), ya._offset + ya.c2p(t.y[j]), xa, ya];
  };
  const fronts = gd._fullData.filter(t => t.name.startsWith('front:') || t.name.startsWith('non-dominated'));
  const all = fronts.flatMap(t => Array.from(t.x, (_, j) => px(t, j)));
  const edge = fronts.find(t => t.name.startsWith('front:'));
  let best = null;
  for (let j = 0; j < edge.x.length; j++) {
    const number = edge.customdata[j][0];
    const [x, y, xa, ya] = px(edge, j);
    if (number === skip || x < xa._offset || x > xa._offset + xa._length || y < ya._offset
        || y > ya._offset + ya._length) continue;
    const gap = Math.min(...all.map(([u, v]) => (u - x) ** 2 + (v - y) ** 2).filter(d => d > 0), 1e9);
    if (best === null || gap > best.gap) best = {x, y, gap, number};
  }
  const box = gd.querySelector('.main-svg').getBoundingClientRect();
  return {x: box.left + best.x, y: box.top + best.y, number: best.number};
}"""


def test_fronts_study_switch_and_click_on_a_front_point(browser: Any, server: tuple[str, str]) -> None:
    """Issue 12: a study switch resets the SubNet to that study's knee (bug 1); a click on a front point selects
    that front member, not a dimmed trial drawn under it (bug 2)."""
    from pareto.search._search import SearchSpec
    from pareto.search._worker import run_now

    base, url = server
    with Store.open(url) as db:
        if "random" not in [s.name for s in db.searches.list()]:
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
        fronts = {s: study_results(db, s).front("edge") for s in (STUDY, "random")}
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    shots = artifacts()
    page.goto(f"{base}/fronts")
    settle(page, "Fronts")
    _choose(page, "Study", "random")
    knee = fronts["random"].knee_number
    _wait_picker(page, f"trial {knee} (knee)")
    other = next(int(n) for n in fronts["random"].rows["number"] if int(n) != knee)
    _choose(page, "SubNet (trial number)", f"trial {other}")
    assert f"trial {other}" in _picker_text(page)

    _choose(page, "Study", STUDY)  # bug 1: the old study's trial number is not kept
    knee = fronts[STUDY].knee_number
    _wait_picker(page, f"trial {knee} (knee)")

    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    point = page.evaluate(_FRONT_POINT_JS, knee)  # bug 2: the front member wins the click
    page.mouse.move(point["x"], point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function("() => window.__clicked !== null", timeout=30_000)
    clicked = page.evaluate("() => window.__clicked")
    assert clicked[0]["name"].startswith("front:") and clicked[0]["custom"][0] == point["number"], clicked
    _wait_picker(page, f"trial {point['number']}")
    settle(page, "Fronts")
    assert f"trial {point['number']}" in _picker_text(page)
    assert point["number"] in {int(n) for n in fronts[STUDY].rows["number"]}
    page.screenshot(path=str(shots / "fronts-clicked.png"), full_page=True)
    context.close()


def test_llm_bundle_downloaded_from_export_verifies(browser: Any, server: tuple[str, str], tmp_path: Path) -> None:
    """Issue 28 (wrong results 1): the Export page's zip of an LLM trial had an empty ``model/``. Built and downloaded
    through the page, unzipped (every member checked), the bundle holds the weights and passes ``hwpareto
    verify-bundle``; the manifest shown on the page is the one in the zip."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/export")
    settle(page, "Export")
    page.get_by_label("Study", exact=True).click()
    page.keyboard.type(LLM_STUDY)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    settle(page, "Export")
    trial = int(page.get_by_role("spinbutton", name="Trial number").input_value())
    page.get_by_text("Untrained SuperNet weights (--random-weights)").click()  # a lone config.json: none trained
    settle(page, "Export")
    page.get_by_role("button", name="Build bundle").click()
    button = page.get_by_role("button", name="Download bundle (zip)")
    button.wait_for(timeout=180_000)
    settle(page, "Export")
    page.screenshot(path=str(artifacts() / "export-llm-bundle.png"), full_page=True)
    with page.expect_download(timeout=60_000) as download:
        button.click()
    saved = tmp_path / "bundle.zip"
    download.value.save_as(str(saved))
    assert download.value.suggested_filename == f"{LLM_STUDY}-trial{trial}.zip"
    files = safe_extract(saved, tmp_path / "out")
    folder = tmp_path / "out" / f"{LLM_STUDY}-{trial}"
    names = {p.relative_to(folder).as_posix() for p in files if p.is_relative_to(folder)}
    assert {"config.json", "model.onnx", "model/model.safetensors", "model/config.json"} <= names
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(f["file"] for f in manifest["files"]) == sorted(names)
    shown = page.get_by_text("model/model.safetensors", exact=True)
    assert shown.count() or "model/model.safetensors" in page.content()  # the table (a canvas grid) or its text
    checked = subprocess.run(
        [sys.executable, "-m", "hwpareto.cli", "verify-bundle", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    context.close()


def test_permalinks_reload_back_and_share_keep_the_subnet(browser: Any, server: tuple[str, str]) -> None:
    """Issue 28 (permalinks): study, cost axes and trial in the URL; a reload, the browser's back from another page
    and the link opened elsewhere show the same SubNet; deleting a study moves the selector on."""
    from pareto.search._search import SearchSpec
    from pareto.search._worker import run_now

    base, url = server
    with Store.open(url) as db:
        front = study_results(db, STUDY).front("server")
        run_now(db, SearchSpec("to-delete", "nb201", ("params:max", "latency_ms@edge"), n_trials=20, population=10))
    other = next(int(n) for n in front.rows["number"] if int(n) != front.knee_number)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/fronts?study={STUDY}&trial={other}&cost=latency_ms@server")
    settle(page, "Fronts")
    _wait_picker(page, f"trial {other}")
    page.reload()
    settle(page, "Fronts")
    _wait_picker(page, f"trial {other}")
    page.wait_for_url(lambda u: f"trial={other}" in u and "study=" in u, timeout=30_000)
    chips = page.locator('[data-testid="stMultiSelect"] .react-aria-ComboBox [data-tag]')
    assert chips.evaluate_all("tags => tags.map(t => t.getAttribute('aria-label'))") == ["latency_ms@server"]
    page.get_by_role("link", name="Export").click()
    settle(page, "Export")
    page.get_by_role("heading", name=f"Trial {other} (").wait_for(timeout=30_000)
    page.wait_for_url(lambda u: "/export" in u and f"trial={other}" in u, timeout=30_000)
    page.go_back()
    settle(page, "Fronts")
    _wait_picker(page, f"trial {other}")
    shared = browser.new_context(viewport={"width": 1400, "height": 1000})  # the link opened by someone else
    elsewhere = shared.new_page()
    elsewhere.goto(f"{base}/export?study={STUDY}&trial={other}")
    settle(elsewhere, "Export")
    elsewhere.get_by_role("heading", name=f"Trial {other} (").wait_for(timeout=30_000)
    shared.close()

    page.goto(f"{base}/trials?study=to-delete")
    settle(page, "Trials")
    page.get_by_text("Delete", exact=True).first.click()  # the expander
    page.get_by_label("Type the study name to confirm").fill("to-delete")
    page.keyboard.press("Enter")
    settle(page, "Trials")
    page.get_by_role("button", name="Delete study").click()
    page.wait_for_url(lambda u: "study=" in u and "study=to-delete" not in u, timeout=60_000)
    settle(page, "Trials")
    shown = page.get_by_label("Study", exact=True).first.input_value()
    assert shown and shown != "to-delete"
    page.screenshot(path=str(artifacts() / "trials-after-delete.png"), full_page=True)
    context.close()
