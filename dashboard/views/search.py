"""Search: choose space, devices, objectives, budget, sampler and trial count; queue the search, start a worker
for it in the background, and watch its progress (trials, feasible count, hypervolume)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import _data, _figures, _jobs, _state, _ui
from hwpareto.errors import HwparetoError
from hwpareto.options import SEARCH
from pareto import STRATEGIES, cost_metrics, submit

st.title("Search")
db = _ui.store()
devices = [d for d in db.devices.list() if d.lut_entries or d.kind == "imported"]
usable = [d.name for d in devices]

st.subheader("New search")
if not usable:
    _ui.next_step(
        "No device with a LUT or measurements yet: profile one on the Devices page first, or:",
        f"hwpareto profile --device npu-edgetpu --space {_state.hint_space(db)}",
    )
else:
    listed_spaces, broken_spaces = _data.space_choices(db)
    for warning in broken_spaces:
        st.warning(warning, icon=":material/warning:")
    spaces = [s.name for s in listed_spaces]
    space = st.selectbox(
        "Search space", spaces, index=spaces.index(_data.default_space(db, usable)), key="search_space"
    )
    left, right = st.columns(2)
    quality = left.selectbox(
        "Quality objective",
        _data.quality_objectives(db, space),
        key="search_quality",
        help="Accuracy predictors of this space (accuracy maximised; perplexity and loss minimised), "
        "or an analytic proxy",
    )
    metrics = list(cost_metrics(db.spaces.get(space)))
    if st.session_state.get("search_metric") not in metrics:
        st.session_state["search_metric"] = metrics[0]
    metric = right.radio(
        "Cost metric",
        metrics,
        horizontal=True,
        key="search_metric",
        format_func=lambda m: "{} ({})".format(*_figures.metric_label(m)),
        help="LLM spaces add prefill (time to first token), decode time per generated token and energy per token",
    )
    offered = _ui.cached(
        db, _state.search_devices, space
    )  # only devices with a LUT of this space or a predictor for it
    if not offered:
        _ui.next_step(
            f"No device has a LUT or a cost predictor for {space} yet: profile one on the Devices page, or:",
            f"hwpareto profile --device {usable[0]} --space {space}",
        )
    if any(d not in offered for d in st.session_state.get("search_devices", [])):
        st.session_state["search_devices"] = [d for d in st.session_state["search_devices"] if d in offered]
    chosen = st.multiselect(
        "Devices (one cost objective and one front each)", offered, default=offered[:1], key="search_devices"
    )
    unit = _figures.metric_label(metric)[1]
    step, fmt = _data.budget_input_format(
        _ui.cached(db, _data.typical_costs, chosen[0], space, metric) if chosen else []
    )
    budget = st.number_input(
        f"Budget on the first device ({unit}; 0 = none)",
        min_value=0.0,
        value=0.0,
        step=step,
        format=fmt,
        key="search_budget",
        help=f"Steps of {step:g} {unit}, from the device's typical {unit} for this space",
    )
    modes = {
        "surrogate": "surrogate (every objective predicted)",
        "budgeted": "evaluation-budgeted (quality evaluated; trials = evaluations)",
    }
    mode = st.radio(
        "Mode",
        list(modes),
        horizontal=True,
        key="search_mode",
        format_func=modes.__getitem__,
        help="Budgeted: the quality objective is evaluated for real against its stored table, at most "
        "'Trials' times, each next batch chosen with the accuracy predictor's mean and uncertainty",
    )
    c1, c2, c3, c4 = st.columns(4)
    samplers = STRATEGIES.names()
    sampler = c1.selectbox(
        "Sampler", samplers, index=samplers.index(SEARCH.sampler), key="search_sampler", disabled=mode == "budgeted"
    )
    n_trials = int(
        c2.number_input(
            "Trials", min_value=1, max_value=10_000_000, value=SEARCH.n_trials, step=100, key="search_trials"
        )
    )
    population = int(
        c3.number_input(
            "Population (trials per generation)", min_value=4, value=SEARCH.population, key="search_population"
        )
    )
    seed = int(c4.number_input("Seed", min_value=0, value=SEARCH.seed, key="search_seed"))
    fixed = st.text_input(
        "Fixed dimensions (DIM=VALUE, comma separated)",
        key="search_fixed",
        placeholder="r=224, w=1.0",
        help="Dimensions held fixed, like --fix on the command line",
    )
    name = st.text_input(
        "Search name (the study name)", value=f"{space}-{len(db.searches.list()) + 1}", key="search_name"
    )
    if st.button("Launch search", key="search_launch", type="primary"):
        try:
            spec = _data.make_spec(
                db,
                name=name,
                space=space,
                quality=quality,
                metric=metric,
                devices=chosen,
                budget=budget or None,
                sampler=sampler,
                n_trials=n_trials,
                population=population,
                seed=seed,
                fixed=fixed,
                mode=mode,
            )
            submit(db, spec)
        except HwparetoError as exc:
            _ui.error(exc)
        else:
            _jobs.start_job(_ui.store_url(), "search", spec.name, ["worker", "--study", spec.name, "--idle-exit", "5"])
            st.session_state["search_watch"] = spec.name
            st.success(f"queued {spec.name!r} and started a worker; its progress is shown below")


def progress() -> None:
    """The searches table and the watched search's progress."""
    table = _state.all_searches_frame(db)  # every study of the store, with or without a searches row
    st.subheader("Searches")
    if table.empty:
        _ui.next_step(
            "No search yet: launch one above, or queue one for workers:",
            "hwpareto search --space S --objective ... --queue && hwpareto worker",
        )
        return
    st.dataframe(table, hide_index=True)
    names = list(table["search"])
    if st.session_state.get("search_watch") not in names:
        st.session_state["search_watch"] = names[0]
    watched = st.selectbox("Watch", names, key="search_watch")
    try:
        results = _ui.results(db, watched)[0]  # cached until trials are added
    except HwparetoError:  # no study yet
        results = None
    info = _state.watched_progress(db, watched, results)
    if info["status"] == "failed":
        _ui.error(f"search {watched!r} failed: {info['error']}")
        _ui.next_step(
            "Fix the settings it names and launch it again under a new name (or requeue it after fixing the store):",
            f"hwpareto search ... --name {watched}   # resumes from stored trials",
        )
    done = info["stored"] or info["trials_done"] or 0
    st.progress(
        min(1.0, done / max(1, info["n_trials"])), text=f"{info['status']}: {done:,} of {info['n_trials']:,} trials"
    )
    cols = st.columns(3)
    cols[0].metric("trials done", f"{done:,}")
    cols[1].metric("feasible", f"{info['feasible']:,}")
    cols[2].metric("worker", info["worker"] or "-")
    if len(info["hypervolume"]):
        st.plotly_chart(
            _figures.hypervolume_figure(info["hypervolume"]), key="search_hv", alt=f"hypervolume history of {watched}"
        )
    elif info["status"] == "queued":
        st.caption("Waiting for a worker: the dashboard starts one on launch; otherwise run hwpareto worker.")
    jobs = [j for j in _jobs.list_jobs(_ui.store_url(), "search") if j.subject == watched]
    if jobs:
        with st.expander(f"worker log ({_state.log_status(jobs[0].status, info['status'])})"):
            st.code(jobs[0].log_tail() or "(no output yet)", language="text")


active = any(s.status in ("queued", "running") for s in db.searches.list())
st.fragment(progress, run_every=timedelta(seconds=2) if active else None)()  # polls while a search runs
