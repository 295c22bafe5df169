"""The daily rollups give the KPIs the raw rows give, after every kind of change, on DuckDB and PostgreSQL.

A 300-customer demo company is loaded, then changed the ways a store changes: a one-row ticket and a
one-row payment from known customers (the rollups take the rows as they are), a web event that
merges an anonymous visitor's earlier visits into a known customer (earlier rows change customer:
the rollups are rebuilt), a replace, a change of a source's department, an erasure. After each,
``kpi_table`` over twelve months and over the default period and its previous one, with and
without filters, must equal ``kpi_table`` computed from the raw rows; and the rollup tables must hold
what a rebuild from scratch holds.
"""

from __future__ import annotations

import csv
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.governance.erasure import erase_customer
from cxdash.governance.sources import set_source_owner
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries
from cxdash.jobs.loads import after_load, stitch_identities, update_rollups
from cxdash.metrics import kpi_table
from cxdash.metrics.customers import Filters
from cxdash.metrics.periods import as_of, default_period, monthly_periods
from cxdash.metrics.report import coverage
from cxdash.store import rollups
from cxdash.store.database import KIND_TABLES, active_keys_table, identity_map_table, read_frame
from tests import saas_company
from tests.conftest import BACKENDS, make_store
from tests.demo_company import append_rows, loaded

FILTERS = (Filters(), Filters(department=("support",)), Filters(department=("marketing", "product")))


def kpis(store, *, use_rollups: bool) -> list[pd.DataFrame]:
    with store.connect() as conn:
        now = as_of(conn)
        today = pd.Timestamp(now).normalize().to_pydatetime()
        current = default_period(now)
        period_sets = (
            monthly_periods(now, 12),
            [current, current.previous],
            [type(current)(today - timedelta(days=30), today + timedelta(days=1))],
        )
        return [kpi_table(conn, periods, f, use_rollups=use_rollups) for periods in period_sets for f in FILTERS]


