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

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.demo.world import write_demo_extracts
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries, view_increments, views
from cxdash.jobs.loads import after_load, update_rollups
from cxdash.metrics.periods import as_of
from cxdash.metrics.timeline import timeline
from cxdash.store import rollups
from cxdash.store.database import KIND_TABLES, identity_map_table, loads_table, sources_table, summaries_table
from cxdash.store.version import data_version
from tests.conftest import BACKENDS, make_store
from tests.demo_company import append_rows, loaded

NAMES = tuple(name for name in summaries.INCREMENTS if name in summaries.LANDING)
# the churn candidates' increment is narrower (no purchase, the data's date unmoved): counted apart
CANDIDATES = "churn_candidates"
# so is the headline's (no purchase, the data's date unmoved, a churn definition that reads no appended row)
HEADLINE = "headline"
COUNTED = tuple(name for name in NAMES if name not in (CANDIDATES, HEADLINE))
# the views that stand as they were when the appended steps cannot change them (their own test)
STANDING = ("journeys.funnel", "journeys.handoffs")
# the default views with an increment, and the views their default parameters follow from
VARIANTS = "journeys.variants"  # stands when each customer's first steps are kept: its own test
MOMENTS = ("journeys.hotspots", "journeys.hotspot_customers")  # stand when no moment moves: their own test
POSITIONS = "journeys.positions"  # stands when the appended steps repeat earlier ones: its own test
PATHS = "journeys.paths"  # stands when no appended customer's path moves: its own test
MAP = ("journeys.dfg", "journeys.nodes")  # stand when no appended customer's steps move: their own test
VIEW_NAMES = tuple(
    name
    for name in summaries.INCREMENTS
    if name in summaries.VIEWS and name not in (*STANDING, VARIANTS, *MOMENTS, POSITIONS, PATHS, *MAP)
)
VIEWS_REFRESHED = ("journeys.activities", "journeys.dfg", *VIEW_NAMES)


@pytest.fixture(params=BACKENDS)
def company(request, tmp_path):
    with loaded(request.param, tmp_path, 150, seed=11) as (store, extracts):
        yield store, extracts


def standing(taken: dict[str, int]) -> dict[str, int]:
    """The funnel's and the handoffs' increments taken (the positions, refreshed beside them for
    the funnel's steps, have their own test)."""
    return {name: n for name, n in taken.items() if name in STANDING}


def others(taken: dict[str, int]) -> dict[str, int]:
    """The increments taken but the churn candidates' and the headline's."""
    return {name: n for name, n in taken.items() if name not in (CANDIDATES, HEADLINE)}


def but_map(taken: dict[str, int]) -> dict[str, int]:
    """The increments taken but the journey map's (refreshed for the edge's default parameters)."""
    return {name: n for name, n in taken.items() if name not in MAP}


def stored_view_equal_whole(store, name: str, churn: str | None = None) -> pd.DataFrame:
    """The default view ``name`` as stored for the data now (under the churn definition ``churn``),
    asserted equal to it computed whole."""
    with store.connect() as conn:
        params = views.default_params(conn, name, {}, churn)
        stored = summaries.lookup(conn, name, data_version(conn), params)
        whole = summaries._computations()[name](conn, **params)
    assert stored is not summaries.MISSING, name
    pd.testing.assert_frame_equal(stored, whole, check_dtype=False, obj=name)
    return stored


def canonical(value):
    """A summary in a form two equal results share: frames sorted on every column, index dropped."""
    if isinstance(value, pd.DataFrame):
        frame = value.copy()
        for c in frame.columns:
            if frame[c].dtype == object or str(frame[c].dtype) in ("str", "string"):
                frame[c] = frame[c].astype("string")
        return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)
    return value


def assert_stored_equal_whole(store, names: tuple[str, ...] = NAMES) -> None:
    computations = summaries._computations()
    churn = summaries.effective_churn(store)
    with store.connect() as conn:
        version = data_version(conn)
        for name in names:
            params = {"churn": churn} if name in summaries.CHURN_DEPENDENT and churn else {}
            stored = summaries.lookup(conn, name, version, params)
            assert stored is not summaries.MISSING, f"{name} was not stored for version {version}"
            whole = computations[name](conn, **params)
            if isinstance(whole, pd.DataFrame):
                pd.testing.assert_frame_equal(
                    canonical(stored), canonical(whole), check_dtype=False, check_exact=False, rtol=1e-9, obj=name
                )
                pd.testing.assert_frame_equal(stored.reset_index(drop=True), whole, check_dtype=False, obj=name)
            else:
                assert stored == whole, name


def anonymous_cookie(store) -> str:
    """A web visitor known by a cookie alone (no customer record)."""
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
    return cookie


