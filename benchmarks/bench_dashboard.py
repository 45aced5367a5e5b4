"""Server time of the dashboard's Fronts page on a 100,000-trial study; with ``--pages``, every page's load time in
a real browser.

  python benchmarks/bench_dashboard.py [--trials 100000] [--store PATH] [--with-optuna] [--out FILE]
  python benchmarks/bench_dashboard.py --pages --store PATH [--repeat 5] [--out FILE]

Builds (or reuses, with ``--store``) a SQLite store holding one study of ``--trials`` trials written through the
search's bulk path (mbv3, random sampler, objectives params:max, latency_ms@edge, latency_ms@server with a
latency budget; the two devices are the analytical fake backend with LUTs at r = 224, w = 1.0). Then, in a process
where Streamlit and hwpareto are already imported (as in a running server), it times the Fronts page script end to
end under ``streamlit.testing.v1.AppTest`` with its caches cleared (a first visit), and again with them warm (a
rerun), plus the parts the page calls: loading the study, computing the fronts, building and serialising the Plotly
figure. ``--with-optuna`` also times ``optuna.load_study(...).get_trials()``, the read optuna-dashboard relies on.
Prints Markdown and writes it to ``--out``.

``--pages`` serves the dashboard on the store at ``--store`` (e.g. the demo's: ``hwpareto demo --no-dashboard``)
as ``hwpareto dashboard`` does and opens it in headless Chromium (Debian's ``chromium`` via Playwright): the time
until the server answers, then from asking for a page's URL until its script has finished (and, on Fronts, the
chart is drawn), for ``/`` and every page the first time after the start (a new browser each: nothing cached),
then each page again in one browser (warm: the server's caches and the browser's HTTP cache filled, as for a
reload or a bookmark, each a new Streamlit session; median of ``--repeat``), and study switches on Fronts (from
the choice to the new study's chart drawn).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRONTS = ROOT / "dashboard" / "views" / "fronts.py"
STUDY = "bench-100k"
COMMAND = "python benchmarks/bench_dashboard.py"


def build(path: Path, trials: int) -> float:
    """Write the study (skipped when the store already has it); returns seconds spent."""
    import optuna

    from hwpareto.store import Store
    from pareto import SearchSpec, run_surrogate
    from profilers import DeviceSpec, backend_for, build_lut
    from supernet import get_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    with Store.open(str(path)) as store:
        space = get_space("mbv3")
        for name, params in (("edge", {"gmacs_per_s": 5.0}), ("server", {"gmacs_per_s": 80.0, "overhead_us": 30.0})):
            spec = DeviceSpec(name, "fake", "fake", params)
            store.devices.add(name, "fake", spec.to_dict(), backend_for(spec).describe())
            build_lut(store, spec, space, restrict={"r": [224], "w": [1.0]}, workers=1)
        run_surrogate(
            store,
            SearchSpec(
                STUDY,
                "mbv3",
                ("params:max", "latency_ms@edge", "latency_ms@server"),
                ("latency_ms@edge <= 40",),
                sampler="random",
                n_trials=trials,
                population=5000,
                fixed={"r": 224, "w": 1.0},
            ),
        )
    return time.perf_counter() - start


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) wall seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


PAGES = (("", "Devices"), ("search", "Search"), ("fronts", "Fronts"), ("trials", "Trials"), ("export", "Export"))


def _serve(url: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """The dashboard served headless on a free port over ``url``, as ``hwpareto dashboard`` starts it: the process,
    its base URL and the seconds until ``/_stcore/health`` answered."""
    import urllib.request

    from dashboard import streamlit_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HWPARETO_STORE": url, "HWPARETO_JOBS_DIR": tempfile.mkdtemp()}
    start = time.perf_counter()
    process = subprocess.Popen(
        streamlit_command("127.0.0.1", port, open_browser=False),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return process, base, time.perf_counter() - start
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the dashboard did not start")


def _loaded(page: Any, title: str, study: str | None = None) -> None:
    """Wait until ``title``'s page has run to its end (and Fronts has drawn the chart of ``study``)."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)
    if title == "Fronts":
        page.wait_for_function(
            "(s) => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(t => !s || t.textContent"
            ".startsWith(s + ':'))",
            arg=study,
            timeout=120_000,
        )
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)


def server_times(url: str, repeat: int) -> list[tuple[str, float, float]]:
    """Rows (step, median s, max s): each page's script under ``AppTest`` in this process, first run (this process
    has imported Streamlit only) and reruns of the same session (its caches warm): the server's share of a visit."""
    from streamlit.testing.v1 import AppTest

    os.environ["HWPARETO_STORE"] = url
    os.environ.setdefault("HWPARETO_JOBS_DIR", tempfile.mkdtemp())
    rows = []
    for path, title in PAGES:
        at = AppTest.from_file(str(ROOT / "dashboard" / "views" / f"{path or 'devices'}.py"), default_timeout=300)
        times = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
            assert not at.exception, at.exception
        rows.append((f"{title} script, first run in this process (server time)", times[0], times[0]))
        rows.append((f"{title} script, rerun (server time)", statistics.median(times[1:]), max(times[1:])))
    return rows


