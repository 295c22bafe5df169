"""The first-visit tour of issue 16, in a real browser: each role signs in and does its main job on
one app and one demo company with a trained model, in order; a screenshot of each step lands in
``test-artifacts/tour_<n>_<role>_<step>.png``.

The executive changes the period; the journey owner drills a hotspot to a customer's timeline and
exports the cohort; the agent opens the top at-risk customer's card from the list and marks them
contacted; ops uploads a public file; the admin finds each of those acts in the audit log.
(That every role can open every page it may, and no page shows a raw value, is the page walk's
job: tests/test_page_walk.py.)
"""

from __future__ import annotations

import csv
import json
import re

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.risk.activation import at_risk
from cxdash.store.database import open_store
from tests.browser_support import all_gone, sign_in
from tests.browser_support import settle as settle_run
from tests.conftest import ensure_user
from tests.test_journeys_browser import _from_day, _set_from_year
from tests.test_upload_browser import _choose_kind

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.writes_demo_app]

VIEWPORT = {"width": 1440, "height": 900}
PEOPLE = {
    "executive": ("tour-exec", "executive's long password"),
    "journey_owner": ("tour-journeys", "journey owner's long password"),
    "ops": ("tour-ops", "ops person's long password"),
    "agent": ("tour-agent", "agent's long password"),
    "admin": ("tour-admin", "admin's long password"),
}


@pytest.fixture(scope="module")
def tour(demo_app):
    """The session's shared demo app with the tour's people added. The tour writes (a mark, an upload),
    so it is marked ``writes_demo_app`` and runs after every other test on that app."""
    for role, (name, password) in PEOPLE.items():
        ensure_user(demo_app["db"], name, role, password)
    return demo_app


def settle(page, timeout_ms: int = 120_000) -> None:
    """Settled, and a page still computing shows nothing (or its title only) below the title."""
    settle_run(page, timeout_ms, min_lines=3)


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    settle(page)


def no_errors(page, where: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception is shown on {where}"
    assert "Traceback" not in page.content(), where


def start(tour, role: str):
    page = tour["browser"].new_page(viewport=VIEWPORT, accept_downloads=True)
    page.goto(tour["url"], wait_until="domcontentloaded")  # then wait for the sign-in form
    name, password = PEOPLE[role]
    sign_in(page, name, password)
    settle(page)
    return page


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"tour_{name}.png"))


