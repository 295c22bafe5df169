"""What each role can and cannot reach in the app (AppTest): pages, navigation, personal fields,
the sign-in form, expiry, and the admin page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cxdash.governance import auth
from cxdash.store import audit
from cxdash.store.database import open_store
from cxdash.ui.auth import SESSION_KEY
from tests.conftest import ensure_user, seed_session

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    "overview.py",
    "executive.py",
    "journeys.py",
    "at_risk.py",
    "customer_card.py",
    "model.py",
    "upload.py",
    "data_health.py",
    "admin.py",
]
ALLOWED = {
    "executive": {"overview.py", "executive.py"},
    "journey_owner": {"overview.py", "journeys.py"},
    "ops": {"overview.py", "upload.py", "data_health.py"},
    "agent": {"overview.py", "customer_card.py", "at_risk.py"},
    "admin": set(PAGES),
}
FULL_EMAIL = re.compile(r"\b[a-z0-9][a-z0-9._]+@example\.(?:com|net|org)\b")
PASSWORD = "a long enough password"


@pytest.fixture
def app_env(small_demo, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    return small_demo


def _page(name: str, role: str | None) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / name), default_timeout=60)
    seed_session(at, None if role is None else f"test-{role}", role or "admin")
    return at.run()


def _denied(at: AppTest) -> bool:
    return any("cannot open" in e.value and "Ask an admin" in e.value for e in at.error)


def _visible_text(at: AppTest) -> str:
    parts = [
        e.value
        for kind in (
            "title",
            "header",
            "subheader",
            "markdown",
            "caption",
            "info",
            "warning",
            "error",
            "success",
            "code",
            "text",
        )
        for e in getattr(at, kind)
    ]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    for df in at.dataframe:
        value = df.value
        if isinstance(value, pd.DataFrame):
            parts.append(value.astype(str).to_csv(index=False))
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("role", ["executive", "journey_owner", "ops", "agent"])
def test_a_role_is_refused_every_page_outside_its_job(app_env, role):
    for page in sorted(set(PAGES) - ALLOWED[role]):
        at = _page(page, role)
        assert not at.exception, (page, [e.value for e in at.exception])
        assert _denied(at), f"{role} reached {page}"
        assert not at.metric and not at.dataframe, f"{role} saw data on {page}"


@pytest.mark.parametrize("role", ["executive", "journey_owner", "ops", "agent"])
def test_a_role_opens_its_own_pages_and_sees_personal_fields_only_if_its_job_needs_them(app_env, role):
    for page in sorted(ALLOWED[role]):
        at = _page(page, role)
        if page == "customer_card.py":  # look someone up (no model is trained in this store)
            from cxdash.ui.risk import CARD_QUERY

            at.text_input(key=CARD_QUERY).input("CUS-0000002").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not _denied(at), f"{role} refused {page}"
        assert at.title, page
        emails = FULL_EMAIL.findall(_visible_text(at))
        if role != "agent":
            assert emails == [], f"{role} sees full emails on {page}: {emails[:3]}"
        elif page == "customer_card.py":
            # The agent talking to the customer sees who they are (the card itself decides how
            # much of the email to show).
            assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", at.header[0].value), at.header[0].value


def test_the_navigation_lists_only_the_pages_of_the_role(app_env, monkeypatch):
    import streamlit as st

    from cxdash.ui.frame import navigation_pages

    # Outside a running app st.Page is a stub: record which files the frame would list.
    monkeypatch.setattr(st, "Page", lambda page, **kw: Path(page).name)
    for role, allowed in ALLOWED.items():
        listed = {p for pages in navigation_pages(role).values() for p in pages}
        assert listed == allowed, role
    assert navigation_pages("nobody") == {}


def test_nobody_signed_in_sees_only_the_sign_in_form(app_env):
    for target in ("app.py", "pages/overview.py", "pages/customer_card.py"):
        at = AppTest.from_file(str(REPO / target), default_timeout=60)
        seed_session(at, None)
        at.run()
        assert not at.exception
        assert [t.value for t in at.title] == ["Sign in to cxdash"], target
        assert not at.metric and not at.dataframe and not FULL_EMAIL.findall(_visible_text(at))


def test_signing_in_through_the_form_opens_the_app_and_is_audited(app_env):
    ensure_user(app_env, "form-user", "journey_owner", PASSWORD)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    seed_session(at, None)
    at.run()
    at.text_input(key="auth_username").input("form-user")
    at.text_input(key="auth_password").input("not the password")
    at.button[0].click().run()
    assert auth.WRONG in [e.value for e in at.error]
    at.text_input(key="auth_username").input("form-user")
    at.text_input(key="auth_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Overview"
    assert at.session_state[SESSION_KEY]["role"] == "journey_owner"
    s = open_store(app_env)
    log = audit.recent(s, actor="form-user")
    s.dispose()
    assert list(log["action"])[:2] == ["sign_in", "sign_in_failed"]


def test_an_idle_session_expires_back_to_the_sign_in_form(app_env):
    ensure_user(app_env, "sleepy", "ops")
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=9)
    at = AppTest.from_file(str(REPO / "pages" / "overview.py"), default_timeout=60)
    at.session_state[SESSION_KEY] = auth.Session("sleepy", "ops", long_ago, long_ago).to_dict()
    at.run()
    assert [t.value for t in at.title] == ["Sign in to cxdash"]


def test_a_disabled_account_loses_its_open_session(app_env):
    at = _page("overview.py", "ops")
    assert at.title[0].value == "Overview"
    s = open_store(app_env)
    auth.set_disabled(s, "test-ops", True, actor="pytest")
    s.dispose()
    at.run()
    assert [t.value for t in at.title] == ["Sign in to cxdash"]
    s = open_store(app_env)
    auth.set_disabled(s, "test-ops", False, actor="pytest")
    s.dispose()


def test_the_admin_page_adds_a_person_and_shows_the_password_once(app_env):
    at = _page("admin.py", "admin")
    assert not at.exception, [e.value for e in at.exception]
    assert "people can sign in" in at.markdown[0].value
    at.text_input(key="admin_add_name").input("new-agent")
    at.selectbox(key="admin_add_role").set_value("agent")
    next(b for b in at.button if b.label == "Add").click().run()
    assert not at.exception
    password = at.code[0].value
    s = open_store(app_env)
    assert auth.authenticate(s, "new-agent", password).role == "agent"
    s.dispose()
    at.run()
    assert not at.code  # shown once: gone on the next run


def test_every_page_checks_the_role_itself():
    """A page run straight from its URL skips the frame, so each one must call page_guard first."""
    for path in sorted((REPO / "pages").glob("*.py")):
        code = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith(("#", '"""'))]
        calls = [i for i, line in enumerate(code) if line.startswith("page_guard(__file__)")]
        assert calls, f"{path.name} never calls page_guard(__file__)"
        assert not any(line.startswith("st.") for line in code[: calls[0]]), f"{path.name} renders before page_guard"


