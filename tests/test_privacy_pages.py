"""What leaves the screen (AppTest): small groups suppressed for roles that see aggregates only,
no customer without marketing consent in an outreach export, and every export in the audit log."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from cxdash import metrics
from cxdash.risk import at_risk
from cxdash.store import audit
from cxdash.store.database import open_store
from cxdash.ui import executive as ex
from tests.conftest import seed_session

REPO = Path(__file__).resolve().parents[1]
SUPPRESSED = "suppressed: fewer than 10 customers"


class _Files(dict):
    """File name -> bytes. A page may pass a callable that Streamlit runs only when the user
    clicks, after the script has finished: it is run here on first access, just as late."""

    def __getitem__(self, name):
        data = super().__getitem__(name)
        return data() if callable(data) else data


@pytest.fixture
def downloads(monkeypatch):
    """The files the pages offer, by file name. AppTest runs without Streamlit's media server, so
    the bytes of a download are caught on their way into ``download_button``."""
    files = _Files()
    original = DeltaGenerator.download_button

    def catch(self, label, data, file_name=None, *args, **kwargs):
        files[file_name] = data
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", catch)
    import streamlit as st

    monkeypatch.setattr(st, "download_button", lambda *a, **kw: catch(st._main, *a, **kw))
    return files


def _page(name: str, role: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / name), default_timeout=120)
    seed_session(at, f"test-{role}", role)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if isinstance(d.value, pd.DataFrame) and column in d.value.columns)


def _conflicts(url: str) -> pd.DataFrame:
    s = open_store(url)
    with s.connect() as conn:
        out = metrics.conflicts(conn)
    s.dispose()
    return out


@pytest.mark.slow
def test_an_executive_sees_no_figure_of_a_cohort_under_10_customers(small_demo, monkeypatch, downloads):
    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    monkeypatch.delenv("CXDASH_MIN_GROUP_SIZE", raising=False)
    truth = _conflicts(small_demo)
    small = truth[(truth["customers"] > 0) & (truth["customers"] < 10)]
    big = truth[truth["customers"] >= 10]
    assert len(small) and len(big), "the demo should have cohorts on both sides of k"

    at = _page("executive.py", "executive")
    # The page's table reads in words: a cohort is found by its group ("Marketing (marketing): campaign")
    # and name,
    # and a hidden figure is a dash.
    table = _table_with(at, "group").set_index(["group", "cohort"])
    for row in small.itertuples():
        shown = table.loc[(ex.cohort_group(row.department, row.cohort_by), row.cohort)]
        assert shown["suppression"] == SUPPRESSED
        assert shown["customers"] == shown["departmental KPI"] == shown["shared outcome"] == "—"
    for row in big.itertuples():
        shown = table.loc[(ex.cohort_group(row.department, row.cohort_by), row.cohort)]
        assert shown["customers"] == f"{row.customers:,}" and shown["suppression"] == ""
    assert any(f"{len(small)} of {len(truth)} cohorts" in c.value for c in at.caption)

    # The exported file holds what the screen holds: labels, no figures.
    exported = pd.read_csv(io.BytesIO(downloads["kpi_conflicts.csv"]), encoding="utf-8-sig")
    exported = exported.set_index(["department", "cohort_by", "cohort"])
    for row in small.itertuples():
        assert pd.isna(exported.loc[(row.department, row.cohort_by, row.cohort), "customers"])
        assert exported.loc[(row.department, row.cohort_by, row.cohort), "suppression"] == SUPPRESSED

    # Signup cohorts: the CSV of the retention matrix hides the small months too.
    matrix = pd.read_csv(io.BytesIO(downloads["cohort_retention.csv"]), encoding="utf-8-sig")
    tiny = matrix["suppression"] == SUPPRESSED
    assert tiny.any() and matrix.loc[tiny, "customers"].isna().all()
    assert (matrix.loc[matrix["suppression"].isna(), "customers"] >= 10).all()

    # An admin works with individual customers and sees every figure; k is configurable.
    admin = _page("executive.py", "admin")
    assert "suppression" not in _table_with(admin, "group").columns
    monkeypatch.setenv("CXDASH_MIN_GROUP_SIZE", str(int(small["customers"].max())))
    at = _page("executive.py", "executive")
    table = _table_with(at, "group").set_index(["group", "cohort"])
    largest_small = small.loc[small["customers"].idxmax()]
    assert (
        table.loc[
            (ex.cohort_group(largest_small.department, largest_small.cohort_by), largest_small.cohort), "customers"
        ]
        == f"{largest_small.customers:,}"
    )


def test_filters_that_leave_a_handful_of_customers_show_no_figures(small_demo, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    truth = _conflicts(small_demo)
    tiny = truth[(truth["cohort_by"] == "campaign") & (truth["customers"] < 10) & (truth["customers"] > 0)].iloc[0]
    at = AppTest.from_file(str(REPO / "pages" / "executive.py"), default_timeout=120)
    seed_session(at, "test-executive", "executive")
    at.query_params["campaign"] = tiny.cohort
    at.run()
    assert not at.exception
    assert any("fewer than 10 customers" in w.value for w in at.warning)
    assert not at.metric and not at.dataframe


def test_a_journey_owner_sees_rare_journeys_pooled(small_demo, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", small_demo)

    def customers(table: pd.DataFrame) -> pd.Series:  # shown as text, "1,234"
        return table["customers"].str.replace(",", "").astype(int)

    admin = _table_with(_page("journeys.py", "admin"), "journey")
    rare = admin[customers(admin) < 10]
    assert len(rare), "the small demo has journeys taken by fewer than 10 customers"
    owner = _table_with(_page("journeys.py", "journey_owner"), "journey")
    assert not owner["journey"].isin(rare["journey"]).any()
    pooled = owner[owner["suppression"] != ""]
    assert len(pooled) == 1 and pooled["journey"].iloc[0] == f"({len(rare)} rarer journeys suppressed)"
    assert customers(pooled).iloc[0] == customers(rare).sum()
    assert (customers(owner[owner["suppression"] == ""]) >= 10).all()


def test_each_journey_cohort_export_holds_its_own_cohort_when_clicked(small_demo, monkeypatch, downloads):
    """The cohort files are built on click, after the script ran: each must still be its own
    cohort (the hotspot's customers, the edge's cases), of consenting customers only."""
    from cxdash import journeys as jr
    from cxdash.governance import privacy

    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    at = _page("journeys.py", "admin")
    hotspot = at.selectbox(key="journeys_hotspot").value
    from datetime import date, datetime, timedelta

    from cxdash.jobs import views

    s = open_store(small_demo)
    with s.connect() as conn:
        # the page's cohort: the shared default period, every customer (no row cap)
        period = views.default_params(conn, "journeys.handoffs", {})
        first, last = (date.fromisoformat(d) for d in period["period"])
        since, until = datetime(first.year, first.month, first.day), datetime(last.year, last.month, last.day)
        until += timedelta(days=1)  # both days included
        moments = jr.friction_moments(repeat_days=7, since=since, until=until)
        cohort = jr.hotspot_customers(conn, hotspot, repeat_days=7, moments=moments, limit=None)
        consenting = privacy.consented_customers(conn)
    s.dispose()
    hot = pd.read_csv(io.BytesIO(downloads[f"cohort-{hotspot.replace(' ', '-')}.csv"]), encoding="utf-8-sig", dtype=str)
    assert "cx_id" in hot.columns and len(hot)
    assert set(hot["cx_id"]) == set(cohort["cx_id"]) & consenting
    edge = pd.read_csv(io.BytesIO(downloads["edge-cohort.csv"]), encoding="utf-8-sig", dtype=str)
    assert "case_id" in edge.columns and set(edge["case_id"]) <= consenting


@pytest.fixture
def trained_env(trained_demo, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", trained_demo["url"])
    return trained_demo


def test_the_crm_export_leaves_out_customers_without_marketing_consent(trained_env, downloads):
    crm = pd.read_csv(trained_env["dir"] / "crm_customers.csv", dtype=str)
    opted_in = set(crm.loc[crm["Marketing Opt-In"] == "yes", "CustomerID"])
    at = _page("at_risk.py", "agent")
    listed = set(at.dataframe[0].value["customer id"])
    without = listed - opted_in
    assert without, "the list should hold customers without consent, or this test proves nothing"

    exported = pd.read_csv(io.BytesIO(downloads["at_risk_customers.csv"]), dtype=str)
    assert set(exported["customer_id"]) == listed & opted_in
    assert not set(exported["customer_id"]) & without
    holds = f"Only customers with marketing consent: {len(without):,} without it left out."
    assert any(holds in c.value for c in at.caption)


def test_an_export_writes_who_what_and_how_many_rows_to_the_audit_log(trained_env):
    at = _page("at_risk.py", "agent")
    at.download_button(key="at_risk_export").click().run()
    assert not at.exception
    s = open_store(trained_env["url"])
    log = audit.recent(s, action="export", actor="test-agent", limit=1)
    listed = at_risk(s, limit=1000)
    s.dispose()
    assert len(log) == 1
    detail = json.loads(log.iloc[0]["detail"])
    crm = pd.read_csv(trained_env["dir"] / "crm_customers.csv", dtype=str)
    opted_in = set(crm.loc[crm["Marketing Opt-In"] == "yes", "CustomerID"])
    assert detail["file"] == "at_risk_customers.csv"
    assert detail["rows"] == int(listed["customer_id"].isin(opted_in).sum())
    assert "marketing consent" in detail["contains"]
    assert pd.Timestamp(log.iloc[0]["occurred_at"]) > pd.Timestamp.now("UTC").tz_localize(None) - pd.Timedelta("5min")


def test_every_download_in_the_app_goes_through_the_audited_helper():
    """A bare st.download_button would leave no trace in the audit log."""
    offenders = []
    for path in [*(REPO / "pages").glob("*.py"), *(REPO / "cxdash" / "ui").glob("*.py"), REPO / "app.py"]:
        if path.name == "disclosure.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if "download_button(" in line:
                offenders.append(f"{path.relative_to(REPO)}:{n}")
    assert offenders == [], "use cxdash.ui.disclosure.download: " + ", ".join(offenders)
