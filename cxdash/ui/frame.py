"""The shared frame around every page: sidebar with the store and data freshness."""

from __future__ import annotations

import streamlit as st

from cxdash.config import redacted_url
from cxdash.ui import data


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### cxdash")
        st.caption("One view of the customer across marketing, web, sales, support and billing.")
        try:
            url = data.store().url
            st.caption(f"Store: `{redacted_url(url)}`")
        except Exception as exc:  # the page itself shows the full message
            st.caption(f"Store unavailable: {exc}")
