"""Devices: the registry with provenance, LUT coverage and per-layer costs, predictor quality, profiling a new
device in the background, importing a measurement table."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import _data, _figures, _jobs, _state, _ui
from hwpareto.errors import HwparetoError
from profilers import LOCAL_CPU, backend_for

st.title("Devices")
db = _ui.store()

# ------------------------------------------------------------------------------------------------ registry
st.subheader("Registry")
registry = _data.device_table(db)
if registry.empty:
    _ui.next_step(
        "No devices yet. Profile one below (a shipped NPU/CIM model, this CPU, or your own YAML), or "
        "import a published table:",
        "hwpareto profile --device npu-edgetpu --space "
        f"{_state.hint_space(db, chosen=st.session_state.get('profile_space'))}",
    )
else:
    st.dataframe(registry, hide_index=True)
shipped = _ui.presets()
with st.expander("Shipped device models (NPU and CIM presets, this CPU)"):
    st.dataframe(
        [
            {
                "device": LOCAL_CPU,
                "kind": "cpu",
                "backend": "torch-cpu",
                "registered": LOCAL_CPU in set(registry["device"]),
                "description": "this machine's CPU (PyTorch eager, 1 thread)",
            }
        ]
        + [
            {
                "device": s.name,
                "kind": s.kind,
                "backend": s.backend,
                "registered": s.name in set(registry["device"]),
                "description": s.description,
            }
            for s in shipped.values()
        ],
        hide_index=True,
    )

if not registry.empty:
    device = st.selectbox("Device", list(registry["device"]), key="devices_device")
    st.subheader(f"LUT of {device}")
    layers = _data.lut_layers(db, device)
    hint = _ui.cached(db, _state.hint_space, device, st.session_state.get("profile_space"))  # not always nb201
    if layers.empty:
        kind = registry.set_index("device").at[device, "kind"]
        _ui.next_step(
            f"{device} has no LUT"
            + (" (an imported device: only its imported measurements exist)" if kind == "imported" else "")
            + ". Profile it below, or:",
            f"hwpareto profile --device {device} --space {hint}"
            if kind != "imported"
            else f"hwpareto lut import LUT.csv --device {device}",
        )
    else:
        st.dataframe(
            _ui.cached(db, _data.lut_coverage, device),
            hide_index=True,
            column_config={
                "coverage_pct": st.column_config.ProgressColumn(
                    "coverage (%)", min_value=0, max_value=100, format="%.1f"
                )
            },
        )
        metrics = ["latency_ms"] + (["energy_mj"] if layers["energy_mj"].notna().any() else [])
        metric = st.radio(
            "Per-layer cost",
            metrics,
            horizontal=True,
            key="devices_metric",
            format_func=lambda m: {"latency_ms": "latency (ms)", "energy_mj": "energy (mJ)"}[m],
        )
        st.plotly_chart(
            _figures.lut_op_figure(_data.lut_by_op(layers), metric),
            key="devices_lut_chart",
            alt=f"mean and max per-layer {metric} of {device} by op",
        )
        with st.expander(f"all {len(layers):,} layers"):
            st.dataframe(layers.sort_values(metric, ascending=False), hide_index=True)

    st.subheader(f"Predictor quality on {device}")
    quality = _ui.cached(db, _data.predictor_quality, device)
    if not quality:
        _ui.next_step(
            f"No latency/energy predictor for {device} yet (it needs ≥ 10 measured SubNets):",
            f"hwpareto measure --device {device} --space {hint} -n 30 && "
            f"hwpareto train latency --device {device} --space {hint}",
        )
    for q in quality:
        held_out = q.metrics
        cols = st.columns(4)
        cols[0].metric("Kendall τ (held out)", f"{held_out.get('kendall_tau', float('nan')):.3f}")
        cols[1].metric("MAPE (held out)", f"{held_out.get('mape_pct', float('nan')):.2f} %")
        cols[2].metric("within ±10 % (held out)", f"{held_out.get('within_10pct', float('nan')):.0f} %")
        cols[3].metric("measured SubNets", f"{len(q.points)}")
        st.plotly_chart(
            _figures.predictor_figure(q.points, q.metric, f"{q.name}: predicted vs measured"),
            key=f"devices_predictor_{q.name}",
            alt=f"predicted against measured {q.metric} of {q.name}",
        )

# ------------------------------------------------------------------------------------------------ profile
st.subheader("Profile a new device")
source = st.radio("Device", ["preset", "upload a device YAML"], horizontal=True, key="profile_source")
spec = None
if source == "preset":
    names = list(
        dict.fromkeys(
            [
                LOCAL_CPU,
                *shipped,
                *(d for d, k in zip(registry["device"], registry["kind"], strict=True) if k != "imported"),
            ]
        )
    )
    preset = st.selectbox("Preset or registered device", names, key="profile_preset")
else:
    # no type=[...]: Streamlit raises before the page runs on a name without the ending ('..', ''); checked here
    upload = st.file_uploader("Device YAML (name, kind, backend, params), a .yaml or .yml file", key="profile_upload")
    if upload is not None and not upload.name.lower().endswith((".yaml", ".yml")):
        _ui.error(f"device YAML: expected a file named *.yaml or *.yml, got {_data.shown_name(upload.name)}")
        upload = None
    if upload is not None:
        try:
            spec = _data.validate_device_upload(upload.name, upload.getvalue())
            backend = backend_for(spec)
            backend.check()
            db.devices.check(spec.name, spec.kind, spec.to_dict(), backend.describe())  # other parameters: refused
        except HwparetoError as exc:
            _ui.error(exc)
            spec = None
        except (UnicodeDecodeError, ValueError) as exc:  # whatever the loader still lets through: one line
            _ui.error(
                f"device YAML {_data.shown_name(upload.name)}: expected UTF-8 YAML text, got {type(exc).__name__}"
            )
            spec = None
        else:
            shown = _data.shown_name(upload.name)
            st.success(f"{shown}: device {spec.name!r} ({spec.kind}, backend {spec.backend}) is valid")
listed_spaces, broken_spaces = _data.space_choices(db)
for warning in broken_spaces:
    st.warning(warning, icon=":material/warning:")
space = st.selectbox("Space to profile", [s.name for s in listed_spaces if s.has_model], key="profile_space")
resolutions = st.text_input(
    "Only these input sizes (comma separated; empty = all)", key="profile_resolution", placeholder="224"
)
budget_s = st.number_input("Time budget (s; 0 = none, rerun to resume)", min_value=0, value=0, key="profile_budget_s")
if st.button("Start profiling", key="profile_launch", type="primary"):
    try:
        sizes = [int(r) for r in resolutions.replace(" ", "").split(",") if r]
    except ValueError:
        _ui.error(f"--resolution: expected integers separated by commas, got {resolutions!r}")
    else:
        if source != "preset" and spec is None:
            _ui.error(
                "device YAML: expected an uploaded, valid device file, got "
                + ("nothing" if upload is None else f"an invalid one ({_data.shown_name(upload.name)})")
            )
        else:
            target = preset if spec is None else spec.name
            try:
                if spec is not None:
                    db.devices.add(spec.name, spec.kind, spec.to_dict(), backend_for(spec).describe())
                args = [
                    "profile",
                    "--device",
                    target,
                    "--space",
                    space,
                    "--workers",
                    "1",
                    *(a for r in sizes for a in ("--resolution", str(r))),
                    *(["--budget-s", str(budget_s)] if budget_s else []),
                ]
                _jobs.start_job(_ui.store_url(), "profile", f"{target} × {space}", args)
            except HwparetoError as exc:
                _ui.error(exc)
            else:
                st.success(f"profiling {target} on {space} in the background; progress below")


def profile_jobs() -> None:
    """Profiling jobs of this store with their LUT progress."""
    jobs = _jobs.list_jobs(_ui.store_url(), "profile")
    if not jobs:
        st.caption("No profiling job started from the dashboard yet.")
        return
    running_now = {str(j.folder) for j in jobs if j.status == "running"}
    finished = set(st.session_state.get("profile_running", ())) - running_now
    st.session_state["profile_running"] = sorted(running_now)
    if finished:  # a job ended: the registry, LUT and coverage above are stale, so the whole page runs again
        _ui.refresh()
        st.rerun(scope="app")
    for job in jobs[:5]:
        target, _, space_name = job.subject.partition(" × ")
        done, total = _data.profile_progress(db, target, space_name)
        st.progress(
            min(1.0, done / max(1, total)), text=f"{job.subject}: {job.status}, {done:,} of {total:,} layers in the LUT"
        )
        if job.status in ("failed", "lost"):
            _ui.error(f"profiling {job.subject} {job.status}: " + (job.log_tail(3) or "no output"))
        with st.expander(f"log of {job.subject}"):
            st.code(job.log_tail() or "(no output yet)", language="text")


running = any(j.status == "running" for j in _jobs.list_jobs(_ui.store_url(), "profile"))
st.fragment(profile_jobs, run_every=timedelta(seconds=2) if running else None)()

# ------------------------------------------------------------------------------------------------ import
with st.expander("Import a measurement table (CSV), as hwpareto import does"):
    csv = st.file_uploader("CSV table, one SubNet per row (.csv)", key="import_upload")  # no type=: as above
    if csv is not None and not csv.name.lower().endswith(".csv"):
        _ui.error(f"CSV: expected a file named *.csv, got {_data.shown_name(csv.name)}")
        csv = None
    c1, c2 = st.columns(2)
    import_space = c1.selectbox("Space", [s.name for s in listed_spaces], key="import_space")
    kind = c2.radio("Values are per", ["device", "dataset"], horizontal=True, key="import_kind")
    subject = c1.text_input("Device or dataset ({column} = the column name)", value="{column}", key="import_subject")
    metric_name = c2.text_input("Metric with its unit", value="latency_ms", key="import_metric")
    columns = st.text_input("Value columns (COLUMN or COLUMN=SUBJECT, comma separated)", key="import_columns")
    if st.button("Import", key="import_launch"):
        if csv is None:
            _ui.error("CSV: expected an uploaded table, got nothing")
        else:
            try:
                report = _data.import_upload(
                    db,
                    csv.name,
                    csv.getvalue(),
                    space=import_space,
                    subject_kind=kind,
                    subject=subject,
                    metric=metric_name,
                    columns=[c.strip() for c in columns.split(",") if c.strip()],
                )
            except HwparetoError as exc:
                _ui.error(exc)
            else:
                _ui.refresh()  # values may have been replaced in place: derived tables are stale
                st.success(
                    f"imported {report['rows']} rows ({report['subnets']} SubNets): {report['inserted']} new, "
                    f"{report['updated']} updated, {report['unchanged']} unchanged"
                )
