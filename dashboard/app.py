"""The hwpareto dashboard (``hwpareto dashboard``): five pages over the store named by ``$HWPARETO_STORE``. The
sidebar's links to Fronts, Trials and Export carry the chosen study, trial and cost axes in their URL, so following
one writes no new history entry and the browser's back returns to the page before."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"  # not pages/, which Streamlit would list by itself

st.set_page_config(page_title="hwpareto", page_icon=":material/scatter_plot:", layout="wide")
devices = st.Page(VIEWS / "devices.py", title="Devices", icon=":material/memory:", url_path="devices")


def _home() -> None:
    """``/``: the Devices page at its own URL, so every page has a stable address (/devices, /search, ...)."""
    st.switch_page(devices)


PAGES = [
    devices,
    st.Page(VIEWS / "search.py", title="Search", icon=":material/travel_explore:", url_path="search"),
    st.Page(VIEWS / "fronts.py", title="Fronts", icon=":material/scatter_plot:", url_path="fronts"),
    st.Page(VIEWS / "trials.py", title="Trials", icon=":material/table_rows:", url_path="trials"),
    st.Page(VIEWS / "export.py", title="Export", icon=":material/download:", url_path="export"),
]
CARRY = {"fronts", "trials", "export"}  # the pages that read the study, trial and cost axes from the URL

page = st.navigation(
    [st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"), *PAGES], position="hidden"
)
links = st.sidebar.container()  # drawn after the page ran: the links carry the choices it made
try:
    page.run()
finally:
    chosen = {k: st.query_params.get_all(k) for k in ("study", "trial", "cost") if k in st.query_params}
    with links:
        for p in PAGES:
            st.page_link(p, query_params=chosen if p.url_path in CARRY else None)
        st.divider()
