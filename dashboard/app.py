"""The hwpareto dashboard (``hwpareto dashboard``): five pages over the store named by ``$HWPARETO_STORE``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"  # not pages/, which Streamlit would list by itself

st.set_page_config(page_title="hwpareto", page_icon=":material/scatter_plot:", layout="wide")
devices = st.Page(VIEWS / "devices.py", title="Devices", icon=":material/memory:", url_path="devices")


def _home() -> None:
    """``/``: the Devices page at its own URL, so every page has a stable address (/devices, /search, ...)."""
    st.switch_page(devices)


page = st.navigation(
    [
        st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"),
        devices,
        st.Page(VIEWS / "search.py", title="Search", icon=":material/travel_explore:", url_path="search"),
        st.Page(VIEWS / "fronts.py", title="Fronts", icon=":material/scatter_plot:", url_path="fronts"),
        st.Page(VIEWS / "trials.py", title="Trials", icon=":material/table_rows:", url_path="trials"),
        st.Page(VIEWS / "export.py", title="Export", icon=":material/download:", url_path="export"),
    ]
)
page.run()