def test_the_admin_page_erases_a_customer_after_confirmation(tmp_path, monkeypatch):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping

    monkeypatch.setenv("CXDASH_SECRET_SALT", "page-test")
    url = f"duckdb:///{tmp_path / 'tiny.duckdb'}"
    s = open_store(url)
    crm = tmp_path / "crm.csv"
    pd.DataFrame([["C1", "ann@x.com"], ["C2", "bo@x.com"]], columns=["id", "email"]).to_csv(crm, index=False)
    ingest_file(
        s,
        crm,
        source="crm",
        mapping=Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "email"}}),
    )
    s.dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = _page("admin.py", "admin")
    at.text_input(key="admin_erase_id").input("ann@x.com")
    next(b for b in at.button if b.label == "Erase").click().run()
    assert "Tick the confirmation first." in [e.value for e in at.error]
    at.text_input(key="admin_erase_id").input("ann@x.com")
    at.checkbox(key="admin_erase_confirm").check()
    next(b for b in at.button if b.label == "Erase").click().run()
    assert not at.exception
    assert any("src_customers 1" in m.value for m in at.success)
    assert any("python -m cxdash compact" in i.value for i in at.info)  # the page cannot rewrite the file itself
    s = open_store(url)
    log = audit.recent(s, action="erasure")
    s.dispose()
    assert log.iloc[0]["actor"] == "test-admin" and "ann" not in log.iloc[0]["detail"]