def pages(url: str, repeat: int) -> list[tuple[str, float, float]]:
    """Rows (step, median s, max s) of page loads in headless Chromium on a freshly started server: the start,
    each page's first visit (a new browser each), each page again in one browser (its HTTP cache warm, a new
    Streamlit session each time: a reload or a bookmark), and study switches on Fronts (from the choice to the new
    chart drawn)."""
    from playwright.sync_api import sync_playwright

    from dashboard import _data
    from hwpareto.store import Store

    studies = _data.hwpareto_studies(Store.open(url))
    process, base, start_s = _serve(url)
    rows = [("server start, until /_stcore/health answers", start_s, start_s)]
    try:
        with sync_playwright() as runner:
            browser = runner.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )

            def visit(page: Any, path: str, title: str) -> float:
                start = time.perf_counter()
                page.goto(f"{base}/{path}")
                _loaded(page, title)
                return time.perf_counter() - start

            for path, title in PAGES:  # the first visit of each page after the server started, a new browser each
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                took = visit(context.new_page(), path, title)
                rows.append((f"/{path} first visit after the start, new browser", took, took))
                context.close()
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            times: dict[str, list[float]] = {path: [] for path, _ in PAGES}
            for _ in range(repeat):
                for path, title in PAGES:
                    times[path].append(visit(page, path, title))
            rows += [
                (f"/{path} again (warm: a reload or a bookmark)", statistics.median(t), max(t))
                for path, t in times.items()
            ]
            if len(studies) > 1:
                visit(page, "fronts", "Fronts")
                switches = []
                for i in range(2 * repeat):
                    study = studies[(i + 1) % len(studies)]
                    page.get_by_label("Study", exact=True).click()
                    page.keyboard.type(study)  # filters the options; Enter would take the first fuzzy match
                    option = page.get_by_role("option", name=study, exact=True)  # (npu-tpu: npu-edgetpu)
                    start = time.perf_counter()
                    option.click()
                    _loaded(page, "Fronts", study)
                    switches.append(time.perf_counter() - start)
                rows.append(
                    (
                        f"Fronts: switch study ({len(studies)} studies, from the choice to its chart drawn)",
                        statistics.median(switches),
                        max(switches),
                    )
                )
            context.close()
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--store", type=Path, help="SQLite file to build or reuse (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--with-optuna", action="store_true", help="also time Optuna's own trial read")
    parser.add_argument("--pages", action="store_true", help="time every page in headless Chromium instead")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/dashboard[-pages].md")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    if args.pages:
        if args.store is None or not args.store.exists():
            raise SystemExit("--pages needs --store PATH of an existing store (e.g. the demo's)")
        url = f"sqlite:///{args.store.resolve()}"
        rows = pages(url, args.repeat) + server_times(url, args.repeat)
        _write(
            args.out or ROOT / "benchmarks" / "results" / "dashboard-pages.md",
            f"`{COMMAND} --pages --store "
            f"{args.store.name} --repeat {args.repeat}` ({date.today()}, {machine}, headless Chromium)",
            rows,
        )
        return

    folder = tempfile.TemporaryDirectory()
    path = args.store or Path(folder.name) / "bench.db"
    from hwpareto.store import Store

    existing = path.exists() and STUDY in __import__("dashboard._data", fromlist=["x"]).hwpareto_studies(
        Store.open(str(path))
    )
    build_s = 0.0 if existing else build(path, args.trials)
    url = f"sqlite:///{path.resolve()}"
    os.environ["HWPARETO_STORE"] = url

    import plotly.io
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import _data, _figures

    store = Store.open(url)

    def page() -> None:
        at = AppTest.from_file(str(FRONTS), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        assert at.metric[0].value == f"{args.trials:,}", at.metric[0].value

    page()  # imports and Streamlit's one-off start-up work, as in a server that is already running

    def cold() -> None:
        st.cache_resource.clear()
        page()

    from pareto import study_results

    results = study_results(store, STUDY)
    view = _data.front_view(results)
    hover = _data.hover_texts(results, sorted({int(n) for f in view.fronts.values() for n in f["number"]}))
    figure = _figures.front_figure(results.trials, view.quality, list(view.costs), view.fronts, view.bounds, hover)
    payload_mb = len(plotly.io.to_json(figure, validate=False)) / 1e6
    rows = [
        ("Fronts page, first visit (caches cleared), AppTest run", *timed(cold, args.repeat)),
        ("Fronts page, rerun (study cached), AppTest run", *timed(page, args.repeat)),
        ("  load the study (pareto.study_results)", *timed(lambda: study_results(store, STUDY), args.repeat)),
        ("  fronts per device (front_view)", *timed(lambda: _data.front_view(results), args.repeat)),
        (
            "  build the Plotly figure",
            *timed(
                lambda: _figures.front_figure(
                    results.trials, view.quality, list(view.costs), view.fronts, view.bounds, hover
                ),
                args.repeat,
            ),
        ),
        (
            "  serialise the figure (plotly.io.to_json)",
            *timed(lambda: plotly.io.to_json(figure, validate=False), args.repeat),
        ),
    ]
    if args.with_optuna:
        import optuna

        rows.append(
            (
                "  for reference: optuna.load_study(...).get_trials() (optuna-dashboard's read)",
                *timed(lambda: optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False), 1),
            )
        )
    flags = f"--trials {args.trials}" + (" --with-optuna" if args.with_optuna else "")
    _write(
        args.out or ROOT / "benchmarks" / "results" / "dashboard.md",
        f"`{COMMAND} {flags}` ({date.today()}, {machine}, SQLite; "
        f"{'store reused' if existing else f'study written in {build_s:.0f} s'}; figure payload "
        f"{payload_mb:.1f} MB, WebGL)",
        rows,
    )
    folder.cleanup()


def _write(out: Path, heading: str, rows: list[tuple[str, float, float]]) -> None:
    """Print the rows as a Markdown table under ``heading`` and write it to ``out``."""
    lines = [heading, "", "| step | median s | max s |", "|---|---|---|"]
    lines += [f"| {name} | {median:.3f} | {worst:.3f} |" for name, median, worst in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
