"""Every page runs headless (AppTest) on the demo company and on an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cxdash.store.database import open_store

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(p.name for p in (REPO / "pages").glob("*.py"))


@pytest.fixture
def demo_env(demo_store, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", demo_store["url"])
    return demo_store


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_company_without_exceptions(demo_env, page):
    at = AppTest.from_file(str(REPO / "pages" / page), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]


def test_the_app_routes_to_the_overview_by_default(demo_env):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Overview"


def test_overview_leads_with_the_headline_numbers(demo_env):
    at = AppTest.from_file(str(REPO / "pages" / "overview.py"), default_timeout=60).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers"] == "3,000"
    assert set(metrics) == {"Customers", "Active (last 30 days)", "Churned", "Revenue"}
    lead = at.markdown[0].value
    assert "3,000 customers" in lead and "7 sources" in lead
    table = at.dataframe[0].value
    assert set(table["source"]) == {"crm", "web", "marketing", "helpdesk", "billing", "subscriptions", "sales"}


def test_an_empty_store_says_how_to_load_data(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    open_store(url).dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = AppTest.from_file(str(REPO / "pages" / "overview.py"), default_timeout=60).run()
    assert not at.exception
    assert "No data loaded yet" in at.info[0].value
