"""The shared KPIs, checked against numbers worked out independently.

* A six-customer company written as CSVs, loaded through ``ingest_file`` on DuckDB and on
  PostgreSQL (the ``store`` fixture), every KPI worked out by hand in the comments.
* The demo company's KPIs recomputed from its CSV extracts with plain pandas.
* The CLV calibration/holdout check on the online retail sample, recomputed with ``cxdash.metrics.clv``.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from cxdash import metrics
from cxdash.cli.main import main
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.metrics.clv import BGNBD
from cxdash.metrics.rfm import calibration_and_holdout, rfm_summary
from cxdash.store.database import open_store

# ---------------------------------------------------------------------------------- the hand-made company

CRM = """customer_id,email,signup_date,segment,region,plan,channel,campaign
C1,a@x.example,2024-01-10,consumer,EU,basic,paid,blast
C2,b@x.example,2024-01-20,smb,EU,pro,organic,
C3,c@x.example,2024-02-05,consumer,US,basic,paid,blast
C4,d@x.example,2024-03-01,smb,US,pro,referral,
C5,e@x.example,2024-04-15,consumer,EU,basic,paid,blast
C6,f@x.example,2024-02-01,smb,US,pro,organic,
"""
SUBSCRIPTIONS = """sub,customer_id,start,end,mrr
S1,C1,2024-01-10,2024-04-20,10
S2,C2,2024-01-20,,50
S3,C3,2024-02-05,2024-05-10,10
S4,C4,2024-03-01,,50
S5,C5,2024-04-15,2024-06-05,10
S6,C6,2024-02-01,,50
"""
# Tickets are keyed by email, as a helpdesk export is; the team is the handling department.
TICKETS = """ticket,email,opened,closed,topic,transfers,csat,team
T6,d@x.example,2024-03-15 09:00,2024-03-15 10:00,billing,0,4,support
T1,b@x.example,2024-05-02 09:00,2024-05-02 13:00,billing,0,5,billing
T2,b@x.example,2024-05-05 09:00,2024-05-06 09:00,billing,1,2,billing
T3,b@x.example,2024-05-20 09:00,2024-05-20 10:00,login,0,,tech
T5,e@x.example,2024-05-25 10:00,2024-05-28 10:00,billing,0,1,support
T4,d@x.example,2024-06-10 10:00,2024-06-10 12:00,billing,2,3,support
"""
TRANSACTIONS = """customer_id,ts,amount,status
C1,2024-01-10,10,paid
C1,2024-02-10,10,paid
C1,2024-03-10,10,paid
C2,2024-01-20,50,paid
C2,2024-02-20,50,paid
C2,2024-03-20,50,paid
C2,2024-04-20,50,paid
C2,2024-05-20,50,paid
C2,2024-05-21,50,failed
C2,2024-06-20,50,paid
C3,2024-02-05,10,paid
C3,2024-03-05,10,paid
C3,2024-04-05,10,paid
C4,2024-03-01,50,paid
C4,2024-04-01,50,paid
C4,2024-05-01,50,paid
C4,2024-06-01,50,paid
C4,2024-06-03,-20,refunded
C5,2024-04-15,10,paid
C5,2024-05-15,10,paid
C6,2024-02-01,50,paid
C6,2024-03-01,50,paid
C6,2024-04-01,50,paid
C6,2024-05-01,50,paid
C6,2024-06-01,50,paid
"""
EVENTS = """customer_id,ts,activity
C2,2024-06-30 18:00,feature_use
"""
MAPPINGS = {
    "crm": (
        "customers",
        CRM,
        {
            "customer_id": "customer_id",
            "email": "email",
            "signup_date": "signup_date",
            "segment": "segment",
            "region": "region",
            "plan": "plan",
            "acquisition_channel": "channel",
            "campaign": "campaign",
        },
    ),
    "subscriptions": (
        "subscriptions",
        SUBSCRIPTIONS,
        {
            "subscription_id": "sub",
            "customer_id": "customer_id",
            "start": "start",
            "end": "end",
            "mrr": "mrr",
        },
    ),
    "helpdesk": (
        "tickets",
        TICKETS,
        {
            "ticket_id": "ticket",
            "email": "email",
            "opened_at": "opened",
            "closed_at": "closed",
            "topic": "topic",
            "transfers": "transfers",
            "satisfaction": "csat",
            "department": "team",
        },
    ),
    "billing": (
        "transactions",
        TRANSACTIONS,
        {
            "customer_id": "customer_id",
            "timestamp": "ts",
            "amount": "amount",
            "status": "status",
        },
    ),
    "web": ("events", EVENTS, {"customer_id": "customer_id", "timestamp": "ts", "activity": "activity"}),
}
Q2 = metrics.Period.from_dates(date(2024, 4, 1), date(2024, 6, 30))  # previous: 1 Jan - 31 Mar 2024 (91 days)


@pytest.fixture
def tiny(store, tmp_path):
    for source, (kind, text, columns) in MAPPINGS.items():
        path = tmp_path / f"{source}.csv"
        path.write_text(text)
        ingest_file(store, path, source=source, mapping=Mapping.from_dict({"kind": kind, "columns": columns}))
    return store


def test_the_period_and_its_previous_period_have_the_same_length():
    assert (Q2.start, Q2.end) == (datetime(2024, 4, 1), datetime(2024, 7, 1))
    assert (Q2.previous.start, Q2.previous.end) == (datetime(2024, 1, 1), datetime(2024, 4, 1))
    with pytest.raises(ValueError, match="must end after"):
        metrics.Period(datetime(2024, 2, 1), datetime(2024, 1, 1))


def test_every_period_kpi_on_the_hand_made_company(tiny):
    with tiny.connect() as conn:
        table = metrics.kpi_table(conn, [Q2, Q2.previous])
        assert metrics.as_of(conn) == datetime(2024, 6, 30, 18, 0)
    q2, q1 = table.loc[0], table.loc[1]
    # All six had signed up by 1 July; C5 (15 Apr) had not by 1 April.
    assert (q2["customers"], q1["customers"]) == (6, 5)
    # At the start of Q2: C1, C2, C3, C4, C6 (C5 signs up later). C1 (20 Apr) and C3 (10 May) leave in Q2;
    # C5 leaves too (5 Jun) but was not a customer at the start.
    assert (q2["customers_at_start"], q2["churned_in_period"]) == (5, 2)
    assert q2["churn_rate"] == pytest.approx(2 / 5)
    assert q2["retention_rate"] == pytest.approx(3 / 5)
    # Subscriptions running on 1 April: S1 10, S2 50, S3 10, S4 50, S6 50 = 170 MRR; S1 and S3 end: 20.
    assert q2["revenue_churn_rate"] == pytest.approx(20 / 170)
    assert q2["renewal_rate"] == pytest.approx(3 / 5)
    # Nobody had signed up before 1 January: no base, no churn rate for Q1.
    assert q1["customers_at_start"] == 0 and np.isnan(q1["churn_rate"])
    # Active in Q2 and not churned by 1 July: C2, C4, C6 (C1, C3, C5 were active but left).
    assert q2["active_customers"] == 3
    # Q1: all five who had signed up were active and none had left by 1 April.
    assert q1["active_customers"] == 5
    # Contacts opened in Q2: T1 T2 T3 (C2), T5 (C5), T4 (C4) = 5. C6 is the only silent active customer.
    assert q2["contacts"] == 5
    assert q2["silence_rate"] == pytest.approx(1 / 3)
    assert q2["contacts_per_active_customer"] == pytest.approx(5 / 3)
    assert q1["silence_rate"] == pytest.approx(4 / 5)  # only C4 (T6) contacted in Q1
    # Repeats within 7 days on the same topic: T2 (3 days after T1, billing). T3 is another topic;
    # T4 comes 87 days after T6.
    assert q2["repeat_contact_rate"] == pytest.approx(1 / 5)
    assert q2["transfer_rate"] == pytest.approx(2 / 5)  # T2, T4
    # Resolved in Q2: T1 4 h, T2 24 h, T3 1 h, T5 72 h, T4 2 h; transfers 0+1+0+0+2; CSAT 5, 2, 1, 3.
    assert q2["handoffs_per_resolved"] == pytest.approx(3 / 5)
    assert q2["median_hours_to_resolution"] == pytest.approx(4.0)
    assert q2["satisfaction"] == pytest.approx(11 / 4)
    # Revenue in Q2 (failed payment out, refund in): C2 150, C3 10, C4 150 - 20, C5 20, C6 150.
    assert q2["revenue"] == pytest.approx(460.0)
    # Paid in Q1: C1 30, C2 150, C3 20, C4 50, C6 100 = 350; the same customers paid 0+150+10+130+150 in Q2.
    assert q2["net_revenue_retention"] == pytest.approx(440 / 350)
    # Revenue to date: C1 30, C2 300, C3 30, C4 180, C5 20, C6 250.
    assert q2["clv_historical_total"] == pytest.approx(810.0)
    assert q2["clv_historical_per_customer"] == pytest.approx(810 / 6)
    assert q1["clv_historical_total"] == pytest.approx(350.0)


def test_repeat_contact_window_is_adjustable(tiny):
    with tiny.connect() as conn:
        rates = {n: metrics.kpi_table(conn, [Q2], repeat_days=n).at[0, "repeat_contact_rate"] for n in (2, 7, 90)}
    # 2 days: T2 comes 3 days after T1, not a repeat. 90 days: T4 repeats T6 (87 days) as well.
    assert rates == pytest.approx({2: 0.0, 7: 0.2, 90: 0.4})


def test_filters_restrict_customers_and_departments(tiny):
    with tiny.connect() as conn:
        smb = metrics.kpi_table(conn, [Q2], metrics.Filters(segment=["smb"])).loc[0]
        billing = metrics.kpi_table(conn, [Q2], metrics.Filters(department=["billing"])).loc[0]
        blast = metrics.kpi_table(conn, [Q2], metrics.Filters(campaign=["blast"], region=["EU"])).loc[0]
    # smb: C2, C4, C6, none of whom left; contacts T1 T2 T3 T4; C6 silent.
    assert (smb["customers"], smb["active_customers"], smb["contacts"]) == (3, 3, 4)
    assert smb["churn_rate"] == 0.0 and smb["silence_rate"] == pytest.approx(1 / 3)
    # The billing team: T1 and T2 (a repeat); active through billing activity: C2, C4, C6.
    assert (billing["contacts"], billing["active_customers"]) == (2, 3)
    assert billing["repeat_contact_rate"] == pytest.approx(0.5)
    assert billing["churn_rate"] == pytest.approx(2 / 5)  # churn is about customers, not departments
    # blast in EU: C1 and C5; C1 in the base at the start of Q2 and gone by 20 April.
    assert (blast["customers"], blast["customers_at_start"], blast["churned_in_period"]) == (2, 1, 1)
    assert blast["revenue"] == pytest.approx(20.0)


def test_cohort_retention_matrix_by_hand(tiny):
    with tiny.connect() as conn:
        m = metrics.cohort_retention(conn)
    jan, feb, mar, apr = (pd.Timestamp(f"2024-0{i}-01") for i in (1, 2, 3, 4))
    assert list(m.index) == [jan, feb, mar, apr]
    assert m["customers"].tolist() == [2, 2, 1, 1]
    # Jan: C1 leaves in April (month 3), C2 stays. Feb: C3 leaves in May (month 3), C6 stays.
    assert m.loc[jan, [0, 1, 2, 3, 4, 5]].tolist() == [1, 1, 1, 0.5, 0.5, 0.5]
    assert m.loc[feb, [0, 1, 2, 3, 4]].tolist() == [1, 1, 1, 0.5, 0.5] and np.isnan(m.loc[feb, 5])
    assert m.loc[mar, [0, 1, 2, 3]].tolist() == [1, 1, 1, 1]
    # Apr: C5 leaves in June (month 2); June is the last month of data.
    assert m.loc[apr, [0, 1, 2]].tolist() == [1, 1, 0] and np.isnan(m.loc[apr, 3])


def test_coverage_and_the_report(tiny):
    with tiny.connect() as conn:
        report = metrics.kpi_report(conn, Q2, with_clv=False)
    assert report.churn_basis == "subscriptions"
    assert report.coverage["churn_rate"] == 1.0
    assert report.coverage["silence_rate"] == pytest.approx(3 / 6)  # C2, C4, C5 appear in the helpdesk
    assert report.coverage["satisfaction"] == pytest.approx(3 / 6)
    assert report.coverage["clv_historical_total"] == 1.0
    assert report.value("churn_rate") == pytest.approx(0.4) and report.previous["churn_rate"] is None
    assert report.delta("silence_rate") == pytest.approx(1 / 3 - 4 / 5)
    assert report.value("activation_rate") is None and "scored" in report.notes["activation_rate"]
    assert isinstance(report.value("customers"), int)
    # Too few repeat buyers for a CLV model: said, not shown.
    with tiny.connect() as conn:
        clv = metrics.predicted_clv(conn, Q2.end)
    assert not clv.ok and "repeat" in clv.message and clv.total() is None


def test_the_kpi_queries_agree_across_engines(tiny):
    """Same data on both engines -> the same table (the ``store`` fixture runs this on each)."""
    with tiny.connect() as conn:
        table = metrics.kpi_table(conn, metrics.monthly_periods(metrics.as_of(conn), 6), repeat_days=30)
        conflicts = metrics.conflicts(conn)
    expected_revenue = [60.0, 120.0, 170.0, 170.0, 160.0, 130.0]  # Jan..Jun, worked out from TRANSACTIONS
    assert table["revenue"].tolist() == pytest.approx(expected_revenue)
    assert table["contacts"].tolist() == [0, 0, 1, 0, 4, 1]
    # Too few customers per cohort to rank: nothing is flagged on a six-customer company.
    assert not conflicts["conflict"].any()
    campaign = conflicts[(conflicts["cohort_by"] == "campaign")].set_index("cohort")
    # blast: C1 (left after 101 days) and C3 (95 days) count as kept at 90 days; C5 signed up less than
    # 90 days before the end of the data, so it is not judged yet.
    assert campaign.loc["blast", "customers"] == 3
    assert campaign.loc["blast", "shared_value"] == pytest.approx(1.0)
    # organic: C2 and C6, both still customers.
    assert campaign.index.tolist() == ["blast"]
    channel = conflicts[(conflicts["cohort_by"] == "channel")].set_index("cohort")
    assert channel["customers"].to_dict() == {"paid": 3, "organic": 2, "referral": 1}


def test_churn_from_a_label_when_there_are_no_subscriptions(duck, tmp_path):
    path = tmp_path / "telco.csv"
    path.write_text("id,Churn,Contract\nA,Yes,Month-to-month\nB,No,One year\nC,No,Two year\nD,Yes,Month-to-month\n")
    ingest_file(
        duck,
        path,
        source="crm",
        mapping=Mapping.from_dict(
            {"kind": "customers", "columns": {"customer_id": "id", "churn_label": "Churn", "plan": "Contract"}}
        ),
    )
    with duck.connect() as conn:
        report = metrics.kpi_report(conn, with_clv=False)
        plan = metrics.kpi_report(
            conn,
            metrics.Period.from_dates(date(2024, 1, 1), date(2024, 3, 31)),
            metrics.Filters(plan=["Month-to-month"]),
            with_clv=False,
        )
    assert report.churn_basis == "label" and report.period is None  # no dates at all
    with duck.connect() as conn:
        labelled = metrics.kpi_table(conn, [Q2]).loc[0]
    assert labelled["churn_rate"] == pytest.approx(0.5) and labelled["retention_rate"] == pytest.approx(0.5)
    assert plan.value("churn_rate") == pytest.approx(1.0) and plan.previous["churn_rate"] is None
    assert plan.coverage["churn_rate"] == 1.0 and plan.coverage["silence_rate"] == 0.0


# ---------------------------------------------------------------------------------- the demo company, in pandas


def _digits10(s: pd.Series) -> pd.Series:
    return s.astype("string").str.replace(r"\D", "", regex=True).str.slice(-10)


@pytest.fixture(scope="module")
def demo(demo_store):
    d = demo_store["dir"]
    read = lambda name: pd.read_csv(d / name, dtype=str, keep_default_na=False, na_values=[""])  # noqa: E731
    crm = read("crm_customers.csv")
    by_email = dict(zip(crm["Email"].str.lower(), crm["CustomerID"], strict=True))
    by_phone = {k: v for k, v in zip(_digits10(crm["Phone"]), crm["CustomerID"], strict=True) if pd.notna(k)}
    by_account = dict(zip(crm["Billing Account"], crm["CustomerID"], strict=True))
    subs = read("billing_subscriptions.csv").assign(who=lambda f: f["account_no"].map(by_account))
    bill = read("billing_transactions.csv").assign(who=lambda f: f["account_no"].map(by_account))
    hd = read("helpdesk_tickets.csv")
    email = hd["Requester Email"].str.lower()
    email = email.where(~email.str.startswith("support@"))
    hd["who"] = email.map(by_email).fillna(_digits10(hd["Requester Phone"]).map(by_phone))
    for f, cols in (
        (subs, ["start_date", "end_date"]),
        (bill, ["txn_date"]),
        (hd, ["Created", "Resolved"]),
        (crm, ["Signup Date"]),
    ):
        for c in cols:
            f[c] = pd.to_datetime(f[c], format="ISO8601")
    bill["amount"] = bill["amount"].astype(float)
    subs["mrr"] = subs["mrr"].astype(float)
    hd["Transfers"] = hd["Transfers"].astype(float)
    hd["CSAT"] = hd["CSAT"].astype(float)
    store = open_store(demo_store["url"])
    with store.connect() as conn:
        now = metrics.as_of(conn)
        period = metrics.default_period(now)
        table = metrics.kpi_table(conn, [period, period.previous])
        conflicts = metrics.conflicts(conn)
        report = metrics.kpi_report(conn, period)
        spring = metrics.kpi_table(conn, [period], metrics.Filters(campaign=["spring_blast"])).loc[0]
    store.dispose()
    return dict(
        crm=crm,
        subs=subs,
        bill=bill,
        hd=hd,
        now=now,
        period=period,
        table=table,
        conflicts=conflicts,
        report=report,
        spring=spring,
    )


def test_demo_churn_renewal_and_revenue_churn_match_pandas(demo):
    subs, p, got = demo["subs"], demo["period"], demo["table"].loc[0]
    last_end = subs["end_date"].fillna(pd.Timestamp("9999-01-01")).groupby(subs["who"]).max()
    signup = demo["crm"].set_index("CustomerID")["Signup Date"]
    churn_at = last_end.where(last_end < pd.Timestamp("9999-01-01")).reindex(signup.index)
    base = (signup < p.start) & ~(churn_at < p.start)
    left = base & (churn_at >= p.start) & (churn_at < p.end)
    assert got["customers_at_start"] == base.sum()
    assert got["churn_rate"] == pytest.approx(left.sum() / base.sum())
    running = (subs["start_date"] < p.start) & ~(subs["end_date"] < p.start)
    ended = running & (subs["end_date"] < p.end)
    assert got["renewal_rate"] == pytest.approx(1 - ended.sum() / running.sum())
    assert got["revenue_churn_rate"] == pytest.approx(subs.loc[ended, "mrr"].sum() / subs.loc[running, "mrr"].sum())


def _opened_with_repeats(hd: pd.DataFrame, p) -> pd.DataFrame:
    """The period's tickets of known customers, each marked ``repeat`` when the same customer opened
    one on the same topic within 7 days before (plain pandas)."""
    hd = hd.dropna(subset=["who"]).sort_values(["who", "Topic", "Created", "Ticket #"])
    prev = hd.groupby(["who", "Topic"])["Created"].shift()
    hd = hd.assign(repeat=(hd["Created"] - prev) <= pd.Timedelta(days=7))
    return hd[(hd["Created"] >= p.start) & (hd["Created"] < p.end)]


def _churned_by(subs: pd.DataFrame, end) -> set:
    last_end = subs["end_date"].fillna(pd.Timestamp("9999-01-01")).groupby(subs["who"]).max()
    return set(last_end[last_end < end].index)


def test_demo_contact_kpis_match_pandas(demo):
    p, got = demo["period"], demo["table"].loc[0]
    opened = _opened_with_repeats(demo["hd"], p)
    hd = demo["hd"].dropna(subset=["who"])
    assert got["contacts"] == len(opened)
    assert got["repeat_contact_rate"] == pytest.approx(opened["repeat"].mean())
    assert got["transfer_rate"] == pytest.approx((opened["Transfers"] > 0).sum() / opened["Transfers"].notna().sum())
    closed = hd[(hd["Resolved"] >= p.start) & (hd["Resolved"] < p.end)]
    hours = (closed["Resolved"] - closed["Created"]).dt.total_seconds() / 3600
    assert got["median_hours_to_resolution"] == pytest.approx(hours.median())
    assert got["handoffs_per_resolved"] == pytest.approx(closed["Transfers"].fillna(0).sum() / len(closed))
    assert got["satisfaction"] == pytest.approx(closed["CSAT"].mean())
    # The silence metric: every customer who opened a ticket in the period was active in it, so the
    # silent ones are the active customers less those who opened one (and had not churned by the end).
    openers = set(opened["who"]) - _churned_by(demo["subs"], p.end)
    assert 0 < len(openers) < got["active_customers"]
    assert got["silent_customers"] == got["active_customers"] - len(openers)
    assert got["silence_rate"] == pytest.approx(1 - len(openers) / got["active_customers"])


def test_demo_revenue_nrr_and_historical_clv_match_pandas(demo):
    bill, p, got = demo["bill"], demo["period"], demo["table"].loc[0]
    paid = bill[(bill["status"] != "failed") & bill["who"].notna()]
    cur = paid[(paid["txn_date"] >= p.start) & (paid["txn_date"] < p.end)]
    prev = paid[(paid["txn_date"] >= p.previous.start) & (paid["txn_date"] < p.start)]
    assert got["revenue"] == pytest.approx(cur["amount"].sum(), rel=1e-9)
    prev_by = prev.groupby("who")["amount"].sum().loc[lambda s: s > 0]
    kept = cur[cur["who"].isin(prev_by.index)]["amount"].sum()
    assert got["net_revenue_retention"] == pytest.approx(kept / prev_by.sum(), rel=1e-9)
    assert got["clv_historical_total"] == pytest.approx(paid[paid["txn_date"] < p.end]["amount"].sum(), rel=1e-9)


def test_demo_collections_per_region_match_pandas(demo):
    """The billing cohorts of the conflicts table: what each region's customers paid, from the CSV."""
    bill, crm = demo["bill"], demo["crm"]
    paid = bill[(bill["status"] != "failed") & bill["who"].notna() & bill["amount"].notna()]
    region = crm.set_index("CustomerID")["Region"]
    expected = paid.groupby(paid["who"].map(region))["amount"].sum()
    customers = region.value_counts()
    got = demo["conflicts"][demo["conflicts"]["cohort_by"] == "region"].set_index("cohort")
    assert sorted(got.index) == sorted(expected.index) and len(got) >= 4
    assert got["departmental_value"].to_dict() == pytest.approx(expected.to_dict(), rel=1e-9)
    assert got["customers"].to_dict() == customers.reindex(got.index).to_dict()


