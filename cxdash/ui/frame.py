"""The shared frame around every page: the page registry and the sidebar."""

from __future__ import annotations

import contextvars
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cxdash.config import redacted_url
from cxdash.governance.auth import Session, may_open
from cxdash.ui import auth as ui_auth
from cxdash.ui import data
from cxdash.ui.formatting import plain

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
    ("admin.py", "Admin", ":material/admin_panel_settings:", "Admin"),
]


def page_title(page_file: str | Path) -> str:
    """The title the navigation gives ``page_file`` (``admin.py`` -> ``Admin``)."""
    name = Path(page_file).name
    return next((title for file, title, *_ in PAGE_REGISTRY if file == name), Path(name).stem.replace("_", " "))


def refused_pages(role: str | None) -> list:
    """Hidden pages at the addresses of the registered pages ``role`` may not open: each shows the
    refusal in words and records it (``access_denied``), rather than the router falling back to the
    first page without a word, as it does for an address it does not know."""
    out = []
    for file, title, _icon, _section in PAGE_REGISTRY:
        if (PAGES_DIR / file).exists() and not may_open(role, file):
            out.append(
                st.Page(
                    _refusal(file),
                    title=title,
                    icon=":material/lock:",
                    url_path=Path(file).stem,
                    visibility="hidden",
                )
            )
    return out


def _refusal(page_file: str):
    def refuse() -> None:
        session = ui_auth.current_session()
        if session is not None:
            ui_auth.refuse(session, page_file, page_title(page_file), open_pages(session.role))

    refuse.__name__ = f"refused_{Path(page_file).stem}"
    return refuse


def open_pages(role: str | None) -> list[tuple[str, str, str]]:
    """``(path in the repo, title, icon)`` of the pages ``role`` may open, in navigation order."""
    return [
        (f"pages/{file}", title, icon)
        for file, title, icon, _section in PAGE_REGISTRY
        if (PAGES_DIR / file).exists() and may_open(role, file)
    ]


def navigation_pages(role: str | None = "admin") -> dict[str, list]:
    """The registered pages that exist and that ``role`` may open, by section."""
    sections: dict[str, list] = {}
    first = True
    for file, title, icon, section in PAGE_REGISTRY:
        if (PAGES_DIR / file).exists() and may_open(role, file):
            sections.setdefault(section, []).append(
                st.Page(str(PAGES_DIR / file), title=title, icon=icon, default=first)
            )
            first = False
    return sections


def run_app() -> None:
    """The frame: sign-in, sidebar, navigation limited to the role's pages, then the chosen page
    (with a pending deep link honoured)."""
    try:
        session = ui_auth.current_session()
    except Exception as exc:  # noqa: BLE001 - shown to the user, who can retry
        st.error(f"The data store cannot be opened right now: {plain(exc)}")
        st.stop()
    if session is None:
        # Only the sign-in form is routable: every page's address shows it (rather than a "page
        # not found" dialog), and a pending deep link waits until after sign-in.
        sign_in = [st.Page(ui_auth.sign_in_page, title="Sign in", icon=":material/login:", default=True)]
        sign_in += [
            st.Page(ui_auth.sign_in_page, title="Sign in", url_path=Path(file).stem, visibility="hidden")
            for file, *_ in PAGE_REGISTRY
        ]
        st.navigation(sign_in, position="hidden").run()
        return
    sections = navigation_pages(session.role)
    refused = refused_pages(session.role)
    # The refused pages are hidden (not listed) but routable, so their addresses say why not.
    current = st.navigation({**sections, "": refused} if refused else sections)
    target = st.session_state.pop(DEEPLINK_KEY, None)
    if target:
        stem = Path(target).stem
        for page in [*(p for pages in sections.values() for p in pages), *refused]:
            if page._url_path == stem and page.url_path != current.url_path:
                st.switch_page(page)
    sidebar()
    token = _FRAMED.set(True)
    try:
        current.run()
    finally:
        _FRAMED.reset(token)


def framed() -> bool:
    """Whether this run goes through the frame (its navigation knows every page)."""
    return _FRAMED.get()


def page_guard(page_file: str) -> None:
    """Send a page opened by its URL on a fresh session through app.py.

    With a ``pages/`` folder beside the entry point, Streamlit runs ``pages/x.py`` directly
    when a new session starts at ``/x``, skipping the frame (and any check it makes). The
    page then asks for the entry point, remembering where the user wanted to go.
    A page run as its own script (AppTest, ``streamlit run pages/x.py``) is not redirected.
    Either way the page then checks that someone is signed in whose role may open it.
    """
    if not _FRAMED.get():
        ctx = get_script_run_ctx()
        main = Path(ctx.main_script_path).resolve() if ctx and ctx.main_script_path else None
        if main is not None and main != Path(page_file).resolve():
            st.session_state[DEEPLINK_KEY] = Path(page_file).name
            st.switch_page(str(APP_PY))
    # Every page checks the role itself too: typing a page's URL is no way in.
    require_role(page_file)


def require_role(page_file: str) -> Session:
    """Stop the run unless someone is signed in whose role may open ``page_file``."""
    session = ui_auth.current_session()
    if session is None:
        ui_auth.sign_in_page()
        st.stop()
    if not may_open(session.role, page_file):
        ui_auth.refuse(session, page_file, page_title(page_file), open_pages(session.role), links=framed())
        st.stop()
    return session


def sidebar() -> None:
    try:
        data.version()
    except Exception as exc:  # noqa: BLE001 - shown to the user, who can retry
        st.error(f"The data store cannot be opened right now: {plain(exc)}")
        st.stop()
    if data.busy():
        st.info(
            "A data load is running. You are seeing the data as of the previous load; "
            "the page shows the new data once the load finishes.",
            icon=":material/sync:",
        )
    with st.sidebar:
        session = ui_auth.current_session()
        if session is not None:
            ui_auth.user_box(session)
        st.caption("One view of the customer across marketing, web, sales, support and billing.")
        if session is not None and session.role == "admin":
            # Where the data lives is the admin's business only: the URL names hosts and paths.
            try:
                st.caption(f"Store: `{redacted_url(data.store().url)}`")
            except Exception as exc:  # noqa: BLE001 - any failure to reach the store: the page itself shows the full message
                st.caption(f"Store unavailable: {plain(exc)}")
