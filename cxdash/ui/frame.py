"""The shared frame around every page: the page registry and the sidebar."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cxdash.config import redacted_url
from cxdash.ui import data

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"

# (file in pages/, title, icon, section). A page is listed once its file exists, so work on a
# new page can land without touching the router.
PAGE_REGISTRY: list[tuple[str, str, str, str]] = [
    ("overview.py", "Overview", ":material/dashboard:", "Company"),
    ("executive.py", "Shared KPIs", ":material/monitoring:", "Company"),
    ("journeys.py", "Journeys & friction", ":material/route:", "Journeys"),
    ("at_risk.py", "At-risk customers", ":material/warning:", "Customers"),
    ("customer_card.py", "Customer card", ":material/person_search:", "Customers"),
    ("model.py", "Churn model", ":material/model_training:", "Customers"),
    ("upload.py", "Upload extracts", ":material/upload_file:", "Data"),
    ("data_health.py", "Data health", ":material/health_and_safety:", "Data"),
]


def navigation_pages() -> dict[str, list]:
    sections: dict[str, list] = {}
    for i, (file, title, icon, section) in enumerate(PAGE_REGISTRY):
        if (PAGES_DIR / file).exists():
            sections.setdefault(section, []).append(
                st.Page(str(PAGES_DIR / file), title=title, icon=icon, default=i == 0)
            )
    return sections


def sidebar() -> None:
    try:
        data.version()
    except Exception as exc:  # noqa: BLE001 - shown to the user, who can retry
        st.error(f"The data store cannot be opened right now: {exc}")
        st.stop()
    if data.busy():
        st.info(
            "A data load is running. You are seeing the data as of the previous load; "
            "the page shows the new data once the load finishes.",
            icon=":material/sync:",
        )
    with st.sidebar:
        st.caption("One view of the customer across marketing, web, sales, support and billing.")
        try:
            st.caption(f"Store: `{redacted_url(data.store().url)}`")
        except Exception as exc:  # the page itself shows the full message
            st.caption(f"Store unavailable: {exc}")
