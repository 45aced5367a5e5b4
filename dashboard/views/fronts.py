"""Fronts: a study's Pareto fronts (per device), the budget, a SubNet to pick, a second study to compare, the
operating-point table."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import _data, _figures, _state, _ui
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import shown_url

st.title("Fronts")
db = _ui.store()
studies = _data.hwpareto_studies(db)
if not studies:
    failed = [s for s in db.searches.list() if s.status == "failed"]
    for s in failed:
        st.error(f"search {s.name!r} failed: {s.error}", icon=":material/error:")
    _ui.next_step(
        "No search has finished trials in this store yet. Launch one on the Search page"
        + (" (fix the failed search's settings first)" if failed else "")
        + ", or from the command line:",
        "hwpareto search --space nb201 --objective params:max --objective latency_ms@DEVICE --trials 1000",
    )
    _ui.stop()

chosen = dict(st.session_state.get("selection", {}))  # shared by the pages; a link in the URL comes first
if _ui.url_is_new("fronts"):  # a fresh load, a bookmark or shared link, back/forward
    linked = _ui.url_values("study", studies)
    if linked:
        chosen = {"study": linked[0], "costs": st.query_params.get_all("cost")}
        st.session_state["fronts_study"] = linked[0]
        st.session_state.pop("_fronts_for", None)  # the linked trial, not the one shown before
    if st.query_params.get("trial", "").isdigit():
        chosen["trial"] = int(st.query_params["trial"])
        st.session_state.pop("_fronts_for", None)
    if "cost" in st.query_params:
        chosen["costs"] = st.query_params.get_all("cost")
        st.session_state.pop("fronts_costs", None)
if st.session_state.get("fronts_study") not in studies:
    st.session_state["fronts_study"] = (
        chosen["study"] if chosen.get("study") in studies else studies[_state.default_study_index(db, studies)]
    )  # the newest study with results
study = st.selectbox("Study", studies, key="fronts_study", help="hwpareto searches stored in this store, newest first")
results, view = _ui.results(db, study)
if st.session_state.get("_fronts_for") != study or "fronts_trial" not in st.session_state:
    st.session_state["_fronts_for"] = study  # a selection belongs to one study: a switch starts at its knee
    st.session_state.pop("_fronts_last_pick", None)
    if chosen.get("study", study) == study and chosen.get("trial") is not None:
        st.session_state["fronts_trial"] = chosen["trial"]  # the selection made for this study (e.g. on Export)
    else:
        st.session_state.pop("fronts_trial", None)  # set to this study's knee below
searches = {s.name: s for s in db.searches.list()}
if study in searches and searches[study].status == "failed":
    st.error(f"search {study!r} failed: {searches[study].error} (its stored trials are shown)", icon=":material/error:")
summary = _data.study_summary(results)
cols = st.columns(4)
cols[0].metric("trials", f"{summary['trials']:,}")
cols[1].metric("feasible", f"{summary['feasible']:,}")
cols[2].metric("space", summary["space"])
cols[3].metric("sampler", summary["sampler"])
st.caption(
    "objectives: "
    + ", ".join(summary["objectives"])
    + ("; budgets: " + ", ".join(summary["budgets"]) if summary["budgets"] else "; no budget")
)
if view is None:
    _ui.write_url("fronts", {"study": study, "trial": None, "cost": None})
    _ui.next_step(
        "This study has no completed trials (or a single objective) to draw yet; watch it on the Search page.",
        f"hwpareto searches --store {shown_url(_ui.store_url())}",
    )
    _ui.stop()
runtime = _data.runtime_setting(db.spaces.get(results.spec.space), results, view.fronts[view.costs[0]]["number"])
if runtime:  # an LLM space: its costs hold for these batch and sequence lengths
    st.caption(
        f"runtime setting of space {summary['space']!r} (values on the front): "
        + "; ".join(runtime)
        + (
            ". latency_ms of an LLM SubNet is its prefill plus one decode step at mid-generation; prefill_ms and "
            "decode_ms_per_token are the phases apart"
            if any(o.metric == "latency_ms" for o in results.objectives)
            else ""
        )
    )
if not summary["feasible"]:
    st.warning("No trial meets the budget yet, so the fronts are empty: run more trials or relax the budget.")

# ------------------------------------------------------------------------------------------------ the front
units = {c: _figures.metric_label(c)[1] for c in view.costs}
same_unit = [c for c in view.costs if units[c] == units[view.costs[0]]]
wanted = st.session_state.get("fronts_costs") or chosen.get("costs") or []  # kept over a study switch
kept = [c for c in dict.fromkeys(wanted) if c in view.costs]
st.session_state["fronts_costs"] = kept or same_unit  # none of them in this study: all its devices of one unit
costs = st.multiselect(
    "Cost axes (one front per device, overlaid)",
    view.costs,
    key="fronts_costs",
    help="Fronts of several devices share the x axis when their units match",
)
costs = [c for c in costs if units[c] == units[costs[0]]] if costs else [view.costs[0]]
front_numbers = sorted({int(n) for c in costs for n in view.fronts[c]["number"]})
hover = _data.hover_texts(results, front_numbers)
current = st.session_state.get("fronts_trial")
if front_numbers and not (isinstance(current, int) and current in results.configs):  # before the chart: its
    # selection state is kept only while the figure stays the same, so the first click must not change the ring
    st.session_state["fronts_trial"] = view.knees[costs[0]] if view.knees[costs[0]] is not None else front_numbers[0]
picked = st.session_state.get("fronts_trial")
left, right = st.columns(2)
panels = left.toggle(
    "One panel per device",
    value=_data.scales_differ(view.fronts, costs),
    key="fronts_panels",
    disabled=len(costs) < 2,
    help="On when the devices' costs lie an order of magnitude apart",
)
log_x = right.toggle(
    "Log cost axis", key="fronts_log", help="For costs spanning orders of magnitude (also the 3-objective view)"
)
fig = _figures.front_figure(
    results.trials,
    view.quality,
    costs,
    view.fronts,
    view.bounds,
    hover,
    picked,
    title=f"{study}: {view.quality} vs {', '.join(costs)}",
    projected=view.projected,
    panels=panels,
    log_x=log_x,
    dims=view.dims,
)
event = st.plotly_chart(
    fig,
    key=f"fronts_chart:{study}",
    on_select="rerun",
    selection_mode=("points",),
    alt=f"Pareto front of {study}: {view.quality} against {', '.join(costs)}",
    config={"displaylogo": False},
)
st.caption(
    f"{len(results.trials):,} trials, dimmed; crosses: over budget; open markers: non-dominated only over "
    "more objectives than the two drawn. Axes start around the fronts: the autoscale button shows every trial. "
    f"{'WebGL rendering. ' if len(results.trials) >= _figures.WEBGL_FROM else ''}"
    "Click a front point or a table row to select its SubNet."
)

table = view.fronts[costs[0]][["number", view.quality, *view.costs, "config_key"]].copy()
table.insert(1, "knee", table["number"] == view.knees[costs[0]])
table_event = st.dataframe(
    table, key=f"fronts_table:{study}", on_select="rerun", selection_mode="single-row", hide_index=True, height=240
)

# a new click on the chart or the table selects that trial
clicks = [
    int(p["customdata"] if not isinstance(p["customdata"], list) else p["customdata"][0])
    for p in (event.selection.points if event else [])
    if p.get("customdata") is not None
]
rows = table_event.selection.rows if table_event else []
pick = clicks[0] if clicks else int(table.iloc[rows[0]]["number"]) if rows else None
if pick is not None and pick != st.session_state.get("_fronts_last_pick"):
    st.session_state["_fronts_last_pick"] = pick
    st.session_state["fronts_trial"] = pick
    st.rerun()

options: list[int] = sorted(
    set(front_numbers) | ({picked} if isinstance(picked, int) and picked in results.configs else set())
)
knee = view.knees[costs[0]]
st.subheader("Selected SubNet")
if not options:
    _ui.write_url("fronts", {"study": study, "trial": None, "cost": costs})
    _ui.next_step("No front member to select yet.")
    _ui.stop()
if st.session_state.get("fronts_trial") not in options:
    st.session_state["fronts_trial"] = knee if knee is not None else options[0]
trial: int = st.selectbox(
    "SubNet (trial number)",
    options,
    key="fronts_trial",
    format_func=lambda n: f"trial {n}" + (" (knee)" if n == knee else ""),
)
doc = _data.config_document(db, results, trial)
st.session_state["selection"] = {"study": study, "trial": trial, "costs": costs}
_ui.write_url("fronts", {"study": study, "trial": trial, "cost": costs})
row = results.trials.set_index("number").loc[trial]
st.dataframe({o.name: [float(row[o.name])] for o in results.objectives}, hide_index=True)
with st.expander("config", expanded=False):
    st.json(doc)
st.download_button(
    "Download config JSON",
    json.dumps(doc, indent=2),
    file_name=f"{study}-trial{trial}-config.json",
    mime="application/json",
    key="fronts_download_config",
    on_click="ignore",
)
st.caption("The Export page builds the full bundle (weights, ONNX, metrics) for this SubNet.")

# ------------------------------------------------------------------------------------------------ 3 objectives
if len(results.objectives) >= 3 and st.toggle("3-objective view", key="fronts_3d"):
    names = [o.name for o in results.objectives]
    st.plotly_chart(
        _figures.front3d_figure(
            results.trials,
            results.front().rows,
            names[:3],
            title="first three objectives (axes around the front; the reset button shows every trial)",
            selected=trial,
            log_axes=[o.name for o in results.objectives if o.is_cost] if log_x else (),
        ),
        key="fronts_chart3d",
        alt="3-objective Pareto front",
    )

# ------------------------------------------------------------------------------------------------ comparison
others = [s for s in studies if s != study]
directions = {o.name: o.direction for o in results.objectives}
other = st.selectbox("Compare with another search", ["(none)", *others], key="fronts_compare")
if other != "(none)":
    try:
        fronts, table = _data.compare_fronts(results, _ui.results(db, other)[0], costs[0], view.quality)
    except InvalidValueError as exc:
        _ui.error(exc)
    else:
        st.plotly_chart(
            _figures.compare_figure(fronts, costs[0], view.quality, directions[view.quality]),
            key="fronts_compare_chart",
            alt=f"fronts of {study} and {other}",
        )
        st.dataframe(table, hide_index=True)

# ------------------------------------------------------------------------------------------------ operating points
st.subheader("Operating points")
k = st.slider(
    "SubNets in the table",
    2,
    10,
    4,
    key="fronts_k",
    help="SubNets spanning the front's cost range, for switching at run time",
)
try:
    st.dataframe(_data.operating_point_frame(results, costs[0], k), hide_index=True)
except HwparetoError as exc:
    _ui.error(exc)
