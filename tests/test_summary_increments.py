"""Landing summaries kept from before a small append are brought up to date from its rows, and equal
the same summaries computed from every row, on DuckDB and PostgreSQL (issue 17: a small append
refreshes what it touches).

A 150-customer demo company is loaded and its summaries stored; then the store changes the ways it
does: a one-row ticket and a one-row payment from known customers, forty web events repeating known
visitors' identifiers, a known customer on a new device (appends that only add rows: the summaries
are brought up to date), an anonymous visitor's visits merged into a customer (earlier rows change
customer: computed whole), a CRM record of a new customer (the CRM-based summaries computed whole),
a re-load that moves a source's department (computed whole), a page asking before the refresh
(caught up too), an append of more customers than an increment looks up one by one (computed
whole), a replace (computed whole). After each refresh, every summary with an
increment must equal the summary computed from every row at that version; and the test counts
which refreshes took the increment, so a path never taken cannot pass for a right one.
"""

from __future__ import annotations

import csv
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries
from cxdash.jobs.loads import after_load, update_rollups
from cxdash.metrics.periods import as_of
from cxdash.store import rollups
from cxdash.store.database import KIND_TABLES, identity_map_table
from cxdash.store.version import data_version
from tests.conftest import BACKENDS
from tests.demo_company import append_rows, loaded

NAMES = tuple(summaries.INCREMENTS)


@pytest.fixture(params=BACKENDS)
def company(request, tmp_path):
    with loaded(request.param, tmp_path, 150, seed=11) as (store, extracts):
        yield store, extracts


@pytest.fixture
def taken(monkeypatch):
    """Which increments ran and gave a result (name -> count)."""
    counts: dict[str, int] = {}
    for name, fn in list(summaries.INCREMENTS.items()):

        def counted(conn, before, loads, _fn=fn, _name=name):
            out = _fn(conn, before, loads)
            if out is not None:
                counts[_name] = counts.get(_name, 0) + 1
            return out

        monkeypatch.setitem(summaries.INCREMENTS, name, counted)
    return counts


def canonical(value):
    """A summary in a form two equal results share: frames sorted on every column, index dropped."""
    if isinstance(value, pd.DataFrame):
        frame = value.copy()
        for c in frame.columns:
            if frame[c].dtype == object or str(frame[c].dtype) in ("str", "string"):
                frame[c] = frame[c].astype("string")
        return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)
    return value


def assert_stored_equal_whole(store) -> None:
    computations = summaries._computations()
    with store.connect() as conn:
        version = data_version(conn)
        for name in NAMES:
            stored = summaries.lookup(conn, name, version)
            assert stored is not summaries.MISSING, f"{name} was not stored for version {version}"
            whole = computations[name](conn)
            if isinstance(whole, pd.DataFrame):
                pd.testing.assert_frame_equal(
                    canonical(stored), canonical(whole), check_dtype=False, check_exact=False, rtol=1e-9, obj=name
                )
                pd.testing.assert_frame_equal(stored.reset_index(drop=True), whole, check_dtype=False, obj=name)
            else:
                assert stored == whole, name


def read_rows(extract) -> list[dict]:
    with open(extract.path, newline="") as f:
        return list(csv.DictReader(f))


