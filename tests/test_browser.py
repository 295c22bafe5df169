"""End to end in a real browser: Debian's Chromium driven by Playwright against `streamlit run`."""

from __future__ import annotations

import pytest

from tests.browser_support import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(demo_app):
    return demo_app["url"]


@pytest.fixture(scope="module")
def browser(demo_app):
    return demo_app["browser"]


def test_overview_shows_the_demo_company_with_real_numbers(app_url, browser, artifacts):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url, wait_until="domcontentloaded")  # then wait for the sign-in form
    sign_in(page)
    page.get_by_text("Rows loaded per source").wait_for(timeout=60_000)
    metrics = page.locator('[data-testid="stMetric"]')
    metrics.first.wait_for(timeout=30_000)
    texts = [metrics.nth(i).inner_text() for i in range(metrics.count())]
    customers = next(t for t in texts if t.startswith("Customers"))
    assert "3,000" in customers
    assert any(t.startswith("Revenue") for t in texts)
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # let plotly finish drawing before the picture
    shot = artifacts / "overview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert "Traceback" not in page.content()
    page.close()