def test_demo_predicted_clv_is_finite_and_per_customer_sums(demo):
    report = demo["report"]
    assert report.clv is not None and report.clv.ok, report.notes
    assert report.value("clv_predicted_total") == pytest.approx(report.clv.per_customer.sum())
    assert report.clv.per_customer.ge(0).all() and np.isfinite(report.clv.per_customer).all()
    # One forecast per customer who bought (paid) before the period's end, worked out from the billing file.
    bill, end = demo["bill"], demo["period"].end
    buyers = set(bill.loc[(bill["status"] != "failed") & (bill["txn_date"] < end) & bill["who"].notna(), "who"])
    assert set(report.clv.per_customer.index.astype(str)) == buyers
    # Said in plain words: what the forecast rests on, with the repeat buyers counted from the file.
    # (purchases: paid, positive amounts, one per day; a customer first buying on the last day has no
    # history to forecast from and is left out, as in every BG/NBD fit)
    paid = bill[(bill["status"] != "failed") & (bill["txn_date"] < end) & bill["who"].notna() & (bill["amount"] > 0)]
    days = paid.assign(day=paid["txn_date"].dt.normalize()).groupby("who")["day"].agg(["nunique", "min"])
    last_day = (pd.Timestamp(end) - pd.Timedelta(microseconds=1)).normalize()
    repeaters = int(((days["nunique"] > 1) & (days["min"] < last_day)).sum())
    message = report.clv.message
    assert f"{repeaters:,} of whom bought more than once" in message
    assert f"the next {report.clv.horizon_months} months" in message
    assert "Gamma-Gamma p" not in message and "->" not in message and "inf)" not in message


