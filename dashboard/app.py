"""The hwpareto dashboard (``hwpareto dashboard``): four pages over the store named by ``$HWPARETO_STORE``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="hwpareto", page_icon="📈", layout="wide")
page = st.navigation([
    st.Page(PAGES / "devices.py", title="Devices", icon="🖥️", url_path="devices", default=True),
    st.Page(PAGES / "search.py", title="Search", icon="🔎", url_path="search"),
    st.Page(PAGES / "fronts.py", title="Fronts", icon="📈", url_path="fronts"),
    st.Page(PAGES / "export.py", title="Export", icon="📦", url_path="export"),
])
page.run()