def customers_steps_in_period(store):
    """The data's date, and every step in the default period of the customers with an email:
    ``email, activity, ts``."""
    with store.connect() as conn:
        end = as_of(conn)
        period = metrics.default_period(end)
        log = jr.journey_log(since=period.start, until=period.end)
        crm = KIND_TABLES["customers"]
        rows = conn.execute(
            sa.select(crm.c.email, log.c.activity, log.c.ts)
            .join(crm, crm.c.cx_key == log.c.cx_key)
            .where(crm.c.email.is_not(None))
        ).all()
    return end, pd.DataFrame(rows, columns=["email", "activity", "ts"])


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
    assert others(taken) == dict.fromkeys(COUNTED, 1)
    assert CANDIDATES not in taken  # its time moves the data's date: every "churned by now" moves
    assert HEADLINE not in taken  # and the window of the active customers

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
    assert others(taken) == dict.fromkeys(COUNTED, 2)
    assert CANDIDATES not in taken  # a purchase moves the inactivity window's gaps
    assert HEADLINE not in taken  # and the revenue

    # a known customer on a new device (a new cookie beside their email): the map gains an
    # identifier, but no earlier row changes customer, so the rollups take the row as it is too
    device = dict(web_rows[0], cookie_id="cookie-new-device", event_time=f"{late:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [device], "device")
    assert update_rollups(store) == "added 1 load"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == dict.fromkeys(COUNTED, 3)
    assert taken[CANDIDATES] == 1  # events before the data's date: the counts move for their customers alone
    assert taken[HEADLINE] == 1  # the active customers move by that customer's rows

    # an anonymous visitor's cookie, now seen with a known customer's email: the visitor's earlier
    # visits become that customer's, so earlier rows change customer: computed whole
    merge = dict(web_rows[1], cookie_id=anonymous_cookie(store), event_time=f"{late:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [merge], "merge")
    assert update_rollups(store) == "rebuilt"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == dict.fromkeys(COUNTED, 3)
    assert taken[CANDIDATES] == 1

    # a CRM record of a new customer, who consents: no earlier row changes, but the consent list,
    # the filters' values and who counts as identified are the CRM's, so those are computed whole
    crm = read_rows(extracts["crm"])[0]
    crm.update({"CustomerID": "CUS-INC-1", "Email": "new.customer@example.org", "Phone": "", "Billing Account": ""})
    crm.update({"Segment": "segment-new", "Marketing Opt-In": "yes", "Signup Date": f"{late:%Y-%m-%d}"})
    append_rows(store, tmp_path, extracts["crm"], [crm], "crm")
    assert update_rollups(store) == "added 1 load"
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    whole = {"consented_customers", "filter_options", "source_summary", "coverage"}
    assert others(taken) == {name: 3 if name in whole else 4 for name in COUNTED}
    with store.connect() as conn:
        options = summaries.lookup(conn, "filter_options", data_version(conn))
    assert "segment-new" in options["segment"]

    # a re-load that moves the helpdesk to another department: every earlier ticket moves with it
    ticket.update({"Ticket #": "990002"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "moved", department="sales")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == {name: 3 if name in whole else 4 for name in COUNTED}
    with store.connect() as conn:
        months = summaries.lookup(conn, "activity_by_month", data_version(conn))
    assert "sales" in set(months["department"])

    # the next small append after those is brought up to date again
    ticket.update({"Ticket #": "990003"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "again")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == {name: 4 if name in whole else 5 for name in COUNTED}
    assert taken[CANDIDATES] == 2  # a ticket at the data's date, which an earlier ticket already had
    assert taken[HEADLINE] == 2  # the CRM record and the re-load between: computed whole

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
    assert taken[CANDIDATES] == counted[CANDIDATES]
    counted = dict(taken)

    # a replace drops rows: computed whole
    fewer = tmp_path / "fewer_tickets.csv"
    pd.read_csv(extracts["helpdesk"].path, dtype=str, keep_default_na=False).head(100).to_csv(fewer, index=False)
    tickets = extracts["helpdesk"]
    ingest_file(store, fewer, source=tickets.source, mapping=Mapping.from_dict(tickets.mapping), mode="replace")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == others(counted)

    # a CRM customer with no event, contact or purchase yet visits the site: the KPI coverage
    # counts them now as active and as having what the churn model needs
    with store.connect() as conn:
        crm = KIND_TABLES["customers"]
        acted = sa.union(
            *(
                sa.select(t.c.cx_key).where(t.c.cx_key.is_not(None))
                for t in (KIND_TABLES[k] for k in ("events", "tickets", "transactions"))
            )
        )
        email = conn.execute(
            sa.select(crm.c.email)
            .where(crm.c.email.is_not(None), crm.c.cx_key.not_in(acted.scalar_subquery()))
            .order_by(crm.c.email)
            .limit(1)
        ).scalar()
        coverage_before = summaries.lookup(
            conn, "coverage", data_version(conn), {"churn": summaries.effective_churn(store)}
        )
    assert email is not None
    append_rows(
        store, tmp_path, extracts["web"], [dict(web_rows[0], user_email=email, cookie_id="cookie-first-visit")], "first"
    )
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert others(taken) == {name: n + 1 for name, n in others(counted).items()}
    assert taken[CANDIDATES] == counted[CANDIDATES] + 1
    with store.connect() as conn:
        coverage_now = summaries.lookup(
            conn, "coverage", data_version(conn), {"churn": summaries.effective_churn(store)}
        )
        candidates_now = inactivity_candidate(conn)
    gained = (
        coverage_now.set_index("measure")["customers_covered"]
        - coverage_before.set_index("measure")["customers_covered"]
    )
    assert gained["active customers"] == 1 and gained["churn model"] == 1

    # a customer churned by inactivity comes back on the site: one churned customer fewer
    with store.connect() as conn:
        back = churned_email(conn, metrics.churn.Definition.parse(candidates_now["name"]))
    visit = dict(web_rows[0], user_email=back, cookie_id="cookie-comes-back", event_time=f"{late:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [visit], "back")
    after_load(store, summaries.LANDING)
    assert_stored_equal_whole(store)
    assert taken[CANDIDATES] == counted[CANDIDATES] + 2
    with store.connect() as conn:
        returned = inactivity_candidate(conn)
    assert returned["churned"] == candidates_now["churned"] - 1
    assert returned["customers"] == candidates_now["customers"]


def churned_email(conn, definition) -> str:
    """The first email (by name) of a CRM customer churned under ``definition``."""
    gone = metrics.churn.churned(conn, definition).subquery()
    crm = KIND_TABLES["customers"]
    email = conn.execute(
        sa.select(crm.c.email)
        .join(gone, gone.c.cx_key == crm.c.cx_key)
        .where(crm.c.email.is_not(None))
        .order_by(crm.c.email)
        .limit(1)
    ).scalar()
    assert email is not None
    return email


def inactivity_candidate(conn) -> dict:
    """The stored churn candidates' inactivity definition, as stored."""
    stored = summaries.lookup(conn, CANDIDATES, data_version(conn))
    return next(c for c in stored if c["basis"] == "inactivity")


def assert_same_state(a, b, where: str) -> None:
    """Two JSON states equal, floats to 1e-9 relative (the database sums amounts in no fixed order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, nan_ok=True), where
    else:
        assert a == b, where


def assert_views_equal_whole(store) -> dict[str, object]:
    """Every default view with an increment, as stored, equals it computed from every row now;
    returns them by name."""
    computations, computed = summaries._computations(), {}
    churn = summaries.effective_churn(store)
    with store.connect() as conn:
        version = data_version(conn)
        for name in VIEWS_REFRESHED:
            params = views.default_params(conn, name, computed, churn)
            assert params is not None, name
            computed[name] = whole = computations[name](conn, **params)
            stored = summaries.lookup(conn, name, version, params)
            assert stored is not summaries.MISSING, f"{name} was not stored for version {version}"
            if isinstance(whole, pd.DataFrame):
                assert stored.index.names == whole.index.names, name
                pd.testing.assert_frame_equal(
                    stored.reset_index(drop=True), whole.reset_index(drop=True), check_dtype=False, obj=name
                )
            elif isinstance(whole, metrics.KpiReport):  # the per-customer forecasts are not stored
                assert_same_state(stored.to_state(), whole.to_state(), name)
            else:
                assert stored == whole, name
    return computed


def test_default_views_after_small_appends_in_their_period_equal_them_computed_whole(company, tmp_path, taken):
    store, extracts = company
    after_load(store, VIEWS_REFRESHED)
    first = assert_views_equal_whole(store)
    assert but_map(taken) == {}
    with store.connect() as conn:
        end = as_of(conn)
        period = metrics.default_period(end)
        counts = jr.activity_counts(conn, jr.journey_log(since=period.start, until=period.end))
    top_n = int(views.JOURNEY_DEFAULTS["top_n"])
    assert len(counts) > top_n  # so top N pools some activities, and an append can change which
    web_rows = [r for r in read_rows(extracts["web"]) if r.get("user_email")][:40]

    # one web event from a known customer, earlier the same day: the period stays, the views catch up
    web_rows[0]["event_time"] = f"{end - timedelta(minutes=30):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], web_rows[:1], "one")
    after_load(store, VIEWS_REFRESHED)
    assert_views_equal_whole(store)
    assert but_map(taken) == dict.fromkeys(VIEW_NAMES, 1)

    # five customers take the view's edge once more (two visits a minute apart): their rows change
    source, target = views.edge_labels(first["journeys.dfg"])[0]
    emails = list(dict.fromkeys(r["user_email"] for r in web_rows))[:5]
    assert len(emails) == 5
    pairs = [
        dict(
            next(r for r in web_rows if r["user_email"] == email), event_name=name, event_time=f"{at:%Y-%m-%d %H:%M:%S}"
        )
        for i, email in enumerate(emails)
        for name, at in (
            (source, end - timedelta(hours=1, minutes=2 * i + 1)),
            (target, end - timedelta(hours=1, minutes=2 * i)),
        )
    ]
    append_rows(store, tmp_path, extracts["web"], pairs, "pairs")
    after_load(store, VIEWS_REFRESHED)
    paired = assert_views_equal_whole(store)
    assert but_map(taken) == dict.fromkeys(VIEW_NAMES, 2)

    # a CRM record of a new customer who signed up today: one more identified person in the period
    crm = read_rows(extracts["crm"])[0]
    crm.update({"CustomerID": "CUS-VIEW-1", "Email": "view.customer@example.org", "Phone": "", "Billing Account": ""})
    crm["Signup Date"] = f"{end:%Y-%m-%d}"
    append_rows(store, tmp_path, extracts["crm"], [crm], "crm")
    after_load(store, VIEWS_REFRESHED)
    now = assert_views_equal_whole(store)
    assert now["journeys.people"]["identified"] == paired["journeys.people"]["identified"] + 1
    # the CLV fits read purchases and customers, and every KPI reads the customers: the CRM record
    # has the Shared KPIs views computed whole
    executive = ("executive.report", "executive.trends", "executive.cohorts", "executive.conflicts")
    want = {**dict.fromkeys(VIEW_NAMES, 3), **dict.fromkeys(executive, 2)}
    assert but_map(taken) == want

    # a page asking for the stored edge before the refresh gets its customers caught up too
    web_rows[3]["event_time"] = f"{end - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], web_rows[3:4], "asked")
    with store.connect() as conn:
        params = views.default_params(conn, "journeys.edge_customers", {"journeys.dfg": now["journeys.dfg"]})
        asked = summaries.get(conn, "journeys.edge_customers", params=params)
        whole = summaries._computations()["journeys.edge_customers"](conn, **params)
    pd.testing.assert_frame_equal(asked, whole, check_dtype=False)
    want["journeys.edge_customers"] += 1
    assert but_map(taken) == want

    # a payment earlier the same day: a purchase moves the CLV forecasts and the conflicts' collections,
    # so the report and the conflicts are computed whole
    payment = read_rows(extracts["billing"])[0]
    payment.update({"txn_ref": "TXN-VIEW-1", "txn_date": f"{end - timedelta(hours=3):%Y-%m-%d %H:%M:%S}"})
    append_rows(store, tmp_path, extracts["billing"], [payment], "payment")
    after_load(store, VIEWS_REFRESHED)
    assert_views_equal_whole(store)
    want = {name: n if name in ("executive.report", "executive.conflicts") else n + 1 for name, n in want.items()}
    assert but_map(taken) == want

    # a customer who did nothing in a month (and had not churned by its end) visits then: one more
    # active customer in that month, so the KPIs' activity part is computed again (the rest kept).
    # Billing makes every paying customer active each month: the latest month with an idle one.
    months_before = assert_views_equal_whole(store)["executive.trends"]
    with store.connect() as conn:
        tl = timeline(("cx_key", "ts"))
        gone = metrics.churn.churned(conn, metrics.churn.Definition.parse(summaries.effective_churn(store))).subquery()
        crm = KIND_TABLES["customers"]
        for bucket in reversed(months_before.index):
            month = months_before.loc[bucket]
            busy = sa.select(tl.c.cx_key).where(tl.c.ts >= month["period_start"], tl.c.ts < month["period_end"])
            left = sa.select(gone.c.cx_key).where(gone.c.churn_at < month["period_end"])
            idle = conn.execute(
                sa.select(crm.c.email)
                .where(crm.c.email.is_not(None), crm.c.cx_key.not_in(busy), crm.c.cx_key.not_in(left))
                .order_by(crm.c.email)
                .limit(1)
            ).scalar()
            if idle is not None:
                break
    assert idle is not None
    visit = dict(web_rows[0], user_email=idle, cookie_id="cookie-idle", session_id="s-idle")
    visit["event_time"] = f"{month['period_start'] + timedelta(days=1):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [visit], "idle")
    after_load(store, VIEWS_REFRESHED)
    months_now = assert_views_equal_whole(store)["executive.trends"]
    assert months_now.loc[bucket, "active_customers"] == month["active_customers"] + 1
    want = {name: n + 1 for name, n in want.items()}
    assert but_map(taken) == want

    # a ticket from a known customer: the KPIs' activity and contacts parts are computed again, and
    # the conflicts whole (they read tickets)
    ticket = read_rows(extracts["helpdesk"])[0]
    ticket.update({"Ticket #": "770001", "Created": f"{end - timedelta(hours=2):%Y-%m-%d %H:%M:%S}", "Resolved": ""})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "ticket")
    after_load(store, VIEWS_REFRESHED)
    contacted = assert_views_equal_whole(store)["executive.trends"]
    assert contacted["contacts"].iloc[-1] == months_now["contacts"].iloc[-1] + 1
    assert {name: taken[name] for name in executive} == {
        name: want[name] + (name != "executive.conflicts") for name in executive
    }
    want = but_map(taken)  # the journeys' increments on a ticket are checked by their equality above

    # two pages nobody had seen, each visited once more than the last activity top N keeps (and the
    # activities tied with it): they take those places, so every customer's steps pool differently
    # and the edge's customers are computed whole
    with store.connect() as conn:
        counts = jr.activity_counts(conn, jr.journey_log(since=period.start, until=period.end))
    last_name, kept_last = str(counts["activity"].iloc[top_n - 1]), int(counts["count"].iloc[top_n - 1])
    tied = int((counts["count"].iloc[:top_n] == kept_last).sum())
    # an edge into the last kept activity: its customers are every customer's, appended or not
    into_last = now["journeys.dfg"][now["journeys.dfg"]["target"] == last_name]
    assert len(into_last)
    params = views.edge_params(
        views.DEFAULT_MAP_FILTERS,
        str(into_last["source"].iloc[0]),
        last_name,
        views.period_params(period.start.date(), (period.end - timedelta(days=1)).date()),
    )
    with store.connect() as conn:
        version = data_version(conn)
        edge_before = summaries._computations()["journeys.edge_customers"](conn, **params)
    assert len(edge_before)
    visits = [(f"promo_{p}", i) for p in range(tied) for i in range(kept_last + 1)]
    assert len(visits) < len(web_rows)
    promo = [
        dict(r, event_name=name, event_time=f"{end - timedelta(hours=2, minutes=i):%Y-%m-%d %H:%M:%S}")
        for r, (name, i) in zip(web_rows[1:], visits, strict=False)
    ]
    append_rows(store, tmp_path, extracts["web"], promo, "promo")
    with store.connect() as conn:
        loads = rollups.appends_since(conn, version)
        assert loads and len(loads) == 1
        counts = jr.activity_counts(conn, jr.journey_log(since=period.start, until=period.end))
        kept = view_increments._ranked(counts.set_index("activity")["count"], top_n)
        assert kept is not None and last_name not in kept and f"promo_{tied - 1}" in kept  # no tie at the cut
        assert summaries._computations()["journeys.edge_customers"](conn, **params).empty  # pooled now
        assert summaries.INCREMENTS["journeys.edge_customers"](conn, edge_before, loads, **params) is None
    after_load(store, VIEWS_REFRESHED)
    assert_views_equal_whole(store)
    want = {name: n if name == "journeys.edge_customers" else n + 1 for name, n in want.items()}
    assert but_map(taken) == want

    # an anonymous visitor's visits merged into a customer: earlier rows change customer, computed whole
    merge = dict(web_rows[-1], cookie_id=anonymous_cookie(store), event_time=f"{end:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [merge], "merge")
    after_load(store, VIEWS_REFRESHED)
    assert_views_equal_whole(store)
    assert but_map(taken) == want

    # a visit two days on moves the data's date, so the default period: the views are new ones
    web_rows[2]["event_time"] = f"{end + timedelta(days=2):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], web_rows[2:3], "later")
    after_load(store, VIEWS_REFRESHED)
    assert_views_equal_whole(store)
    assert but_map(taken) == want


def last_steps(conn, period) -> pd.DataFrame:
    """Per CRM customer with an email and a step in ``period``: the time of their last step there,
    and the departments of their steps at that time."""
    log = jr.journey_log(since=period.start, until=period.end)
    latest = sa.select(log.c.cx_key, sa.func.max(log.c.ts).label("ts")).group_by(log.c.cx_key).subquery()
    crm = KIND_TABLES["customers"]
    rows = conn.execute(
        sa.select(crm.c.email, latest.c.ts, log.c.department)
        .select_from(
            latest.join(log, sa.and_(log.c.cx_key == latest.c.cx_key, log.c.ts == latest.c.ts)).join(
                crm, crm.c.cx_key == latest.c.cx_key
            )
        )
        .where(crm.c.email.is_not(None))
    ).all()
    steps = pd.DataFrame(rows, columns=["email", "ts", "department"])
    return steps.groupby(["email", "ts"], as_index=False).agg(departments=("department", lambda d: sorted(set(d))))


def test_the_funnel_and_handoffs_stand_when_the_appended_steps_cannot_change_them(
    company, tmp_path, taken, monkeypatch
):
    store, extracts = company
    refreshed = ("journeys.activities", "journeys.positions", *STANDING)
    after_load(store, refreshed)
    computations = summaries._computations()

    def stored_and_whole(name):
        with store.connect() as conn:
            params = views.default_params(conn, name, computed)
            stored = summaries.lookup(conn, name, data_version(conn), params)
            whole = computations[name](conn, **params)
        assert stored is not summaries.MISSING, name
        pd.testing.assert_frame_equal(stored.reset_index(drop=True), whole, check_dtype=False, obj=name)
        return whole

    with store.connect() as conn:
        end = as_of(conn)
        period = metrics.default_period(end)
        computed = {name: computations[name](conn, **views.default_params(conn, name, {})) for name in refreshed[:2]}
        web_department = conn.execute(
            sa.select(sources_table.c.department).where(sources_table.c.name == extracts["web"].source)
        ).scalar()
        last = last_steps(conn, period)
    funnel_before, handoffs_before = stored_and_whole("journeys.funnel"), stored_and_whole("journeys.handoffs")
    steps = list(funnel_before["activity"].unique())
    assert web_department and len(steps) >= 2
    # a customer whose last step in the period was on the site, a while before the data's date
    on_site = last[last["departments"].map(lambda d: d == [web_department]) & (last["ts"] < end - timedelta(hours=1))]
    assert len(on_site)
    email, since = on_site["email"].iloc[0], on_site["ts"].iloc[0]
    page = {"user_email": email, "cookie_id": "cookie-standing", "session_id": "s-standing"}

    # they read the help pages on the site: a step of no funnel, in the department they were in
    help_page = dict(page, event_name="help_article", event_time=f"{since + timedelta(minutes=10):%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [help_page], "help")
    after_load(store, refreshed)
    assert standing(taken) == dict.fromkeys(STANDING, 1)
    stored_and_whole("journeys.funnel"), stored_and_whole("journeys.handoffs")

    # and another page at the very same second: the newer load comes after it, on the site too, so no
    # handoff moves (compared with and without the step: a rule "strictly later" computed it whole)
    again = dict(help_page, event_name="help_search", session_id="s-standing-2")
    append_rows(store, tmp_path, extracts["web"], [again], "same-second")
    after_load(store, refreshed)
    assert standing(taken) == dict.fromkeys(STANDING, 2)
    stored_and_whole("journeys.funnel"), stored_and_whole("journeys.handoffs")

    # then open a ticket with another team: a handoff from the site to a department no one was handed
    # to before, so the handoffs move (a new pair, its count, customers and waits from this handoff)
    ticket = dict(read_rows(extracts["helpdesk"])[0], **{"Requester Email": email, "Requester Phone": ""})
    ticket.update({"Ticket #": "880001", "Created": f"{since + timedelta(minutes=20):%Y-%m-%d %H:%M:%S}"})
    ticket.update({"Resolved": "", "Team": "standing_team"})
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "team")
    after_load(store, refreshed)
    assert standing(taken) == dict.fromkeys(STANDING, 3)
    stored_and_whole("journeys.funnel")
    handoffs = stored_and_whole("journeys.handoffs")
    moved = handoffs[
        (handoffs["source_department"] == web_department) & (handoffs["target_department"] == "standing_team")
    ]
    assert moved["count"].tolist() == [1]  # the handoff the increment had to see
    assert not handoffs_before["target_department"].eq("standing_team").any()

    # a customer who never took the funnel's first step in the period takes it: one more enters, the
    # funnel moved by their entry (from the seconds kept near each step's median)
    with store.connect() as conn:
        log = jr.journey_log(since=period.start, until=period.end)
        entered = sa.select(log.c.cx_key).where(log.c.activity == steps[0])
        crm = KIND_TABLES["customers"]
        newcomer = conn.execute(
            sa.select(crm.c.email)
            .where(crm.c.email.is_not(None), crm.c.cx_key.not_in(entered))
            .order_by(crm.c.email)
            .limit(1)
        ).scalar()
    assert newcomer is not None
    first = dict(page, user_email=newcomer, cookie_id="cookie-enters", session_id="s-enters", event_name=steps[0])
    first["event_time"] = f"{end - timedelta(minutes=1):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [first], "enters")
    with store.connect() as conn:
        assert rollups.appends_since(conn, data_version(conn) - 1)  # a noted append: an increment was looked at
    after_load(store, refreshed)
    assert taken["journeys.funnel"] == 4
    funnel = stored_and_whole("journeys.funnel")
    first_step = funnel[funnel["step"] == 1]["customers"].tolist()
    assert first_step == [int(funnel_before[funnel_before["step"] == 1]["customers"].iloc[0]) + 1]
    assert (
        funnel[funnel["step"] > 1]["customers"].tolist()
        == funnel_before[funnel_before["step"] > 1]["customers"].tolist()
    )

    # half a minute later they take the second step: a conversion of 30 seconds, the step's median moved
    second = dict(first, session_id="s-converts", event_name=steps[1])
    second["event_time"] = f"{end - timedelta(seconds=30):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [second], "converts")
    after_load(store, refreshed)
    assert taken["journeys.funnel"] == 5
    converted = stored_and_whole("journeys.funnel").set_index("step")
    assert converted.loc[2, "customers"] == funnel.set_index("step").loc[2, "customers"] + 1

    # with runs of one rank each side (stored so by a refresh from every row), five more newcomers who
    # convert within a second put the second step's median below its run: computed whole
    monkeypatch.setattr(jr.percentile_runs, "RUN_RANKS", 1)
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
    after_load(store, refreshed)
    with store.connect() as conn:
        params = views.default_params(conn, "journeys.funnel", computed)
        kept = summaries.lookup(conn, "journeys.funnel", data_version(conn), params).attrs["waits"]
        fresh = (
            conn.execute(
                sa.select(crm.c.email)
                .where(crm.c.email.is_not(None), crm.c.cx_key.not_in(entered), crm.c.email != newcomer)
                .order_by(crm.c.email)
                .limit(5)
            )
            .scalars()
            .all()
        )
    runs = next(w[2] for w in kept if w[1] == 2)
    assert (
        runs["n"] > 6 and runs["runs"][0][1][0] > 1
    )  # more seconds than the runs hold, none of them 1 near the median
    assert len(fresh) == 5
    quick = []
    for i, email in enumerate(fresh):
        at = end - timedelta(minutes=5 + i)
        row = dict(first, user_email=email, cookie_id=f"cookie-quick-{i}", session_id=f"s-quick-{i}")
        quick.append(dict(row, event_name=steps[0], event_time=f"{at:%Y-%m-%d %H:%M:%S}"))
        quick.append(dict(row, event_name=steps[1], event_time=f"{at + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}"))
    append_rows(store, tmp_path, extracts["web"], quick, "quick")
    after_load(store, refreshed)
    assert taken["journeys.funnel"] == 5
    assert (
        stored_and_whole("journeys.funnel").set_index("step").loc[2, "customers"] == converted.loc[2, "customers"] + 5
    )


def test_handoffs_move_by_the_waits_appended_customers_gain_and_lose(company, tmp_path, taken, monkeypatch):
    store, extracts = company
    name = "journeys.handoffs"
    after_load(store, (name,))

    def stored_and_whole() -> pd.DataFrame:
        return stored_view_equal_whole(store, name).set_index(["source_department", "target_department"])

    with store.connect() as conn:
        end = as_of(conn)
        last = last_steps(conn, metrics.default_period(end))
        web_department = conn.execute(
            sa.select(sources_table.c.department).where(sources_table.c.name == extracts["web"].source)
        ).scalar()
    before = stored_and_whole()
    on_site = last[last["departments"].map(lambda d: d == [web_department]) & (last["ts"] < end - timedelta(hours=2))]
    assert len(on_site) >= 8
    ticket = read_rows(extracts["helpdesk"])[0]
    team = ticket["Team"]

    def tickets(rows, tag: str, minutes: int) -> list[dict]:
        out = []
        for i, (email, since) in enumerate(zip(rows["email"], rows["ts"], strict=True)):
            row = dict(ticket, **{"Requester Email": email, "Requester Phone": "", "Resolved": ""})
            row.update(
                {"Ticket #": f"77{tag}{i:03d}", "Created": f"{since + timedelta(minutes=minutes):%Y-%m-%d %H:%M:%S}"}
            )
            out.append(row)
        return out

    # three customers last seen on the site open a ticket half an hour later: three more handoffs
    # from the site to the team (a pair that had some), each a 30-minute wait
    append_rows(store, tmp_path, extracts["helpdesk"], tickets(on_site.iloc[:3], "a", 30), "three")
    after_load(store, (name,))
    assert taken == {name: 1}
    after = stored_and_whole()
    pair = (web_department, team)
    assert after.loc[pair, "count"] == before["count"].get(pair, 0) + 3
    assert after.loc[pair, "customers"] == before["customers"].get(pair, 0) + 3
    assert after.drop(index=pair)["count"].equals(before.drop(index=pair, errors="ignore")["count"])

    # with runs of one rank each side (stored so by a refresh from every row), five handoffs of no
    # wait (a ticket at the second of the customer's last page) put the pair's median below its run:
    # computed whole
    monkeypatch.setattr(jr.percentile_runs, "RUN_RANKS", 1)
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
    after_load(store, (name,))
    assert taken == {name: 1}
    with store.connect() as conn:
        kept = summaries.lookup(conn, name, data_version(conn), views.default_params(conn, name, {})).attrs["waits"]
    runs = next(w[3] for w in kept if (w[0], w[1]) == pair)
    assert runs["n"] > 6 and runs["runs"][0][1][0] > 0  # more waits than the runs hold, none of them 0 near the median
    append_rows(store, tmp_path, extracts["helpdesk"], tickets(on_site.iloc[3:8], "b", 0), "five")
    after_load(store, (name,))
    assert taken == {name: 1}
    assert stored_and_whole().loc[pair, "count"] == after.loc[pair, "count"] + 5


def test_the_headline_counts_a_customer_new_to_the_active_window(company, tmp_path, taken):
    """A new CRM customer (no row yet: not active, not churned) visits the site before the data's
    date: the stored headline gains one active customer, its other figures as they were."""
    store, extracts = company
    churn = summaries.effective_churn(store)
    assert churn  # a named definition: else the suggestion is read from the data
    with store.connect() as conn:
        end = as_of(conn)
    crm = read_rows(extracts["crm"])[0]
    crm.update({"CustomerID": "CUS-HEAD-1", "Email": "quiet.customer@example.org", "Phone": "", "Billing Account": ""})
    crm.update({"Signup Date": f"{end - timedelta(days=200):%Y-%m-%d}"})  # signed up before the window
    append_rows(store, tmp_path, extracts["crm"], [crm], "crm")
    after_load(store, (HEADLINE,))
    assert taken == {}  # a CRM record: computed whole

    def stored_and_whole():
        with store.connect() as conn:
            stored = summaries.lookup(conn, HEADLINE, data_version(conn), {"churn": churn})
            whole = summaries._computations()[HEADLINE](conn, churn=churn)
        assert stored == whole
        return stored

    before = stored_and_whole()
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))
    visit = dict(web, user_email=crm["Email"], cookie_id="cookie-quiet")
    visit["event_time"] = f"{end - timedelta(hours=2):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [visit], "visit")
    after_load(store, (HEADLINE,))
    assert taken == {HEADLINE: 1}
    after = stored_and_whole()
    assert after.active_customers == before.active_customers + 1
    assert (after.customers, after.churned_customers, after.revenue, after.as_of) == (
        before.customers,
        before.churned_customers,
        before.revenue,
        before.as_of,
    )


def test_kpis_are_computed_whole_when_the_churn_definition_reads_the_appended_rows(company, tmp_path):
    """Under churn by inactivity every dated row moves who churned when, so an event append moves
    the customers part of the KPIs too: keeping it would be wrong, and it is not kept."""
    store, extracts = company
    update_rollups(store)  # the appends after it are noted as such
    with store.connect() as conn:
        end = as_of(conn)
        periods = metrics.monthly_periods(end, 12)
        inactivity = metrics.churn.Definition("inactivity", days=30)
        before = metrics.kpi_table(conn, periods, churn=inactivity)
        version = data_version(conn)
        back = churned_email(conn, inactivity)
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))
    visit = dict(
        web, user_email=back, cookie_id="cookie-inactive", event_time=f"{end - timedelta(hours=1):%Y-%m-%d %H:%M:%S}"
    )
    append_rows(store, tmp_path, extracts["web"], [visit], "inactive")
    update_rollups(store)
    with store.connect() as conn:
        loads = rollups.appends_since(conn, version)
        assert loads
        assert view_increments._kpi_sections_after(conn, loads, inactivity.name) is None
        assert view_increments._kpi_sections_after(conn, loads, "subscriptions") == frozenset({"activity"})
        whole = metrics.kpi_table(conn, periods, churn=inactivity)
        kept = metrics.kpi_table(conn, periods, churn=inactivity, keep=before, sections=frozenset({"activity"}))
    # the customer who came back is no longer churned: keeping the customers part would say they were
    assert whole["churned_in_period"].sum() < before["churned_in_period"].sum()
    assert not kept["churned_in_period"].equals(whole["churned_in_period"])


def test_kpis_are_computed_whole_after_appends_to_a_store_without_crm_records(tmp_path, taken):
    """Without CRM records the customers are everyone on the timeline: a new visitor is a new
    customer, so an event append moves the customers part of the KPIs, and it is not kept. The
    churn candidates, counted per customer, take the newcomer in."""
    extracts = {ex.source: ex for ex in write_demo_extracts(tmp_path / "extracts", 60, seed=5)}
    web = extracts["web"]
    store = make_store("duckdb", tmp_path)
    try:
        for extract in (web, extracts["billing"]):  # purchases: the inactivity window reads their gaps
            ingest_file(store, extract.path, source=extract.source, mapping=Mapping.from_dict(extract.mapping))
        after_load(store, (CANDIDATES,))
        with store.connect() as conn:
            end = as_of(conn)
            periods = metrics.monthly_periods(end, 12)
            subscriptions = metrics.churn.Definition("subscriptions")
            before = metrics.kpi_table(conn, periods, churn=subscriptions)
            version = data_version(conn)
            judged = inactivity_candidate(conn)["customers"]
        row = dict(read_rows(web)[0], user_email="", cookie_id="cookie-newcomer", session_id="s-newcomer")
        row["event_time"] = f"{end - timedelta(hours=1):%Y-%m-%d %H:%M:%S}"
        append_rows(store, tmp_path, web, [row], "newcomer")
        after_load(store, (CANDIDATES,))  # the churn candidates count the newcomer with the others
        assert_stored_equal_whole(store, (CANDIDATES,))
        assert taken == {CANDIDATES: 1}
        with store.connect() as conn:
            assert inactivity_candidate(conn)["customers"] == judged + 1
        with store.connect() as conn:
            loads = rollups.appends_since(conn, version)
            assert loads
            assert view_increments._kpi_sections_after(conn, loads, subscriptions.name) is None
            whole = metrics.kpi_table(conn, periods, churn=subscriptions)
            kept = metrics.kpi_table(conn, periods, churn=subscriptions, keep=before, sections=frozenset({"activity"}))
        assert whole["customers"].iloc[-1] == before["customers"].iloc[-1] + 1  # the newcomer
        assert kept["customers"].iloc[-1] == before["customers"].iloc[-1]  # what keeping it would say
    finally:
        store.dispose()


def first_steps(conn, period, top_n: int) -> dict[str, tuple[int, object, object, str, str]]:
    """Per CRM customer (email) with steps in ``period``: how many steps their journey has there
    once activities outside the top ``top_n`` are pooled and repeats collapsed (the variants' and the
    map's default filters), the time of the fifth such step, of their last step, their variant (the
    first five names) and their last step's name. Worked out in Python from the log's rows, apart
    from the database's windows."""
    log = jr.journey_log(since=period.start, until=period.end)
    crm = KIND_TABLES["customers"]
    rows = conn.execute(
        sa.select(crm.c.email, log.c.activity, log.c.ts, log.c.load_id, log.c.row_number, log.c.row_step).join(
            crm, crm.c.cx_key == log.c.cx_key
        )
    ).all()
    frame = pd.DataFrame(rows, columns=["email", "activity", "ts", "load_id", "row_number", "row_step"])
    counts = (
        frame.groupby("activity").size().reset_index(name="n").sort_values(["n", "activity"], ascending=[False, True])
    )
    kept = set(counts["activity"].head(top_n))
    frame["name"] = frame["activity"].where(frame["activity"].isin(kept), jr.OTHER)
    out = {}
    for email, steps in frame.sort_values(["ts", "load_id", "row_number", "row_step", "name"]).groupby("email"):
        names, times = steps["name"].tolist(), steps["ts"].tolist()
        kept = [i for i in range(len(names)) if i == 0 or names[i] != names[i - 1]]
        variant = jr.VARIANT_SEPARATOR.join(names[i] for i in kept[:5])
        out[email] = (len(kept), times[kept[4]] if len(kept) >= 5 else None, times[-1], variant, names[-1])
    return out


def journeys_and_busiest(conn) -> tuple:
    """``(end, journeys, busiest)``: the data's date, each CRM customer's journey in the default
    period (``first_steps``) and the period's three busiest activities."""
    end = as_of(conn)
    period = metrics.default_period(end)
    journeys = first_steps(conn, period, int(views.JOURNEY_DEFAULTS["top_n"]))
    log = jr.journey_log(since=period.start, until=period.end)
    return end, journeys, [str(a) for a in jr.activity_counts(conn, log)["activity"]][:3]


def test_variants_stand_when_appended_steps_come_after_each_customers_first_steps(company, tmp_path, taken):
    store, extracts = company
    churn = summaries.effective_churn(store)
    after_load(store, (VARIANTS,))

    def listed() -> pd.Series:
        """The stored variants' customers, by variant."""
        with store.connect() as conn:
            params = views.default_params(conn, VARIANTS, {}, churn)
            return summaries.lookup(conn, VARIANTS, data_version(conn), params).set_index("variant")["customers"]

    def stored_and_whole():
        with store.connect() as conn:
            params = views.default_params(conn, VARIANTS, {}, churn)
            stored = summaries.lookup(conn, VARIANTS, data_version(conn), params)
            whole = summaries._computations()[VARIANTS](conn, **params)
        assert stored is not summaries.MISSING
        pd.testing.assert_frame_equal(stored, whole, check_dtype=False)

    steps = int(views.JOURNEY_DEFAULTS["variant_steps"])
    assert steps == 5  # first_steps reads the fifth step
    with store.connect() as conn:
        end, journeys, busiest = journeys_and_busiest(conn)
    recent = end - timedelta(hours=1)
    long = sorted(e for e, (n, _, last, *_) in journeys.items() if n >= steps and last < recent)
    # a short journey whose variant is listed: taking one more step moves its count in the list
    short = sorted(e for e, (n, _, last, v, _) in journeys.items() if n < steps and last < recent and v in listed())
    assert long and short
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))

    def visit(email: str, at, name: str, page: str | None = None) -> list[dict]:
        """A visit to the busiest page that is neither of the last two steps of the customer's variant
        (next to either, a repeat would collapse), or to ``page``."""
        near = journeys[email][3].split(jr.VARIANT_SEPARATOR)[-2:]
        page = page or next(p for p in busiest if p not in near)
        row = dict(web, user_email=email, cookie_id=f"cookie-{name}", session_id=f"s-{name}", event_name=page)
        row["event_time"] = f"{at:%Y-%m-%d %H:%M:%S}"
        return [row]

    # a customer with five steps or more takes the busiest step after their last: their variant (the
    # first five) is the same, so the stored variants stand
    email = long[0]
    append_rows(
        store, tmp_path, extracts["web"], visit(email, journeys[email][2] + timedelta(minutes=5), "long"), "long"
    )
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 1}
    stored_and_whole()

    # a customer with fewer steps: the new step is one of their first five, computed whole (the
    # variant they had loses a customer)
    email = short[0]
    before = listed()
    append_rows(
        store, tmp_path, extracts["web"], visit(email, journeys[email][2] + timedelta(minutes=5), "short"), "short"
    )
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 1}
    stored_and_whole()
    was = journeys[email][3]
    assert listed().get(was, 0) == before[was] - 1

    # a long journey with a step slipped in before its fifth one: computed whole
    email = long[1] if len(long) > 1 else long[0]
    fifth = journeys[email][1]
    append_rows(store, tmp_path, extracts["web"], visit(email, fifth - timedelta(seconds=1), "early"), "early")
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 1}
    stored_and_whole()

    # a short journey repeats its last step later: the repeat collapses, so the variant and the time
    # it spans are as they were (compared with and without the step), and the variants stand
    email = short[1] if len(short) > 1 else short[0]
    again = journeys[email][3].split(jr.VARIANT_SEPARATOR)[-1]
    append_rows(
        store,
        tmp_path,
        extracts["web"],
        visit(email, journeys[email][2] + timedelta(minutes=7), "again", again),
        "again",
    )
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 2}
    stored_and_whole()