def test_spring_blast_is_flagged_on_the_demo_and_its_retention_matches_pandas(demo):
    conf, crm, subs, now = demo["conflicts"], demo["crm"], demo["subs"], pd.Timestamp(demo["now"])
    flagged = conf[conf["conflict"]]
    assert "spring_blast" in set(flagged["cohort"])
    row = conf[(conf["cohort_by"] == "campaign") & (conf["cohort"] == "spring_blast")].iloc[0]
    assert row["departmental_top_quartile"] and row["shared_bottom_quartile"]
    # 90-day retention by hand: customers who signed up 90+ days before the end and were still there 90 days on.
    last_end = subs["end_date"].fillna(pd.Timestamp("9999-01-01")).groupby(subs["who"]).max()
    c = crm.set_index("CustomerID")
    c["end"] = last_end.reindex(c.index)
    c = c[(c["Campaign"] == "spring_blast") & (c["Signup Date"] <= now - pd.Timedelta(days=90))]
    kept = (c["end"] - c["Signup Date"]) >= pd.Timedelta(days=90)
    assert row["shared_value"] == pytest.approx(kept.mean())
    assert row["customers"] == (crm["Campaign"] == "spring_blast").sum()
    # Every other campaign keeps far more of its customers.
    others = conf[(conf["cohort_by"] == "campaign") & (conf["cohort"] != "spring_blast")]
    assert row["shared_value"] < others["shared_value"].min() - 0.3
    # Filtering on the campaign shows its churn directly.
    assert demo["spring"]["customers"] == row["customers"]


