"""The at-risk list, the customer card and the churn-model page: headless (AppTest) and in a
real browser (screenshots in the test artifacts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.risk import at_risk, model_versions
from cxdash.risk.card import mask_email, mask_phone
from cxdash.store.database import open_store

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "pages"


@pytest.fixture
def trained_env(trained_demo, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", trained_demo["url"])
    return trained_demo


def _run(page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_model_page_leads_with_the_validated_quality(trained_env):
    at = _run("model.py")
    m = trained_env["model"].metrics
    assert f"ROC AUC {m['roc_auc']:.3f}" in at.markdown[0].value
    assert "time-based validation" in at.markdown[0].value
    metrics = {x.label: x.value for x in at.metric}
    assert metrics["Top-decile lift"] == f"{m['top_decile_lift']:.1f}×"
    assert len(at.get("plotly_chart")) == 3


def test_at_risk_page_lists_the_top_decile_and_filters_by_owner(trained_env):
    at = _run("at_risk.py")
    store = open_store(trained_env["url"])
    top = at_risk(store, limit=100_000)
    store.dispose()
    table = at.dataframe[0].value
    assert len(table) == len(top) and list(table["customer id"]) == list(top["customer_id"])
    assert f"{len(top):,} customers" in at.markdown[0].value
    at.multiselect(key="at_risk_departments").set_value(["web"]).run()
    assert not at.exception
    filtered = at.dataframe[0].value
    assert 0 < len(filtered) < len(table)
    assert filtered["next best action · owner"].str.endswith(" · Web / digital (web)").all()
    # the filter's choices read as departments, not codes
    assert "Customer support (support)" in at.multiselect(key="at_risk_departments").options


def test_a_marked_customer_shows_its_new_status_at_once_though_the_list_is_cached(trained_demo, tmp_path, monkeypatch):
    import shutil

    from cxdash.risk import mark
    from cxdash.ui import risk

    path = tmp_path / "marked.duckdb"  # a copy: marks must not leak into the shared trained store
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = _run("at_risk.py")
    first, second = at.dataframe[0].value["customer id"].iloc[:2]
    assert set(at.dataframe[0].value["status"]) == {"open"}
    store = open_store(url)
    ids = at_risk(store, limit=2)["cx_id"].tolist()
    # another session (or the CLI) marks one customer: the next rerun shows it
    mark(store, ids[:1], "contacted", actor="ana")
    store.dispose()
    at.run()
    table = at.dataframe[0].value.set_index("customer id")
    assert table.loc[first, "status"] == "contacted" and table.loc[second, "status"] == "open"
    # this page's own mark action clears the cached list
    risk.mark(ids[1:2], "actioned", "ben")
    at.run()
    table = at.dataframe[0].value.set_index("customer id")
    assert table.loc[second, "status"] == "actioned"
    assert {m.label: m.value for m in at.metric}["Actioned"] == "1"


def test_customer_card_finds_a_customer_by_phone_in_another_format(trained_env):
    crm = pd.read_csv(trained_env["dir"] / "crm_customers.csv", dtype=str)
    store = open_store(trained_env["url"])
    top = at_risk(store, only_top_decile=False, limit=1)
    store.dispose()
    row = crm.set_index("CustomerID").loc[top["customer_id"].iloc[0]]
    at = AppTest.from_file(str(PAGES / "customer_card.py"), default_timeout=120)
    at.session_state["card_query"] = f"+1 ({row['Phone'][-10:-7]}) {row['Phone'][-7:]}"  # another format
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.header[0].value == row["Full Name"]
    assert "risk of leaving" in at.markdown[0].value and "next best action" in at.markdown[0].value
    # an admin sees the contact details in full (cxdash.governance.privacy.PERSONAL_DATA_ROLES)
    assert f"Email: {row['Email'].lower()}" in [t.value for t in at.text]
    timeline = at.dataframe[-1].value
    assert timeline["when"].is_monotonic_decreasing


def test_masking_keeps_only_a_hint():
    # the card masks as every page does (cxdash.governance.privacy): the first letter and the domain, the last two digits
    assert mask_email("ann.lee@example.com") == "a***@example.com"
    assert mask_phone("555-254-5727") == "***27"


def test_pages_explain_what_to_do_before_any_model_exists(demo_store, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", demo_store["url"])
    assert "No churn model yet" in _run("at_risk.py").info[0].value
    assert "No churn model has been trained yet" in _run("model.py").info[0].value
    card = _run("customer_card.py")
    assert "No churn model yet" in card.info[0].value and "Search for a customer" in card.info[1].value


def test_retrain_button_trains_a_new_version_with_a_labelled_table(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    n = 240
    contract = rng.choice(["monthly", "yearly"], n)
    churn = np.where(rng.random(n) < np.where(contract == "monthly", 0.5, 0.1), "Yes", "No")
    path = tmp_path / "accounts.csv"
    pd.DataFrame(
        {
            "AccountNo": [f"A{i:04d}" for i in range(n)],
            "Contract": contract,
            "Seats": rng.integers(1, 50, n),
            "Churn": churn,
        }
    ).to_csv(path, index=False)
    url = f"duckdb:///{tmp_path / 'labelled.duckdb'}"
    store = open_store(url)
    ingest_file(
        store,
        path,
        source="accounts",
        mapping=Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "AccountNo", "plan": "Contract"}}),
    )
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = _run("model.py")
    at.selectbox(key="model_label").set_value("Churn")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    versions = model_versions(store)
    assert list(versions["version"]) == [1] and versions["label_column"].iloc[0] == "Churn"
    assert "Model **v1**" in at.markdown[0].value
    store.dispose()


# ----------------------------------------------------------------------------- real browser
@pytest.mark.slow
@pytest.mark.browser
def test_the_three_pages_in_a_real_browser(demo_app, artifacts):
    from tests.browser_support import sign_in

    app, browser = demo_app["url"], demo_app["browser"]
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{app}/at_risk", wait_until="domcontentloaded")  # then wait for the sign-in form
    sign_in(page)  # every new browser session signs in (issue 7)
    page.get_by_text("Customers, highest risk × value first").wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "at_risk.png"), full_page=True)
    assert "Traceback" not in page.content()

    page.goto(f"{app}/customer_card", wait_until="domcontentloaded")  # then wait for the sign-in form
    sign_in(page)  # every new browser session signs in (issue 7)
    page.get_by_text("Why they might leave").wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "customer_card.png"), full_page=True)
    assert "Traceback" not in page.content()

    page.goto(f"{app}/model", wait_until="domcontentloaded")  # then wait for the sign-in form
    sign_in(page)  # every new browser session signs in (issue 7)
    page.get_by_text("What drives churn").wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "churn_model.png"), full_page=True)
    assert "Visited the cancel page" in page.content()
    page.close()
