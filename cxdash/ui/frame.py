"""The shared frame around every page: the page registry and the sidebar."""

from __future__ import annotations

import contextvars
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cxdash.config import redacted_url
from cxdash.ui import data

REPO_DIR = Path(__file__).resolve().parents[2]
PAGES_DIR = REPO_DIR / "pages"
APP_PY = REPO_DIR / "app.py"
DEEPLINK_KEY = "frame_deeplink"

# True while app.py runs the chosen page: a page run outside it skipped the frame.
_FRAMED: contextvars.ContextVar[bool] = contextvars.ContextVar("cxdash_framed", default=False)

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


def run_app() -> None:
    """The frame: sidebar, navigation, then the chosen page (with a pending deep link honoured)."""
    sections = navigation_pages()
    current = st.navigation(sections)
    target = st.session_state.pop(DEEPLINK_KEY, None)
    if target:
        for page in (p for pages in sections.values() for p in pages):
            if Path(str(page._page)).name == target and page.url_path != current.url_path:
                st.switch_page(page)
    sidebar()
    token = _FRAMED.set(True)
    try:
        current.run()
    finally:
        _FRAMED.reset(token)


def page_guard(page_file: str) -> None:
    """Send a page opened by its URL on a fresh session through app.py.

    With a ``pages/`` folder beside the entry point, Streamlit runs ``pages/x.py`` directly
    when a new session starts at ``/x``, skipping the frame (and any check it makes). The
    page then asks for the entry point, remembering where the user wanted to go.
    A page run as its own script (AppTest, ``streamlit run pages/x.py``) is left alone.
    """
    if _FRAMED.get():
        return
    ctx = get_script_run_ctx()
    main = Path(ctx.main_script_path).resolve() if ctx and ctx.main_script_path else None
    if main is None or main == Path(page_file).resolve():
        return
    st.session_state[DEEPLINK_KEY] = Path(page_file).name
    st.switch_page(str(APP_PY))


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