def test_cli_prints_the_kpis_as_json(demo_store, demo, capsys):
    assert main(["--db", demo_store["url"], "kpis", "--json", "--from", "2026-07-01", "--to", "2026-09-30"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(metrics.CLI_KEYS) <= out.keys()
    assert (out["period_start"], out["period_end"]) == ("2026-07-01", "2026-09-30")
    # The figures for that quarter, worked out from the extracts with pandas.
    p = metrics.Period.from_dates(date(2026, 7, 1), date(2026, 9, 30))
    crm, subs = demo["crm"], demo["subs"]
    assert out["customers"] == (crm["Signup Date"] < p.end).sum()
    opened = _opened_with_repeats(demo["hd"], p)
    assert out["repeat_contact_rate"] == pytest.approx(opened["repeat"].mean())
    signup = crm.set_index("CustomerID")["Signup Date"]
    last_end = subs["end_date"].fillna(pd.Timestamp("9999-01-01")).groupby(subs["who"]).max().reindex(signup.index)
    base = (signup < p.start) & ~(last_end < p.start)
    assert out["churn_rate"] == pytest.approx((base & (last_end < p.end)).sum() / base.sum())
    assert out["clv_predicted_total"] is None or out["clv_predicted_total"] > 0


# ---------------------------------------------------------------------------------- CLV holdout on online retail


def test_holdout_check_on_online_retail_matches_a_direct_fit(duck, public_data):
    path = public_data / "online_retail" / "online_retail_sample.csv"
    ingest_file(
        duck,
        path,
        source="shop",
        reject_invalid=True,
        mapping=Mapping.from_dict(
            {
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
        ),
    )
    with duck.connect() as conn:
        check = metrics.holdout_check(conn)
    assert check["ok"], check["message"]
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    raw = raw[raw["UnitPrice"] >= 0]  # the contract rejects negative unit prices (bad-debt adjustments)
    raw["amount"] = raw["Quantity"] * raw["UnitPrice"]
    raw["ts"] = pd.to_datetime(raw["InvoiceDate"])
    cal_end = check["calibration_end"] - pd.Timedelta(days=1)
    ref = calibration_and_holdout(
        raw,
        customer_col="CustomerID",
        timestamp_col="ts",
        amount_col="amount",
        calibration_end=cal_end,
        observation_end=raw["ts"].max(),
    )
    ref = ref[ref["T_cal"] > 0]
    assert check["customers"] == len(ref)
    assert check["actual_total"] == ref["frequency_holdout"].sum()
    # The plain MLE puts dropout on the boundary for this short window; the check says so and refits
    # with a small penalty, which the reference fit repeats.
    assert check["penalizer"] == metrics.FALLBACK_PENALIZER and "penalty" in check["message"]
    bg = BGNBD(penalizer_coef=check["penalizer"]).fit(ref["frequency_cal"], ref["recency_cal"], ref["T_cal"])
    predicted = bg.expected_purchases(
        float(check["holdout_days"]), ref["frequency_cal"], ref["recency_cal"], ref["T_cal"]
    )
    assert check["predicted_total"] == pytest.approx(float(np.sum(predicted)), rel=1e-4)
    # The model should be in the right ballpark on real data (within 30% in total).
    assert 0.7 < check["predicted_total"] / check["actual_total"] < 1.3


def test_rfm_in_the_database_equals_the_pandas_summary(tiny):
    with tiny.connect() as conn:
        got = metrics.rfm_in_database(conn, Q2.end)
    tx = pd.read_csv(pd.io.common.StringIO(TRANSACTIONS))
    tx = tx[tx["status"] != "failed"]
    ref = rfm_summary(
        tx, customer_col="customer_id", timestamp_col="ts", amount_col="amount", observation_end="2024-06-30"
    )
    got.index.name = "customer_id"
    pd.testing.assert_frame_equal(got[["frequency", "recency", "T", "monetary_value"]], ref, check_names=False)


def test_activation_is_the_share_of_the_top_risk_decile_acted_on(tiny):
    from cxdash.risk import mark
    from cxdash.store.database import bulk_insert, scores_table

    with tiny.connect() as conn:
        report = metrics.attach_activation(metrics.kpi_report(conn, Q2, with_clv=False), tiny)
    assert report.value("activation_rate") is None and "scored" in report.notes["activation_rate"]
    # Twenty scored customers: the top decile is the two riskiest; one of them was contacted, and a
    # low-risk customer was actioned (which does not count).
    scores = pd.DataFrame(
        {
            "model_version": 1,
            "position": range(1, 21),
            "cx_id": [f"X{i}" for i in range(20)],
            "risk": [0.9, 0.8] + [0.1] * 18,
            "scored_at": datetime(2024, 6, 30),
        }
    )
    with tiny.app_begin() as conn:
        bulk_insert(conn, scores_table, scores)
    mark(tiny, ["X1"], "contacted", actor="agent")
    mark(tiny, ["X7"], "actioned", actor="agent")
    with tiny.connect() as conn:
        report = metrics.attach_activation(metrics.kpi_report(conn, Q2, with_clv=False), tiny)
    assert report.value("activation_rate") == pytest.approx(1 / 2)
    assert "1 of the 2 customers" in report.notes["activation_rate"]
