"""The first-visit tour of issue 16, in a real browser: each demo role signs in, opens every page it
may open, and does its main job. A screenshot of each step lands in ``test-artifacts/tour_*.png``.

One app, one demo company with a trained model, five people (one per role), in order: the
executive changes the period, the journey owner drills a hotspot to a customer's timeline and
exports it, ops uploads a public file, the agent opens the top at-risk customer's card from the
list and marks them contacted, and the admin finds every one of those acts in the audit log.
"""

from __future__ import annotations

import shutil

import pytest

from cxdash.auth import ROLE_PAGES
from cxdash.ui.frame import PAGE_REGISTRY
from tests.browser_support import chromium, require_browser, running_app, sign_in

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1440, "height": 900}
PEOPLE = {
    "executive": ("tour-exec", "executive's long password"),
    "journey_owner": ("tour-journeys", "journey owner's long password"),
    "ops": ("tour-ops", "ops person's long password"),
    "agent": ("tour-agent", "agent's long password"),
    "admin": ("tour-admin", "admin's long password"),
}
TITLES = {file: title for file, title, _icon, _section in PAGE_REGISTRY}


def pages_of(role: str) -> list[str]:
    """The titles of the pages ``role`` may open, in the navigation's order."""
    allowed = ROLE_PAGES[role]
    return [title for file, title in TITLES.items() if allowed == "*" or file in allowed]


@pytest.fixture(scope="module")
def tour(trained_demo, tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("tour")
    path = root / "tour.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)  # the tour writes: its own copy
    url = f"duckdb:///{path}"
    users = {name: (role, password) for role, (name, password) in PEOPLE.items()}
    with running_app(url, root / "server.log", users=users) as base, chromium() as browser:
        yield {"url": base, "db": url, "browser": browser, "root": root}


def settle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the app has finished running the page: Streamlit's running indicator is gone and
    the main block's text has stopped changing for a couple of seconds."""
    main = page.locator('[data-testid="stMain"]')
    status = page.locator('[data-testid="stStatusWidget"]')
    waited, last, stable = 0, None, 0
    while waited < timeout_ms:
        page.wait_for_timeout(500)
        waited += 500
        text = main.inner_text() if main.count() else ""
        running = status.count() > 0 and status.first.is_visible()
        # a page still computing shows nothing (or its title only) below the title
        stable = stable + 1 if (text == last and not running and len(text.splitlines()) > 2) else 0
        last = text
        if stable >= 4:
            return
    raise AssertionError(f"the page was still changing after {timeout_ms / 1000:.0f} s")


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    settle(page)


def no_errors(page, where: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception is shown on {where}"
    assert "Traceback" not in page.content(), where


def start(tour, role: str):
    page = tour["browser"].new_page(viewport=VIEWPORT, accept_downloads=True)
    page.goto(tour["url"], wait_until="networkidle")
    name, password = PEOPLE[role]
    sign_in(page, name, password)
    settle(page)
    return page


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"tour_{name}.png"))


@pytest.mark.parametrize("role", list(PEOPLE))
def test_every_role_opens_every_page_it_may(tour, artifacts, role):
    page = start(tour, role)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    for file, title in TITLES.items():
        allowed = ROLE_PAGES[role] == "*" or file in ROLE_PAGES[role]
        assert (title in nav) == allowed, (role, title)
    for title in pages_of(role):
        open_page(page, title)
        no_errors(page, f"{title} as {role}")
        shot(page, artifacts, f"{role}_{title.split()[0].lower().strip('&')}")
    page.close()
