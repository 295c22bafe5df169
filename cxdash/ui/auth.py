"""Sign-in for the app: the form, the session in ``st.session_state``, role checks per page.

How a person gets in is set by ``CXDASH_AUTH`` (or ``[cxdash] auth`` in
``.streamlit/secrets.toml``):

* ``on`` (the default): user name and password against the users table (``cxdash.governance.auth``);
* ``oidc``: Streamlit's single sign-on (``st.login``, configured in the ``[auth]`` section of
  ``secrets.toml``); the role still comes from the users table (user name = the email);
* ``off``: nobody signs in and everyone is admin. Only for a laptop with demo data; never on a
  shared server. Any other value counts as ``on``.

The session lives on the server (the browser holds only Streamlit's connection), is checked
against the users table on every run (a disabled account or a changed role applies at once) and
expires after ``CXDASH_SESSION_IDLE_HOURS`` idle. A reload of the browser tab starts a new
connection and asks to sign in again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from cxdash.governance import auth, privacy
from cxdash.governance.auth import AuthError, Session
from cxdash.store import audit
from cxdash.store.database import Store, StoreLockedError
from cxdash.ui import data
from cxdash.ui.formatting import plain

log = logging.getLogger(__name__)

SESSION_KEY = "auth_session"  # a dict (Session.to_dict()), so tests can seed it
FORM_KEY = "auth_sign_in"
AUTH_ENV = "CXDASH_AUTH"
MODES = ("on", "oidc", "off")
_SECRETS = Path(__file__).resolve().parents[2] / ".streamlit" / "secrets.toml"


def auth_mode() -> str:
    value = os.environ.get(AUTH_ENV, "").strip().lower()
    if not value and _SECRETS.is_file():
        try:
            value = str(st.secrets.get("cxdash", {}).get("auth", "")).strip().lower()
        except Exception:  # noqa: BLE001 - an unreadable secrets file: stay on the safe side
            value = ""
    if value and value not in MODES:
        log.warning("%s=%r is not one of %s; password sign-in stays on", AUTH_ENV, value, MODES)
    return value if value in MODES else "on"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def current_session() -> Session | None:
    """The signed-in person for this run, or None. Refreshes (or drops) the stored session."""
    mode = auth_mode()
    if mode == "off":
        now = _now()
        return Session("local", "admin", now, now, method="off")
    raw = st.session_state.get(SESSION_KEY)
    try:
        session = Session.from_dict(raw) if isinstance(raw, dict) else None
    except TypeError:
        session = None
    try:
        session = auth.check_session(data.store(), session)
    except StoreLockedError:
        # A data load holds the embedded store for a while: pages serve the previous data, and
        # the session stays valid within its time limits until the account can be re-read.
        session = auth.check_session_times(session)
    if session is None and mode == "oidc" and st.user.is_logged_in:
        try:
            session = auth.sso_session(data.store(), str(st.user.get("email") or ""))
        except AuthError as exc:
            st.error(str(exc))
            st.button("Sign out of single sign-on", on_click=st.logout)
            st.stop()
    if session is None:
        st.session_state.pop(SESSION_KEY, None)
    else:
        st.session_state[SESSION_KEY] = session.to_dict()
    return session


def current_role() -> str | None:
    session = current_session()
    return session.role if session else None


def current_user() -> str:
    """Who is acting, for the audit log."""
    session = current_session()
    return session.username if session else "(not signed in)"


def sign_in_page() -> None:
    """The sign-in form (the only thing someone who is not signed in can see)."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("Sign in to cxdash")
        st.caption("One view of the customer across marketing, web, sales, support and billing.")
        if auth_mode() == "oidc":
            st.button("Sign in with single sign-on", type="primary", on_click=st.login, key="auth_sso")
            return
        with st.form(FORM_KEY):
            username = st.text_input("User name", key="auth_username", autocomplete="username")
            password = st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            try:
                session = auth.authenticate(data.store(), username, password)
            except AuthError as exc:
                st.error(str(exc))
                return
            except StoreLockedError:
                st.warning(
                    "A data load is running and holds the store; sign in again in a moment.", icon=":material/sync:"
                )
                return
            st.session_state[SESSION_KEY] = session.to_dict()
            st.rerun()
        st.caption("No account? An admin adds people with `python -m cxdash users add NAME --role ROLE`.")