def test_variants_move_by_the_customers_who_came_and_left(company, tmp_path, taken, monkeypatch):
    """A customer whose first five steps gain one leaves their variant for another, and a customer new
    to the period adds one: the stored variants move by them, from the most common variants kept
    whole. When a variant not kept could reach the list, they are computed whole."""
    store, extracts = company
    churn = summaries.effective_churn(store)
    monkeypatch.setattr(jr.variants, "KEPT_PER_SHOWN", 10_000)  # every variant kept whole

    def stored_and_whole() -> pd.DataFrame:
        return stored_view_equal_whole(store, VARIANTS, churn)

    after_load(store, (VARIANTS,))
    before = stored_and_whole()
    assert before.attrs["waits"]["beyond"] == 0
    with store.connect() as conn:
        end, journeys, busiest = journeys_and_busiest(conn)
        crm = KIND_TABLES["customers"]
        emails = conn.execute(sa.select(crm.c.email).where(crm.c.email.is_not(None)).order_by(crm.c.email)).scalars()
        newcomers = [e for e in emails if e not in journeys]

    def every(frame: pd.DataFrame) -> dict[str, int]:
        """Every variant's customers, from what the stored view keeps (every variant, here)."""
        return {v[0]: v[4]["n"] for v in frame.attrs["waits"]["variants"]}

    listed = every(before)
    short = sorted(
        e for e, (n, _, last, v, _) in journeys.items() if n < 4 and last < end - timedelta(hours=1) and v in listed
    )
    assert short and newcomers
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))

    def visit(email: str, at, name: str, page: str) -> list[dict]:
        row = dict(web, user_email=email, cookie_id=f"cookie-{name}", session_id=f"s-{name}", event_name=page)
        return [dict(row, event_time=f"{at:%Y-%m-%d %H:%M:%S}")]

    # a short journey takes a page other than its last: its variant loses a customer, the longer one gains
    email = short[0]
    _, _, last, was, last_name = journeys[email]
    page = next(p for p in busiest if p != last_name)
    append_rows(store, tmp_path, extracts["web"], visit(email, last + timedelta(minutes=5), "moves", page), "moves")
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 1}
    moved = stored_and_whole()
    now = every(moved)
    assert now.get(was, 0) == listed[was] - 1
    assert now.get(was + jr.VARIANT_SEPARATOR + page, 0) == listed.get(was + jr.VARIANT_SEPARATOR + page, 0) + 1
    assert moved.attrs["waits"]["cases"] == before.attrs["waits"]["cases"]

    # a customer with no step in the period takes the busiest page: one more journey, every share moves
    append_rows(store, tmp_path, extracts["web"], visit(newcomers[0], end, "new", busiest[0]), "new")
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 2}
    grown = stored_and_whole()
    assert grown.attrs["waits"]["cases"] == before.attrs["waits"]["cases"] + 1
    assert every(grown).get(busiest[0], 0) == now.get(busiest[0], 0) + 1

    # the 30 shown kept alone (stored so by a refresh from every row): a journey moving to a variant
    # not kept might reach the list (its count is bounded by the next variant's), so computed whole
    monkeypatch.setattr(jr.variants, "KEPT_PER_SHOWN", 1)
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
    after_load(store, (VARIANTS,))
    kept = stored_and_whole().attrs["waits"]
    assert len(kept["variants"]) == 30 and kept["beyond"] > 0
    assert kept["variants"][-1][4]["n"] <= kept["beyond"] + 1  # one more customer could tie the last shown
    email = short[1] if len(short) > 1 else newcomers[1]
    append_rows(store, tmp_path, extracts["web"], visit(email, end, "unkept", "a_page_no_one_visits"), "unkept")
    after_load(store, (VARIANTS,))
    assert taken == {VARIANTS: 2}
    stored_and_whole()


