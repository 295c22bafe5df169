"""The executive page ("Shared KPIs"): headless with AppTest, and in a real browser with Playwright.

The numbers on the cards are compared with ``cxdash.metrics`` computed directly (whose own numbers
are checked by hand and with pandas in test_kpis.py).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cxdash import metrics
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import open_store

PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError
REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "pages" / "executive.py")
TELCO_MAPPING = {
    "kind": "customers",
    "columns": {"customer_id": "customerID", "churn_label": "Churn", "plan": "Contract"},
}
RETAIL_MAPPING = {
    "kind": "transactions",
    "columns": {
        "customer_id": "CustomerID",
        "timestamp": "InvoiceDate",
        "quantity": "Quantity",
        "unit_price": "UnitPrice",
        "transaction_id": "InvoiceNo",
        "product": "Description",
    },
}


@pytest.fixture
def demo_env(demo_store, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", demo_store["url"])
    return demo_store


@pytest.fixture(scope="module")
def telco_url(public_data, tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('telco') / 'telco.duckdb'}"
    store = open_store(url)
    ingest_file(
        store,
        public_data / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv",
        source="crm",
        mapping=Mapping.from_dict(TELCO_MAPPING),
    )
    store.dispose()
    return url


@pytest.fixture(scope="module")
def retail_url(public_data, tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('retail') / 'retail.duckdb'}"
    store = open_store(url)
    ingest_file(
        store,
        public_data / "online_retail" / "online_retail_sample.csv",
        source="shop",
        mapping=Mapping.from_dict(RETAIL_MAPPING),
        reject_invalid=True,
    )
    store.dispose()
    return url


def _run(**query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_the_page_leads_with_the_numbers_and_flags_spring_blast(demo_env):
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Shared KPIs"
    store = open_store(demo_env["url"])
    with store.connect() as conn:
        report = metrics.kpi_report(conn, with_clv=False)
    store.dispose()
    cards = {m.label: m.value for m in at.metric}
    assert cards["Customers"] == f"{report.value('customers'):,}"
    assert cards["Retention"] == f"{report.value('retention_rate'):.1%}"
    assert cards["Silence metric"] == f"{report.value('silence_rate'):.1%}"
    assert cards["Repeat contacts"] == f"{report.value('repeat_contact_rate'):.1%}"
    assert cards["Predicted CLV"] != "—"
    assert cards["Activation (high-risk acted on)"] == "—"  # unknown: a dash, with the reason in its help
    # The lead sentence states the period and the headline shares, before anything else.
    start, last = report.period.start, report.period.end - timedelta(days=1)
    assert f"{start.day} {start:%b %Y} – {last.day} {last:%b %Y}" in at.markdown[0].value
    # spring_blast is called out above the cards, in red.
    alarm = at.error[0].value
    assert "spring_blast" in alarm.replace("\\", "") and "90-day retention" in alarm
    assert any("spring_blast" in str(v) for v in at.dataframe[0].value["cohort"])
    # The default view goes into the address bar so it can be shared.
    assert at.query_params["from"] == report.period.start.date().isoformat()


def test_every_change_names_its_comparison_and_money_its_currency(demo_env):
    import pandas as pd

    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    # The demo's billing extract records its currency: read it straight from the CSV.
    billing = pd.read_csv(demo_env["dir"] / "billing_transactions.csv", dtype=str)
    currency_column = next(c for c in billing.columns if "currenc" in c.lower())
    (currency,) = billing[currency_column].str.strip().str.upper().dropna().unique()
    deltas = [m for m in at.metric if m.delta]
    assert len(deltas) >= 10
    for m in deltas:  # the default period is 90 days: every change says against what
        assert m.delta.endswith("vs the previous 90 days"), (m.label, m.delta)
    money = {m.label: m.value for m in at.metric if "CLV" in m.label}
    assert money and all(v.endswith(f" {currency}") for v in money.values()), money
    # Durations in hours or minutes, never bare seconds.
    resolution = next(m for m in at.metric if m.label == "Median time to resolution")
    assert resolution.value.endswith((" h", " min", " days"))


def test_the_silence_card_and_the_monthly_trend_say_why_they_differ(demo_env):
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    store = open_store(demo_env["url"])
    with store.connect() as conn:
        report = metrics.kpi_report(conn, with_clv=False)
        monthly = metrics.kpi_table(conn, metrics.monthly_periods(metrics.as_of(conn), 12))
    store.dispose()
    card, low, high = report.value("silence_rate"), monthly["silence_rate"].min(), monthly["silence_rate"].max()
    assert card < low  # the 90-day window catches more contacts than any one month: the reason for the words
    explained = [c.value for c in at.caption if "silence metric is" in c.value]
    assert len(explained) == 1
    assert f"{card:.1%}" in explained[0] and f"{low:.1%}" in explained[0] and f"{high:.1%}" in explained[0]
    assert "each month" in explained[0] and "90 days" in explained[0]


def test_the_conflict_table_reads_in_words_with_units(demo_env):
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert not [c for c in table.columns if "_" in str(c)], list(table.columns)
    cells = table.astype(str).to_numpy().ravel().tolist()
    assert not {"None", "nan", "NaN", "<NA>"} & set(cells)
    import re

    spring = table[table["cohort"] == "spring_blast"].iloc[0]
    assert re.fullmatch(r"\d{1,3}(,\d{3})* new customers", spring["departmental KPI"]), spring["departmental KPI"]
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", spring["customers"])
    assert spring["group"] == "Marketing (marketing): campaign"  # the department spelled out, then its grouping
    groups = set(table["group"])
    assert "Customer support (support): team" in groups and "Billing (billing): region" in groups
    assert spring["p"] == "< 0.001" or re.fullmatch(r"0\.\d{2,3}|1\.00", spring["p"])
    assert re.fullmatch(r"\d{1,3}(,\d{3})* USD", spring["revenue / customer"]), spring["revenue / customer"]
    # Jargon is gone from the captions: the CLV model is described in plain words.
    captions = " ".join(c.value for c in at.caption)
    assert "Gamma-Gamma" not in captions and "p -> inf" not in captions and "→" not in captions
    assert "how often, how recently and how much they bought" in captions


def test_a_shared_link_restores_the_filters_and_the_numbers_follow(demo_env):
    at = _run(campaign="spring_blast", repeat_days="14", **{"from": "2026-05-01", "to": "2026-07-31"})
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["executive_campaign"] == ["spring_blast"]
    assert at.session_state["executive_repeat_days"] == 14
    store = open_store(demo_env["url"])
    with store.connect() as conn:
        period = metrics.Period.from_dates(date(2026, 5, 1), date(2026, 7, 31))
        table = metrics.kpi_table(conn, [period], metrics.Filters(campaign=["spring_blast"]), repeat_days=14).loc[0]
    store.dispose()
    cards = {m.label: m.value for m in at.metric}
    assert cards["Customers"] == f"{int(table['customers']):,}"
    assert cards["Churn rate (logo)"] == f"{table['churn_rate']:.1%}"
    # Changing a filter on the page changes the numbers and the link.
    at.multiselect(key="executive_campaign").set_value([]).run()
    assert {m.label: m.value for m in at.metric}["Customers"] != cards["Customers"]
    assert "campaign" not in at.query_params


def test_an_uploaded_telco_table_uses_the_churn_label_and_says_so(telco_url, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", telco_url)
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    cards = {m.label: m.value for m in at.metric}
    assert cards["Customers"] == "7,043"
    assert cards["Churn rate (logo)"] == f"{1869 / 7043:.1%}"  # SOURCE.md: 1,869 of 7,043 churned
    text = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
    text += " ".join(i.value for i in at.info)  # the churn definition, suggested (not chosen): an info box
    assert "label" in text
    assert any("no dates" in i.value or "churn dates" in i.value for i in at.info)


def test_online_retail_shows_the_clv_holdout_check(retail_url, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", retail_url)
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("purchase days" in m.value for m in at.markdown)  # computed on demand only
    at.toggle(key="executive_run_holdout").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    body = " ".join(m.value for m in at.markdown)
    assert "purchase days" in body and "Predicted" in body
    assert {m.label: m.value for m in at.metric}["Historical CLV (to date)"] != "—"


def test_an_empty_store_says_how_to_load_data(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    open_store(url).dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = _run()
    assert not at.exception
    assert "No data loaded yet" in at.info[0].value


# ---------------------------------------------------------------------------------- in a real browser


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_in_a_real_browser_on_demo_telco_and_online_retail(
    demo_app, telco_url, retail_url, artifacts, tmp_path
):
    from tests import browser_support as bs

    # the demo on the session's shared demo app (tests/conftest.py); the two public files on their own
    _check_in_browser(demo_app["browser"], demo_app["url"], "demo", "spring_blast", artifacts)
    for name, url, must_show in [("telco", telco_url, "7,043"), ("online_retail", retail_url, "Historical CLV")]:
        with bs.running_app(url, tmp_path / f"{name}.log") as app_url:
            _check_in_browser(demo_app["browser"], app_url, name, must_show, artifacts)


def _check_in_browser(browser, app_url: str, name: str, must_show: str, artifacts) -> None:
    from tests import browser_support as bs

    extra_shots = {
        "demo": ["Where departmental KPIs pull against the shared ones", "Trends", "Retention by signup cohort"],
        "online_retail": ["Trends"],
    }
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    # Through the router (app.py), as a user arrives: open the app, pick the page.
    page.goto(app_url, wait_until="domcontentloaded")  # then wait for the sign-in form
    bs.sign_in(page)  # running_app creates users, so every new session signs in
    page.get_by_role("link", name="Shared KPIs").click()
    page.get_by_role("heading", name="Shared KPIs").wait_for(timeout=60_000)
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=90_000)
    page.get_by_text(must_show).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)  # let plotly finish drawing
    assert "Traceback" not in page.content()
    assert "from=" in page.url or name == "telco"  # the view is in the link
    page.screenshot(path=str(artifacts / f"executive_{name}.png"))
    assert (artifacts / f"executive_{name}.png").stat().st_size > 30_000
    for section in extra_shots.get(name, []):
        page.get_by_role("heading", name=section).scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts / f"executive_{name}_{section.split()[0].lower()}.png"))
    if name == "online_retail":
        page.get_by_text("Does the CLV model predict well?").click()
        toggle = page.get_by_role("switch", name="Run the check")
        shown = page.get_by_text("predicted their purchase days", exact=False).first
        for _ in range(3):  # a click during a redraw can be lost: click until the toggle is on
            if not toggle.is_checked():
                page.get_by_text("Run the check").click()
            try:
                shown.wait_for(timeout=60_000)
                break
            except PlaywrightTimeout:
                continue
        shown.wait_for(timeout=60_000)
        shown.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts / "executive_online_retail_holdout.png"))
    page.close()


def test_charts_export_as_png_through_kaleido_and_chromium(demo_store):
    from cxdash.ui import executive_charts as charts
    from tests import browser_support as bs

    bs.require_browser()

    store = open_store(demo_store["url"])
    with store.connect() as conn:
        frame = metrics.conflicts(conn)
    store.dispose()
    png = charts.to_png(charts.conflict_quadrants(frame), width=900, height=420)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (900, 420)


def test_table_downloads_neutralise_formula_looking_cells():
    import pandas as pd

    from cxdash.ui import executive as ex

    frame = pd.DataFrame({"campaign": ['=HYPERLINK("x")', "spring_blast"], "new_customers": [3, -4]})
    text = ex.csv(frame).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",-4" in text
    matrix = pd.DataFrame({"m1": [0.5]}, index=pd.Index(["@cohort"], name="cohort"))
    assert "'@cohort" in ex.csv(matrix, index=True).decode("utf-8-sig")
