"""Journeys in a real browser (Chromium, 1440x900), issue 16: a longer period moves the page's numbers
and the period chosen there holds on Shared KPIs. (The journey owner's drill-down to a timeline and
the cohort export, checked against the rows the page announced, are step 2 of the first-visit tour:
tests/test_tour.py.)"""

from __future__ import annotations

import re

import pytest

from tests.browser_support import settle, sign_in


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _shot(page, artifacts, name: str, heading: str | None = None) -> None:
    if heading:
        page.get_by_role("heading", name=heading).scroll_into_view_if_needed()
        page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts / f"journeys_{name}.png"))


def _wait_idle(page) -> None:
    """Until Streamlit's run has finished and the page settled."""
    settle(page)


def _from_day(page) -> tuple[int, int, int]:
    """The From input's date as (year, month, day), read from its segments."""
    return tuple(
        int(page.get_by_role("spinbutton", name=f"{part}, From").get_attribute("aria-valuenow"))
        for part in ("year", "month", "day")
    )


def _set_from_year(page, year: int, heading: str) -> None:
    """Type a year into the From input and leave the field (the date commits when it loses focus)."""
    page.get_by_role("spinbutton", name="year, From").click()
    page.keyboard.type(str(year))
    page.wait_for_timeout(300)
    page.get_by_role("heading", name=heading).first.click()


@pytest.mark.browser
def test_a_period_chosen_on_journeys_moves_its_numbers_and_holds_on_shared_kpis(demo_app, artifacts):
    url = demo_app["url"]
    page = demo_app["browser"].new_page(viewport={"width": 1440, "height": 900})
    try:
        page.goto(f"{url}/journeys", wait_until="domcontentloaded")  # then wait for the sign-in form
        sign_in(page)
        page.get_by_text("Identified customers").wait_for(timeout=120_000)
        _wait_idle(page)
        _shot(page, artifacts, "1_opened")

        # a year instead of 90 days: the caption and the headcount follow
        before = _number(page.locator('[data-testid="stMetricValue"]').first.inner_text())
        year, month, day = _from_day(page)
        chosen = (year - 1, month, day)
        _set_from_year(page, year - 1, "Journeys & friction")
        _wait_idle(page)
        page.get_by_text(re.compile(r"^Period: .*\((36[0-9]|45[0-9]) days\)")).wait_for(timeout=60_000)
        after = before
        for _ in range(120):  # the metric is redrawn after the caption above it
            after = _number(page.locator('[data-testid="stMetricValue"]').first.inner_text())
            if after != before:
                break
            page.wait_for_timeout(500)
        assert after > before  # a longer period reaches more identified customers
        _wait_idle(page)
        _shot(page, artifacts, "2_period_changed")
        assert _from_day(page) == chosen
        page.get_by_role("link", name="Shared KPIs").click()
        page.get_by_role("heading", name="Shared KPIs").wait_for(timeout=120_000)
        page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)  # the KPIs drawn
        _wait_idle(page)
        assert _from_day(page) == chosen
        page.screenshot(path=str(artifacts / "journeys_6_period_on_shared_kpis.png"))
        page.get_by_role("link", name="Journeys").click()
        page.get_by_text("Identified customers").wait_for(timeout=120_000)
        _wait_idle(page)
        assert _from_day(page) == chosen  # and back again
    finally:
        page.close()