def test_journey_map_moves_by_the_appended_customers_steps(company, tmp_path, taken, monkeypatch):
    store, extracts = company
    after_load(store, MAP)

    def stored_and_whole() -> pd.DataFrame:
        with store.connect() as conn:
            for name in MAP:
                params = views.default_params(conn, name, {})
                stored = summaries.lookup(conn, name, data_version(conn), params)
                whole = summaries._computations()[name](conn, **params)
                assert stored is not summaries.MISSING, name
                pd.testing.assert_frame_equal(stored, whole, check_dtype=False, obj=name)
                if name == "journeys.dfg":
                    graph = stored
                if name == "journeys.nodes":  # the steps per activity top N ranks, kept up to date
                    kept = stored.attrs["activity_counts"]
                    log = jr.journey_log(**views._bounds(params.get("period")))
                    counts = jr.activity_counts(conn, log, views.counting_spec(views._spec(params["filters"])))
                    assert kept == views.activity_counts_kept(counts.set_index("activity")["count"])
                    assert sum(n for _, n in kept) == conn.execute(sa.select(sa.func.count()).select_from(log)).scalar()
        return graph

    with store.connect() as conn:
        end = as_of(conn)
        period = metrics.default_period(end)
        journeys = first_steps(conn, period, int(views.JOURNEY_DEFAULTS["top_n"]))
    pages = set(pd.read_csv(extracts["web"].path, dtype=str)["event_name"].dropna())
    recent = end - timedelta(hours=1)
    # customers whose last step (pooled, collapsed) was a while ago and is one of the site's pages
    calm = sorted(e for e, (_, _, last, _, name) in journeys.items() if last < recent and name in pages)
    assert len(calm) >= 8
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))

    def visit(email: str, page: str, tag: str) -> list[dict]:
        row = dict(web, user_email=email, cookie_id=f"cookie-{tag}", session_id=f"s-{tag}", event_name=page)
        row["event_time"] = f"{journeys[email][2] + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}"
        return [row]

    before = stored_and_whole()
    # the customer visits their last page again: the repeat collapses into it, so no transition and
    # no node moves, and the map stands
    email = calm[0]
    append_rows(store, tmp_path, extracts["web"], visit(email, journeys[email][4], "again"), "again")
    after_load(store, MAP)
    assert taken == dict.fromkeys(MAP, 1)
    stored_and_whole()

    # another customer visits a page other than their last: one more transition (and its seconds),
    # so the map moves by it (its edge's count, customers, seconds; the page's node)
    email = calm[1]
    other = sorted(pages - {journeys[email][4]})[0]
    append_rows(store, tmp_path, extracts["web"], visit(email, other, "next"), "next")
    after_load(store, MAP)
    assert taken == dict.fromkeys(MAP, 2)
    after = stored_and_whole()
    assert after["count"].sum() == before["count"].sum() + 1

    # a customer with no step in the period takes one: one more case, so every edge's share of the
    # customers moves, and a node gains a start and an end
    with store.connect() as conn:
        crm = KIND_TABLES["customers"]
        log = jr.journey_log(since=period.start, until=period.end)
        newcomer = conn.execute(
            sa.select(crm.c.email)
            .where(crm.c.email.is_not(None), crm.c.cx_key.not_in(sa.select(log.c.cx_key)))
            .order_by(crm.c.email)
            .limit(1)
        ).scalar()
    assert newcomer is not None
    row = dict(web, user_email=newcomer, cookie_id="cookie-newcomer", session_id="s-newcomer", event_name=other)
    row["event_time"] = f"{end - timedelta(minutes=3):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [row], "newcomer")
    after_load(store, MAP)
    assert taken == dict.fromkeys(MAP, 3)
    assert stored_and_whole()["count"].sum() == after["count"].sum()  # no transition: one step alone

    # with the seconds kept one rank each side (stored so by a refresh from every row), five customers
    # taking the busiest edge with no time between its steps put its median below the seconds kept:
    # computed whole
    monkeypatch.setattr(jr.percentile_runs, "RUN_RANKS", 1)
    monkeypatch.setattr(jr.percentile_runs, "RUN_SHARE", 0.0)
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
    after_load(store, MAP)
    assert taken == dict.fromkeys(MAP, 3)
    graph = stored_and_whole()
    kept = {(w[0], w[1]): w[3] for w in graph.attrs["map"]["pooled"]}
    # the busiest edge between two of the site's pages
    source, target = next(
        (a, b) for a, b in zip(graph["source"], graph["target"], strict=True) if a in pages and b in pages and a != b
    )
    runs = kept[(source, target)]
    assert runs["n"] > 10 and runs["runs"][0][1][0] > 0  # more than the runs hold, none 0 near the median
    takers = [e for e in calm[2:] if journeys[e][4] != source][:5]  # their last page is not the edge's first
    assert len(takers) == 5
    pairs = []
    for i, email in enumerate(takers):
        at = f"{journeys[email][2] + timedelta(minutes=9):%Y-%m-%d %H:%M:%S}"
        for page in (source, target):
            pairs.append(
                dict(web, user_email=email, cookie_id=f"c-zero-{i}", session_id=f"s-zero-{i}", event_name=page)
            )
            pairs[-1]["event_time"] = at
    assert len(pairs) == 10
    append_rows(store, tmp_path, extracts["web"], pairs, "zero")
    after_load(store, MAP)
    assert taken == {"journeys.dfg": 3, "journeys.nodes": 4}  # the nodes keep no percentiles: they move
    assert stored_and_whole()["count"].sum() > after["count"].sum() + 5