def test_landing_summaries_after_small_appends_equal_them_computed_from_every_row(
    company, tmp_path, taken, monkeypatch
):
    store, extracts = company
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == {}  # the first refresh had nothing to start from
    with store.connect() as conn:
        end = as_of(conn)
    late = end + timedelta(hours=1)

    # a ticket from a known customer, in a new month: brought up to date
    ticket = read_rows(extracts["helpdesk"])[0]
    ticket.update({"Ticket #": "990001", "Created": f"{late + timedelta(days=40):%Y-%m-%d %H:%M:%S}", "Resolved": ""})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "ticket")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == dict.fromkeys(NAMES, 1)

    # a payment, then forty web events repeating known visitors' rows at new times
    payment = read_rows(extracts["billing"])[0]
    payment.update({"txn_ref": "TXN-INC-1", "txn_date": f"{late:%Y-%m-%d %H:%M:%S}", "amount": "1234.5"})
    append_rows(store, tmp_path, extracts["billing"], [payment], "payment")
    web_rows = [r for r in read_rows(extracts["web"]) if r.get("user_email")][:40]
    assert len(web_rows) == 40
    for i, r in enumerate(web_rows):
        r["event_time"] = f"{late + timedelta(minutes=i):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], web_rows, "web")
    after_load(store, summaries.LANDING)  # two appends since the stored summaries: both taken at once
    assert_stored_equal_whole(store)
    assert taken == dict.fromkeys(NAMES, 2)

    # a known customer on a new device (a new cookie beside their email): the map gains an
    # identifier, but no earlier row changes customer, so the rollups take the row as it is too
    device = dict(web_rows[0], cookie_id="cookie-new-device", event_time=f"{late:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [device], "device")
    assert update_rollups(store) == "added 1 load"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == dict.fromkeys(NAMES, 3)

    # an anonymous visitor's cookie, now seen with a known customer's email: the visitor's earlier
    # visits become that customer's, so earlier rows change customer: computed whole
    with store.connect() as conn:
        im, ev = identity_map_table, KIND_TABLES["events"]
        cookie = conn.execute(
            sa.select(ev.c.visitor_id)
            .join(im, im.c.id_key == ev.c.id_key)
            .where(sa.not_(im.c.known))
            .order_by(ev.c.visitor_id)
            .limit(1)
        ).scalar()
    assert cookie is not None
    merge = dict(web_rows[1], cookie_id=cookie, event_time=f"{late:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [merge], "merge")
    assert update_rollups(store) == "rebuilt"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == dict.fromkeys(NAMES, 3)

    # a CRM record of a new customer, who consents: no earlier row changes, but the consent list,
    # the filters' values and who counts as identified are the CRM's, so those are computed whole
    crm = read_rows(extracts["crm"])[0]
    crm.update({"CustomerID": "CUS-INC-1", "Email": "new.customer@example.org", "Phone": "", "Billing Account": ""})
    crm.update({"Segment": "segment-new", "Marketing Opt-In": "yes", "Signup Date": f"{late:%Y-%m-%d}"})
    append_rows(store, tmp_path, extracts["crm"], [crm], "crm")
    assert update_rollups(store) == "added 1 load"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    whole = {"consented_customers", "filter_options", "source_summary"}
    assert taken == {name: 3 if name in whole else 4 for name in NAMES}
    with store.connect() as conn:
        options = summaries.lookup(conn, "filter_options", data_version(conn))
    assert "segment-new" in options["segment"]

    # a re-load that moves the helpdesk to another department: every earlier ticket moves with it
    ticket.update({"Ticket #": "990002"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "moved", department="sales")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == {name: 3 if name in whole else 4 for name in NAMES}
    with store.connect() as conn:
        months = summaries.lookup(conn, "activity_by_month", data_version(conn))
    assert "sales" in set(months["department"])

    # the next small append after those is brought up to date again
    ticket.update({"Ticket #": "990003"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "again")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == {name: 4 if name in whole else 5 for name in NAMES}

    # a page asking before the refresh gets the summary caught up too, not computed whole
    ticket.update({"Ticket #": "990004"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "asked")
    with store.connect() as conn:
        asked = summaries.get(conn, "activity_by_month")
        computed = summaries._computations()["activity_by_month"](conn)
    pd.testing.assert_frame_equal(asked, computed, check_dtype=False)
    assert taken["activity_by_month"] == 6
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)

    # more customers than an increment looks up one by one: computed whole
    for i, r in enumerate(web_rows):
        r["event_time"] = f"{late + timedelta(hours=2, minutes=i):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], web_rows, "many")
    counted = dict(taken)
    with monkeypatch.context() as patched:
        patched.setattr(rollups, "INCREMENT_MAX_KEYS", 3)
        after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken["source_summary"] == counted["source_summary"]
    assert taken["activity_by_month"] == counted["activity_by_month"]
    assert taken["stitch_coverage"] == counted["stitch_coverage"] + 1
    counted = dict(taken)

    # a replace drops rows: computed whole
    fewer = tmp_path / "fewer_tickets.csv"
    pd.read_csv(extracts["helpdesk"].path, dtype=str, keep_default_na=False).head(100).to_csv(fewer, index=False)
    tickets = extracts["helpdesk"]
    ingest_file(store, fewer, source=tickets.source, mapping=Mapping.from_dict(tickets.mapping), mode="replace")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken == counted
