"""The overview's numbers, recomputed from the demo company's CSV extracts with plain pandas.

Nothing here calls cxdash's stitching or SQL: customers are resolved to CRM ids by hand
(email, normalised phone, billing account, cookie -> email), so a bug in the store shows up
as a mismatch.
"""

from __future__ import annotations

import pandas as pd
import pytest

from cxdash.metrics import headline
from cxdash.metrics.overview import source_summary
from cxdash.store.database import open_store


def _digits10(s: pd.Series) -> pd.Series:
    return s.astype("string").str.replace(r"\D", "", regex=True).str.slice(-10)


@pytest.fixture(scope="module")
def extracts(demo_store):
    d = demo_store["dir"]
    read = lambda name: pd.read_csv(d / name, dtype=str, keep_default_na=False, na_values=[""])  # noqa: E731
    return {
        "crm": read("crm_customers.csv"),
        "web": read("web_events.csv"),
        "marketing": read("marketing_touches.csv"),
        "helpdesk": read("helpdesk_tickets.csv"),
        "billing": read("billing_transactions.csv"),
        "subscriptions": read("billing_subscriptions.csv"),
        "sales": read("sales_opportunities.csv"),
    }


@pytest.fixture(scope="module")
def resolved(extracts):
    """Every extract with a ``who`` column: the CRM id, or the raw identifier when unmatched."""
    crm = extracts["crm"]

    # A CRM record without an email (phone, account) claims no row: a missing key must not map a row
    # that lacks it too (pandas maps <NA> to whatever customer had none).
    def lookup(keys: pd.Series) -> dict:
        return {k: v for k, v in zip(keys, crm["CustomerID"], strict=True) if pd.notna(k)}

    by_email = lookup(crm["Email"].str.lower())
    by_phone = lookup(_digits10(crm["Phone"]))
    by_account = lookup(crm["Billing Account"])
    out = {"crm": crm.assign(who=crm["CustomerID"])}

    web = extracts["web"].copy()
    email = web["user_email"].str.lower()
    owner = email.map(by_email)
    cookie_owners = pd.DataFrame({"cookie": web["cookie_id"], "owner": owner}).dropna().drop_duplicates()
    n_owners = cookie_owners.groupby("cookie")["owner"].nunique()
    single = cookie_owners[cookie_owners["cookie"].isin(n_owners.index[n_owners == 1])].drop_duplicates("cookie")
    via_cookie = web["cookie_id"].map(dict(zip(single["cookie"], single["owner"], strict=True)))
    web["who"] = owner.fillna(via_cookie).fillna("visitor:" + web["cookie_id"])
    out["web"] = web

    mk = extracts["marketing"].copy()
    mk["who"] = mk["Contact Email"].str.lower().map(by_email).fillna("email:" + mk["Contact Email"].str.lower())
    out["marketing"] = mk

    hd = extracts["helpdesk"].copy()
    hub = hd["Requester Email"].str.lower().value_counts()
    hub_emails = set(hub.index[hub.index.str.startswith("support@")])
    em = hd["Requester Email"].str.lower().where(~hd["Requester Email"].str.lower().isin(hub_emails))
    who = em.map(by_email).fillna(_digits10(hd["Requester Phone"]).map(by_phone))
    # A row whose email is the helpdesk's own is known by its phone, when it has one.
    fallback = ("email:" + em).fillna("phone:" + _digits10(hd["Requester Phone"]))
    hd["who"] = who.fillna(fallback).fillna("email:" + hd["Requester Email"].str.lower())
    out["helpdesk"] = hd

    for name in ("billing", "subscriptions"):
        f = extracts[name].copy()
        f["who"] = f["account_no"].map(by_account).fillna("account_id:" + f["account_no"])
        out[name] = f
    sales = extracts["sales"].copy()
    sales["who"] = sales["CustomerID"]
    out["sales"] = sales
    return out


@pytest.fixture(scope="module")
def stored(demo_store):
    store = open_store(demo_store["url"])
    with store.connect() as conn:
        summary = source_summary(conn).set_index("name")
        head = headline(conn)
    store.dispose()
    return summary, head


def test_every_source_holds_exactly_the_rows_of_its_extract(extracts, stored):
    summary, _ = stored
    assert {k: len(v) for k, v in extracts.items()} == summary["rows"].to_dict()


def test_distinct_customers_per_source_match_a_hand_stitching(resolved, stored):
    summary, _ = stored
    expected = {name: frame["who"].nunique() for name, frame in resolved.items()}
    assert expected == summary["customers"].to_dict()