def test_hotspots_stand_when_no_appended_step_moves_a_moment(company, tmp_path, taken):
    store, extracts = company
    churn = summaries.effective_churn(store)
    after_load(store, MOMENTS)

    def stored_and_whole() -> dict[str, pd.DataFrame]:
        computed, out = {}, {}
        with store.connect() as conn:
            for name in MOMENTS:
                params = views.default_params(conn, name, computed, churn)
                stored = summaries.lookup(conn, name, data_version(conn), params)
                computed[name] = whole = summaries._computations()[name](conn, **params)
                assert stored is not summaries.MISSING, name
                pd.testing.assert_frame_equal(stored, whole, check_dtype=False, obj=name)
                out[name] = stored
        return out

    help_then_contact = "help page then contact"
    with store.connect() as conn:
        end = as_of(conn)
        period = metrics.default_period(end)
        m = jr.friction_moments(repeat_days=int(views.JOURNEY_DEFAULTS["repeat_days"]))
        moments = conn.execute(sa.select(m.c.cx_key, m.c.ts, m.c.hotspot)).all()
        crm, k = KIND_TABLES["customers"], KIND_TABLES["tickets"]
        log = jr.journey_log(since=period.start, until=period.end)
        active = sa.select(log.c.cx_key)
        calm = conn.execute(
            sa.select(crm.c.email)
            .where(
                crm.c.email.is_not(None),
                crm.c.cx_key.in_(active),
                crm.c.cx_key.not_in({row.cx_key for row in moments} or {-1}),
            )
            .order_by(crm.c.email)
            .limit(1)
        ).scalar()
        tickets = conn.execute(
            sa.select(crm.c.email, k.c.cx_key, k.c.opened_at)
            .join(crm, crm.c.cx_key == k.c.cx_key)
            .where(crm.c.email.is_not(None), k.c.opened_at >= period.start, k.c.opened_at < end - timedelta(days=1))
            .order_by(k.c.opened_at, crm.c.email)
        ).all()
    helped = {(row.cx_key, row.ts) for row in moments if row.hotspot == help_then_contact}
    unhelped = [t for t in tickets if (t.cx_key, t.opened_at) not in helped]
    assert calm is not None and unhelped
    before = stored_and_whole()["journeys.hotspots"].set_index("hotspot")["moments"]
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))

    def page(email: str, name: str, at, cookie: str = "") -> list[dict]:
        cookie = cookie or name
        row = dict(web, user_email=email, cookie_id=f"cookie-{cookie}", session_id=f"s-{cookie}", event_name=name)
        row["event_time"] = f"{at:%Y-%m-%d %H:%M:%S}"
        return [row]

    # a customer without a friction moment looks at the prices: no moment can come of it (not an
    # error, not a help page, and the site's steps are not rework), so the hotspots stand
    append_rows(store, tmp_path, extracts["web"], page(calm, "pricing", end - timedelta(hours=2)), "calm")
    after_load(store, MOMENTS)
    assert taken == dict.fromkeys(MOMENTS, 1)
    stored_and_whole()

    # a customer reads a help page an hour before a ticket they opened: a new "help page then
    # contact" moment, so the hotspots are computed whole and count it
    ticket = unhelped[0]
    append_rows(
        store, tmp_path, extracts["web"], page(ticket.email, "help_page", ticket.opened_at - timedelta(hours=1)), "help"
    )
    after_load(store, MOMENTS)
    assert taken == dict.fromkeys(MOMENTS, 1)
    after = stored_and_whole()["journeys.hotspots"].set_index("hotspot")["moments"]
    assert after[help_then_contact] == before.get(help_then_contact, 0) + 1

    # a customer whose error was a dead end (nothing after it for 30 days) comes back to the prices a
    # day later: no error, help page or contact (so only rework and dead ends are compared), but the
    # dead end is gone, so the hotspots are computed whole and count one fewer
    dead = [(row.cx_key, row.ts) for row in moments if row.hotspot == "dead end" and row.ts >= period.start]
    assert dead
    cx_key, at = min(dead, key=lambda d: (d[1], d[0]))
    with store.connect() as conn:
        email = conn.execute(sa.select(crm.c.email).where(crm.c.cx_key == cx_key)).scalar()
    assert email
    append_rows(store, tmp_path, extracts["web"], page(email, "pricing", at + timedelta(days=1), "back"), "back")
    with store.connect() as conn:
        loads = conn.execute(sa.select(loads_table.c.load_id).order_by(loads_table.c.load_id.desc())).scalars().all()
        assert jr.parts_moved_by(conn, loads[:1]) == {"rework", "dead ends"}  # the page back
        assert jr.parts_moved_by(conn, loads[1:2]) == {"rework", "dead ends", "help"}  # the help page
    after_load(store, MOMENTS)
    assert taken == dict.fromkeys(MOMENTS, 1)
    came_back = stored_and_whole()["journeys.hotspots"].set_index("hotspot")["moments"]
    assert came_back.get("dead end", 0) == after["dead end"] - 1


