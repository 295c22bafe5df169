"""In a real browser, two people with different roles sign in and each sees only their own pages
(screenshots in the test artifacts)."""

from __future__ import annotations

import json

import pytest

from cxdash.governance import auth
from cxdash.store import audit
from cxdash.store.database import open_store
from tests.browser_support import sign_in
from tests.conftest import ensure_user

pytestmark = pytest.mark.browser

AGENT = ("agent-ann", "agent", "ann's long password")
OPS = ("ops-olu", "ops", "olu's long password")


@pytest.fixture(scope="module")
def app(demo_app):
    """The session's shared demo app (tests/conftest.py) with this module's agent and ops user."""
    for name, role, password in (AGENT, OPS):
        ensure_user(demo_app["db"], name, role, password)
    return demo_app


def _nav(page) -> str:
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for(timeout=60_000)
    return nav.inner_text()


def test_an_agent_and_an_ops_user_each_see_only_their_pages(app, artifacts):
    browser = app["browser"]

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(app["url"], wait_until="domcontentloaded")  # then wait for the sign-in form
    page.get_by_text("Sign in to cxdash").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stMetric"]').count() == 0  # nothing before signing in
    page.screenshot(path=str(artifacts / "access_sign_in.png"))
    sign_in(page, AGENT[0], AGENT[2])
    nav = _nav(page)
    assert "Customer card" in nav and "At-risk customers" in nav and "Overview" in nav
    assert "Upload extracts" not in nav and "Admin" not in nav and "Shared KPIs" not in nav
    page.get_by_text("Signed in as").wait_for()
    page.get_by_text("Rows loaded per source").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts / "access_agent.png"))
    page.close()

    # Typing a page's address is no way in, and the refusal is said and recorded.
    for path, title in (("upload", "Upload extracts"), ("admin", "Admin")):
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{app['url']}/{path}", wait_until="domcontentloaded")  # then wait for the sign-in form
        sign_in(page, AGENT[0], AGENT[2])
        page.get_by_text(f"Your role, agent, cannot open {title}. Ask an admin if your job needs it.").wait_for(
            timeout=60_000
        )
        assert page.get_by_text("Drop one or more CSV extracts").count() == 0
        main = page.locator('[data-testid="stMain"]')
        main.get_by_role("link", name="At-risk customers").wait_for(timeout=30_000)  # drawn after the message
        assert main.get_by_role("link", name="At-risk customers").count() == 1
        assert main.get_by_role("link", name="Admin").count() == 0
        page.screenshot(path=str(artifacts / f"access_agent_refused_{path}.png"))
        if path == "admin":
            # ...and the way on works: the offered link opens a page of the agent's own.
            main.get_by_role("link", name="Overview").click()
            page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
        page.close()
    # a signed-in agent typing the address (a new browser session each time, so via the deep link)
    s = open_store(app["db"])
    try:
        refused = audit.recent(s, action="access_denied", actor=AGENT[0])
    finally:
        s.dispose()
    pages = [json.loads(d)["page"] for d in refused["detail"]]
    assert "upload.py" in pages and "admin.py" in pages, pages

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{app['url']}/upload", wait_until="domcontentloaded")  # then wait for the sign-in form
    sign_in(page, OPS[0], OPS[2])
    page.get_by_text("Drop one or more CSV extracts").wait_for(timeout=60_000)
    nav = _nav(page)
    assert "Upload extracts" in nav and "Data health" in nav
    assert "Customer card" not in nav and "At-risk customers" not in nav and "Admin" not in nav
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Store" not in sidebar and "duckdb" not in sidebar, sidebar
    page.screenshot(path=str(artifacts / "access_ops.png"))
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("Sign in to cxdash").wait_for(timeout=60_000)
    assert "Traceback" not in page.content()
    page.close()


def test_a_wrong_password_is_refused_in_the_browser(app):
    page = app["browser"].new_page()
    page.goto(app["url"], wait_until="domcontentloaded")  # then wait for the sign-in form
    page.get_by_label("User name").wait_for(timeout=60_000)
    page.get_by_label("User name").fill(AGENT[0])
    page.get_by_label("Password", exact=True).fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(auth.WRONG).wait_for(timeout=30_000)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    page.close()