def test_time_span_per_source_matches_the_extract(extracts, stored):
    summary, _ = stored
    time_col = {
        "crm": "Signup Date",
        "web": "event_time",
        "marketing": "Sent At",
        "helpdesk": "Created",
        "billing": "txn_date",
        "subscriptions": "start_date",
        "sales": "Created",
    }
    for name, col in time_col.items():
        ts = pd.to_datetime(extracts[name][col], format="ISO8601")
        assert pd.Timestamp(summary.loc[name, "first_at"]) == ts.min(), name
        assert pd.Timestamp(summary.loc[name, "last_at"]) == ts.max(), name


def test_headline_customers_churned_revenue_and_active(extracts, resolved, stored):
    _, head = stored
    crm, subs, billing = extracts["crm"], resolved["subscriptions"], extracts["billing"]
    assert head.customers == crm["CustomerID"].nunique()

    times = [
        pd.to_datetime(resolved["web"]["event_time"], format="ISO8601"),
        pd.to_datetime(resolved["marketing"]["Sent At"], format="ISO8601"),
        pd.to_datetime(resolved["helpdesk"]["Created"], format="ISO8601"),
        pd.to_datetime(resolved["helpdesk"]["Resolved"], format="ISO8601"),
        pd.to_datetime(resolved["billing"]["txn_date"], format="ISO8601"),
        pd.to_datetime(subs["start_date"], format="ISO8601"),
        pd.to_datetime(subs["end_date"], format="ISO8601"),
        pd.to_datetime(resolved["sales"]["Created"], format="ISO8601"),
        pd.to_datetime(resolved["sales"]["Closed"], format="ISO8601"),
        pd.to_datetime(crm["Signup Date"], format="ISO8601"),
    ]
    as_of = max(t.max() for t in times)
    assert pd.Timestamp(head.as_of) == as_of

    end = pd.to_datetime(subs["end_date"], format="ISO8601").fillna(pd.Timestamp("9999-01-01"))
    last_end = end.groupby(subs["who"]).max()
    churned = set(last_end.index[last_end <= as_of])
    assert head.churn_basis == "subscriptions"
    assert head.churned_customers == len(churned)

    paid = billing["status"].str.lower() != "failed"
    assert head.revenue == pytest.approx(pd.to_numeric(billing.loc[paid, "amount"]).sum(), rel=1e-9)

    window_start = as_of - pd.Timedelta(days=30)
    pairs = [
        (resolved["web"]["who"], times[0]),
        (resolved["marketing"]["who"], times[1]),
        (resolved["helpdesk"]["who"], times[2]),
        (resolved["helpdesk"]["who"], times[3]),
        (resolved["billing"]["who"], times[4]),
        (subs["who"], times[5]),
        (subs["who"], times[6]),
        (resolved["sales"]["who"], times[7]),
        (resolved["sales"]["who"], times[8]),
        (resolved["crm"]["who"], times[9]),
    ]
    recent = set()
    for who, ts in pairs:
        recent |= set(who[(ts > window_start) & (ts <= as_of)])
    active = (recent & set(crm["CustomerID"])) - churned
    assert head.active_customers == len(active)


def test_each_source_splits_its_people_into_customers_and_anonymous_or_unmatched_ids(extracts, resolved, stored):
    """Issue 16: the web source showed 13,966 "customers" against 10,000 in all. A person is a customer
    when the hand stitching reaches a CRM id; everyone else (anonymous cookies, unknown emails) is
    counted apart, and no source has more customers than the company."""
    summary, head = stored
    crm_ids = set(extracts["crm"]["CustomerID"])
    for name, frame in resolved.items():
        who = frame["who"].dropna().unique()
        identified = sum(1 for w in who if w in crm_ids)
        assert summary.loc[name, "identified"] == identified, name
        assert summary.loc[name, "unmatched"] == len(who) - identified, name
        assert summary.loc[name, "identified"] <= head.customers, name
    # The demo's web source has visitors who never signed in: they exist and are not customers.
    web_visitors = resolved["web"]["who"].str.startswith("visitor:").sum()
    assert web_visitors > 0 and summary.loc["web", "unmatched"] > 0


def test_the_overview_sentence_and_table_show_both_counts(stored):
    from cxdash.ui import formatting

    summary, head = stored
    sources = summary.reset_index()
    sentence = formatting.overview_sentence(head, sources)
    web = summary.loc["web"]
    assert f"{web['unmatched']:,} anonymous visitors in web" in sentence
    table = formatting.sources_table(sources).set_index("source")
    assert table.loc["web", "customers"] == web["identified"] <= head.customers
    assert table.loc["web", "anonymous or unmatched"] == web["unmatched"]