def test_first_positions_stand_when_appended_steps_repeat_what_each_customer_did(company, tmp_path, taken):
    store, extracts = company
    name = "journeys.positions"
    after_load(store, (name,))

    def stored_and_whole() -> pd.DataFrame:
        return stored_view_equal_whole(store, name)

    end, steps = customers_steps_in_period(store)
    last = steps.groupby("email")["ts"].max()
    seen = steps.groupby("email")["activity"].agg(set)
    # customers whose last step in the period was a while ago, and who visited the site's pages
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))
    pages = set(pd.read_csv(extracts["web"].path, dtype=str)["event_name"].dropna())
    calm = sorted(e for e in last.index if last[e] < end - timedelta(hours=1) and seen[e] & pages)
    assert len(calm) >= 3

    def visit(email: str, page: str, tag: str) -> list[dict]:
        row = dict(web, user_email=email, cookie_id=f"cookie-{tag}", session_id=f"s-{tag}", event_name=page)
        row["event_time"] = f"{last[email] + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}"
        return [row]

    # a page the customer had already visited, after their last step: every first step keeps its place
    email = calm[0]
    append_rows(store, tmp_path, extracts["web"], visit(email, sorted(seen[email] & pages)[0], "again"), "again")
    after_load(store, (name,))
    assert taken == {name: 1}
    stored_and_whole()

    # a page new to the site: one activity more, reached by one customer at their last position
    before = stored_and_whole().set_index("activity")
    append_rows(store, tmp_path, extracts["web"], visit(calm[1], "brand_new_page", "new"), "new")
    after_load(store, (name,))
    assert taken == {name: 2}
    positions = stored_and_whole().set_index("activity")
    assert positions.loc["brand_new_page", "customers"] == 1
    assert positions.drop(index="brand_new_page").sort_index().equals(before.sort_index())

    # a page slipped in before a customer's first step in the period: each of their first positions
    # moves one place later (one customer more on that page if it was new to them), and the
    # medians move with them, from the positions kept near each median
    email = calm[2]
    first = steps[steps["email"] == email]["ts"].min()
    page = sorted(pages - seen[email])[0]  # a page they had not visited in the period
    row = dict(web, user_email=email, cookie_id="cookie-early", session_id="s-early", event_name=page)
    row["event_time"] = f"{first - timedelta(seconds=1):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [row], "early")
    after_load(store, (name,))
    assert taken == {name: 3}
    moved = stored_and_whole().set_index("activity")
    assert moved.loc[page, "customers"] == positions.loc[page, "customers"] + 1

    # a second customer reaches the new page after their last step: its median is now halfway
    # between the two customers' positions (each the count of their steps in the period, counted here)
    append_rows(store, tmp_path, extracts["web"], visit(calm[0], "brand_new_page", "second"), "second")
    after_load(store, (name,))
    assert taken == {name: 4}
    count = steps.groupby("email").size()
    # calm[0] took the "again" page first; calm[1] reached it right after their last step
    want = ((count[calm[0]] + 2) + (count[calm[1]] + 1)) / 2
    assert stored_and_whole().set_index("activity").loc["brand_new_page", "median_first_position"] == want


