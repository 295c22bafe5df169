"""cxdash: the router and frame. Pages live in pages/; all logic lives in the cxdash package."""

import streamlit as st

from cxdash.ui.frame import run_app

st.set_page_config(page_title="cxdash", page_icon=":material/hub:", layout="wide")
run_app()