def test_the_sign_in_form_says_the_same_for_an_unknown_name_a_wrong_password_and_a_locked_account(app_env):
    ensure_user(app_env, "locked-user", "ops", PASSWORD)
    ensure_user(app_env, "known-user", "ops", PASSWORD)
    s = open_store(app_env)
    try:
        for _ in range(auth.MAX_FAILED_ATTEMPTS):
            with pytest.raises(auth.AuthError):
                auth.authenticate(s, "locked-user", "not the password")
    finally:
        s.dispose()
    shown = {}
    for case, (user, password) in {
        "unknown": ("no-such-user", "not the password"),
        "wrong password": ("known-user", "not the password"),
        "locked": ("locked-user", PASSWORD),
    }.items():
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        seed_session(at, None)
        at.run()
        at.text_input(key="auth_username").input(user)
        at.text_input(key="auth_password").input(password)
        at.button[0].click().run()
        shown[case] = [e.value for e in at.error]
    assert shown == {key: [auth.WRONG] for key in shown}, shown


def _audit_entries(url: str, actor: str) -> list[dict]:
    import json

    s = open_store(url)
    try:
        log = audit.recent(s, action="access_denied", actor=actor)
    finally:
        s.dispose()
    return [json.loads(d) for d in log["detail"]]


def test_a_refused_deep_link_says_in_words_who_cannot_open_what_and_is_audited(app_env):
    from cxdash.ui.frame import DEEPLINK_KEY

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    seed_session(at, "deeplink-agent", "agent")
    at.session_state[DEEPLINK_KEY] = "admin.py"  # what page_guard leaves when /admin is opened first
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["Your role, agent, cannot open Admin. Ask an admin if your job needs it."]
    assert not at.metric and not at.dataframe
    assert {"page": "admin.py", "role": "agent"} in _audit_entries(app_env, "deeplink-agent")


def test_a_page_run_outside_the_frame_names_the_pages_the_role_may_open(app_env):
    at = _page("upload.py", "journey_owner")
    assert [e.value for e in at.error] == [
        "Your role, journey owner, cannot open Upload extracts. Ask an admin if your job needs it."
    ]
    offered = " ".join(m.value for m in at.markdown)
    assert "Overview" in offered and "Journeys" in offered and "Admin" not in offered
    assert {"page": "upload.py", "role": "journey_owner"} in _audit_entries(app_env, "test-journey_owner")


@pytest.mark.parametrize("role", ["executive", "journey_owner", "ops", "agent"])
def test_only_the_admin_sees_where_the_store_is(app_env, role):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    seed_session(at, f"sidebar-{role}", role)
    at.run()
    assert not at.exception
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "Store:" not in sidebar and "duckdb" not in sidebar, sidebar
    admin = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    seed_session(admin, "sidebar-admin", "admin")
    admin.run()
    assert "duckdb" in " ".join(c.value for c in admin.sidebar.caption)


def test_the_admin_reads_a_refusal_in_the_audit_log_in_words(app_env):
    refused = _page("admin.py", "agent")
    assert _denied(refused)
    at = _page("admin.py", "admin")
    assert not at.exception
    log = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert list(log.columns) == ["when", "who", "action", "detail"]
    mine = log[log["who"] == "test-agent"]
    assert "page: admin.py, role: agent" in set(mine.loc[mine["action"] == "access denied", "detail"])
    assert re.search(
        r"people can sign in\*\* \(\d+ admins?\); the last [\d,]+ audit entr(y|ies) hold", at.markdown[0].value
    )