def test_paths_stand_when_no_appended_customer_s_path_moves(company, tmp_path, taken):
    store, extracts = company
    refreshed = ("journeys.activities", PATHS)
    after_load(store, refreshed)

    def stored_and_whole() -> pd.DataFrame:
        computed: dict = {}
        with store.connect() as conn:
            computed["journeys.activities"] = summaries.lookup(
                conn, "journeys.activities", data_version(conn), views.default_params(conn, "journeys.activities", {})
            )
            params = views.default_params(conn, PATHS, computed)
            stored = summaries.lookup(conn, PATHS, data_version(conn), params)
            whole = summaries._computations()[PATHS](conn, **params)
        assert stored is not summaries.MISSING
        assert params["anchor"] == anchor and params["direction"] == "before"
        pd.testing.assert_frame_equal(stored, whole, check_dtype=False)
        return stored

    anchor = str(views.JOURNEY_DEFAULTS["anchor"])
    end, steps = customers_steps_in_period(store)
    last = steps.groupby("email")["ts"].max()
    first_anchor = steps[steps["activity"] == anchor].groupby("email")["ts"].min()
    quiet = last[last < end - timedelta(hours=1)].index
    reached = sorted(e for e in quiet if e in first_anchor.index and first_anchor[e] > steps["ts"].min())
    not_reached = sorted(e for e in quiet if e not in first_anchor.index)
    assert len(reached) >= 2 and not_reached
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))

    def visit(email: str, page: str, at, tag: str) -> list[dict]:
        row = dict(web, user_email=email, cookie_id=f"cookie-{tag}", session_id=f"s-{tag}", event_name=page)
        row["event_time"] = f"{at:%Y-%m-%d %H:%M:%S}"
        return [row]

    def reaching(paths: pd.DataFrame) -> int:
        return int(paths["customers"].sum())  # every customer whose steps reach the anchor, once

    before = stored_and_whole()
    # a customer who had reached the anchor takes one more step after their last: their path into
    # the anchor (the steps before its first time) is as it was, so the paths stand
    email = reached[0]
    append_rows(
        store, tmp_path, extracts["web"], visit(email, "pricing", last[email] + timedelta(minutes=5), "after"), "after"
    )
    after_load(store, refreshed)
    assert taken.get(PATHS) == 1
    assert stored_and_whole().equals(before)

    # a customer reaches the anchor for the first time: a path more, computed whole
    email = not_reached[0]
    append_rows(
        store, tmp_path, extracts["web"], visit(email, anchor, last[email] + timedelta(minutes=5), "first"), "first"
    )
    after_load(store, refreshed)
    assert taken.get(PATHS) == 1
    assert reaching(stored_and_whole()) == reaching(before) + 1

    # a step slipped in just before a customer's first anchor: the steps before it change, computed whole
    email = reached[1]
    append_rows(
        store,
        tmp_path,
        extracts["web"],
        visit(email, "pricing", first_anchor[email] - timedelta(seconds=1), "slip"),
        "slip",
    )
    after_load(store, refreshed)
    assert taken.get(PATHS) == 1
    stored_and_whole()