def sign_out() -> None:
    session = current_session()
    st.session_state.pop(SESSION_KEY, None)
    if session is not None and session.method != "off":
        _audit(session.username, "sign_out")
    if session is not None and session.method == "oidc":
        st.logout()


def role_name(role: str) -> str:
    """A role as a person says it (``journey_owner`` -> ``journey owner``)."""
    return role.replace("_", " ")


def refusal_message(role: str, title: str) -> str:
    """The words a refused page shows: who, what, and what to do."""
    return f"Your role, {role_name(role)}, cannot open {title}. Ask an admin if your job needs it."


def refuse(
    session: Session, page_file: str, title: str, pages: list[tuple[str, str, str]], *, links: bool = True
) -> None:
    """Say in words that ``session``'s role may not open the page, offer the ``pages`` it may open
    (``(path, title, icon)``; as links when the app's navigation knows them, else by name), and
    record the refusal in the audit log (``access_denied`` with the page and the role)."""
    _audit(session.username, "access_denied", {"page": Path(page_file).name, "role": session.role})
    st.title(title)
    st.error(refusal_message(session.role, title), icon=":material/lock:")
    if pages and links:
        st.markdown("**Pages you can open:**")
        for path, page_title, icon in pages:
            st.page_link(path, label=page_title, icon=icon)
    elif pages:
        st.markdown("**Pages you can open:** " + ", ".join(plain(t) for _, t, _ in pages))


def user_box(session: Session) -> None:
    """Who is signed in, and the way out (in the sidebar)."""
    if session.method == "off":
        st.caption("Sign-in is switched off (CXDASH_AUTH=off): everyone is admin.")
        return
    st.caption(f"Signed in as **{plain(session.username)}** · {session.role.replace('_', ' ')}")
    st.button("Sign out", key="auth_sign_out", on_click=sign_out, icon=":material/logout:")


# ----------------------------------------------------------------------------- privacy helpers for pages
def masked(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with personal columns masked unless the signed-in role needs them."""
    return privacy.mask_frame(frame, current_role())


def record_export(name: str, rows: int | None = None, *, what: str | None = None, contains: str | None = None) -> None:
    """``on_click`` for a download button (``cxdash.ui.disclosure.download`` wires it): the audit
    log notes who exported which file, when, how many rows, and what it holds."""
    _audit(current_user(), "export", _export_detail(name, rows, what, contains))


def export_recorder(
    name: str, rows: int | None = None, *, what: str | None = None, contains: str | None = None
) -> Callable[[], None]:
    """``record_export`` for a file built when clicked: who is signed in and the store are read
    now, in the page's run, because the returned function runs later on a thread of Streamlit's
    own, where there is no session."""
    actor, store, detail = current_user(), data.store(), _export_detail(name, rows, what, contains)
    return lambda: _audit(actor, "export", detail, store=store)


def _export_detail(name: str, rows: int | None, what: str | None, contains: str | None) -> dict[str, object]:
    detail: dict[str, object] = {"file": name}
    if rows is not None:
        detail["rows"] = int(rows)
    if what:
        detail["what"] = what
    if contains:
        detail["contains"] = contains
    return detail


def _audit(actor: str, action: str, detail: dict | None = None, *, store: Store | None = None) -> None:
    """Record an entry; a store held by a running load must not break the page (logged instead)."""
    try:
        audit.record(store if store is not None else data.store(), actor, action, detail)
    except StoreLockedError:
        log.warning("audit entry not written (store busy): %s %s %s", actor, action, detail)
