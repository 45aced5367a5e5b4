"""Export: the selected SubNet's config JSON, its full bundle (zip: config, weights, ONNX, metrics) and the
operating-point table, with what the bundle contains."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import _data, _state, _ui
from hwpareto.errors import HwparetoError
from hwpareto.store import csv_safe

st.title("Export")
db = _ui.store()
studies = _data.hwpareto_studies(db)
if not studies:
    _ui.next_step(
        "Nothing to export yet: run a search (Search page), pick a SubNet on the Fronts page, then come "
        "back here. From the command line:",
        "hwpareto export STUDY TRIAL --out DIR",
    )
    _ui.stop()

chosen = dict(st.session_state.get("selection", {}))  # shared by the pages; a link in the URL comes first
linked_cost = None
if _ui.url_is_new("export"):  # a fresh load, a bookmark or shared link, back/forward
    linked = _ui.url_values("study", studies)
    if linked:
        chosen = {"study": linked[0]}
        st.session_state["export_study"] = linked[0]
    if st.query_params.get("trial", "").isdigit():
        chosen["trial"] = int(st.query_params["trial"])
    st.session_state.pop("_export_for", None)
    linked_cost = next(iter(st.query_params.get_all("cost")), None)  # Fronts' first cost axis
if st.session_state.get("export_study") not in studies:
    st.session_state["export_study"] = (
        chosen["study"] if chosen.get("study") in studies else studies[_state.default_study_index(db, studies)]
    )  # the newest study with results
study = st.selectbox("Study", studies, key="export_study")
results, view = _ui.results(db, study)
if view is None or not len(results.trials):
    _ui.write_url("export", {"study": study, "trial": None})
    _ui.next_step("This study has no completed trials yet; watch it on the Search page.")
    _ui.stop()
numbers = results.trials["number"]
knee = view.knees[view.costs[0]]
if st.session_state.get("_export_for") != study or "export_trial" not in st.session_state:
    st.session_state["_export_for"] = study  # a study's own selection, else its knee
    linked_trial = chosen.get("trial") if chosen.get("study", study) == study else None
    fallback = knee if knee is not None else int(numbers.iloc[0])
    linked_ok = isinstance(linked_trial, int) and linked_trial in results.configs
    st.session_state["export_trial"] = linked_trial if linked_ok else fallback
trial = int(
    st.number_input(
        "Trial number",
        min_value=int(numbers.min()),
        max_value=int(numbers.max()),
        step=1,
        key="export_trial",
        help="Selected on the Fronts page; the knee of the front by default",
    )
)
try:
    doc = _data.config_document(db, results, trial)
except HwparetoError as exc:
    _ui.write_url("export", {"study": study, "trial": None})
    _ui.error(exc)
    _ui.stop()
st.session_state["selection"] = {**chosen, "study": study, "trial": trial}
_ui.write_url("export", {"study": study, "trial": trial})  # the operating-point cost stays Fronts' (cost=)

st.subheader(f"Trial {trial} ({doc['key']})")
row = results.trials.set_index("number").loc[trial]
st.dataframe(
    {o.name: [float(row[o.name])] for o in results.objectives} | {"feasible": [bool(row["feasible"])]}, hide_index=True
)
st.download_button(
    "Download config JSON",
    json.dumps(doc, indent=2),
    file_name=f"{study}-trial{trial}-config.json",
    mime="application/json",
    key="export_config",
    on_click="ignore",
)

st.subheader("Bundle")
has_model = db.spaces.get(results.spec.space).has_model
weights = st.checkbox(
    "Include weights (safetensors) and ONNX",
    value=has_model,
    disabled=not has_model,
    key="export_weights",
    help="Extracted from the SuperNet; a declarative space has no model",
)
untrained = st.checkbox(
    "Untrained SuperNet weights (--random-weights)",
    value=False,
    disabled=not (has_model and weights),
    key="export_random_weights",
    help="Only for a space without trained weights known (no checkpoint recorded or shipped, no model folder): "
    "the SubNet of a randomly initialised SuperNet",
)
if st.button("Build bundle", key="export_build", type="primary"):
    with st.spinner("exporting (config, metrics" + (", weights, ONNX" if weights else "") + ")…"):
        try:
            built = _data.bundle_zip(db, study, trial, weights=weights, random_weights=weights and untrained)
        except HwparetoError as exc:
            st.session_state.pop("bundle", None)
            _ui.error(exc)
        else:
            st.session_state["bundle"] = (study, trial, *built)
bundle = st.session_state.get("bundle")
if bundle and bundle[:2] == (study, trial):
    _, _, data, manifest, metrics = bundle
    st.markdown("**What the bundle contains**")
    st.dataframe(manifest, hide_index=True)
    st.caption(
        f"{len(manifest)} files, {manifest['size_bytes'].sum() / 1e6:,.1f} MB; the zip holds the folder and "
        f"{_data.MANIFEST_FILE} (this list). Check the unzipped folder with `hwpareto verify-bundle FOLDER`."
    )
    for note in metrics.get("notes", []):
        st.info(note, icon=":material/info:")
    with st.expander("metrics and provenance (config.json)"):
        st.json({k: v for k, v in metrics.items() if k != "notes"})
    st.download_button(
        "Download bundle (zip)",
        data,
        file_name=f"{study}-trial{trial}.zip",
        mime="application/zip",
        key="export_bundle",
        on_click="ignore",
    )
else:
    st.caption("Build the bundle to see its files and download it.")

st.subheader("Operating-point table")
if linked_cost in view.costs or st.session_state.get("export_cost") not in view.costs:
    picked = [c for c in [linked_cost, *chosen.get("costs", [])] if c in view.costs]  # the link's, else Fronts'
    st.session_state["export_cost"] = picked[0] if picked else view.costs[0]
cost = st.selectbox("Device cost", view.costs, key="export_cost")
k = int(st.number_input("SubNets in the table", min_value=2, max_value=20, value=4, key="export_k"))
try:
    table = _data.operating_point_frame(results, cost, k)
except HwparetoError as exc:
    _ui.error(exc)
else:
    st.dataframe(table, hide_index=True)
    records = [{**r, "config": json.loads(r["config"])} for r in table.to_dict(orient="records")]
    cols = st.columns(2)
    cols[0].download_button(
        "Download table (JSON)",
        json.dumps(records, indent=2, default=str),
        file_name=f"{study}-operating-points.json",
        mime="application/json",
        key="export_ops_json",
        on_click="ignore",
    )
    cols[1].download_button(
        "Download table (CSV)",
        csv_safe(table).to_csv(index=False),
        file_name=f"{study}-operating-points.csv",
        mime="text/csv",
        key="export_ops_csv",
        on_click="ignore",
    )