def test_top_n_is_left_to_the_database_when_a_tie_straddles_its_cut():
    counts = pd.Series({"b": 3, "a": 3, "c": 2, "d": 2})
    assert view_increments._ranked(counts, 2) == ["a", "b"]  # ties by name, as the database ranks them
    assert view_increments._ranked(counts, 3) is None  # c or d: the collation would decide
    assert view_increments._ranked(counts, 4) == ["a", "b", "c", "d"]


def test_a_few_customers_steps_pool_as_among_everyone_s_when_top_n_is_written_out(company):
    """The variants' and an edge's increments read the appended customers' rows alone, with top N
    written out as renames (``_their_log``): their steps, pooled and collapsed, must be the steps the
    whole log gives them, including those pooled into "(other)"."""
    store, _ = company
    with store.connect() as conn:
        params = views.default_params(conn, "journeys.dfg", {})
        spec, period = views._spec(params["filters"]), params.get("period")
        assert spec.top_n and spec.collapse_repeats
        log = views._log(period)
        whole = jr.prepare_log(log, spec)
        pooled = sa.select(whole.c.case_id).where(whole.c.activity == jr.OTHER).distinct().order_by(whole.c.case_id)
        cases = [int(c) for c in conn.execute(pooled.limit(6)).scalars()]
        assert len(cases) == 6  # customers with a step top N pools: the renames must pool it too
        top = view_increments._kept_names(conn, spec, period, [])
        assert top is not None and len(top) == spec.top_n
        rows, pinned = view_increments._their_log(conn, spec, top, cases, period)
        assert pinned.top_n is None

        def steps(events, s) -> pd.DataFrame:
            p = jr.prepare_log(events, s)
            q = sa.select(p.c.case_id, p.c.ts, p.c.activity).where(p.c.case_id.in_(cases))
            return pd.DataFrame(conn.execute(q).all(), columns=["case_id", "ts", "activity"]).sort_values(
                ["case_id", "ts", "activity"], ignore_index=True
            )

        expected = steps(log, spec)
        assert (expected["activity"] == jr.OTHER).any()
        pd.testing.assert_frame_equal(steps(rows, pinned), expected)

        edges = jr.discover_dfg(conn, log, spec)
        source, target = next(
            (s, t) for s, t in zip(edges["source"], edges["target"], strict=True) if jr.OTHER in (s, t) and s != t
        )
        every = jr.edge_customers(conn, log, source, target, spec)
        theirs = jr.edge_customers(conn, rows, source, target, pinned)
        mine = every[every["case_id"].isin(cases)].reset_index(drop=True)
        assert len(mine)
        pd.testing.assert_frame_equal(
            theirs.sort_values("case_id", ignore_index=True),
            mine.sort_values("case_id", ignore_index=True),
            check_dtype=False,
        )


def test_the_report_counts_a_customer_s_first_activity_after_events_alone(company, tmp_path, taken):
    """After events alone the report keeps its coverage but the share of customers with any activity,
    counted again: a CRM customer with no row anywhere (no signup date) makes their first visit."""
    store, extracts = company
    name = "executive.report"
    churn = summaries.effective_churn(store)
    crm = read_rows(extracts["crm"])[0]
    email = "quiet.customer@example.org"
    crm.update({"CustomerID": "CUS-QUIET-1", "Email": email, "Phone": "", "Billing Account": "", "Signup Date": ""})
    append_rows(store, tmp_path, extracts["crm"], [crm], "quiet")
    after_load(store, (name,))
    assert taken == {}  # a CRM record: computed whole

    def stored_and_whole() -> metrics.KpiReport:
        with store.connect() as conn:
            params = views.default_params(conn, name, {}, churn)
            stored = summaries.lookup(conn, name, data_version(conn), params)
            whole = summaries._computations()[name](conn, **params)
        assert stored is not summaries.MISSING
        assert_same_state(stored.to_state(), whole.to_state(), name)
        return stored

    before = stored_and_whole().coverage
    with store.connect() as conn:
        end = as_of(conn)
    web = next(r for r in read_rows(extracts["web"]) if r.get("user_email"))
    visit = dict(web, user_email=email, cookie_id="cookie-quiet", session_id="s-quiet", event_name="pricing")
    visit["event_time"] = f"{end - timedelta(minutes=30):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["web"], [visit], "first-visit")
    after_load(store, (name,))
    assert taken == {name: 1}
    after = stored_and_whole().coverage
    assert after["active_customers"] > before["active_customers"]
    assert {k: v for k, v in after.items() if k != "active_customers"} == {
        k: v for k, v in before.items() if k != "active_customers"
    }

    # then their first ticket: the coverage of every ticket figure moves, computed again whole
    ticket = read_rows(extracts["helpdesk"])[0]
    ticket.update({"Ticket #": "990101", "Requester Email": email, "Requester Phone": "", "Resolved": ""})
    ticket["Created"] = f"{end - timedelta(minutes=20):%Y-%m-%d %H:%M:%S}"
    append_rows(store, tmp_path, extracts["helpdesk"], [ticket], "first-ticket")
    after_load(store, (name,))
    assert taken == {name: 2}
    assert stored_and_whole().coverage["silence_rate"] > after["silence_rate"]
