"""Trials: a study's trials filtered by objective range, budget feasibility, device and config value; parameter
importance per objective; the front in parallel coordinates; deleting the study."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import _data, _explore, _state, _ui
from hwpareto.errors import HwparetoError

ROWS = 1000  # rows shown at most (the count says how many match)

st.title("Trials")
db = _ui.store()
studies = _data.hwpareto_studies(db)
if not studies:
    _ui.next_step(
        "No search has trials in this store yet. Launch one on the Search page, or from the command line:",
        "hwpareto search --space nb201 --objective params:max --objective latency_ms@DEVICE --trials 1000",
    )
    _ui.stop()
chosen = dict(st.session_state.get("selection", {}))  # shared by the pages; a link in the URL comes first
linked_device = None
if _ui.url_is_new("trials"):  # a fresh load, a bookmark or shared link, back/forward
    if _ui.url_values("study", studies):
        st.session_state["trials_study"] = _ui.url_values("study", studies)[0]
    linked_device = st.query_params.get("device")
if st.session_state.get("trials_study") not in studies:  # also: the study shown was just deleted
    st.session_state["trials_study"] = (
        chosen["study"] if chosen.get("study") in studies else studies[_state.default_study_index(db, studies)]
    )
study = st.selectbox("Study", studies, key="trials_study")
if chosen.get("study") != study:
    st.session_state["selection"] = {"study": study}  # the other pages follow
results, view = _ui.results(db, study)
marker = _data.study_marker(db, study)


@st.cache_resource(show_spinner=False, max_entries=4)
def _frame(url: str, name: str, key: tuple[int, int]) -> pd.DataFrame:
    return _explore.trial_frame(results.trials, _explore.config_frame(db, name))


@st.cache_data(show_spinner="Computing parameter importance…", max_entries=8)
def _importances(url: str, name: str, key: tuple[int, int], objectives: tuple[str, ...]) -> dict[str, dict[str, float]]:
    directions = {o.name: o.direction for o in results.objectives}
    return _explore.param_importances(frame, list(objectives), [directions[o] for o in objectives])


frame = _frame(_ui.store_url(), study, marker)
objectives = [o.name for o in results.objectives]
if not len(frame):
    _ui.write_url("trials", {"study": study, "device": None})
    _ui.next_step("This study has no completed trials yet; watch it on the Search page.")
else:
    # -------------------------------------------------------------------------------------------- the trial table
    st.subheader("Trial table")
    devices = sorted({o.subject for o in results.objectives if o.is_cost and o.subject})
    cols = st.columns(3)
    if linked_device in devices:
        st.session_state["trials_device"] = linked_device
    device = cols[0].selectbox(
        "Device",
        ["(all)", *devices],
        key="trials_device",
        help="Show this device's costs only; feasibility counts its budgets only",
    )
    device = None if device == "(all)" else device
    _ui.write_url("trials", {"study": study, "device": device})
    feasibility = cols[1].selectbox("Budget", ["any", "feasible", "over budget"], key="trials_feasible")
    shown = [o.name for o in results.objectives if device is None or not o.is_cost or o.subject == device]
    ranges: dict[str, tuple[float, float]] = {}
    active: list[str] = []  # the filters in force, as the caption names them
    for name in shown:
        steps = _explore.range_steps(frame[name].to_numpy(float))
        if steps:
            fmt = _explore.range_label(steps)
            lo, hi = st.select_slider(
                f"{name} range",
                steps,
                value=(steps[0], steps[-1]),
                format_func=fmt.__mod__,
                key=f"trials_range:{study}:{name}:{marker[0]}",  # new trials: new steps
                help=f"{len(steps) - 1} steps from the lowest to the highest value; both ends: no filter",
            )
            if (lo, hi) != (steps[0], steps[-1]):
                ranges[name] = (lo, hi)
                active.append(f"{name} in [{fmt % lo}, {fmt % hi}]")
    config_filter = {}
    varied = _explore.varied_columns(frame)
    with st.expander("Config values", expanded=False):
        for c in varied:
            options = sorted(frame[c].dropna().unique().tolist(), key=str)
            picked = st.multiselect(c.removeprefix(_explore.CONFIG_PREFIX), options, key=f"trials_cfg:{study}:{c}")
            if picked:
                config_filter[c] = picked
    budgets = _explore.budget_columns(results.trials, results.budgets, device)
    matched = _explore.filter_trials(
        frame,
        ranges=ranges,
        feasible={"any": None, "feasible": True, "over budget": False}[feasibility],
        budgets=budgets if device else None,
        config=config_filter,
    )
    active += [f"budget: {feasibility}"] if feasibility != "any" else []
    active += [f"{c.removeprefix(_explore.CONFIG_PREFIX)} in {v}" for c, v in config_filter.items()]
    hidden = len(frame) - len(matched)
    st.caption(
        f"{len(matched):,} of {len(frame):,} trials match"
        + (f"; {hidden:,} hidden by the filters ({'; '.join(active)})" if active else "; no filter")
        + (f"; the first {ROWS:,} shown" if len(matched) > ROWS else "")
    )
    columns = ["number", *shown, *budgets, "feasible", *varied]
    st.dataframe(
        matched[columns].head(ROWS).rename(columns=lambda c: c.removeprefix(_explore.CONFIG_PREFIX)),
        hide_index=True,
        height=320,
        key="trials_table",
    )

    # -------------------------------------------------------------------------------------------- importance
    st.subheader("Parameter importance")
    st.caption(
        "PED-ANOVA (Optuna's PedAnovaImportanceEvaluator): how much each config dim matters to reach an "
        "objective's best 10%, over at most 2,000 completed trials (a fixed-seed sample), per objective."
    )
    if st.toggle("Compute parameter importance", key="trials_importance"):
        found = _importances(_ui.store_url(), study, marker, tuple(objectives))
        panels = st.columns(min(3, len(objectives)))
        for i, name in enumerate(objectives):
            if found[name]:
                panels[i % len(panels)].plotly_chart(
                    _explore.importance_figure(found[name], name), key=f"trials_importance:{name}"
                )
            else:
                panels[i % len(panels)].info(f"{name}: no config dim varies")

    # -------------------------------------------------------------------------------------------- parallel coords
    st.subheader("Front in parallel coordinates")
    front = results.front().rows
    if front.empty:
        st.info("No feasible trial yet, so no front.")
    else:
        members = frame[frame["number"].isin(front["number"])]
        st.plotly_chart(
            _explore.front_parallel_figure(members, objectives),
            key="trials_parallel",
            alt=f"front of {study} in parallel coordinates",
        )
        st.caption(f"{len(members):,} front members (over all objectives, feasible); colour: {objectives[0]}.")

# ------------------------------------------------------------------------------------------------ deletion
st.subheader("Delete this study")
with st.expander("Delete", expanded=False):
    st.warning(
        f"Deletes the Optuna study {study!r} and its entry in the searches list; nothing else (devices, "
        "LUTs, measurements, predictors and exports stay)."
    )
    typed = st.text_input("Type the study name to confirm", key=f"trials_delete_name:{study}")
    if st.button("Delete study", key="trials_delete", type="primary", disabled=typed != study):
        try:
            _explore.delete_study(db, study)
        except HwparetoError as exc:
            _ui.error(exc)
        else:
            st.session_state.pop("selection", None)
            st.session_state.pop("trials_study", None)  # the selector moves on to another study
            st.toast(f"deleted {study!r}")
            st.rerun()