def number(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def metric(page, label: str) -> str:
    card = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return card.locator('[data-testid="stMetricValue"]').inner_text().strip()


def grid_rows(page) -> list[list[str]]:
    """The first data grid's rows as text, from the accessible table Streamlit keeps beside the canvas."""
    return page.evaluate(
        """() => [...document.querySelector('[data-testid="stDataFrame"]').querySelectorAll('tbody tr')]
              .map(r => [...r.querySelectorAll('td')].map(td => td.textContent.trim()))"""
    )


def audit(db: str) -> pd.DataFrame:
    store = open_store(db, create=False)
    with store.connect() as conn:
        frame = pd.read_sql(sa.text("select actor, action, detail from audit_log"), conn)
    store.dispose()
    return frame


def test_each_role_does_its_main_job_on_its_first_visit(tour, artifacts, public_data):
    # 1. The executive widens the period on Shared KPIs: the page says the new period and its numbers move.
    page = start(tour, "executive")
    open_page(page, "Shared KPIs")
    no_errors(page, "Shared KPIs")
    shot(page, artifacts, "1_executive_shared_kpis")
    before = page.locator('[data-testid="stMain"]').inner_text()
    assert "(90 days)" in before and "vs the previous 90 days" in before
    year, _month, _day = _from_day(page)
    _set_from_year(page, year - 1, "Shared KPIs")
    # the rerun the new date starts can begin after a quiet moment: wait for the new period's words
    page.get_by_text(re.compile(r"\((36[0-9]|4[0-5][0-9]) days\)")).first.wait_for(timeout=120_000)
    settle(page)
    after = page.locator('[data-testid="stMain"]').inner_text()
    days = int(re.search(r"\(([\d,]+) days\)", after).group(1).replace(",", ""))
    assert 360 <= days <= 460
    assert f"vs the previous {days:,} days" in after
    assert _from_day(page)[0] == year - 1
    shot(page, artifacts, "2_executive_period_widened")
    page.close()

    # 2. The journey owner drills a hotspot down to one customer's timeline and exports the cohort:
    #    the file holds the rows the page announced.
    page = start(tour, "journey_owner")
    open_page(page, "Journeys & friction")
    no_errors(page, "Journeys")
    shot(page, artifacts, "3_journey_owner_journeys")
    assert page.get_by_text(re.compile(r"^Period: .* \(90 days\), the same as on Shared KPIs")).count() == 1
    # the hotspots name who to call in words, never a bare code
    assert page.get_by_text("Who to call: the owner recorded on the loaded sources").count() == 1
    page.get_by_role("heading", name="Drill down").scroll_into_view_if_needed()
    counted_text = page.get_by_text(re.compile(r"in this hotspot in the period, every one listed")).inner_text()
    counted = number(re.match(r"([\d,]+) customers? in this hotspot", counted_text).group(1))
    assert f"of {counted:,}" in counted_text  # every one listed, page by page
    export_text = page.get_by_text(re.compile(r"^The export holds")).first.inner_text()  # the hotspot's
    exported, of = (
        number(x) for x in re.match(r"The export holds ([\d,]+) customers? of the ([\d,]+)", export_text).groups()
    )
    assert of == counted and 0 < exported <= counted
    if exported < counted:  # who was left out and why, in exact numbers
        assert f"{counted - exported:,} customer" in export_text and "marketing consent" in export_text
    page.get_by_text("Their whole history, oldest first").scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    assert page.get_by_label("Open one customer's timeline").count() == 1
    shot(page, artifacts, "4_journey_owner_timeline")
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Export cohort (CSV)").click()
    path = tour["root"] / "cohort.csv"
    download.value.save_as(path)
    with open(path, newline="") as f:
        cohort = list(csv.DictReader(f))
    assert len(cohort) == exported
    assert all("***" in (r["email"] or "***") for r in cohort)  # contact details leave masked
    # the file is built when clicked, and the audit entry written with it (the click does not rerun the page)
    log = audit(tour["db"])
    exports = log[(log["actor"] == PEOPLE["journey_owner"][0]) & (log["action"] == "export")]
    assert (download.value.suggested_filename, exported) in [
        (d["file"], d["rows"]) for d in map(json.loads, exports["detail"])
    ]
    page.close()

    # 3. The agent opens the top at-risk customer's card from the list and marks them contacted.
    store = open_store(tour["db"], create=False)
    top = at_risk(store, limit=1)
    store.dispose()
    customer_id = top["customer_id"].iloc[0]
    page = start(tour, "agent")
    open_page(page, "At-risk customers")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    box = grid.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]  # next best action on screen
    overflow = grid.evaluate(
        "g => { const s = g.querySelector('.dvn-scroller'); return s.scrollWidth - s.clientWidth; }"
    )
    assert overflow <= 0  # no sideways scrolling inside the list either
    headers = grid.evaluate("g => [...g.querySelectorAll('th')].map(t => t.textContent.trim())")
    assert {"customer", "12-month value (USD)", "top reason", "next best action · owner", "status"} <= set(headers)
    rows = grid_rows(page)
    assert customer_id in rows[0] and "open" in rows[0]
    name = rows[0][rows[0].index(customer_id) - 1]  # the name stands before the id
    crm = pd.read_csv(tour["dir"] / "crm_customers.csv", dtype=str).set_index("CustomerID")
    assert name == crm.loc[customer_id, "Full Name"]  # the CRM's name for that customer
    shot(page, artifacts, "5_agent_at_risk")
    page.mouse.click(box["x"] + 100, box["y"] + 36 + 34)  # the top row's name
    page.get_by_text("Why they might leave").wait_for(timeout=60_000)
    settle(page)
    assert page.locator("h2").first.inner_text().strip() == name
    assert metric(page, "Follow-up status") == "open"
    assert "@" in page.get_by_text(re.compile(r"^Email:")).first.inner_text()  # the agent sees how to reach them
    shot(page, artifacts, "6_agent_card")
    page.get_by_role("button", name="Mark contacted").click()
    page.get_by_text(f"Recorded {name} as contacted").wait_for(timeout=60_000)
    # the note stands above the tiles: the rerun may not have redrawn them yet when it appears
    settle(page)
    assert metric(page, "Follow-up status") == "contacted"
    assert f"by {PEOPLE['agent'][0]}" in page.inner_text("body")
    shot(page, artifacts, "7_agent_marked")
    open_page(page, "At-risk customers")
    assert metric(page, "Contacted") == "1"
    rows = grid_rows(page)
    assert customer_id in rows[0] and "contacted" in rows[0]
    assert "Why they might leave" not in page.inner_text("body")  # back on the list, not bounced to the card
    no_errors(page, "At-risk customers after the mark")
    page.close()

    # 4. Ops uploads a public file; it is stored under the name a person would give it.
    page = start(tour, "ops")
    open_page(page, "Upload extracts")
    page.locator('input[type="file"]').set_input_files(
        str(public_data / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    )
    page.get_by_text("Choose the kind of extract above").wait_for(timeout=120_000)
    _choose_kind(page, "customers")
    assert page.get_by_role("textbox", name="Source name").input_value() == "Telco customer churn"
    shot(page, artifacts, "8_ops_mapping")
    page.get_by_role("button", name="Check the file").click()
    page.get_by_text("All 7,043 rows pass").wait_for(timeout=60_000)
    page.get_by_role("button", name="Load 7,043 rows").click()
    page.get_by_text("loaded; read 7,043").wait_for(timeout=180_000)
    page.get_by_role("button", name="Upload another file").wait_for(timeout=30_000)
    assert all_gone(page.get_by_role("button", name=re.compile(r"^Load "))) == 0
    shot(page, artifacts, "9_ops_loaded")
    open_page(page, "Data health")
    no_errors(page, "Data health")
    assert page.get_by_text("Telco customer churn").count() > 0
    shot(page, artifacts, "10_ops_data_health")
    page.close()

    # 5. The admin finds each of those acts in the audit log, under the person who did it.
    page = start(tour, "admin")
    open_page(page, "Admin")
    no_errors(page, "Admin")
    shot(page, artifacts, "11_admin")
    page.close()
    log = audit(tour["db"])
    acts = set(zip(log["actor"], log["action"], strict=True))
    for role in PEOPLE:
        assert (PEOPLE[role][0], "sign_in") in acts, role
    assert (PEOPLE["journey_owner"][0], "export") in acts
    assert (PEOPLE["ops"][0], "upload") in acts
    store = open_store(tour["db"], create=False)
    with store.connect() as conn:
        marks = pd.read_sql(sa.text("select customer_id, status, actor from activation"), conn)
    store.dispose()
    assert marks.to_dict("records") == [
        {"customer_id": customer_id, "status": "contacted", "actor": PEOPLE["agent"][0]}
    ]
