"""The journey owner's task in a real browser (Chromium, 1440x900), issue 16: change the period,
drill a hotspot down to one customer's timeline, export the cohort and find in the file exactly the
number of rows the page announced; and the period chosen on Journeys holds on Shared KPIs."""

from __future__ import annotations

import csv
import re

import pytest

from tests.browser_support import chromium, require_browser, running_app, sign_in

OWNER = ("journey-owner", "journey_owner", "journey-owner-password-0")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _shot(page, artifacts, name: str, heading: str | None = None) -> None:
    if heading:
        page.get_by_role("heading", name=heading).scroll_into_view_if_needed()
        page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts / f"journeys_{name}.png"))


def _wait_idle(page) -> None:
    """Until Streamlit's run has finished (its status widget gone) and the page settled."""
    page.wait_for_timeout(600)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
    page.wait_for_timeout(400)


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
def test_a_journey_owner_changes_the_period_drills_to_a_timeline_and_exports_what_the_page_counts(
    demo_store, tmp_path, artifacts
):
    require_browser()
    name, role, password = OWNER
    with (
        running_app(demo_store["url"], tmp_path / "server.log", users={name: (role, password)}) as url,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        page.goto(f"{url}/journeys", wait_until="networkidle")
        sign_in(page, name, password)
        page.get_by_text("Identified customers").wait_for(timeout=120_000)
        _wait_idle(page)
        period = page.get_by_text(re.compile(r"^Period: .* \(90 days\), the same as on Shared KPIs"))
        assert period.count() == 1
        _shot(page, artifacts, "1_opened")

        # the owner widens the period to a year: the caption and the headcount follow
        before = _number(page.locator('[data-testid="stMetricValue"]').first.inner_text())
        year, month, day = _from_day(page)
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

        # the hotspots name who to call in words, never a bare code
        _shot(page, artifacts, "3_hotspots", "Friction hotspots")
        assert page.get_by_text("Who to call: the owner recorded on the loaded sources").count() == 1

        # drill down: the caption says how many the hotspot counts, every one listed page by page
        page.get_by_role("heading", name="Drill down").scroll_into_view_if_needed()
        counted_text = page.get_by_text(re.compile(r"in this hotspot in the period, every one listed")).inner_text()
        counted = _number(re.match(r"([\d,]+) customers? in this hotspot", counted_text).group(1))
        assert f"of {counted:,}" in counted_text
        export_text = page.get_by_text(
            re.compile(r"^The export holds")
        ).first.inner_text()  # the hotspot's, above the edge one
        exported, of = (
            _number(x) for x in re.match(r"The export holds ([\d,]+) customers? of the ([\d,]+)", export_text).groups()
        )
        assert of == counted
        if exported < counted:  # who was left out and why, in exact numbers
            assert f"{counted - exported:,} customer" in export_text and "marketing consent" in export_text
        _shot(page, artifacts, "4_drilldown", "Drill down")

        # one customer's timeline
        timeline = page.get_by_text("Their whole history, oldest first")
        timeline.scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(artifacts / "journeys_5_timeline.png"))
        assert page.get_by_label("Open one customer's timeline").count() == 1

        # export: the file holds exactly the rows the page announced
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Export cohort (CSV)").click()
        path = tmp_path / "cohort.csv"
        download.value.save_as(path)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == exported > 0
        assert all("***" in (r["email"] or "***") for r in rows)  # contact details leave masked
        assert "Traceback" not in page.content()
        page.close()


@pytest.mark.browser
def test_a_period_chosen_on_journeys_holds_on_shared_kpis(demo_store, tmp_path, artifacts):
    require_browser()
    with running_app(demo_store["url"], tmp_path / "server.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}/journeys", wait_until="networkidle")
        sign_in(page)
        page.get_by_text("Identified customers").wait_for(timeout=120_000)
        _wait_idle(page)
        year, month, day = _from_day(page)
        chosen = (year - 1, month, day)
        _set_from_year(page, year - 1, "Journeys & friction")
        _wait_idle(page)
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
        page.close()
