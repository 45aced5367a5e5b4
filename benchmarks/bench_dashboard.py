"""Server time of the dashboard's Fronts page on a 100,000-trial study.

  python benchmarks/bench_dashboard.py [--trials 100000] [--store PATH] [--with-optuna] [--out FILE]

Builds (or reuses, with ``--store``) a SQLite store holding one study of ``--trials`` trials written through the
search's bulk path (mbv3, random sampler, objectives params:max, latency_ms@edge, latency_ms@server with a
latency budget; the two devices are the analytical fake backend with LUTs at r = 224, w = 1.0). Then, in a process
where Streamlit and hwpareto are already imported (as in a running server), it times the Fronts page script end to
end under ``streamlit.testing.v1.AppTest`` with its caches cleared (a first visit), and again with them warm (a
rerun), plus the parts the page calls: loading the study, computing the fronts, building and serialising the Plotly
figure. ``--with-optuna`` also times ``optuna.load_study(...).get_trials()``, the read optuna-dashboard relies on.
Prints Markdown and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRONTS = ROOT / "dashboard" / "views" / "fronts.py"
STUDY = "bench-100k"
COMMAND = "python benchmarks/bench_dashboard.py"


def build(path: Path, trials: int) -> float:
    """Write the study (skipped when the store already has it); returns seconds spent."""
    import optuna

    from pareto import SearchSpec, Store, run_surrogate
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--store", type=Path, help="SQLite file to build or reuse (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--with-optuna", action="store_true", help="also time Optuna's own trial read")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dashboard.md")
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory()
    path = args.store or Path(folder.name) / "bench.db"
    from pareto import Store

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

    results = _data.load_study(store, STUDY)
    view = _data.front_view(results)
    hover = _data.hover_texts(results, sorted({int(n) for f in view.fronts.values() for n in f["number"]}))
    figure = _figures.front_figure(results.trials, view.quality, list(view.costs), view.fronts, view.bounds, hover)
    payload_mb = len(plotly.io.to_json(figure, validate=False)) / 1e6
    rows = [
        ("Fronts page, first visit (caches cleared), AppTest run", *timed(cold, args.repeat)),
        ("Fronts page, rerun (study cached), AppTest run", *timed(page, args.repeat)),
        ("  load the study (dashboard._data.load_study)", *timed(lambda: _data.load_study(store, STUDY), args.repeat)),
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
        (
            "  for reference: pareto.study_results (reads every config)",
            *timed(lambda: __import__("pareto").study_results(store, STUDY), 1),
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
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    flags = f"--trials {args.trials}" + (" --with-optuna" if args.with_optuna else "")
    lines = [
        f"`{COMMAND} {flags}` ({date.today()}, {machine}, SQLite; "
        f"{'store reused' if existing else f'study written in {build_s:.0f} s'}; figure payload "
        f"{payload_mb:.1f} MB, WebGL)",
        "",
        "| step | median s | max s |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {median:.3f} | {worst:.3f} |" for name, median, worst in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    folder.cleanup()


if __name__ == "__main__":
    main()