def assert_rollups_match_the_rows(store) -> None:
    with store.connect() as conn:
        assert rollups.current(conn), "the rollups should hold the store's current data"
        kept = read_frame(conn, sa.select(rollups.activity_days_table)).drop_duplicates()
        fresh = read_frame(conn, rollups._activity())
        key = ["cx_key", "day", "source", "department"]
        kept, fresh = (f.sort_values(key, na_position="first").reset_index(drop=True) for f in (kept, fresh))
        pd.testing.assert_frame_equal(kept, fresh, check_dtype=False)
        r = rollups.revenue_days_table
        kept = read_frame(
            conn,
            sa.select(r.c.cx_key, r.c.day, r.c.status, sa.func.sum(r.c.amount).label("amount")).group_by(
                r.c.cx_key, r.c.day, r.c.status
            ),
        )
        fresh = read_frame(conn, rollups._revenue())
        key = ["cx_key", "day", "status"]
        kept, fresh = (f.sort_values(key, na_position="first").reset_index(drop=True) for f in (kept, fresh))
        pd.testing.assert_frame_equal(kept, fresh, check_dtype=False, rtol=1e-9)
        # the customers per source: every (customer, source) with a step, and no other
        k = active_keys_table
        kept = read_frame(conn, sa.select(k.c.cx_key, k.c.source).distinct())
        fresh = read_frame(conn, rollups._activity()).drop_duplicates(["cx_key", "source"])[["cx_key", "source"]]
        kept, fresh = (f.sort_values(["cx_key", "source"]).reset_index(drop=True) for f in (kept, fresh))
        assert len(kept) > 0
        pd.testing.assert_frame_equal(kept, fresh, check_dtype=False)
    with_rollups, raw = kpis(store, use_rollups=True), kpis(store, use_rollups=False)
    for a, b in zip(with_rollups, raw, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    with store.connect() as conn:  # the KPI coverage too: with the rollups, then without (rolled back)
        from_rollups = coverage(conn)
        rollups.invalidate(conn)
        assert not rollups.current(conn)
        assert coverage(conn) == pytest.approx(from_rollups)
        conn.rollback()
        assert rollups.current(conn)


def append_row(store, tmp_path, extract, row: dict, name: str):
    return append_rows(store, tmp_path, extract, [row], name)


def first_row(extract) -> dict:
    with open(extract.path, newline="") as f:
        return next(csv.DictReader(f))


@pytest.fixture(params=BACKENDS)
def company(request, tmp_path):
    with loaded(request.param, tmp_path, 300, seed=5) as (store, extracts):
        yield store, extracts


def test_rollups_equal_the_raw_rows_after_appends_replaces_department_changes_and_erasures(company, tmp_path):
    store, extracts = company
    with store.connect() as conn:
        assert not rollups.current(conn)  # loaded, never maintained: the KPIs read the rows
    assert update_rollups(store) == "rebuilt"
    assert update_rollups(store) == "current"
    assert_rollups_match_the_rows(store)
    with store.connect() as conn:
        end = as_of(conn)
    late = (end + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")

    # a ticket from a known customer: added as it is, and until then the KPIs read the rows
    tickets = extracts["helpdesk"]
    row = first_row(tickets)
    row.update({"Ticket #": "999999", "Created": late, "Resolved": ""})
    append_row(store, tmp_path, tickets, row, "ticket")
    with store.connect() as conn:
        assert not rollups.current(conn)
    for a, b in zip(kpis(store, use_rollups=True), kpis(store, use_rollups=False), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    assert update_rollups(store) == "added 1 load"
    assert_rollups_match_the_rows(store)

    # a payment from a known account: added too, and its amount is in the month's revenue
    payments = extracts["billing"]
    row = first_row(payments)
    row.update({"txn_ref": "TXN-ROLLUP-1", "txn_date": late, "amount": "1234.5", "status": "paid"})
    append_row(store, tmp_path, payments, row, "payment")
    assert update_rollups(store) == "added 1 load"
    assert_rollups_match_the_rows(store)

    # a new customer's CRM record: added as it is, and the customer is one more with activity (the
    # signup), in the customers per source too
    crm = first_row(extracts["crm"])
    crm.update({"CustomerID": "CUS-ROLLUP-1", "Email": "rollup.new@example.org", "Phone": "", "Billing Account": ""})
    crm["Signup Date"] = late[:10]
    append_row(store, tmp_path, extracts["crm"], crm, "crm")
    assert update_rollups(store) == "added 1 load"
    assert_rollups_match_the_rows(store)
    with store.connect() as conn:
        k, im = active_keys_table, identity_map_table
        new_key = sa.select(im.c.cx_key).where(im.c.id_key == "email:rollup.new@example.org").scalar_subquery()
        assert conn.execute(sa.select(sa.func.count()).select_from(k).where(k.c.cx_key == new_key)).scalar() == 1

    # an anonymous visitor's cookie, now seen with a known customer's email: the visitor's earlier
    # visits become that customer's, so earlier rows change customer and the rollups are rebuilt
    with store.connect() as conn:
        ev = KIND_TABLES["events"]
        cookie = conn.execute(
            sa.select(ev.c.visitor_id)
            .join(im, im.c.id_key == ev.c.id_key)
            .where(sa.not_(im.c.known), ev.c.timestamp < end - timedelta(days=60))
            .order_by(ev.c.visitor_id)
            .limit(1)
        ).scalar()
    assert cookie is not None
    email = first_row(extracts["crm"])["Email"]
    web = extracts["web"]
    append_row(
        store,
        tmp_path,
        web,
        {"cookie_id": cookie, "user_email": email, "event_time": late, "event_name": "login", "session_id": "s1"},
        "merge",
    )
    assert update_rollups(store) == "rebuilt"
    assert_rollups_match_the_rows(store)

    # a replace drops rows: rebuilt
    fewer = tmp_path / "fewer_tickets.csv"
    pd.read_csv(tickets.path, dtype=str, keep_default_na=False).head(200).to_csv(fewer, index=False)
    ingest_file(store, fewer, source=tickets.source, mapping=Mapping.from_dict(tickets.mapping), mode="replace")
    assert update_rollups(store) == "rebuilt"
    assert_rollups_match_the_rows(store)

    # the source's department moves: the rollups keep rows' own departments, so they stay current
    set_source_owner(store, "helpdesk", department="sales", actor="test")
    assert update_rollups(store) == "current"
    assert_rollups_match_the_rows(store)

    # an erasure clears them at once (they held the customer's key), and the next update rebuilds them
    with store.connect() as conn:
        erased_key = conn.execute(sa.select(im.c.cx_key).where(im.c.id_key == f"email:{email.lower()}")).scalar()
    erase_customer(store, email, actor="test")
    with store.connect() as conn:
        assert not rollups.current(conn)
        for table in (rollups.activity_days_table, rollups.revenue_days_table, active_keys_table):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    assert update_rollups(store) == "rebuilt"
    assert_rollups_match_the_rows(store)
    with store.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count())
            .select_from(rollups.activity_days_table)
            .where(rollups.activity_days_table.c.cx_key == erased_key)
        ).scalar()
        left += conn.execute(
            sa.select(sa.func.count()).select_from(active_keys_table).where(active_keys_table.c.cx_key == erased_key)
        ).scalar()
    assert erased_key is not None and left == 0


def test_an_identity_rebuild_outside_a_load_makes_the_kpis_read_the_rows(company):
    store, _ = company
    update_rollups(store)
    stitch_identities(store)  # customer keys may move without a new data version
    with store.connect() as conn:
        assert not rollups.current(conn)
    assert update_rollups(store) == "rebuilt"
    assert_rollups_match_the_rows(store)


def test_a_store_written_before_the_customers_per_source_rebuilds_its_rollups(company):
    """A store whose rollups were built before ``active_keys`` existed says they are current but
    has none of its rows: opening it marks them stale, so the KPI coverage reads the rows until the
    next refresh rebuilds all three tables."""
    store, _ = company
    update_rollups(store)
    with store.connect() as conn:
        expected = coverage(conn)
    with store.begin() as conn:
        conn.execute(sa.text("DROP TABLE active_keys"))
    assert store.create_schema() == []
    with store.connect() as conn:
        assert not rollups.current(conn)
        assert conn.execute(sa.select(sa.func.count()).select_from(active_keys_table)).scalar() == 0
        assert coverage(conn) == pytest.approx(expected)
    assert update_rollups(store) == "rebuilt"
    assert_rollups_match_the_rows(store)
    store.create_schema()  # the table is there now: nothing is marked stale again
    with store.connect() as conn:
        assert rollups.current(conn)
        assert coverage(conn) == pytest.approx(expected)


def test_the_upload_pages_load_brings_the_rollups_up_on_the_thread_before_the_views(company):
    """The upload page refreshes the landing summaries now and the views on a thread: the rollups
    are the thread's first job (the views read them), not something the ops person waits for."""
    store, _ = company
    took = after_load(store, ("headline",), background=summaries.VIEWS[:1])
    assert "rollups" not in took and "headline" in took
    summaries.wait_for_background(timeout=600)
    with store.connect() as conn:
        assert rollups.current(conn)
    assert_rollups_match_the_rows(store)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollups_on_a_saas_export_with_usage_reached_through_subscriptions(backend, tmp_path):
    """The shape a subscription business exports (tests/saas_company.py): accounts, subscriptions,
    tickets keyed by account, churn events, and feature usage keyed only by subscription id. Usage
    reaches its account through a link, so its days are in the rollups under the account; loads
    that could move linked rows (the usage itself, a new subscription) rebuild the rollups, a ticket
    from a known account is added as it is."""
    store = make_store(backend, tmp_path)
    try:
        company = saas_company.build()
        files = company.write(tmp_path / "exports")
        for name, mapping in saas_company.MAPPINGS.items():
            ingest_file(store, files[name], source=name, mapping=Mapping.from_dict(mapping))
        assert update_rollups(store) == "rebuilt"
        usage = Mapping.from_dict(
            {
                "kind": "events",
                "columns": {"timestamp": "usage_date", "activity": "feature_name"},
                "links": {"subscription_id": {"source": "subscriptions", "field": "subscription_id"}},
            }
        )
        ingest_file(store, files["usage"], source="usage", mapping=usage, department="product")
        assert update_rollups(store) == "rebuilt"  # a load with links is never taken as it is
        assert_rollups_match_the_rows(store)

        # every usage day is under the account that holds the subscription (worked out with pandas)
        owner = company.subscriptions.set_index("subscription_id")["account_id"]
        days = pd.to_datetime(company.usage["usage_date"]).dt.normalize()
        expected = set(zip(company.usage["subscription_id"].map(owner), days, strict=True))
        ad, ck = rollups.activity_days_table, sa.table("customer_keys", sa.column("cx_key"), sa.column("cx_id"))
        with store.connect() as conn:
            got = read_frame(
                conn,
                sa.select(ck.c.cx_id, ad.c.day)
                .select_from(ad.join(ck, ck.c.cx_key == ad.c.cx_key))
                .where(ad.c.source == "usage"),
            )
        assert set(zip(got["cx_id"], pd.to_datetime(got["day"]), strict=True)) == expected

        # a ticket from a known account: added as it is
        ticket = company.tickets.iloc[[0]].assign(
            ticket_id="T-ROLLUP", submitted_at="2024-12-30 09:00:00", closed_at=""
        )
        path = tmp_path / "one_ticket.csv"
        ticket.to_csv(path, index=False)
        ingest_file(store, path, source="tickets", mapping=Mapping.from_dict(saas_company.MAPPINGS["tickets"]))
        assert update_rollups(store) == "added 1 load"
        assert_rollups_match_the_rows(store)

        # a new subscription: usage links to subscriptions, so linked rows may move: rebuilt
        sub = company.subscriptions.iloc[[0]].assign(subscription_id="S-ROLLUP", start_date="2024-12-30", end_date="")
        path = tmp_path / "one_subscription.csv"
        sub.to_csv(path, index=False)
        ingest_file(
            store, path, source="subscriptions", mapping=Mapping.from_dict(saas_company.MAPPINGS["subscriptions"])
        )
        assert update_rollups(store) == "rebuilt"
        assert_rollups_match_the_rows(store)
    finally:
        store.dispose()
