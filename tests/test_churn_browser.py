"""The churn definition in a real browser: the Telco export's snapshot KPIs on Shared KPIs, and the
SaaS export's definitions side by side on Data health, where ops choose one."""

from __future__ import annotations

import json

import pytest

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import open_store
from tests import saas_company
from tests.browser_support import chromium, require_browser, running_app, sign_in

pytestmark = pytest.mark.browser
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError

TELCO = {
    "kind": "customers",
    "columns": {"customer_id": "customerID", "churn_label": "Churn", "plan": "Contract", "segment": "InternetService"},
}


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with chromium() as b:
        yield b


def _metrics(page) -> dict[str, str]:
    cards = page.locator('[data-testid="stMetric"]')
    cards.first.wait_for(timeout=60_000)
    out = {}
    for i in range(cards.count()):
        label = cards.nth(i).locator('[data-testid="stMetricLabel"]').inner_text().strip()
        out[label] = cards.nth(i).locator('[data-testid="stMetricValue"]').inner_text().strip()
    return out


def test_the_telco_export_shows_its_snapshot_kpis_with_the_churn_label(
    public_data, browser, artifacts, tmp_path_factory
):
    import pandas as pd

    root = tmp_path_factory.mktemp("telco_browser")
    url = f"duckdb:///{root / 'telco.duckdb'}"
    store = open_store(url)
    csv = public_data / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    ingest_file(store, csv, source="crm", mapping=Mapping.from_dict(TELCO))
    store.dispose()
    raw = pd.read_csv(csv)
    rate = (raw["Churn"] == "Yes").mean()
    assert round(rate, 4) == 0.2654 and len(raw) == 7043  # SOURCE.md: 1,869 of 7,043

    with running_app(url, root / "server.log") as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(f"{app}/executive", wait_until="networkidle")
        sign_in(page)
        page.get_by_text("Churn by customer group").wait_for(timeout=90_000)
        cards = _metrics(page)
        assert cards["Customers"] == "7,043"
        assert cards["Churn rate (logo)"] == f"{rate:.1%}" == "26.5%"
        body = page.inner_text("body")
        assert "label:crm" in body and "a snapshot" in body
        assert "need dated data" in body  # which figures a snapshot cannot give, in words
        assert "1,869 have churned, 26.5%" in body.replace("**", "")  # the answer first, in words
        page.wait_for_timeout(1000)
        page.screenshot(path=str(artifacts / "churn_telco_shared_kpis.png"), full_page=True)
        assert "Traceback" not in page.content()
        page.close()


@pytest.mark.slow
def test_data_health_offers_the_saas_definitions_and_choosing_one_moves_the_overview(
    browser, artifacts, tmp_path_factory
):
    root = tmp_path_factory.mktemp("saas_browser")
    company = saas_company.build()
    files = company.write(root / "exports")
    url = f"duckdb:///{root / 'saas.duckdb'}"
    store = open_store(url)
    for name, mapping in saas_company.MAPPINGS.items():
        ingest_file(store, files[name], source=name, mapping=Mapping.from_dict(json.loads(json.dumps(mapping))))
    from cxdash.jobs import summaries

    summaries.refresh(store)
    store.dispose()
    flagged = int((company.accounts["churn_flag"] == "True").sum())
    events = company.churn_events["account_id"].nunique()

    with running_app(url, root / "server.log") as app:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(f"{app}/data_health", wait_until="networkidle")
        sign_in(page)
        page.get_by_text("Churn definition", exact=True).wait_for(timeout=90_000)
        page.get_by_role("button", name="Use this definition").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)  # the page has finished drawing
        body = page.inner_text("body")
        # suggested (not chosen yet), with the reading that disagrees, both figures in words
        assert "suggested from the data" in body and "events:churn_events" in body
        assert f"{events / 200:.1%} ({events} of 200 customers)" in body
        assert "subscriptions: 0.0% (0 of 200 customers)" in body
        page.wait_for_timeout(800)
        page.screenshot(path=str(artifacts / "churn_data_health_choice.png"), full_page=True)

        # choose the CRM label; the overview then counts its churned accounts and says so
        option = page.get_by_role("option", name="label:accounts")
        for _ in range(3):  # a click during a redraw can open a list that the redraw closes
            page.get_by_label("The company's churn definition").click()
            try:
                option.wait_for(timeout=10_000)
                break
            except PlaywrightTimeout:
                page.keyboard.press("Escape")
        option.click()
        page.get_by_role("button", name="Use this definition").click()
        try:
            page.get_by_text("[label:accounts], chosen by the company").wait_for(timeout=120_000)
        except Exception:
            page.screenshot(path=str(artifacts / "churn_data_health_choice_failed.png"), full_page=True)
            print((root / "server.log").read_text()[-3000:])
            raise
        page.get_by_role("link", name="Overview").click()
        page.get_by_text("Rows loaded per source").wait_for(timeout=90_000)
        cards = _metrics(page)
        assert cards["Churned"] == f"{flagged:,}"
        body = page.inner_text("body")
        assert "chosen by the company" in body and "label:accounts" in body
        page.wait_for_timeout(800)
        page.screenshot(path=str(artifacts / "churn_overview_after_choice.png"), full_page=True)
        assert "Traceback" not in page.content()
        page.close()
